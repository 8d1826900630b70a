"""Reference images: every mode a user may have is read the same, every bad file is one clear error."""

import numpy as np
import pytest
import torch
from PIL import Image

from dreamlift.config import DreamliftError
from dreamlift.images import MAX_PIXELS, load_reference_image

RED = (200, 30, 30)


def _disc(side=64, colour=RED, radius=0.3):
    """An RGB disc of ``colour`` on white, and its mask."""
    yy, xx = np.mgrid[:side, :side]
    mask = (yy - side / 2 + 0.5) ** 2 + (xx - side / 2 + 0.5) ** 2 < (radius * side) ** 2
    img = np.full((side, side, 3), 255, np.uint8)
    img[mask] = colour
    return img, mask


def _check_disc(ref, colour=RED, tol=0.08):
    assert ref.rgb.shape == (3, 32, 32) and ref.mask.shape == (32, 32)
    centre, corner = ref.rgb[:, 16, 16], ref.rgb[:, 0, 0]
    torch.testing.assert_close(centre, torch.tensor(colour, dtype=torch.float32) / 255, atol=tol, rtol=0)
    torch.testing.assert_close(corner, torch.ones(3), atol=1e-6, rtol=0)
    assert ref.mask[16, 16] > 0.99 and ref.mask[0, 0] < 1e-6
    assert 0.2 < ref.mask.mean() < 0.4  # the disc's share, pi 0.3^2 = 0.28


def test_rgb_png_and_jpeg(tmp_path):
    img, _ = _disc()
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=95)
    _check_disc(load_reference_image(tmp_path / "a.png", 32))
    ref = load_reference_image(tmp_path / "a.jpg", 32)
    _check_disc(ref)
    assert not ref.has_alpha


def test_alpha_palette_grayscale_sixteen_bit_and_cmyk(tmp_path):
    img, mask = _disc()
    rgba = np.dstack([img, np.where(mask, 255, 0).astype(np.uint8)])
    rgba[~mask, :3] = (0, 0, 0)  # colour under zero alpha must not leak: it is composited over white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    ref = load_reference_image(tmp_path / "alpha.png", 32)
    assert ref.has_alpha
    _check_disc(ref)
    # Palette without and with a transparent index.
    Image.fromarray(img).convert("P", palette=Image.ADAPTIVE, colors=8).save(tmp_path / "p.png")
    _check_disc(load_reference_image(tmp_path / "p.png", 32), tol=0.1)
    pal = Image.fromarray(img).convert("P", palette=Image.ADAPTIVE, colors=4)
    pal.save(tmp_path / "pt.png", transparency=int(np.asarray(pal)[0, 0]))  # the background's index
    assert "transparency" in Image.open(tmp_path / "pt.png").info
    ref = load_reference_image(tmp_path / "pt.png", 32)
    assert ref.has_alpha
    _check_disc(ref, tol=0.1)
    # Grayscale 8-bit and 16-bit: a grey disc; 16-bit keeps its scale (40000 / 65535).
    grey = np.where(mask, 100, 255).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    _check_disc(load_reference_image(tmp_path / "l.png", 32), colour=(100, 100, 100))
    Image.fromarray(np.where(mask, 40000, 65535).astype(np.uint16)).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")
    level = 40000 / 65535 * 255
    _check_disc(load_reference_image(tmp_path / "i16.png", 32), colour=(level, level, level))
    Image.fromarray(img).convert("CMYK").save(tmp_path / "cmyk.jpg")
    _check_disc(load_reference_image(tmp_path / "cmyk.jpg", 32), tol=0.12)
    Image.fromarray(np.dstack([grey, np.where(mask, 255, 0).astype(np.uint8)]), "LA").save(tmp_path / "la.png")
    _check_disc(load_reference_image(tmp_path / "la.png", 32), colour=(100, 100, 100))


def test_a_wide_image_is_padded_not_cropped(tmp_path):
    img = np.full((40, 120, 3), 255, np.uint8)
    img[10:30, 2:20] = RED  # near the left edge: a centre crop would cut it off
    Image.fromarray(img).save(tmp_path / "wide.png")
    ref = load_reference_image(tmp_path / "wide.png", 32)
    assert ref.source_size == (120, 40)
    rows = ref.mask.sum(1).nonzero().squeeze(1)
    cols = ref.mask.sum(0).nonzero().squeeze(1)
    assert cols.min() <= 1 and cols.max() <= 6  # still there, at the left
    assert 10 <= rows.min() and rows.max() <= 21  # the 40-pixel height sits in the middle of 120


@pytest.mark.parametrize("case", ["missing", "folder", "text", "truncated", "tiny", "huge", "white", "transparent"])
def test_bad_images_are_one_line_errors(tmp_path, case):
    path = tmp_path / "bad.png"
    img, _ = _disc()
    if case == "folder":
        path.mkdir()
    elif case == "text":
        path.write_text("not an image\n")
    elif case == "truncated":
        Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:2000])
    elif case == "tiny":
        Image.fromarray(img[:8, :8]).save(path)
    elif case == "huge":
        side = int(MAX_PIXELS ** 0.5) + 8
        Image.new("1", (side, side), 1).save(path)  # a small file that claims too many pixels
    elif case == "white":
        Image.fromarray(np.full((64, 64, 3), 253, np.uint8)).save(path)
    elif case == "transparent":
        Image.fromarray(np.dstack([img, np.zeros((64, 64), np.uint8)]), "RGBA").save(path)
    with pytest.raises(DreamliftError) as info:
        load_reference_image(path, 32)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    expected = {"missing": "not found", "folder": "not a file", "text": "not an image", "truncated": "truncated",
                "tiny": "at least", "huge": "megapixel", "white": "no object", "transparent": "no object"}[case]
    assert expected in message
