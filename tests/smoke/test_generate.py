"""`dreamlift generate` end to end at tiny sizes: files that load elsewhere, exact resume, clean failures."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dreamlift.checkpoint import load_state
from dreamlift.cli import main
from dreamlift.config import DreamliftError
from dreamlift.generate import Generator, GenerateConfig, run_generate
from dreamlift.prior.model import SHIPPED_WEIGHTS

pytestmark = pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")

TINY = ["--steps", "6", "--render-scale", "0.5", "--num-samples", "16", "--mesh-resolution", "40",
        "--video-frames", "6", "--video-resolution", "32", "--checkpoint-every", "2", "--no-progress",
        "--area-samples", "1"]  # the area prior stays on (the default), with one sample per view word


def _cfg(out, **kw):
    base = dict(prompt="a red mug", out=out, steps=6, render_scale=0.5, num_samples=16, mesh_resolution=40,
                video_frames=6, video_resolution=32, checkpoint_every=2, progress=False, area_samples=1)
    base.update(kw)
    return GenerateConfig(**base)


def test_generate_writes_files_that_other_tools_load(tmp_path, capsys):
    import imageio.v2 as imageio
    import trimesh
    from PIL import Image

    out = tmp_path / "mug"
    assert main(["generate", "a red mug", "--out", str(out), *TINY]) == 0
    assert f"wrote {out}/model.glb, model.obj, turntable.mp4, views.png, metrics.json (" in capsys.readouterr().out
    scene = trimesh.load(out / "model.glb")
    (glb,) = scene.geometry.values()
    assert len(glb.vertices) > 100 and len(glb.faces) > 100
    assert glb.visual.kind == "texture"  # the colours are in the base-colour texture, shown by default
    colours = np.asarray(glb.visual.to_color().vertex_colors)
    assert colours.shape == (len(glb.vertices), 4)
    assert colours[:, 0].mean() > colours[:, 2].mean()  # even a few steps of "a red mug" lean red
    obj = trimesh.load(out / "model.obj", force="mesh")
    assert len(obj.faces) == len(glb.faces)
    assert obj.is_watertight  # (the glb splits vertices along the unwrap's seams; the obj keeps them whole)
    assert "newmtl" in (out / "model.mtl").read_text() and "mtllib model.mtl" in (out / "model.obj").read_text()
    reader = imageio.get_reader(out / "turntable.mp4", format="ffmpeg")
    frames = [f for f in reader]
    assert len(frames) == 6 and frames[0].shape[0] >= 256
    assert Image.open(out / "views.png").size[0] > 64
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steps"] == 6 and cfg["sds"]["guidance_scale"] == 20.0 and cfg["preset"] == "fast"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["ms_per_step"]) == {"render", "guidance", "backward", "optimizer", "scene"}
    assert metrics["steps"] == 6 and np.isfinite(metrics["final_losses"]["sds"])
    assert (out / "checkpoint.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mug"]  # no staging folder or lock left beside it


def test_colour_words_are_read_rewrites_that_change_the_object_need_consent_and_keep_unknown_words_wins(
        tmp_path, capsys):
    colour = tmp_path / "vermilion"
    assert main(["generate", "a vermilion mug", "--out", str(colour), *TINY]) == 0
    err = capsys.readouterr().err
    assert "note: colour words read as world colours: 'vermilion' -> red (XKCD colour 'vermillion'" in err
    assert err.count("note:") == 1
    assert json.loads((colour / "metrics.json").read_text())["conditioning_prompt"] == "a red mug"
    out = tmp_path / "sedan"
    assert main(["generate", "a cyan sedan", "--out", str(out), *TINY]) == 2
    assert "--accept-rewrite" in capsys.readouterr().err and not out.exists()
    assert main(["generate", "a cyan sedan", "--out", str(out), *TINY, "--accept-rewrite"]) == 0
    err = capsys.readouterr().err
    assert "never saw 'sedan'" in err and "'a cyan car'" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prompt"] == "a cyan sedan" and metrics["conditioning_prompt"] == "a cyan car"
    # resuming keeps the consent the first run was given
    more = [*TINY, "--steps", str(metrics["steps"] + 2)]  # (the last --steps wins)
    assert main(["generate", "a cyan sedan", "--out", str(out), *more, "--resume"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    kept = tmp_path / "kept"
    assert main(["generate", "a cyan sedan", "--out", str(kept), *TINY, "--keep-unknown-words"]) == 0
    assert "never saw" not in capsys.readouterr().err
    assert json.loads((kept / "metrics.json").read_text())["conditioning_prompt"] == "a cyan sedan"
    assert json.loads((kept / "config.json").read_text())["keep_unknown_words"] is True


@pytest.mark.parametrize("area, fade, lr_final, objective", [
    (0.0, 0.0, 0.1, "sds"), (100.0, 0.0, 1.0, "sds"), (100.0, 0.5, 1.0, "sds"), (0.0, 0.0, 1.0, "vsd")],
    ids=["no-area-prior-decaying-lr", "area-prior", "area-prior-fading-bias", "vsd-fitted-denoiser"])
def test_resume_after_a_signal_matches_an_uninterrupted_run(tmp_path, monkeypatch, area, fade, lr_final, objective):
    kw = dict(area_weight=area, blob_fade=fade, lr_final=lr_final, objective=objective)
    run_generate(_cfg(tmp_path / "whole", **kw))
    whole = load_state(tmp_path / "whole" / "checkpoint.safetensors")

    real_step = Generator.train_step

    def signalled_step(self, settle=True):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of step 3: it finishes, then the run stops
        return real_step(self, settle)

    monkeypatch.setattr(Generator, "train_step", signalled_step)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # (SIGINT is ignored in a background job)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM at step 3"):
        run_generate(_cfg(tmp_path / "split", **kw))
    stage = tmp_path / ".split.partial"
    saved = load_state(stage / "checkpoint.safetensors")
    assert saved["step"] == 3 and not (tmp_path / "split").exists()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    monkeypatch.setattr(Generator, "train_step", real_step)
    run_generate(_cfg(tmp_path / "split", resume=True, **kw))
    assert not stage.exists()
    split = load_state(tmp_path / "split" / "checkpoint.safetensors")
    assert split["step"] == whole["step"] == 6
    for k, v in whole["field"].items():
        assert torch.equal(v, split["field"][k]), k
    assert torch.equal(whole["rng"], split["rng"])
    assert [r["sds"] for r in split["history"]] == [r["sds"] for r in whole["history"]]
    assert split["area_targets"] == whole["area_targets"]
    if objective == "vsd":  # the fitted denoiser and its optimizer resumed too
        for k, v in whole["vsd"]["model"].items():
            assert torch.equal(v, split["vsd"]["model"][k]), k
        assert [r["vsd_fit"] for r in split["history"]] == [r["vsd_fit"] for r in whole["history"]]
    assert float(whole["field"]["blob_scale"]) == (0.0 if fade else 1.0)  # faded by half the run, when it fades
    # the last of the 6 steps (progress 5/6) ran at lr * lr_final^(2 * 5/6 - 1), resumed or not
    for ckpt in (whole, split):
        assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * lr_final ** (2 * 5 / 6 - 1))
    if area:
        # the targets came from the prior's own samples, once, and the loss was applied every step
        assert set(whole["area_targets"]["area"]) == {"front", "side", "back", "overhead"}
        assert all(0 < a < 1 for a in whole["area_targets"]["area"].values())
        assert all("area" in r for r in whole["history"])
        metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
        assert metrics["seconds"]["area_prior"] > 0
    else:
        assert whole["area_targets"] is None and not any("area" in r for r in whole["history"])


def test_existing_outputs_are_kept_without_force(tmp_path, capsys):
    out = tmp_path / "o"
    run_generate(_cfg(out, steps=2))
    before = (out / "model.glb").read_bytes()
    assert main(["generate", "a blue car", "--out", str(out), *TINY]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "model.glb").read_bytes() == before
    assert main(["generate", "a blue car", "--out", str(out), *TINY, "--steps", "2", "--force"]) == 0
    assert (out / "model.glb").read_bytes() != before


@pytest.mark.parametrize("args, message", [
    (["   "], "empty"),
    (["a mug " * 80], "characters long"),
    (["a red mug", "--steps", "0"], "--steps must be >= 1"),
    (["a red mug", "--steps", "-3"], "--steps must be >= 1"),
    (["a red mug", "--model", "/nonexistent/prior"], "no prior weights"),
    (["a red mug", "--backend", "stable-diffusion", "--model", "/nonexistent/sd"], "stable diffusion"),
    (["a red mug", "--resume"], "no checkpoint"),
    (["a red mug", "--p-albedo", "0.9", "--p-textureless", "0.9"], "sum to at most 1"),
    (["the eiffel tower at night"], "outside the built-in prior's world"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    code = main(["generate", *args, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert message.lower() in err.lower() and len(err.strip().splitlines()) == 1
    assert not any(out.glob("*")) if out.exists() else True


def test_unknown_backend_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "a red mug", "--backend", "dall-e"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path, capsys):
    out = tmp_path / "c"
    out.mkdir()
    (out / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    assert main(["generate", "a red mug", "--out", str(out), "--resume", *TINY]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and len(err.strip().splitlines()) == 1


def test_nan_loss_is_caught(tmp_path, monkeypatch):
    from dreamlift.guidance.builtin import BuiltinGuidance

    monkeypatch.setattr(BuiltinGuidance, "predict_eps", lambda self, x, t, c: torch.full_like(x, float("nan")))
    with pytest.raises(DreamliftError, match="not finite"):
        run_generate(_cfg(tmp_path / "n"))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "term"
    args = [sys.executable, "-m", "dreamlift.cli", "generate", "a red mug", "--out", str(out),
            *TINY, "--steps", "100000", "--checkpoint-every", "100000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (out / "config.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # some steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and len(err.strip().splitlines()) == 1, err
    state = load_state(tmp_path / ".term.partial" / "checkpoint.safetensors")
    assert 0 < state["step"] < 100000
    assert not out.exists()
