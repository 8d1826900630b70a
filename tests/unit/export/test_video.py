"""Turntable videos (H.264 .mp4 read back with imageio's ffmpeg plugin) and PNG image grids."""

import imageio.v2 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from dreamlift.config import DreamliftError
from dreamlift.export import save_image_grid, write_video
from dreamlift.export.video import frames_to_uint8, upscale_factor
from dreamlift.prior.sampling import image_grid

RED, GREEN, BLUE = (0.85, 0.1, 0.1), (0.15, 0.65, 0.2), (0.1, 0.3, 0.85)


def solid_frames(colours, h=32, w=32):
    """(N, 3, H, W) frames, frame i filled with colours[i]."""
    return torch.tensor(colours, dtype=torch.float32)[:, :, None, None].expand(-1, -1, h, w).contiguous()


def read_video(path):
    reader = iio.get_reader(path, format="ffmpeg")
    try:
        meta = reader.get_meta_data()
        frames = np.stack([f for f in reader.iter_data()])  # list(reader) trips on nframes=inf
    finally:
        reader.close()
    return frames, meta


def test_video_reads_back_with_frame_count_size_and_colours(tmp_path):
    colours = [RED, GREEN, BLUE, RED, GREEN, BLUE, RED]
    path = write_video(solid_frames(colours), tmp_path / "videos" / "turn.mp4", fps=12)
    frames, meta = read_video(path)
    assert frames.shape == (7, 256, 256, 3)  # 32 px enlarged 8x to reach min_size=256
    assert meta["fps"] == pytest.approx(12) and meta["codec"] == "h264"
    assert "yuv420p" in meta.get("pix_fmt", "yuv420p")
    expected = np.array(colours) * 255
    assert np.abs(frames.reshape(7, -1, 3).mean(axis=1) - expected).max() < 12  # yuv420p rounding


def test_uint8_numpy_frames_and_odd_sizes_are_made_even(tmp_path):
    g = np.random.default_rng(0)
    frames = g.integers(0, 256, size=(3, 21, 35, 3), dtype=np.uint8)
    path = write_video(frames, tmp_path / "odd.mp4", fps=24, min_size=100)
    back, _ = read_video(path)
    factor = upscale_factor(21, 35, 100)
    assert factor == 5 and back.shape == (3, 106, 176, 3)  # 105 x 175 padded by one pixel to even sizes


def test_nearest_neighbour_enlargement_keeps_blocks_sharp(tmp_path):
    frame = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    frame[0, :, 16:] = 255  # left half black, right half white
    (back,), _ = read_video(write_video(frame, tmp_path / "half.mp4"))
    assert back.shape == (256, 256, 3)
    assert back[:, :120].mean() < 10 and back[:, 136:].mean() > 245


def test_existing_video_survives_a_failed_encode(tmp_path, monkeypatch):
    path = write_video(solid_frames([RED, GREEN]), tmp_path / "v.mp4")
    before = path.read_bytes()
    import imageio_ffmpeg

    real = imageio_ffmpeg.write_frames

    def broken_encoder(*args, **kwargs):  # ffmpeg writes the temp file, then fails after two frames
        gen = real(*args, **kwargs)
        gen.send(None)
        try:
            for _ in range(2):
                gen.send((yield))
        finally:
            gen.close()
        raise OSError("ffmpeg died")

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", broken_encoder)
    with pytest.raises(DreamliftError, match="ffmpeg died"):
        write_video(solid_frames([BLUE] * 5), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # the temp file is gone


@pytest.mark.parametrize("frames, match", [
    (torch.zeros(0, 3, 32, 32), "no frames"),
    (torch.zeros(2, 32, 32, 3), r"\(N, 3, H, W\)"),
    (torch.zeros(2, 3, 32), r"\(N, 3, H, W\)"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "float"),
    (torch.full((2, 3, 8, 8), float("nan")), "NaN"),
    (np.zeros((2, 3, 8, 8), dtype=np.uint8), r"\(N, H, W, 3\)"),
    (np.zeros((2, 8, 8, 3), dtype=np.float32), "uint8"),
    (np.zeros((0, 8, 8, 3), dtype=np.uint8), "no frames"),
    ([np.zeros((8, 8, 3), dtype=np.uint8)], "tensor"),
])
def test_bad_frames_raise(frames, match, tmp_path):
    with pytest.raises(DreamliftError, match=match):
        write_video(frames, tmp_path / "bad.mp4")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, match", [(dict(fps=0), "fps"), (dict(min_size=-1), "min_size"),
                                           (dict(quality=0), "quality")])
def test_bad_settings_raise(kwargs, match, tmp_path):
    with pytest.raises(DreamliftError, match=match):
        write_video(solid_frames([RED]), tmp_path / "bad.mp4", **kwargs)


def test_frames_to_uint8_layouts_agree():
    t = torch.rand(2, 3, 5, 7)
    a = frames_to_uint8(t)
    assert a.shape == (2, 5, 7, 3) and a.dtype == np.uint8
    assert np.array_equal(frames_to_uint8(a), a)
    assert np.array_equal(a[1, 4, 6], (t[1, :, 4, 6] * 255).round().to(torch.uint8).numpy())


def test_image_grid_png_matches_the_prior_layout(tmp_path):
    images = torch.rand(5, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    path = save_image_grid(images, tmp_path / "grids" / "g.png", rows=2)
    saved = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(saved, np.asarray(image_grid(images, rows=2)))


def test_image_grid_with_labels_and_scale(tmp_path):
    images = solid_frames([RED, GREEN, BLUE, RED], h=16, w=16)
    path = save_image_grid(images, tmp_path / "g.png", rows=1, labels=["front", "side", "back", "top"], scale=4)
    saved = np.asarray(Image.open(path).convert("RGB"))
    tile, pad, strip = 64, 2, 12
    assert saved.shape == (pad + tile + strip + pad, pad + 4 * (tile + pad), 3)
    assert np.array_equal(saved[pad + 10, pad + 10], np.round(np.array(RED) * 255))
    label_strip = saved[pad + tile : pad + tile + strip, pad : pad + tile]
    assert (label_strip < 128).any() and (label_strip == 255).mean() > 0.5  # dark text on white


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=torch.rand(2, 1, 8, 8)), r"\(N, 3, H, W\)"),
    (dict(images=torch.rand(0, 3, 8, 8)), "no images"),
    (dict(images=torch.rand(2, 3, 8, 8), labels=["a"]), "labels"),
    (dict(images=torch.rand(2, 3, 8, 8), rows=3), "rows"),
])
def test_bad_grid_inputs_raise(kwargs, match, tmp_path):
    with pytest.raises(DreamliftError, match=match):
        save_image_grid(path=tmp_path / "g.png", **kwargs)
