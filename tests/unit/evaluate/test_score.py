"""score_result and its parts on fields whose answer is known: the ground truth itself, turned,
two-faced, a NeRF fitted to it, an untrained NeRF."""

import math
from pathlib import Path

import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.evaluate.classifier import Evaluator
from dreamlift.evaluate.score import (ScoreConfig, ScoredField, janus_from_field, janus_score, load_field,
                                      nerf_field, r_precision_scores, score_result, two_faced, world_field)
from dreamlift.evaluate.suite import SUITES, SuitePrompt
from dreamlift.world import FRONT_FACING, get_object

SMALL = ScoreConfig(resolution=64, surface_resolution=48, chamfer_points=1500, render_size=64)


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator()


def _turned(obj, degrees):
    """The object turned by +degrees about +y (its front towards +x at 90), as a ScoredField."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))

    def back(p):  # R_y(-degrees) p
        x, y, z = p.unbind(-1)
        return torch.stack([c * x - s * z, y, s * x + c * z], dim=-1)

    gt = world_field(obj)
    return ScoredField(lambda p: -obj.sdf(back(p)), lambda p: obj.albedo(back(p)), 0.0, gt.render)


def test_ground_truth_scores_perfectly(evaluator):
    prompt = SuitePrompt("a red mug", "mug", "red")
    s = score_result(world_field(prompt.world_object()), prompt, SUITES["core-v1"], SMALL, evaluator)
    assert s["iou"] > 0.99 and abs(s["rotation_deg"]) < 1.0
    assert s["chamfer"] < 1.3 * s["chamfer_floor"] + 0.005  # as close as two samplings of the truth
    assert s["delta_e_named"] < 0.5 and s["delta_e_surface"] < 0.5 and s["colour_region"] == "named-parts"
    assert s["r_precision_colour"] == 1.0
    assert s["janus"]["janus"] is False and s["finished"] is True


def test_a_turned_result_is_turned_back_and_keeps_its_scores():
    obj = get_object("car", "green")
    from dreamlift.evaluate.score import colour_scores, geometry_scores

    geo, pts = geometry_scores(_turned(obj, 60.0), obj, SMALL)
    assert abs(geo["rotation_deg"] - (-60.0)) < 2.0
    assert geo["iou"] > 0.93 and geo["chamfer"] < 1.5 * geo["chamfer_floor"] + 0.01
    col = colour_scores(_turned(obj, 60.0), obj, pts, geo["rotation_deg"], SMALL)
    assert col["delta_e_named"] < 1.0


def test_a_wrong_colour_and_a_wrong_shape_score_badly():
    from dreamlift.evaluate.score import colour_scores, geometry_scores

    truth = get_object("mug", "red")
    wrong = world_field(get_object("mug", "blue"))
    geo, pts = geometry_scores(wrong, truth, SMALL)
    assert colour_scores(wrong, truth, pts, geo["rotation_deg"], SMALL)["delta_e_named"] > 30
    geo, _ = geometry_scores(world_field(get_object("tree", "red")), truth, SMALL)
    assert geo["iou"] < 0.5 and geo["chamfer"] > 3 * geo["chamfer_floor"]


def test_janus_rule_on_synthetic_view_probabilities():
    F, S, B = [0.9, 0.05, 0.05, 0.0], [0.05, 0.9, 0.05, 0.0], [0.05, 0.05, 0.9, 0.0]
    one = torch.tensor([F, F, S, S, B, B, S, F])  # the front arc wraps around azimuth 0
    assert janus_score(one) == {"janus": False, "front_arcs": 1, "front_fraction": 0.375, "views": "FFSSBBSF"}
    two = janus_score(torch.tensor([F, S, S, F, F, S, S, S]))
    assert two["janus"] and two["front_arcs"] == 2
    wide = janus_score(torch.tensor([F, F, F, F, F, S, B, S]))
    assert wide["janus"] and wide["front_arcs"] == 1  # a front seen from opposite sides
    unsure = torch.tensor([F, S, B, [0.5, 0.0, 0.5, 0.0], S, S, S, S])  # front vs back undecided: not front
    assert janus_score(unsure)["front_arcs"] == 1
    with pytest.raises(DreamliftError):
        janus_score(torch.ones(8, 3) / 3)


@pytest.mark.parametrize("category", list(FRONT_FACING))
def test_ground_truth_renders_are_one_faced(category, evaluator):
    j = janus_from_field(world_field(get_object(category, "blue")), evaluator)
    assert not j["janus"] and j["front_arcs"] == 1 and 0.1 <= j["front_fraction"] <= 0.35, j


@pytest.mark.parametrize("category", ["house", "snowman", "car"])
def test_a_two_faced_object_is_janus(category, evaluator):
    j = janus_from_field(world_field(two_faced(get_object(category, "blue"))), evaluator)
    assert j["janus"] and j["front_arcs"] == 2, j


def test_r_precision_of_ground_truth_renders(evaluator):
    suite = SUITES["core-v1"]
    for prompt in (suite[2], suite[11]):  # a yellow house, a green tree
        r = r_precision_scores(world_field(prompt.world_object()), prompt, suite, evaluator, SMALL)
        assert r["r_precision_colour"] == 1.0 and r["r_precision_textureless"] >= 0.75, (prompt, r)


def _save_run(tmp_path: Path, nerf, surface_density=10.0) -> Path:
    from dreamlift.checkpoint import save_state
    from dreamlift.config import config_to_dict
    from dreamlift.generate import GenerateConfig

    cfg = config_to_dict(GenerateConfig(prompt="a red mug", nerf=nerf.cfg, surface_density=surface_density))
    save_state(tmp_path / "checkpoint.safetensors", {"field": nerf.state_dict(), "config": cfg})
    return tmp_path


def test_score_an_output_folder_and_refuse_a_broken_one(tmp_path, evaluator):
    from dreamlift.scene.nerf import NeRF, NeRFConfig

    torch.manual_seed(0)
    nerf = NeRF(NeRFConfig(max_resolution=32))
    out = _save_run(tmp_path, nerf)
    field, config = load_field(out)
    assert config["surface_density"] == 10.0
    pts = torch.rand(100, 3) * 2 - 1
    assert torch.allclose(field.density(pts), nerf.density(pts).detach())
    small = ScoreConfig(resolution=24, surface_resolution=24, chamfer_points=256, views=4, janus_views=8,
                        render_size=32, num_samples=16)
    s = score_result(out, SuitePrompt("a red mug", "mug", "red"), SUITES["smoke-v1"], small, evaluator)
    assert 0 <= s["iou"] < 0.5 and s["chamfer"] > 0 and s["janus"] is not None
    (tmp_path / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(DreamliftError, match="not a dreamlift checkpoint or is corrupt"):
        load_field(out)
    with pytest.raises(DreamliftError, match="no checkpoint"):
        load_field(tmp_path / "missing")


def test_ceiling_fit_beats_the_untrained_nerf():
    from dreamlift.evaluate.ceiling import fit_in_memory
    from dreamlift.evaluate.score import geometry_scores
    from dreamlift.generate import GenerateConfig

    prompt = SuitePrompt("a green car", "car", "green")
    cfg = GenerateConfig(prompt="x", out=Path("unused"), steps=200, num_samples=24, progress=False)
    small = ScoreConfig(resolution=32, surface_resolution=32, chamfer_points=512)
    before = geometry_scores(nerf_field(fit_in_memory(cfg, prompt, 0).scene, 10.0), prompt.world_object(), small)[0]
    gen = fit_in_memory(cfg, prompt, 40)
    after = geometry_scores(nerf_field(gen.scene, 10.0), prompt.world_object(), small)[0]
    mse = [r["mse"] for r in gen.history]
    assert sum(mse[-10:]) < 0.8 * sum(mse[:10])
    assert after["iou"] > before["iou"] + 0.1 and after["chamfer"] < before["chamfer"]
