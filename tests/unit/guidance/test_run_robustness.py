"""What the diffusers backends' runs need around SDS (issue 24, part 1), on CPU with tiny random pipelines through
the real loading code: a non-finite gradient replaced and counted (not fatal) where it is expected, IF's T5
freed once the run's prompts are encoded, the fp16 weight variant read when the backend runs in fp16, the
per-backend timestep schedules, phase timers, and the render generator."""

import math

import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.generate import GenerateConfig, Generator, PhaseClock, check_resumable
from dreamlift.guidance.sds import SDSConfig, replaces_nonfinite, run_prompts, sample_timesteps, sds_step

from .test_sds import FakeBackend


class _NaNBackend(FakeBackend):
    """eps_hat with NaN at one pixel and +inf at another of every image."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.dtype = dtype

    def predict_eps(self, x_t, t, cond):
        out = super().predict_eps(x_t, t, cond).clone()
        out[:, 0, 0, 0] = float("nan")
        out[:, 1, 2, 3] = float("inf")
        return out


def test_a_nonfinite_gradient_is_zeroed_and_counted_or_stops_the_run():
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    out = sds_step(_NaNBackend(), images, ["x", "y"], SDSConfig(nonfinite="zero"),
                   generator=torch.Generator().manual_seed(0))
    assert out.nonfinite == 4  # two values in each of two images
    assert torch.isfinite(out.grad).all() and out.grad[:, 0, 0, 0].eq(0).all() and out.grad[:, 1, 2, 3].eq(0).all()
    out.loss.backward()
    assert torch.isfinite(images.grad).all()
    # elsewhere the gradient is the one SDS gives without the bad values: w (eps_hat - eps) at the same draws
    clean = sds_step(FakeBackend(), images.detach().clone(), ["x", "y"], SDSConfig(),
                     generator=torch.Generator().manual_seed(0))
    keep = torch.ones_like(out.grad, dtype=torch.bool)
    keep[:, 0, 0, 0] = keep[:, 1, 2, 3] = False
    assert torch.equal(out.grad[keep], clean.grad[keep]) and clean.nonfinite == 0
    # "stop": the values are kept and counted; the loss is not finite, and the run's Generator stops on it
    kept = sds_step(_NaNBackend(), images, ["x", "y"], SDSConfig(nonfinite="stop"))
    assert kept.nonfinite == 4 and not torch.isfinite(kept.loss)


def test_auto_zeroes_nonfinite_gradients_only_for_half_precision_denoisers():
    auto = SDSConfig()
    assert replaces_nonfinite(auto, _NaNBackend(torch.float16)) and replaces_nonfinite(auto, _NaNBackend(torch.bfloat16))
    assert not replaces_nonfinite(auto, _NaNBackend(torch.float32)) and not replaces_nonfinite(auto, FakeBackend())
    half = sds_step(_NaNBackend(torch.float16), torch.rand(1, 3, 8, 8), ["x"], auto)
    assert half.nonfinite == 2 and torch.isfinite(half.loss)
    full = sds_step(_NaNBackend(torch.float32), torch.rand(1, 3, 8, 8), ["x"], auto)
    assert full.nonfinite == 2 and not torch.isfinite(full.loss)


def test_the_timestep_anneal_is_the_built_in_priors_and_off_for_sd_and_if():
    kw = dict(prompt="a red mug", out="unused")
    assert GenerateConfig(**kw).resolved().sds.t_max_final == 0.7
    for backend in ("stable-diffusion", "deepfloyd-if"):
        assert GenerateConfig(backend=backend, **kw).resolved().sds.t_max_final is None
        on = GenerateConfig(backend=backend, sds=SDSConfig(t_anneal="on"), **kw).resolved()
        assert on.sds.t_max_final == 0.7
    off = GenerateConfig(sds=SDSConfig(t_anneal="off"), **kw).resolved()
    assert off.sds.t_max_final is None
    # sample_timesteps itself: at the end of the run t reaches up to t_max_final with the anneal, t_max without
    g = torch.Generator().manual_seed(0)
    annealed = sample_timesteps(SDSConfig(), 4000, 1000, progress=1.0, generator=g)
    fixed = sample_timesteps(SDSConfig(t_anneal="off"), 4000, 1000, progress=1.0, generator=g)
    assert 690 <= int(annealed.max()) < 700 and int(fixed.max()) > 950


def test_checkpoints_from_before_a_new_setting_resume_at_its_default(tmp_path):
    cfg = GenerateConfig(prompt="a red mug", out=tmp_path / "o").resolved()
    from dreamlift.config import config_to_dict

    saved = config_to_dict(cfg)
    del saved["sds"]["t_anneal"], saved["sds"]["nonfinite"], saved["background"]  # written before they existed
    for key in [k for k in saved["nerf"] if k == "encoding" or k.startswith("hash_")]:
        del saved["nerf"][key]
    check_resumable(saved, cfg, 0, tmp_path)
    from dataclasses import replace

    changed = replace(cfg, sds=replace(cfg.sds, nonfinite="zero"))
    with pytest.raises(DreamliftError, match="sds.nonfinite"):
        check_resumable(saved, changed, 0, tmp_path)


def test_run_prompts_are_every_text_sds_sends():
    cfg = SDSConfig(negative_prompt="blurry")
    assert run_prompts("a cat", cfg) == ["a cat, front view", "a cat, side view", "a cat, back view",
                                         "a cat, overhead view", "blurry"]
    assert run_prompts("a cat", SDSConfig(view_prompts=False)) == ["a cat", ""]


def test_deepfloyd_frees_t5_after_the_runs_prompts_are_encoded(if_folder):
    from dreamlift.guidance.deepfloyd import DeepFloydGuidance
    from dreamlift.guidance.objectives import SDSObjective

    backend = DeepFloydGuidance(str(if_folder))  # its own: the session's fixture keeps its encoder
    before = backend.encode_text(["a red mug, side view", ""]).clone()
    cfg = GenerateConfig(prompt="a red mug", backend="deepfloyd-if", out="unused", steps=3, num_samples=8).resolved()
    gen = Generator(cfg, SDSObjective(cfg, backend))
    gen.prepare()
    assert backend.text_encoder is None
    assert torch.equal(backend.encode_text(["a red mug, side view", ""]), before)  # served from the cache
    for _ in range(3):  # the run goes on without T5
        record = gen.train_step()
        assert math.isfinite(record["sds"])
    with pytest.raises(RuntimeError, match="freed"):
        backend.encode_text(["a blue chair"])


def test_fp16_runs_read_the_fp16_weight_variant(if_folder, tmp_path):
    """A folder with both variants (as IF-I-XL and SD 2.1 on the hub): float16 loads the .fp16 files, float32 the
    full-precision ones. The fp16 files here hold other weights, so which ones were read shows."""
    import shutil

    from diffusers import UNet2DConditionModel
    from transformers import T5EncoderModel

    from dreamlift.guidance.deepfloyd import DeepFloydGuidance

    folder = tmp_path / "if"
    shutil.copytree(if_folder, folder)
    text = T5EncoderModel.from_pretrained(folder / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    with torch.no_grad():
        for module in (text, unet):
            for p in module.parameters():
                p.add_(0.5)
    text.to(torch.float16).save_pretrained(folder / "text_encoder", variant="fp16")
    unet.to(torch.float16).save_pretrained(folder / "unet", variant="fp16")

    half = DeepFloydGuidance(str(folder), dtype=torch.float16)
    full = DeepFloydGuidance(str(folder), dtype=torch.float32)
    for a, b, shifted in ((half.unet, full.unet, unet), (half.text_encoder, full.text_encoder, text)):
        pa, pb, ps = (next(iter(m.parameters())) for m in (a, b, shifted))
        assert pa.dtype == torch.float16 and pb.dtype == torch.float32
        assert torch.allclose(pa.float(), ps.float().half().float()) and not torch.allclose(pa.float(), pb, atol=0.1)
    # a folder without the variant still loads in fp16, cast from the full-precision files
    plain = DeepFloydGuidance(str(if_folder), dtype=torch.float16)
    assert torch.allclose(next(iter(plain.unet.parameters())).float(), next(iter(full.unet.parameters())), atol=1e-2)


class _NoObjective:
    device = torch.device("cpu")
    resolution = 32
    LOSS_KEYS = ()

    def state(self):
        return {}


def test_on_the_cpu_the_renders_random_numbers_come_from_the_runs_one_generator():
    cfg = GenerateConfig(prompt="a red mug", out="unused", steps=4, area_weight=0.0).resolved()
    gen = Generator(cfg, _NoObjective())
    assert gen.render_rng is gen.rng and "render_rng" not in gen.state()


def test_phase_clock_adds_each_span_on_the_cpu():
    clock, times = PhaseClock(torch.device("cpu")), {"a": 0.0, "b": 0.0}
    clock.add(times, [1.0, 1.5, 4.0, 4.25], (("a", 0, 1), ("b", 1, 2), ("a", 2, 3)))
    assert times == {"a": 0.75, "b": 2.5} and clock.pending == []


THREESTUDIO = {"steps": 10000, "batch_size": 1, "num_samples": 512, "lr": 0.01, "albedo_warmup": 0.2001,
               "p_albedo": 0.25, "p_textureless": 0.375, "orientation_weight": 1000.0, "sparsity_weight": 1.0,
               "entropy_weight": 0.0}


@pytest.mark.parametrize("preset, backend, render, guidance", [("sd", "stable-diffusion", 64, 100.0),
                                                               ("if", "deepfloyd-if", 64, 20.0)])
def test_the_sd_and_if_presets_are_threestudios_and_documented(preset, backend, render, guidance):
    from pathlib import Path

    cfg = GenerateConfig(prompt="a corgi", backend=backend, preset=preset, out="unused").resolved()
    for key, value in THREESTUDIO.items():
        assert getattr(cfg, key) == value, key
    resolution = {"stable-diffusion": 512, "deepfloyd-if": 64}[backend]
    assert round(resolution * cfg.render_scale) == render and cfg.guidance == guidance
    assert cfg.sds.t_max_final is None and (cfg.sds.t_min, cfg.sds.t_max) == (0.02, 0.98)
    assert GenerateConfig(prompt="a corgi", backend=backend, preset=preset, representation="gaussians",
                          out="unused").resolved().steps == 500
    # docs/DEFAULTS.md's table says the same
    doc = (Path(__file__).parents[3] / "docs" / "DEFAULTS.md").read_text().split("## The sd and if presets")[1]
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ")[1] for line in doc.splitlines() if line.startswith("| `")}
    assert rows["--steps"] == "10000" and rows["--num-samples"] == "512" and rows["--albedo-warmup"] == "0.2001"
    assert rows["--orientation-weight"].startswith("1000") and rows["--sparsity-weight"] == "1"
    assert rows["--entropy-weight"] == "0" and rows["--p-albedo`, `--p-textureless"] == "0.25, 0.375"
    # a setting given on the command line still wins over the preset
    assert GenerateConfig(prompt="a corgi", backend=backend, preset=preset, steps=50, sparsity_weight=0.5,
                          out="unused").resolved().sparsity_weight == 0.5


def test_the_fast_preset_keeps_its_values_and_sd_needs_its_backend():
    cfg = GenerateConfig(prompt="a red mug", out="unused").resolved()
    assert (cfg.albedo_warmup, cfg.p_albedo, cfg.p_textureless, cfg.orientation_weight, cfg.entropy_weight,
            cfg.sparsity_weight) == (0.1, 0.2, 0.3, 0.1, 0.1, 0.0)
    with pytest.raises(DreamliftError, match="--preset sd is for --backend stable-diffusion"):
        GenerateConfig(prompt="a red mug", preset="sd", out="unused").resolved()
    with pytest.raises(DreamliftError, match="--preset if is for --backend deepfloyd-if"):
        GenerateConfig(prompt="a red mug", preset="if", backend="stable-diffusion", out="unused").resolved()


def test_a_learned_or_random_background_is_composited_under_the_render_and_trained():
    from dreamlift.config import with_overrides
    from dreamlift.scene.background import EnvironmentBackground, background_image, composite

    model = EnvironmentBackground()
    d = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    assert torch.allclose(model(d), torch.full((10, 3), 0.5))  # starts grey
    from dreamlift.render.camera import CameraDistribution

    cams = CameraDistribution().sample(2, torch.Generator().manual_seed(0), height=8).camera
    g = torch.Generator().manual_seed(0)
    rand = background_image("random", cams, None, g, torch.device("cpu"))
    assert rand.shape == (2, 3, 8, 8) and torch.equal(rand[:, :, 0, 0], rand[:, :, 7, 5])  # one colour an image
    assert background_image("white", cams, None, g, torch.device("cpu")) is None

    from dreamlift.render.volume import RenderOutput

    # a render made over black: half-opaque red

    out = RenderOutput(rgb=torch.tensor([0.5, 0, 0]).view(1, 3, 1, 1).expand(2, 3, 8, 8),
                       opacity=torch.full((2, 1, 8, 8), 0.5), depth=torch.zeros(2, 1, 8, 8), normal=None,
                       orientation=torch.zeros(()), weights=torch.zeros(128, 1))
    mixed = composite(out, rand)
    assert torch.allclose(mixed.rgb, out.rgb + 0.5 * rand)
    # in a run: the background model's weights are in the optimizer at a tenth of the rate, and get gradients
    cfg = with_overrides(GenerateConfig(prompt="a red mug", out="unused", steps=4, area_weight=0.0, num_samples=8),
                         ["background=learned"]).resolved()

    class _MeanObjective:
        device, resolution, LOSS_KEYS = torch.device("cpu"), 16, ()

        def loss(self, out, cams, light, shading, progress, generator):
            return ((out.rgb - 0.2) ** 2).mean(), {}

        def state(self):
            return {}

    gen = Generator(cfg, _MeanObjective())
    (group,) = [g for g in gen.opt.param_groups if g.get("name") == "background"]
    assert group["lr_scale"] == 0.1
    before = [p.detach().clone() for p in gen.background.parameters()]
    gen.train_step()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, gen.background.parameters()))
    assert "background" in gen.state()


def test_a_run_on_a_half_precision_denoiser_survives_nonfinite_gradients_and_records_them():
    from dreamlift.guidance.objectives import SDSObjective

    cfg = GenerateConfig(prompt="a red mug", out="unused", steps=3, area_weight=0.0, num_samples=8).resolved()
    gen = Generator(cfg, SDSObjective(cfg, _NaNBackend(torch.float16)))
    gen.prepare()
    records = [gen.train_step() for _ in range(3)]
    assert [r["sds_nonfinite"] for r in records] == [2, 2, 2]
    assert all(math.isfinite(r["sds"]) for r in records)
    assert all(torch.isfinite(p).all() for p in gen.scene.parameters())


def test_a_cpu_run_resumes_exactly_whatever_render_generator_its_checkpoint_carries(tmp_path):
    """A CPU run draws its render jitter from its one CPU generator; a checkpoint that also carries a GPU render
    generator (saved on CUDA, resumed here with --device cpu) loads, and the CPU run continues as it would have."""
    from dreamlift.checkpoint import load_state, save_state

    class _Objective:
        device, resolution, LOSS_KEYS = torch.device("cpu"), 16, ()

        def loss(self, out, cams, light, shading, progress, generator):
            return ((out.rgb - 0.3) ** 2).mean() + 1e-3 * torch.rand((), generator=generator), {}

        def state(self):
            return {}

        def load(self, state):
            pass

    cfg = GenerateConfig(prompt="a red mug", out="unused", steps=6, area_weight=0.0, num_samples=8).resolved()
    a = Generator(cfg, _Objective())
    for _ in range(3):
        a.train_step()
    state = a.state()
    state["render_rng"] = {"device": "cuda", "state": torch.zeros(16, dtype=torch.uint8)}  # a GPU generator's
    save_state(tmp_path / "ckpt.safetensors", state)
    rest = [a.train_step() for _ in range(3)]
    b = Generator(cfg, _Objective())
    b.load(tmp_path / "ckpt.safetensors")
    assert load_state(tmp_path / "ckpt.safetensors")["render_rng"]["device"] == "cuda"
    assert [b.train_step() for _ in range(3)] == rest
    assert all(torch.equal(p, q) for p, q in zip(a.scene.parameters(), b.scene.parameters()))


def test_a_full_precision_run_stops_at_a_nonfinite_gradient_when_its_steps_are_read_and_saves_no_bad_step(tmp_path):
    """A step leaves its losses on the device (no host sync); the run stops when they are read: at the progress
    bar's reading or before a checkpoint, which therefore never holds a diverged step."""
    from dreamlift.guidance.objectives import SDSObjective

    cfg = GenerateConfig(prompt="a red mug", out="unused", steps=5, area_weight=0.0, num_samples=8).resolved()
    gen = Generator(cfg, SDSObjective(cfg, _NaNBackend(torch.float32)))
    gen.prepare()
    for _ in range(3):
        record = gen.train_step(settle=False)  # no error yet: nothing was read
        assert isinstance(record["sds"], torch.Tensor)
    with pytest.raises(DreamliftError, match="SDS gradient is not finite.*at step 1.*--sds-nonfinite zero"):
        gen.save(tmp_path / "ckpt.safetensors")
    assert not (tmp_path / "ckpt.safetensors").exists()


def test_a_settled_history_is_the_history_of_steps_read_one_by_one():
    from dreamlift.guidance.objectives import SDSObjective

    def run(settle_each):
        cfg = GenerateConfig(prompt="a red mug", out="unused", steps=4, area_weight=0.0, num_samples=8).resolved()
        gen = Generator(cfg, SDSObjective(cfg, FakeBackend()))
        gen.prepare()
        for _ in range(4):
            gen.train_step(settle=settle_each)
        return gen.history

    one_by_one, at_once = run(True), run(False)
    assert one_by_one == at_once and [r["step"] for r in at_once] == [1, 2, 3, 4]
    assert all(isinstance(v, (int, float)) for r in at_once for v in r.values())
    assert "sds_nonfinite" not in at_once[0]  # recorded only where there were such values
