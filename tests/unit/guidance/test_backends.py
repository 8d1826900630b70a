"""load_backend: names, defaults, lazy imports, the builtin backend's options, clear errors."""

import subprocess
import sys

import pytest

from dreamlift.config import DreamliftError
from dreamlift.guidance import BACKENDS, GuidanceBackend, load_backend
from dreamlift.guidance.backends import DEFAULT_MODELS


def test_the_three_backends():
    assert list(BACKENDS) == ["builtin", "stable-diffusion", "deepfloyd-if"]
    assert set(DEFAULT_MODELS) == set(BACKENDS)


def test_unknown_name_lists_the_choices():
    with pytest.raises(DreamliftError) as e:
        load_backend("sdxl", None, "cpu")
    msg = str(e.value)
    assert "'sdxl'" in msg and all(name in msg for name in BACKENDS) and "\n" not in msg


def test_loads_stable_diffusion_and_deepfloyd_folders(sd_folder, if_folder):
    from dreamlift.guidance.deepfloyd import DeepFloydGuidance
    from dreamlift.guidance.stable_diffusion import StableDiffusionGuidance

    sd = load_backend("stable-diffusion", str(sd_folder), "cpu")
    assert isinstance(sd, StableDiffusionGuidance) and isinstance(sd, GuidanceBackend) and sd.resolution == 16
    fl = load_backend("deepfloyd-if", str(if_folder), "cpu", allow_out_of_world=True)  # ignored by IF
    assert isinstance(fl, DeepFloydGuidance) and fl.resolution == 8


@pytest.mark.parametrize("name,module,cls,default", [
    ("stable-diffusion", "stable_diffusion", "StableDiffusionGuidance", "stabilityai/stable-diffusion-2-1-base"),
    ("deepfloyd-if", "deepfloyd", "DeepFloydGuidance", "DeepFloyd/IF-I-XL-v1.0"),
])
def test_model_none_means_the_default(monkeypatch, name, module, cls, default):
    import importlib

    mod = importlib.import_module(f"dreamlift.guidance.{module}")
    seen = {}
    monkeypatch.setattr(mod, cls, lambda model, device, compile: seen.update(model=model, device=device,
                                                                             compile=compile) or "made")
    assert load_backend(name, None, "cpu") == "made"
    assert seen == {"model": default, "device": "cpu", "compile": False} and DEFAULT_MODELS[name] == default
    load_backend(name, None, "cpu", compile=True)
    assert seen["compile"] is True


def test_default_sd_model_fails_clearly_when_not_cached(monkeypatch):
    from dreamlift.guidance._hub import _in_hub_cache

    if _in_hub_cache("stabilityai/stable-diffusion-2-1-base", "scheduler/scheduler_config.json"):
        pytest.skip("Stable Diffusion 2.1 base is in this machine's cache")
    monkeypatch.delenv("DREAMLIFT_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(DreamliftError, match="stable-diffusion-2-1-base.*not in the local Hugging Face cache"):
        load_backend("stable-diffusion", None, "cpu")


def test_builtin_gets_its_folder_device_out_of_world_and_rewrite_flags(monkeypatch, tmp_path):
    import dreamlift.guidance.builtin as builtin

    seen = []
    monkeypatch.setattr(builtin, "BuiltinGuidance", lambda *args: seen.append(args) or "made")
    assert load_backend("builtin", None, "cpu") == "made"
    assert load_backend("builtin", str(tmp_path), "cpu", allow_out_of_world=True) == "made"
    assert load_backend("builtin", None, "cpu", rewrite_unknown_words=False) == "made"
    assert seen == [(None, "cpu", False, True), (str(tmp_path), "cpu", True, True), (None, "cpu", False, False)]


def test_builtin_with_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DreamliftError, match="no prior weights"):
        load_backend("builtin", str(tmp_path / "no-prior"), "cpu")


def test_importing_guidance_does_not_import_the_diffusers_backends():
    code = ("import sys, dreamlift.guidance as g; "
            "bad = [m for m in ('dreamlift.guidance.stable_diffusion', 'dreamlift.guidance.deepfloyd', 'diffusers') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_builtin_loads_the_shipped_prior():
    from dreamlift.guidance.builtin import BuiltinGuidance
    from dreamlift.prior.model import SHIPPED_WEIGHTS

    if not (SHIPPED_WEIGHTS / "prior.safetensors").exists():
        pytest.skip("no shipped prior")
    backend = load_backend("builtin", None, "cpu", allow_out_of_world=True)
    assert isinstance(backend, BuiltinGuidance) and backend.allow_out_of_world
    backend.check_prompt("a purple giraffe on the moon")  # out of world, but allowed
