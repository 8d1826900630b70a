"""evaluator.json / evaluator.safetensors as saved and loaded: the json's structure is checked key by key and the
weights file against the sha256 the json records, each with a one-line error naming the file (and the key)."""

import hashlib
import json

import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.evaluate.classifier import SHIPPED_EVALUATOR, VIEWS, Evaluator, WorldClassifier, save_evaluator


@pytest.fixture
def saved(tmp_path):
    """A tiny evaluator (3 categories, 2 colours, width 8) saved the way train-evaluator saves one."""
    torch.manual_seed(0)
    model = WorldClassifier(3, 2, width=8)
    info = {"categories": ["mug", "chair", "house"], "colours": ["red", "blue"], "views": list(VIEWS),
            "resolution": 16, "width": 8}
    save_evaluator(tmp_path / "ev", model, info)
    return tmp_path / "ev", model


def _edit(folder, change):
    meta = json.loads((folder / "evaluator.json").read_text())
    change(meta)
    (folder / "evaluator.json").write_text(json.dumps(meta))


def _error(folder) -> str:
    with pytest.raises(DreamliftError) as exc:
        Evaluator(folder)
    message = str(exc.value)
    assert "\n" not in message
    assert str(folder / "evaluator.json") in message or str(folder / "evaluator.safetensors") in message
    return message


def test_saved_weights_load_with_their_checksum(saved):
    folder, model = saved
    meta = json.loads((folder / "evaluator.json").read_text())
    assert meta["sha256"] == hashlib.sha256((folder / "evaluator.safetensors").read_bytes()).hexdigest()
    ev = Evaluator(folder)
    assert ev.categories == ["mug", "chair", "house"] and ev.resolution == 16
    for k, v in model.state_dict().items():
        assert torch.equal(ev.model.state_dict()[k], v)


def test_the_shipped_json_records_the_sha256_of_the_shipped_weights():
    weights = SHIPPED_EVALUATOR / "evaluator.safetensors"
    if not weights.exists():
        pytest.skip("no shipped evaluator")
    meta = json.loads((SHIPPED_EVALUATOR / "evaluator.json").read_text())
    assert meta["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert Evaluator().categories == meta["categories"]


def test_weights_overwritten_in_the_middle_are_caught_by_the_checksum(saved):
    folder, _ = saved
    path = folder / "evaluator.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # tensor bytes; the header stays intact
    path.write_bytes(bytes(data))
    assert "sha256" in _error(folder)


def test_an_older_json_without_a_checksum_still_loads(saved):
    folder, model = saved
    _edit(folder, lambda m: m.pop("sha256"))
    ev = Evaluator(folder)
    for k, v in model.state_dict().items():
        assert torch.equal(ev.model.state_dict()[k], v)


@pytest.mark.parametrize("content, expected", [
    (b"not json at all", "not JSON"),
    (b"", "not JSON"),
    (b'{"categories": ["\xff"]}', "not UTF-8"),
    (b'["categories"]', "not a JSON object"),
    (b"null", "not a JSON object"),
])
def test_a_json_that_is_not_a_json_object_is_refused(saved, content, expected):
    folder, _ = saved
    (folder / "evaluator.json").write_bytes(content)
    assert expected in _error(folder)


@pytest.mark.parametrize("change, key", [
    (lambda m: m.pop("categories"), '"categories"'),
    (lambda m: m.update(categories="mug,chair,house"), '"categories"'),
    (lambda m: m.update(categories=[]), '"categories"'),
    (lambda m: m.update(colours=[1, 2]), '"colours"'),
    (lambda m: m.pop("colours"), '"colours"'),
    (lambda m: m.pop("resolution"), '"resolution"'),
    (lambda m: m.update(resolution=[16]), '"resolution"'),
    (lambda m: m.update(resolution="16"), '"resolution"'),
    (lambda m: m.update(resolution=0), '"resolution"'),
    (lambda m: m.pop("width"), '"width"'),
    (lambda m: m.update(width=8.0), '"width"'),
    (lambda m: m.update(width=12), '"width"'),  # GroupNorm(8, .) needs a multiple of 8
    (lambda m: m.update(views=["front", "side"]), '"views"'),
    (lambda m: m.update(sha256=None), '"sha256"'),
    (lambda m: m.update(sha256="0" * 63), '"sha256"'),
])
def test_a_missing_or_wrong_typed_key_is_named(saved, change, key):
    folder, _ = saved
    _edit(folder, change)
    message = _error(folder)
    assert key in message and str(folder / "evaluator.json") in message


@pytest.mark.parametrize("change", [
    lambda m: m.update(width=16),  # a valid json, but not of these weights
    lambda m: m.update(categories=["mug", "chair"]),
])
def test_a_json_that_does_not_describe_its_weights_is_refused(saved, change):
    folder, _ = saved
    _edit(folder, change)
    assert "does not match" in _error(folder)


def test_weights_that_are_not_safetensors_are_refused(saved):
    folder, _ = saved
    _edit(folder, lambda m: m.pop("sha256"))
    (folder / "evaluator.safetensors").write_bytes(b"garbage" * 10)
    assert "corrupt" in _error(folder)
