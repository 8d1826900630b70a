"""Datasets of rendered views of the world, of any size, with one function: :func:`make_dataset`.

Layout of a dataset directory::

    meta.json             the resolved config, category and colour tables, counts, timing
    shard-00000.npz       images uint8 (n, R, R, 3); category, colour int16 (n,);
                          azimuth, elevation, distance, fov float32 (n,) (degrees / object radii)
    shard-00000.jsonl     one JSON object per image, same order: {"caption": ..., "view": ...}
    ...

Each random view (category, camera) is traced once and shaded in ``colours_per_view``
distinct random colours, each with its own random light; images are then shuffled within
the shard. With ``views_per_object`` G > 1 the shard holds *view sets* instead (the novel-view
prior's training pairs): G cameras of one category sharing one field of view, shaded in the
same colour with a light each, stored as G consecutive images; the sets are shuffled, the
views inside a set are not. ``exclude`` lists (category, colour) objects never drawn, which
keeps held-out objects out of a training set. Shards are rendered in parallel by worker processes (one torch thread each)
into a temporary directory next to the output, which is renamed to the output only when
everything has been written, so a crash never leaves a half-written dataset.

Command line: ``python -m dreamlift.world.dataset OUT_DIR --num-images 100000``.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import DreamliftError, option
from ..render.camera import CameraDistribution, CameraSample, LightDistribution, view_word
from .captions import random_caption
from .colours import COLOURS
from .render import RenderConfig, shade, trace_geometry
from .shapes import CATEGORIES, get_shape

__all__ = ["DatasetConfig", "WorldDataset", "make_dataset", "load_dataset", "MakeDatasetConfig", "run_make_dataset"]


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines a dataset (it is written to meta.json)."""

    out_dir: str
    """Output directory; must not exist or be empty."""
    num_images: int = 10_000
    """Number of images N."""
    resolution: int = 64
    """Images are resolution x resolution pixels."""
    colours_per_view: int = 4
    """Each traced view is shaded in this many distinct colours (1 .. number of colours)."""
    shard_size: int = 5_000
    """Images per shard file."""
    seed: int = 0
    """Seed; shard i uses its own generator seeded from (seed, i), so results do not depend on num_workers."""
    num_workers: int = 2
    """Worker processes; 0 or 1 renders in this process."""
    views_per_batch: int = 32
    """Views of one category traced together (memory ~ views_per_batch * resolution^2 rays)."""
    view_prob: float = 0.5
    """Probability that a caption ends with ", <view> view"."""
    compress: bool = True
    """Write shards with np.savez_compressed (the white background compresses well)."""
    categories: tuple[str, ...] = CATEGORIES
    """Categories to draw from (uniformly); indices stored are into the global ``CATEGORIES``."""
    colours: tuple[str, ...] = tuple(COLOURS)
    """Colours to draw from; indices stored are into the global ``COLOURS`` order."""
    cameras: CameraDistribution = field(default_factory=CameraDistribution)
    """Camera distribution."""
    lights: LightDistribution = field(default_factory=LightDistribution)
    """Light distribution."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Sphere-tracer settings."""
    views_per_object: int = 1
    """G > 1: view sets of G cameras of the same object (see the module docstring)."""
    exclude: tuple[tuple[str, str], ...] = ()
    """(category, colour) objects never drawn."""

    def __post_init__(self) -> None:
        if self.num_images < 1 or self.resolution < 1 or self.shard_size < 1:
            raise ValueError("num_images, resolution and shard_size must be positive")
        bad = [c for c in self.categories if c not in CATEGORIES] + [c for c in self.colours if c not in COLOURS]
        if bad or not self.categories or not self.colours:
            raise ValueError(f"unknown or empty categories/colours: {bad}")
        if not 1 <= self.colours_per_view <= len(self.colours):
            raise ValueError(f"colours_per_view must be in [1, {len(self.colours)}], got {self.colours_per_view}")
        if self.num_workers < 0 or self.views_per_batch < 1:
            raise ValueError("num_workers must be >= 0 and views_per_batch >= 1")
        g = self.views_per_object
        if g < 1 or self.num_images % g or self.shard_size % g:
            raise ValueError(f"views_per_object must be >= 1 and divide num_images and shard_size, got {g}")
        short = [c for c in self.categories if len(self.allowed_colours(c)) < self.colours_per_view]
        if short:
            raise ValueError(f"after exclude, {short[0]} has fewer than colours_per_view={self.colours_per_view} colours")

    def allowed_colours(self, category: str) -> list[int]:
        """Indices into ``colours`` that ``category`` may be drawn in (all but the excluded)."""
        return [i for i, c in enumerate(self.colours) if (category, c) not in self.exclude]


