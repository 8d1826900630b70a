"""`dreamlift generate --representation gaussians` end to end, and the loop with both objectives."""

import json

import numpy as np
import pytest
import torch

from dreamlift.checkpoint import load_state
from dreamlift.cli import main
from dreamlift.export.ply import ply_property_names
from dreamlift.prior.model import SHIPPED_WEIGHTS

pytestmark = pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")

TINY = ["--representation", "gaussians", "--steps", "8", "--gaussians-count", "1000", "--gaussians-densify-every",
        "2", "--mesh-resolution", "32", "--video-frames", "4", "--video-resolution", "32", "--checkpoint-every", "4",
        "--no-progress", "--area-samples", "1"]


def test_gaussians_write_a_standard_ply_a_mesh_and_a_checkpoint(tmp_path, capsys):
    import trimesh
    from plyfile import PlyData

    out = tmp_path / "mug"
    assert main(["generate", "a red mug", "--out", str(out), *TINY]) == 0
    assert f"wrote {out}/model.glb, model.obj, model.ply, turntable.mp4, views.png, metrics.json" in \
        capsys.readouterr().out  # the closing line names the splat file too
    state = load_state(out / "checkpoint.safetensors")
    n = state["field"]["means"].shape[0]
    assert n > 1000  # densified (8 steps, every 2 from step 0.8 to 4.8)
    ply = PlyData.read(str(out / "model.ply"))
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == ply_property_names(0) and vertex.count == n
    assert ply.text is False and ply.byte_order == "<"
    np.testing.assert_array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], -1),
                                  state["field"]["means"].numpy())
    np.testing.assert_array_equal(vertex["opacity"], state["field"]["opacity_logits"].numpy())
    # the file holds the Gaussians as rendered: each scale widened by the 3D filter (0.047 by default)
    filtered = 0.5 * np.log(np.exp(2 * state["field"]["log_scales"].numpy()) + 0.047**2)
    np.testing.assert_allclose(np.stack([vertex[f"scale_{i}"] for i in range(3)], -1), filtered, rtol=1e-5)
    # positions' learning rate (generate's 6x --lr) decays to 0.02x over the run, the others keep theirs (last set
    # at step 7 of 8)
    lrs = {g["name"]: g["lr"] for g in state["optimizer"]["param_groups"]}
    assert lrs["means"] == pytest.approx(0.01 * 6.0 * 0.02 ** (7 / 8)) and lrs["sh"] == pytest.approx(0.01)
    (glb,) = trimesh.load(out / "model.glb").geometry.values()
    assert len(glb.faces) > 100
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["representation"] == "gaussians" and cfg["gaussians"]["count"] == 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert "export_representation" in metrics["seconds"] and np.isfinite(metrics["final_losses"]["sds"])


def test_the_presets_step_counts_by_representation():
    from dreamlift.generate import GenerateConfig

    assert GenerateConfig(prompt="a red mug", representation="gaussians").resolved().steps == 1000
    assert GenerateConfig(prompt="a red mug", representation="gaussians", preset="quality").resolved().steps == 1500
    assert GenerateConfig(prompt="a red mug", preset="quality").resolved().steps == 3000
    assert GenerateConfig(prompt="a red mug", representation="gaussians", steps=7).resolved().steps == 7


@pytest.mark.parametrize("representation", ["nerf", "gaussians"])
def test_the_ceiling_fits_both_representations(representation):
    from dreamlift.evaluate.ceiling import fit_in_memory
    from dreamlift.evaluate.score import ScoreConfig, geometry_scores, scene_field
    from dreamlift.evaluate.suite import SUITES
    from dreamlift.generate import GenerateConfig

    prompt = SUITES["core-v1"][0]
    cfg = GenerateConfig(prompt=prompt.prompt, render_scale=1.0, num_samples=32, progress=False,
                         representation=representation, steps=60)
    small = ScoreConfig(resolution=32, surface_resolution=32, chamfer_points=256)
    level = cfg.resolved().surface_density
    before = geometry_scores(scene_field(fit_in_memory(cfg, prompt, 0).scene, level), prompt.world_object(), small)[0]
    gen = fit_in_memory(cfg, prompt, 60)
    mse = [h["mse"] for h in gen.history]  # one random camera per step: the start against the last ten
    assert len(mse) == 60 and np.mean(mse[-10:]) < 0.7 * mse[0], (mse[:10], mse[-10:])
    after = geometry_scores(scene_field(gen.scene, level), prompt.world_object(), small)[0]
    assert after["iou"] > before["iou"] + 0.02 and after["chamfer"] < before["chamfer"], (before, after)


