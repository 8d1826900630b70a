"""The web app's parts that need no server: the gallery's reading of an outputs folder, the progress line, and
bad options refused before the server starts. The app served and used in a browser: tests/smoke/test_app.py."""

import json
import os
import time

import pytest

from dreamlift.app import _progress_markdown, _unique_folder, list_runs
from dreamlift.cli import main


def _run(folder, prompt, steps=10, age=0.0):
    folder.mkdir(parents=True)
    (folder / "views.png").write_bytes(b"png")
    (folder / "config.json").write_text(json.dumps({"representation": "nerf", "seed": 0}))
    (folder / "metrics.json").write_text(json.dumps({"prompt": prompt, "steps": steps, "seconds": {"total": 12.0}}))
    t = time.time() - age
    os.utime(folder / "metrics.json", (t, t))


def test_the_gallery_lists_finished_runs_newest_first(tmp_path):
    _run(tmp_path / "a-red-mug", "a red mug", age=100)
    _run(tmp_path / "a-blue-chair", "a blue chair", age=10)
    (tmp_path / "unfinished").mkdir()  # no metrics.json
    (tmp_path / ".a-tree.partial").mkdir()
    _run(tmp_path / "broken", "x")
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    runs = list_runs(tmp_path)
    assert [r["folder"].name for r in runs] == ["a-blue-chair", "a-red-mug"]
    assert [r["folder"].name for r in list_runs(tmp_path, limit=1)] == ["a-blue-chair"]
    assert list_runs(tmp_path / "missing") == []


def test_a_new_run_never_takes_an_earlier_runs_folder(tmp_path):
    assert _unique_folder(tmp_path, "a-red-mug") == tmp_path / "a-red-mug"
    (tmp_path / "a-red-mug").mkdir()
    (tmp_path / ".a-red-mug-2.partial").mkdir()  # a cancelled run's checkpoint
    assert _unique_folder(tmp_path, "a-red-mug") == tmp_path / "a-red-mug-3"


def test_the_progress_line():
    t0 = time.time()
    assert _progress_markdown(None, t0).startswith("Starting")
    assert _progress_markdown({"phase": "setup"}, t0).startswith("Setting up")
    line = _progress_markdown({"phase": "train", "step": 250, "steps": 1000, "steps_per_second": 12.5,
                               "losses": {"sds": 0.0123, "entropy": 0.5}}, t0)
    assert line == "Step 250 of 1000 · 12.5 steps/s · about 60 s to go · sds 0.0123, entropy 0.5"
    assert "exporting" in _progress_markdown({"phase": "export", "step": 4, "steps": 4}, t0)


@pytest.mark.parametrize("args, message", [(["--set", "stepz=3"], "unknown setting 'stepz'"),
                                           (["--port", "0"], "--port must be in [1, 65535]"),
                                           (["--set", "steps=0"], "--steps must be >= 1")])
def test_bad_options_are_refused_before_the_server_starts(capsys, tmp_path, args, message):
    assert main(["app", "--outputs", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_an_uploaded_picture_is_kept_by_content_and_its_run_resumes_with_image_to_3d(tmp_path):
    import shlex

    from dreamlift.app import _keep_upload, resume_command
    from dreamlift.image_to_3d import ImageTo3DConfig

    upload = tmp_path / "gradio" / "My Mug!.PNG"
    upload.parent.mkdir()
    upload.write_bytes(b"\x89PNG fake bytes")
    kept = _keep_upload(tmp_path / "outputs", str(upload))
    assert kept.parent == tmp_path / "outputs" / ".uploads" and kept.suffix == ".png"
    assert kept.read_bytes() == upload.read_bytes()
    assert _keep_upload(tmp_path / "outputs", str(upload)) == kept  # the same picture: the same copy
    other = tmp_path / "gradio" / "b.png"
    other.write_bytes(b"other bytes")
    assert _keep_upload(tmp_path / "outputs", str(other)) != kept
    assert not list((tmp_path / "outputs" / ".uploads").glob("*.part"))

    cfg = ImageTo3DConfig(image=kept, out=tmp_path / "outputs" / "my-mug-3d", seed=3, representation="gaussians")
    argv = shlex.split(resume_command(cfg))
    assert argv[:5] == ["dreamlift", "image-to-3d", str(kept), "--out", str(cfg.out)]
    assert argv[-1] == "--resume" and "--seed" in argv and argv[argv.index("--seed") + 1] == "3"
    assert argv[argv.index("--representation") + 1] == "gaussians" and "--image" not in argv


def test_the_gallery_names_an_image_run_by_its_picture(tmp_path):
    from dreamlift.app import _caption

    _run(tmp_path / "mug-3d", "")
    m = json.loads((tmp_path / "mug-3d" / "metrics.json").read_text())
    (tmp_path / "mug-3d" / "metrics.json").write_text(json.dumps({**m, "image": "/x/.uploads/mug-ab12.png"}))
    (run,) = list_runs(tmp_path)
    assert _caption(run).startswith("from mug-ab12.png · nerf · 10 steps")