@dataclass
class WorldDataset:
    """A dataset loaded into memory (numpy arrays, all of length N)."""

    images: np.ndarray
    """(N, R, R, 3) uint8."""
    category: np.ndarray
    """(N,) int16 index into ``CATEGORIES``."""
    colour: np.ndarray
    """(N,) int16 index into ``COLOURS``."""
    azimuth: np.ndarray
    """(N,) float32 degrees."""
    elevation: np.ndarray
    """(N,) float32 degrees."""
    distance: np.ndarray
    """(N,) float32 object radii."""
    captions: list[str]
    """N captions."""
    meta: dict
    """The contents of meta.json."""


def _render_shard(config: DatasetConfig, shard: int, start: int, count: int, tmp_dir: str) -> int:
    """Render images [start, start + count) into shard files in ``tmp_dir``; returns ``count``."""
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + shard)
    k, R, G = config.colours_per_view, config.resolution, config.views_per_object
    n_views = math.ceil(count / k / G) * G  # whole view sets (G = 1: single views)
    cat_local = torch.randint(len(config.categories), (n_views // G,), generator=g).repeat_interleave(G)
    cams = config.cameras.sample(n_views, g, height=R)
    if G > 1:  # one field of view per set, so a set's views differ only by where the camera stands
        fov = cams.camera.fov_y_deg.reshape(-1, G)[:, :1].expand(-1, G).reshape(-1)
        cams = CameraSample.from_spherical(cams.azimuth_deg, cams.elevation_deg, cams.distance, fov, R, R)
    allowed = [torch.tensor(config.allowed_colours(c)) for c in config.categories]
    col_local = torch.stack([allowed[int(c)][torch.randperm(len(allowed[int(c)]), generator=g)[:k]]
                             for c in cat_local[::G]]).repeat_interleave(G, dim=0)  # (V, k)
    rgb_table = torch.tensor([COLOURS[c] for c in config.colours])  # (C, 3)

    images = np.empty((n_views, k, R, R, 3), dtype=np.uint8)
    for ci, name in enumerate(config.categories):
        shape = get_shape(name)
        views = (cat_local == ci).nonzero().squeeze(1)
        if views.numel() == 0:
            continue
        for chunk in views.split(config.views_per_batch):
            sub = CameraSample(cams.camera[chunk], cams.azimuth_deg[chunk], cams.elevation_deg[chunk], cams.distance[chunk])
            geometry = trace_geometry(shape, sub.camera, config.render)
            named = torch.tensor([p.colour is None for p in shape.parts])  # (P,)
            fixed = shape.part_albedo((0.0, 0.0, 0.0))  # (P, 3), zeros where the named colour goes
            for j in range(k):
                body = rgb_table[col_local[chunk, j]]  # (b, 3)
                table = torch.where(named[None, :, None], body[:, None, :], fixed[None])  # (b, P, 3)
                rgb = shade(geometry, table, config.lights.sample(sub, g), config.render.background)
                images[chunk.numpy(), j] = (rgb * 255.0 + 0.5).to(torch.uint8).numpy()

    # Flatten view-major, keep `count`, shuffle within the shard (whole sets when G > 1).
    if G == 1:
        order = torch.randperm(n_views * k, generator=g)[:count]
    else:  # a set is (group, colour slot); its G images are views group * G + v in that slot
        sets = torch.randperm(n_views // G * k, generator=g)[: count // G]
        group, slot = sets // k, sets % k
        order = ((group[:, None] * G + torch.arange(G)) * k + slot[:, None]).reshape(-1)
    view_of, slot_of = order // k, order % k
    category = torch.tensor([CATEGORIES.index(c) for c in config.categories])[cat_local[view_of]]
    colour = torch.tensor([list(COLOURS).index(c) for c in config.colours])[col_local[view_of, slot_of]]
    az, el = cams.azimuth_deg[view_of], cams.elevation_deg[view_of]
    arrays = dict(
        images=images.reshape(n_views * k, R, R, 3)[order.numpy()],
        category=category.numpy().astype(np.int16), colour=colour.numpy().astype(np.int16),
        azimuth=az.numpy().astype(np.float32), elevation=el.numpy().astype(np.float32),
        distance=cams.distance[view_of].numpy().astype(np.float32),
        fov=cams.camera.fov_y_deg[view_of].numpy().astype(np.float32),
    )
    base = Path(tmp_dir) / f"shard-{shard:05d}"
    (np.savez_compressed if config.compress else np.savez)(str(base) + ".npz", **arrays)
    colour_names = list(COLOURS)
    with open(str(base) + ".jsonl", "w") as f:
        for i in range(count):
            a, e = float(az[i]), float(el[i])
            caption = random_caption(CATEGORIES[int(category[i])], colour_names[int(colour[i])], a, e, g, config.view_prob)
            f.write(json.dumps({"caption": caption, "view": view_word(a, e)}) + "\n")
    return count


def _worker_init() -> None:
    torch.set_num_threads(1)


def _run_task(args: tuple) -> int:
    return _render_shard(*args)


def make_dataset(config: DatasetConfig) -> Path:
    """Render ``config.num_images`` random views into ``config.out_dir`` (see the module docstring).

    Raises ``FileExistsError`` if ``out_dir`` exists and is not empty. Returns the output path.
    """
    out = Path(config.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; choose a new directory or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); give it normal permissions
    tasks = [(config, i, s, min(config.shard_size, config.num_images - s), tmp)
             for i, s in enumerate(range(0, config.num_images, config.shard_size))]
    t0 = time.perf_counter()
    try:
        if config.num_workers <= 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                written = sum(_run_task(t) for t in tasks)
            finally:
                torch.set_num_threads(threads)
        else:
            with mp.get_context("spawn").Pool(config.num_workers, initializer=_worker_init) as pool:
                written = sum(pool.imap_unordered(_run_task, tasks))
        seconds = time.perf_counter() - t0
        meta = dict(
            config=asdict(config), categories=list(CATEGORIES), colours={k: list(v) for k, v in COLOURS.items()},
            num_images=written, num_shards=len(tasks), shards=[f"shard-{i:05d}" for i in range(len(tasks))],
            seconds=round(seconds, 3), images_per_second=round(written / seconds, 1),
            frame="right-handed, +y up, front faces +z, objects inside the unit sphere",
        )
        with open(Path(tmp) / "meta.json", "w") as f:
            json.dump(meta, f, indent=2)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_dataset(path: str | os.PathLike) -> WorldDataset:
    """Load every shard of a dataset written by :func:`make_dataset` into memory."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a world dataset (no meta.json)")
    meta = json.loads(meta_file.read_text())
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("images", "category", "colour", "azimuth", "elevation",
                                                          "distance")}
    captions: list[str] = []
    for name in meta["shards"]:
        with np.load(path / f"{name}.npz") as z:
            for k in parts:
                parts[k].append(z[k])
        with open(path / f"{name}.jsonl") as f:
            captions.extend(json.loads(line)["caption"] for line in f)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return WorldDataset(captions=captions, meta=meta, **arrays)


@dataclass
class MakeDatasetConfig:
    """Settings of ``dreamlift make-dataset`` (the distributions are the documented defaults)."""

    out: Path = option(Path("data/world"), "output folder (must not exist, or be empty)")
    num_images: int = option(100_000, "number of images")
    resolution: int = option(64, "image side in pixels")
    colours_per_view: int = option(4, "colours each traced view is shaded in")
    seed: int = option(0, "seed (a held-out set is just another seed)")
    num_workers: int = option(os.cpu_count() or 1, "worker processes")
    views_per_object: int = option(1, "G > 1: view sets, G views of one object each (the novel-view prior's "
                                      "training data)")
    exclude_held_out: bool = option(False, "never draw the objects held out for image-to-3D (HELD_OUT_OBJECTS)")


def run_make_dataset(cfg: MakeDatasetConfig) -> Path:
    """Make a dataset, turning bad settings into one-line errors."""
    from .shapes import HELD_OUT_OBJECTS

    exclude = HELD_OUT_OBJECTS if cfg.exclude_held_out else ()
    try:
        out = make_dataset(DatasetConfig(str(cfg.out), cfg.num_images, cfg.resolution, cfg.colours_per_view,
                                         seed=cfg.seed, num_workers=cfg.num_workers,
                                         views_per_object=cfg.views_per_object, exclude=exclude))
    except (ValueError, FileExistsError) as exc:
        raise DreamliftError(str(exc)) from exc
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {meta['num_images']} images to {out} in {meta['seconds']:.1f} s "
          f"({meta['images_per_second']:.0f} images/s)")
    return out
