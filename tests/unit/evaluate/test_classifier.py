"""The evaluator: trains through the real code, and the shipped weights are accurate on fresh renders."""

import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.evaluate.classifier import SHIPPED_EVALUATOR, VIEWS, Evaluator, TrainEvaluatorConfig, train_evaluator
from dreamlift.world import CATEGORIES, COLOUR_NAMES
from dreamlift.world.dataset import DatasetConfig, load_dataset, make_dataset


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "world"
    make_dataset(DatasetConfig(str(out), num_images=256, resolution=32, num_workers=0, seed=7))
    return out


def test_training_writes_loadable_weights(tiny_world, tmp_path):
    info = train_evaluator(TrainEvaluatorConfig(data=tiny_world, out=tmp_path / "ev", epochs=1, batch_size=32,
                                                width=8, resolution=32))
    assert info["steps"] == 7 and 0 <= info["holdout_accuracy"]["category"] <= 1
    ev = Evaluator(tmp_path / "ev")
    pred = ev.predict(torch.rand(3, 3, 64, 64))  # resized to 32 inside
    assert pred.category.shape == (3, len(CATEGORIES)) and pred.colour.shape == (3, len(COLOUR_NAMES))
    assert pred.view.shape == (3, len(VIEWS))
    torch.testing.assert_close(pred.category.sum(-1), torch.ones(3))


def test_bad_inputs(tmp_path, tiny_world):
    with pytest.raises(DreamliftError, match="no evaluator weights"):
        Evaluator(tmp_path)
    folder = tmp_path / "pairs"
    folder.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "a.txt").write_text("a thing")
    with pytest.raises(DreamliftError, match="not a world dataset"):
        train_evaluator(TrainEvaluatorConfig(data=folder, out=tmp_path / "x"))


@pytest.mark.skipif(not (SHIPPED_EVALUATOR / "evaluator.safetensors").exists(), reason="no shipped evaluator")
def test_shipped_evaluator_is_accurate_on_fresh_renders(tmp_path):
    """Renders with a seed the evaluator never saw: category and colour >= 97% on 400 views."""
    out = tmp_path / "fresh"
    make_dataset(DatasetConfig(str(out), num_images=400, resolution=64, num_workers=0, seed=987654))
    ds = load_dataset(out)
    images = torch.from_numpy(ds.images).permute(0, 3, 1, 2).float() / 255
    ev = Evaluator()
    pred = ev.predict(images)
    cat = torch.tensor([ev.categories.index(CATEGORIES[i]) for i in ds.category])
    col = torch.tensor([ev.colours.index(COLOUR_NAMES[i]) for i in ds.colour])
    assert float((pred.category.argmax(-1) == cat).float().mean()) >= 0.97
    assert float((pred.colour.argmax(-1) == col).float().mean()) >= 0.97
