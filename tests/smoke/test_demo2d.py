"""The 2D demonstration learns its target: checked by a stated metric, through the CLI."""

import json

import pytest
import torch

from dreamlift.cli import main
from dreamlift.demo2d import COMPONENTS, Demo2DConfig, Denoiser2D, evaluate, sample_target, sliced_wasserstein
from dreamlift.diffusion import NoiseSchedule

SMALL = ["--train-steps", "1500", "--batch-size", "256", "--width", "96", "--samples-per-class", "400",
         "--sample-steps", "100"]
SWD_MAX = 0.05  # two target draws of 400 points differ by ~0.01; an untrained model scores > 0.3
OWN_MIN = 0.95


def test_demo_cli_learns_every_class(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo2d", "--out", str(out), *SMALL]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    m = report["metrics"]
    assert m["swd_mean"] < SWD_MAX, m
    assert m["nearest_own_component_min"] >= OWN_MIN, m
    assert report["config"]["train_steps"] == 1500
    from PIL import Image

    assert Image.open(out).size[0] > 400
    assert "sliced Wasserstein" in capsys.readouterr().out


def test_the_metric_fails_an_untrained_model():
    cfg = Demo2DConfig(samples_per_class=400, sample_steps=50)
    x, labels, m = evaluate(Denoiser2D(len(COMPONENTS), 32).eval(), NoiseSchedule.linear(1000), cfg)
    assert m["swd_mean"] > 3 * SWD_MAX
    assert m["nearest_own_component_min"] < OWN_MIN


def test_sliced_wasserstein_on_known_shifts():
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(4000, dtype=torch.long)
    a = sample_target(labels, g)
    # a pure shift by d along a random direction u moves every 1-D projection by |d . u|
    shift = torch.tensor([0.3, 0.0])
    swd = sliced_wasserstein(a, a + shift, num_projections=4000, g=g)
    assert swd == pytest.approx(0.3 * 2 / torch.pi, rel=0.03)  # E|cos(theta)| = 2/pi in 2D
    assert sliced_wasserstein(a, a.flip(0), g=g) == pytest.approx(0.0, abs=1e-6)


def test_refuses_to_overwrite_and_rejects_bad_settings(tmp_path, capsys):
    out = tmp_path / "demo.png"
    out.write_bytes(b"earlier result")
    assert main(["demo2d", "--out", str(out), *SMALL]) == 2
    assert out.read_bytes() == b"earlier result"
    assert "--force" in capsys.readouterr().err
    for bad in (["--train-steps", "0"], ["--sample-steps", "5000"], ["--cond-drop-prob", "1.5"], ["--out", "x.txt"]):
        assert main(["demo2d", "--out", str(tmp_path / "n.png"), *bad] if bad[0] != "--out" else ["demo2d", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("dreamlift demo2d: error:") and "\n" not in err
    assert not (tmp_path / "n.png").exists()
