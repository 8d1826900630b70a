"""make_dataset / load_dataset on tiny datasets."""

import json

import numpy as np
import pytest

from dreamlift.world import CATEGORIES, COLOURS
from dreamlift.world.captions import CATEGORY_SYNONYMS, COLOUR_SYNONYMS
from dreamlift.world.dataset import DatasetConfig, load_dataset, make_dataset


def _config(out, **kw):
    base = dict(num_images=45, resolution=16, colours_per_view=3, shard_size=20, num_workers=0, seed=3)
    base.update(kw)
    return DatasetConfig(str(out), **base)


def test_tiny_dataset_writes_loadable_shards(tmp_path):
    out = make_dataset(_config(tmp_path / "ds"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp dir left behind
    files = sorted(p.name for p in out.iterdir())
    assert files == ["meta.json"] + [f"shard-0000{i}.{e}" for i in range(3) for e in ("jsonl", "npz")]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["num_images"] == 45 and meta["categories"] == list(CATEGORIES)
    with np.load(out / "shard-00002.npz") as z:
        assert z["images"].shape == (5, 16, 16, 3) and z["images"].dtype == np.uint8
    ds = load_dataset(out)
    assert ds.images.shape == (45, 16, 16, 3) and len(ds.captions) == 45
    assert ds.category.shape == ds.colour.shape == ds.azimuth.shape == ds.elevation.shape == (45,)
    assert ds.category.max() < len(CATEGORIES) and ds.colour.max() < len(COLOURS)
    # Images are not blank: each has some foreground (not background white) pixels.
    assert ((ds.images < 250).any(-1).reshape(45, -1).sum(1) > 3).all()
    # Captions name the stored category and colour (through one of their synonyms).
    for i in range(45):
        cat, col = CATEGORIES[ds.category[i]], list(COLOURS)[ds.colour[i]]
        assert any(w in ds.captions[i] for w in CATEGORY_SYNONYMS[cat]), ds.captions[i]
        assert any(w in ds.captions[i] for w in COLOUR_SYNONYMS[col]), ds.captions[i]
    lines = [json.loads(x) for x in (out / "shard-00000.jsonl").read_text().splitlines()]
    assert len(lines) == 20 and {"caption", "view"} <= set(lines[0])


def test_stored_colour_matches_pixels(tmp_path):
    ds = load_dataset(make_dataset(_config(tmp_path / "ds", categories=("hat",), colours=("red", "blue"),
                                           colours_per_view=2)))
    # Red hats are redder than blue ones on the (mostly body-coloured) foreground.
    fg = (ds.images < 250).any(-1)
    redness = np.array([(im[m, 0].astype(float) - im[m, 2]).mean() for im, m in zip(ds.images, fg)])
    names = np.array(list(COLOURS))[ds.colour]
    assert (redness[names == "red"] > 0).all() and (redness[names == "blue"] < 0).all()


def test_results_do_not_depend_on_worker_count(tmp_path):
    a = load_dataset(make_dataset(_config(tmp_path / "a", num_images=24, shard_size=12, num_workers=0)))
    b = load_dataset(make_dataset(_config(tmp_path / "b", num_images=24, shard_size=12, num_workers=2)))
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions


def test_refuses_to_overwrite_a_non_empty_directory(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        make_dataset(_config(out))
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_dataset(_config(empty, num_images=3)) == empty  # an empty directory is fine


def test_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    import dreamlift.world.dataset as dataset

    def boom(*args):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(dataset, "_run_task", boom)
    with pytest.raises(RuntimeError):
        make_dataset(_config(tmp_path / "ds"))
    assert list(tmp_path.iterdir()) == []


def test_bad_configs_raise(tmp_path):
    with pytest.raises(ValueError):
        _config(tmp_path / "x", colours_per_view=0)
    with pytest.raises(ValueError):
        _config(tmp_path / "x", categories=("spaceship",))
    with pytest.raises(ValueError):
        _config(tmp_path / "x", num_images=0)


def test_view_sets_are_views_of_one_object_from_their_stored_cameras(tmp_path):
    import torch

    from dreamlift.render.camera import CameraSample
    from dreamlift.world import get_shape
    from dreamlift.world.render import trace_geometry

    G = 4
    out = make_dataset(_config(tmp_path / "ds", num_images=48, shard_size=24, views_per_object=G, colours_per_view=2))
    ds = load_dataset(out)
    with np.load(out / "shard-00000.npz") as z:
        fov = np.concatenate([z["fov"], np.load(out / "shard-00001.npz")["fov"]])
    sets = lambda a: a.reshape(-1, G)  # noqa: E731
    for a in (ds.category, ds.colour, fov):  # one object and one field of view per set
        assert (sets(a) == sets(a)[:, :1]).all()
    assert (np.ptp(sets(ds.azimuth), axis=1) > 0).all()  # but G different cameras
    # Each image is its object seen from its own stored camera: the foreground is the traced silhouette.
    for i in range(0, 48, 5):
        cam = CameraSample.from_spherical(torch.tensor([float(ds.azimuth[i])]), torch.tensor([float(ds.elevation[i])]),
                                          torch.tensor([float(ds.distance[i])]), torch.tensor([float(fov[i])]), 16, 16)
        mask = trace_geometry(get_shape(CATEGORIES[ds.category[i]]), cam.camera).mask[0].numpy()
        fg = (ds.images[i] < 254).any(-1)
        assert (mask == fg).mean() > 0.97, i


def test_excluded_objects_are_never_drawn(tmp_path):
    from dreamlift.world import HELD_OUT_OBJECTS

    assert len(HELD_OUT_OBJECTS) == len(CATEGORIES) and {c for c, _ in HELD_OUT_OBJECTS} == set(CATEGORIES)
    names = list(COLOURS)
    ds = load_dataset(make_dataset(_config(tmp_path / "ds", num_images=120, shard_size=40, views_per_object=2,
                                           categories=("mug", "hat"), exclude=HELD_OUT_OBJECTS)))
    seen = {(CATEGORIES[c], names[k]) for c, k in zip(ds.category, ds.colour)}
    assert not seen & set(HELD_OUT_OBJECTS)
    assert len(seen) > 10  # the other colours are still drawn
    with pytest.raises(ValueError):
        _config(tmp_path / "x", views_per_object=4, num_images=45)  # not whole sets
    with pytest.raises(ValueError):  # an exclusion that leaves too few colours
        _config(tmp_path / "x", categories=("hat",), colours=("red", "blue"), colours_per_view=2,
                exclude=(("hat", "red"),))
