"""prior.json / prior.safetensors as loaded: the json's structure is checked key by key, and the weights file
against the sha256 that prior.json records, each with a one-line error naming the file (and the key)."""

import hashlib
import json
import shutil

import pytest
import torch

pytest.importorskip("diffusers")

from dreamlift.config import DreamliftError  # noqa: E402
from dreamlift.prior.model import SHIPPED_WEIGHTS, BuiltinPrior  # noqa: E402
from dreamlift.prior.train import export_prior  # noqa: E402


@pytest.fixture
def export(tmp_path, tiny_prior):
    return shutil.copytree(tiny_prior.export, tmp_path / "export")


def _edit(folder, change):
    meta = json.loads((folder / "prior.json").read_text())
    change(meta)
    (folder / "prior.json").write_text(json.dumps(meta))


def _error(folder, encoder) -> str:
    with pytest.raises(DreamliftError) as exc:
        BuiltinPrior(folder, encoder=encoder)
    message = str(exc.value)
    assert "\n" not in message
    assert str(folder / "prior.json") in message or str(folder / "prior.safetensors") in message
    return message


def test_an_export_records_the_sha256_of_its_weights_file(export, text_encoder):
    meta = json.loads((export / "prior.json").read_text())
    assert meta["sha256"] == hashlib.sha256((export / "prior.safetensors").read_bytes()).hexdigest()
    assert BuiltinPrior(export, encoder=text_encoder).resolution == 16


@pytest.mark.parametrize("shipped, weights", [
    (SHIPPED_WEIGHTS / "prior.json", SHIPPED_WEIGHTS / "prior.safetensors"),
])
def test_the_shipped_json_records_the_sha256_of_the_shipped_weights(shipped, weights):
    if not weights.exists():
        pytest.skip("no shipped prior")
    assert json.loads(shipped.read_text())["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_weights_overwritten_in_the_middle_are_caught_by_the_checksum(export, text_encoder):
    path = export / "prior.safetensors"
    data = bytearray(path.read_bytes())
    mid = len(data) // 2  # tensor bytes: the header at the start is intact, so safetensors alone loads it
    data[mid:mid + 64] = bytes(64)
    path.write_bytes(bytes(data))
    message = _error(export, text_encoder)
    assert "sha256" in message and "prior.safetensors" in message


def test_an_older_export_without_a_checksum_still_loads(export, text_encoder):
    with_key = BuiltinPrior(export, encoder=text_encoder)
    _edit(export, lambda m: m.pop("sha256"))
    without = BuiltinPrior(export, encoder=text_encoder)
    for k, v in with_key.model.state_dict().items():
        assert torch.equal(v, without.model.state_dict()[k])


BAD_JSON = {
    "not JSON": (b"this is not json {", "not JSON"),
    "not UTF-8": (b'{"unet": "\xff\xfe"}', "not UTF-8"),
    "a list": (b"[1, 2, 3]", "not a JSON object"),
    "empty": (b"", "not JSON"),
}


@pytest.mark.parametrize("name", list(BAD_JSON))
def test_a_json_that_is_not_a_json_object_is_refused(export, text_encoder, name):
    content, expected = BAD_JSON[name]
    (export / "prior.json").write_bytes(content)
    assert expected in _error(export, text_encoder)


BAD_KEYS = {
    "unet missing": (lambda m: m.pop("unet"), '"unet"'),
    "unet a string": (lambda m: m.update(unet="big"), '"unet"'),
    "num_train_timesteps missing": (lambda m: m.pop("num_train_timesteps"), '"num_train_timesteps"'),
    "num_train_timesteps a list": (lambda m: m.update(num_train_timesteps=[100]), '"num_train_timesteps"'),
    "num_train_timesteps a float": (lambda m: m.update(num_train_timesteps=100.0), '"num_train_timesteps"'),
    "num_train_timesteps a boolean": (lambda m: m.update(num_train_timesteps=True), '"num_train_timesteps"'),
    "num_train_timesteps zero": (lambda m: m.update(num_train_timesteps=0), '"num_train_timesteps"'),
    "schedule unknown": (lambda m: m.update(schedule="quadratic"), '"schedule"'),
    "schedule missing": (lambda m: m.pop("schedule"), '"schedule"'),
    "channels missing": (lambda m: m["unet"].pop("channels"), '"unet.channels"'),
    "channels a string": (lambda m: m["unet"].update(channels="16,32"), '"unet.channels"'),
    "channels empty": (lambda m: m["unet"].update(channels=[]), '"unet.channels"'),
    "channels of strings": (lambda m: m["unet"].update(channels=["16", "32"]), '"unet.channels"'),
    "norm_groups zero": (lambda m: m["unet"].update(norm_groups=0), '"unet.norm_groups"'),
    "prediction unknown": (lambda m: m["unet"].update(prediction="noise"), '"unet.prediction"'),
    "resolution null": (lambda m: m["unet"].update(resolution=None), '"unet.resolution"'),
    "mid_block a string": (lambda m: m["unet"].update(mid_block="no"), '"unet.mid_block"'),
    "sha256 a number": (lambda m: m.update(sha256=123), '"sha256"'),
    "sha256 too short": (lambda m: m.update(sha256="abc"), '"sha256"'),
    "format unknown": (lambda m: m.update(format="dreamlift-prior/9"), '"format"'),
    "captions a list": (lambda m: m.update(captions=["world"]), '"captions"'),
}


@pytest.mark.parametrize("name", list(BAD_KEYS))
def test_a_missing_or_wrong_typed_key_is_named(export, text_encoder, name):
    change, key = BAD_KEYS[name]
    _edit(export, change)
    message = _error(export, text_encoder)
    assert key in message and str(export / "prior.json") in message


@pytest.mark.parametrize("change, expected", [
    (lambda m: m["unet"].update(channels=[32, 64]), "does not match"),  # valid, but not these weights
    (lambda m: m["unet"].update(norm_groups=7), "unet"),  # 16 and 32 channels are not divisible by 7
    (lambda m: m["unet"].update(attention_levels=[5]), "unet"),  # no such level
])
def test_a_json_that_does_not_describe_its_weights_is_refused(export, text_encoder, change, expected):
    _edit(export, change)
    assert expected in _error(export, text_encoder)


def test_export_keeps_an_earlier_export_unless_forced(export, tiny_prior):
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    with pytest.raises(DreamliftError, match="already holds prior.safetensors and prior.json; pass --force"):
        export_prior(tiny_prior.run / "checkpoint.pt", export)
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before
    (export / "prior.safetensors").unlink()
    with pytest.raises(DreamliftError, match="already holds prior.json"):
        export_prior(tiny_prior.run / "checkpoint.pt", export)
    export_prior(tiny_prior.run / "checkpoint.pt", export, force=True)
    assert (export / "prior.safetensors").read_bytes() == before["prior.safetensors"]
