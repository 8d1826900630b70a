"""Shared loading helpers: scheduler config -> NoiseSchedule against diffusers, prediction types,
the prompt cache, dtypes and the offline switch."""

import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.guidance import _hub

CONFIGS = [
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},  # Stable Diffusion
    {"beta_schedule": "squaredcos_cap_v2"},  # DeepFloyd IF
    {"beta_schedule": "linear"},  # DDPMScheduler's defaults
    {"beta_schedule": "linear", "beta_start": 0.0002, "beta_end": 0.03, "num_train_timesteps": 500},
    {"beta_schedule": "sigmoid", "beta_start": 0.0001, "beta_end": 0.02},
    {"trained_betas": torch.linspace(1e-4, 0.03, 200).tolist()},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.get("beta_schedule", "trained"))
def test_schedule_matches_diffusers_ddpm(config):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(**config)
    ours = _hub.schedule_from_config(dict(ref.config))
    assert ours.num_steps == ref.alphas_cumprod.numel()
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.betas, ref.betas.double(), rtol=1e-5, atol=1e-7)


def test_unsupported_schedules_are_clear_errors():
    with pytest.raises(DreamliftError, match="rescale_betas_zero_snr"):
        _hub.schedule_from_config({"beta_schedule": "scaled_linear", "rescale_betas_zero_snr": True})
    with pytest.raises(DreamliftError, match="unsupported scheduler beta_schedule 'laplace'"):
        _hub.schedule_from_config({"beta_schedule": "laplace"})


def test_prediction_types():
    assert _hub.prediction_from_config({}) == "eps"
    assert _hub.prediction_from_config({"prediction_type": "epsilon"}) == "eps"
    assert _hub.prediction_from_config({"prediction_type": "v_prediction"}) == "v"
    assert _hub.prediction_from_config({"prediction_type": "sample"}) == "x0"
    with pytest.raises(DreamliftError, match="flow"):
        _hub.prediction_from_config({"prediction_type": "flow"})


def test_prompt_cache_encodes_each_prompt_once_and_evicts():
    calls = []

    def encode(prompts):
        calls.append(list(prompts))
        return torch.stack([torch.full((2, 3), float(len(p))) for p in prompts])

    cache = _hub.PromptCache(encode, size=2)
    out = cache(["ab", "c", "ab"])
    assert out.shape == (3, 2, 3) and calls == [["ab", "c"]]
    assert out[0, 0, 0] == 2 and out[1, 0, 0] == 1 and torch.equal(out[0], out[2])
    cache(["c"])
    assert calls == [["ab", "c"]]
    cache(["xyz"])  # evicts the least recently used ("ab")
    assert len(cache) == 2
    cache(["ab"])
    assert calls[-1] == ["ab"]
    with pytest.raises(TypeError):
        cache("ab")


def test_learned_variance_split():
    x = torch.arange(2 * 6 * 2 * 2, dtype=torch.float32).reshape(2, 6, 2, 2)
    assert torch.equal(_hub.split_learned_variance(x, 3), x[:, :3])
    assert torch.equal(_hub.split_learned_variance(x[:, :4], 4), x[:, :4])


def test_dtype_defaults():
    assert _hub.default_dtype(torch.device("cuda"), None) == torch.float16
    assert _hub.default_dtype(torch.device("cpu"), None) == torch.float32
    assert _hub.default_dtype(torch.device("cuda"), torch.bfloat16) == torch.bfloat16


def test_offline_unless_the_env_allows_downloads(monkeypatch, tmp_path):
    monkeypatch.delenv(_hub.ALLOW_DOWNLOAD_ENV, raising=False)
    assert not _hub.allow_download()
    monkeypatch.setenv(_hub.ALLOW_DOWNLOAD_ENV, "1")
    assert _hub.allow_download()
    # Even then a local folder is read as a folder (and a missing one is an error, not a download).
    with pytest.raises(DreamliftError, match="does not exist"):
        _hub.ModelSource(str(tmp_path / "missing"), "Stable Diffusion", ("unet",))
    monkeypatch.setenv(_hub.ALLOW_DOWNLOAD_ENV, "0")
    assert not _hub.allow_download()


@pytest.mark.parametrize("name,is_path", [("owner/model", False), ("model", False), ("/abs/model", True),
                                          ("./model", True), ("~/models/sd", True), ("a/b/c", True)])
def test_hub_ids_and_paths(name, is_path):
    assert _hub._looks_like_path(name) == is_path


def test_first_line():
    assert _hub.first_line(ValueError("\n  first\nsecond")) == "first"
    assert _hub.first_line(RuntimeError("Error(s) in loading X:\n\tsize mismatch\nmore")) == \
        "Error(s) in loading X: size mismatch"
    assert _hub.first_line(KeyError()) == "KeyError"
    assert len(_hub.first_line(ValueError("x" * 1000))) == 300


def test_a_compile_that_fails_falls_back_to_the_plain_module_with_one_warning(monkeypatch):
    import warnings

    from dreamlift.guidance._hub import Compiled

    def broken(module, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no C++ compiler found\nmore lines")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    lin = torch.nn.Linear(3, 2)
    fast = Compiled(lin, "the test layer")
    x = torch.randn(4, 3)
    with pytest.warns(UserWarning, match="torch.compile of the test layer failed .no C.. compiler found.; running"):
        assert torch.equal(fast(x), lin(x))
    assert not fast.compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert torch.equal(fast(x), lin(x))


def test_a_compiled_module_gives_the_plain_modules_output():
    from dreamlift.guidance._hub import Compiled

    lin = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    fast = Compiled(lin)
    x = torch.randn(4, 3)
    assert torch.allclose(fast(x), lin(x), atol=1e-6) and fast.compiled and fast.module is lin
