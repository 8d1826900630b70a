"""Turntable renders -> an H.264 .mp4; image batches -> a PNG grid.

Renders are small (as small as 32x32), so frames are enlarged by an integer factor with
nearest-neighbour sampling until the short side reaches ``min_size``; the sizes are then
made even (H.264 in yuv420p halves the chroma resolution). The video is encoded with the
ffmpeg shipped by imageio-ffmpeg into a temporary file in the output folder and renamed into
place only when ffmpeg has finished, so a failed or interrupted encode never leaves a
half-written video nor destroys an earlier one. imageio-ffmpeg and PIL are imported inside
the functions.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import DreamliftError, atomic_write

__all__ = ["write_video", "save_image_grid", "frames_to_uint8", "upscale_factor"]


def frames_to_uint8(frames: Tensor | np.ndarray) -> np.ndarray:
    """Frames in either layout -> (N, H, W, 3) uint8 numpy.

    Accepts a float torch tensor (N, 3, H, W) in [0, 1] (clamped, rounded to 0..255) or a
    uint8 numpy array (N, H, W, 3). Raises DreamliftError for anything else.
    """
    if isinstance(frames, Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise DreamliftError(f"frames tensor must have shape (N, 3, H, W), got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise DreamliftError(f"frames tensor must be float in [0, 1], got dtype {frames.dtype}")
        if frames.shape[0] == 0 or frames.shape[2] == 0 or frames.shape[3] == 0:
            raise DreamliftError(f"no frames to write: shape {tuple(frames.shape)}")
        frames = frames.detach().float().cpu()
        if not torch.isfinite(frames).all():
            raise DreamliftError("frames contain NaN or infinite values")
        return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise DreamliftError(f"frames array must have shape (N, H, W, 3), got {frames.shape}")
        if frames.dtype != np.uint8:
            raise DreamliftError(f"frames array must be uint8, got dtype {frames.dtype}")
        if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
            raise DreamliftError(f"no frames to write: shape {frames.shape}")
        return np.ascontiguousarray(frames)
    raise DreamliftError(f"frames must be a float torch tensor (N, 3, H, W) or a uint8 numpy array (N, H, W, 3), "
                         f"got {type(frames).__name__}")


def upscale_factor(height: int, width: int, min_size: int) -> int:
    """The smallest integer factor that makes the short side of an (H, W) image >= ``min_size``."""
    return max(1, math.ceil(min_size / min(height, width)))


def _enlarge(frame: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, 3) -> (H', W', 3) nearest-neighbour enlarged by ``factor``, edge-padded to even sizes."""
    if factor > 1:
        frame = frame.repeat(factor, axis=0).repeat(factor, axis=1)
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def write_video(frames: Tensor | np.ndarray, path: str | Path, fps: float = 24, min_size: int = 256,
                quality: float = 8.0) -> Path:
    """Encode ``frames`` as an H.264 (yuv420p) .mp4 at ``path``; returns the path.

    Args:
        frames: float tensor (N, 3, H, W) in [0, 1], or uint8 array (N, H, W, 3).
        path: the output file (its folder is created); an existing file is replaced only
            once the new video is complete.
        fps: frames per second.
        min_size: frames are enlarged (nearest neighbour, integer factor) until their short
            side is at least this many pixels; 0 keeps the render size (made even).
        quality: imageio-ffmpeg's 1..10 scale (8 is H.264 CRF 10, near lossless).

    Raises:
        DreamliftError: for empty frames, bad shapes or dtypes, bad settings, or an ffmpeg failure.
    """
    import imageio_ffmpeg

    if not fps > 0:
        raise DreamliftError(f"fps must be positive, got {fps}")
    if min_size < 0:
        raise DreamliftError(f"min_size must be >= 0, got {min_size}")
    if not 1 <= quality <= 10:
        raise DreamliftError(f"quality must be in 1..10, got {quality}")
    video = frames_to_uint8(frames)
    n, h, w, _ = video.shape
    factor = upscale_factor(h, w, min_size)
    out_h, out_w = _enlarge(video[0], factor).shape[:2]

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.mp4")
    os.close(fd)
    try:
        writer: Iterator | None = None
        try:
            writer = imageio_ffmpeg.write_frames(
                tmp, (out_w, out_h), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=fps, quality=quality,
                codec="libx264", macro_block_size=2, ffmpeg_log_level="error",
                output_params=["-movflags", "+faststart"])
            writer.send(None)  # start ffmpeg
            for i in range(n):
                writer.send(_enlarge(video[i], factor))
        finally:
            if writer is not None:
                writer.close()  # waits for ffmpeg to finish the file
        if os.path.getsize(tmp) == 0:
            raise DreamliftError(f"ffmpeg wrote an empty video for {str(path)!r}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, (IOError, RuntimeError)) and not isinstance(exc, DreamliftError):
            raise DreamliftError(f"could not encode the video {str(path)!r}: {exc}") from exc
        raise
    return path


def save_image_grid(images: Tensor, path: str | Path, rows: int | None = None,
                    labels: Sequence[str] | None = None, scale: int = 1, pad: int = 2) -> Path:
    """Save (N, 3, H, W) images in [0, 1] as one PNG grid at ``path`` (atomically); returns the path.

    The layout is :func:`dreamlift.prior.sampling.image_grid`'s: ``rows`` rows (default
    about sqrt(N)), filled column by column, ``pad`` white pixels between tiles. Each tile
    is enlarged ``scale`` times (nearest neighbour). With ``labels`` (one string per image)
    a white strip under each tile carries its label in PIL's default font, cut to fit.
    """
    from PIL import Image, ImageDraw

    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise DreamliftError(f"images must be a float tensor (N, 3, H, W), got {shape}")
    n, _, h, w = images.shape
    if n == 0 or h == 0 or w == 0:
        raise DreamliftError(f"no images to save: shape {tuple(images.shape)}")
    if not images.is_floating_point() or not torch.isfinite(images).all():
        raise DreamliftError("images must be finite floats in [0, 1]")
    if rows is not None and not 1 <= rows <= n:
        raise DreamliftError(f"rows must be between 1 and {n}, got {rows}")
    if labels is not None and len(labels) != n:
        raise DreamliftError(f"got {len(labels)} labels for {n} images")
    if scale < 1 or pad < 0:
        raise DreamliftError(f"scale must be >= 1 and pad >= 0, got scale={scale}, pad={pad}")

    tiles = frames_to_uint8(images.float()).repeat(scale, axis=1).repeat(scale, axis=2)  # (N, h, w, 3)
    th, tw = h * scale, w * scale
    strip = 12 if labels is not None else 0
    rows = rows or max(1, int(n**0.5))
    cols = -(-n // rows)
    cell_h, cell_w = th + strip + pad, tw + pad
    grid = np.full((rows * cell_h + pad, cols * cell_w + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        c, r = divmod(i, rows)
        y, x = pad + r * cell_h, pad + c * cell_w
        grid[y : y + th, x : x + tw] = tiles[i]
    image = Image.fromarray(grid)
    if labels is not None:
        draw = ImageDraw.Draw(image)
        for i, label in enumerate(labels):
            c, r = divmod(i, rows)
            y, x = pad + r * cell_h + th, pad + c * cell_w
            text = str(label)
            while text and draw.textlength(text) > tw:
                text = text[:-1]
            draw.text((x, y), text, fill=(0, 0, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    path = Path(path)
    atomic_write(path, buf.getvalue())
    return path