@pytest.mark.parametrize("args, message", [
    (["--gaussians-count", "0"], "--gaussians-count must be >= 1"),
    (["--gaussians-count", "-5"], "--gaussians-count must be >= 1"),
    (["--gaussians-sh-degree", "4"], "--gaussians-sh-degree must be in [0, 3]"),
    (["--gaussians-count", "5000", "--gaussians-max-count", "100"], "exceeds --gaussians-max-count"),
    (["--gaussians-init-opacity", "1.5"], "init_opacity"),
    (["--gaussians-densify-fraction", "nan"], "finite"),
    (["--representation", "voxels"], "invalid choice: 'voxels'"),
])
def test_impossible_gaussian_settings_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "sub" / "o"
    try:
        code = main(["generate", "a red mug", "--out", str(out), "--representation", "gaussians", *args])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_densification_keeps_parameters_and_adam_state_aligned():
    from dreamlift.render.camera import CameraDistribution, LightDistribution
    from dreamlift.scene.gaussian_scene import GaussianScene
    from dreamlift.scene.gaussians import GaussiansConfig

    torch.manual_seed(0)
    # split_scale above every Gaussian's width: the grown ones are cloned, none split, none pruned
    scene = GaussianScene(GaussiansConfig(count=500, densify_fraction=0.2, prune_opacity=0.0, split_scale=1.0,
                                          prune_scale=2.0), steps=10)
    groups = scene.param_groups()
    for g in groups:
        g["lr"] = 0.01 * g.pop("lr_scale")
    opt = torch.optim.Adam(groups)
    g = torch.Generator().manual_seed(0)
    cams = CameraDistribution().sample(2, g, height=32)
    out = scene.render(cams.camera, LightDistribution().sample(cams, g), "lambertian")
    (out.rgb.mean() + out.opacity.mean()).backward()
    opt.step()
    scene.after_step(1, 0.1, opt, g)  # accumulates the view-space gradients (no densification at step 1)
    assert int((scene.grad_count > 0).sum()) > 100 and scene.count == 500
    means_before = scene.means.detach().clone()
    scene.densify_and_prune(opt, g)
    held = [q for group in opt.param_groups for q in group["params"]]
    assert [id(q) for q in held] == [id(q) for q in scene.parameters()]  # the optimizer holds the new ones
    n = scene.count
    assert 500 < n <= 600 and torch.equal(scene.means[:500], means_before)  # nothing pruned: all kept, in order
    for p in scene.parameters():
        assert p.shape[0] == n and opt.state[p]["exp_avg"].shape == p.shape
        assert torch.all(opt.state[p]["exp_avg"][500:] == 0)
    assert scene.grad_sum.shape == (n,) and float(scene.grad_sum.sum()) == 0.0
    out = scene.render(cams.camera, None, "albedo")  # renders and steps at the new size
    out.rgb.mean().backward()
    opt.step()
    # now split: every grown Gaussian is wider than split_scale, so it is replaced by two narrower ones
    scene.after_step(1, 0.1, opt, g)
    grown = int(0.2 * int((scene.grad_count > 0).sum()))
    widths = scene.log_scales.detach().exp().amax(-1)
    scene.cfg.split_scale = 1e-4
    scene.densify_and_prune(opt, g)
    assert scene.count == n + grown
    assert scene.log_scales.detach().exp().amax(-1)[-grown:].max() <= widths.max() / 1.6 + 1e-6


def test_a_run_with_view_dependent_colour_writes_and_reloads_its_harmonics(tmp_path):
    from dreamlift.evaluate.score import load_field
    from dreamlift.export.ply import read_ply

    out = tmp_path / "sh2"
    assert main(["generate", "a green tree", "--out", str(out), *TINY, "--gaussians-sh-degree", "2"]) == 0
    state = load_state(out / "checkpoint.safetensors")
    sh = state["field"]["sh"]
    assert sh.shape[1:] == (9, 3) and sh[:, 1:].abs().max() > 0  # the degree 1-2 terms were optimised
    g = read_ply(out / "model.ply")
    assert g.sh_degree == 2 and torch.equal(g.sh, sh)
    field, config = load_field(out)  # scoring reloads the degree-2 checkpoint into its class
    assert config["gaussians"]["sh_degree"] == 2 and field.density(torch.zeros(1, 3)).shape == (1,)
