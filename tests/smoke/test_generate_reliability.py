"""`dreamlift generate` under an adversarial user: kills, hostile files, mixed runs, two runs at once, bad input.

Every case asserts what a user relies on: a resumed run is bit-identical to an uninterrupted one, loading a
file runs nothing from it, OUT always holds one whole run, and bad input is one line and exit 2 before any work.
"""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dreamlift.checkpoint import load_state, read_state_header, save_state
from dreamlift.cli import main
from dreamlift.config import DreamliftError
from dreamlift.generate import GenerateConfig, run_generate
from dreamlift.prior.model import SHIPPED_WEIGHTS
from dreamlift.scene.gaussians import GaussiansConfig

pytestmark = pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")

SMALL = dict(render_scale=0.5, num_samples=16, mesh_resolution=16, video_frames=2, video_resolution=16,
             progress=False, area_samples=1)
ARGS = ["--render-scale", "0.5", "--num-samples", "16", "--mesh-resolution", "16", "--video-frames", "2",
        "--video-resolution", "16", "--no-progress", "--area-samples", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cfg(out, **kw):
    return GenerateConfig(**{"prompt": "a red mug", "out": Path(out), "steps": 4, "checkpoint_every": 2, **SMALL, **kw})


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_exit_2(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- 1. checkpoints run no code

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["checkpoint.safetensors", "checkpoint.pt"])
def test_a_hostile_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path, capsys, name):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(pickle.dumps({"step": 1, "field": _Payload(marker)}))
    assert not marker.exists()
    err = _one_line_exit_2(capsys, ["generate", "a red mug", "--out", str(out), "--resume", *ARGS])
    assert ("not a dreamlift checkpoint" in err) if name.endswith("safetensors") else ("not loaded" in err)
    from dreamlift.evaluate.score import load_field

    if name.endswith("safetensors"):
        with pytest.raises(DreamliftError, match="not a dreamlift checkpoint"):
            load_field(out)
    assert not marker.exists()


def test_a_checkpoint_round_trips_every_kind_of_state_bit_for_bit(tmp_path):
    g = torch.Generator().manual_seed(3)
    torch.rand(5, generator=g)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), betas=(0.9, 0.99))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"step": 7, "rng": g.get_state(), "opt": opt.state_dict(), "field": model.state_dict(),
             "history": [{"sds": 0.1 + 0.2, "t": float("nan")}], "none": None, "nested": {"a": (1, "x", 2.5)}}
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert torch.equal(back["rng"], state["rng"]) and back["step"] == 7 and back["none"] is None
    assert back["nested"] == {"a": (1, "x", 2.5)} and back["history"][0]["sds"] == 0.1 + 0.2
    assert set(back["opt"]["state"]) == {0, 1} and back["opt"]["param_groups"][0]["betas"] == (0.9, 0.99)
    for k, v in state["field"].items():
        assert torch.equal(v, back["field"][k])
    opt.load_state_dict(back["opt"])  # what --resume does
    assert read_state_header(tmp_path / "s.safetensors")["step"] == 7
    data = bytearray((tmp_path / "s.safetensors").read_bytes())
    (tmp_path / "t.safetensors").write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(DreamliftError, match="corrupt"):
        load_state(tmp_path / "t.safetensors")


# ----------------------------------------------------------------------------- 2. resume after a kill, bit-exact

_REFERENCE: dict = {}


# Gaussians small enough for seconds, densifying every 4 steps from step 2 (so a resumed run must carry the
# densification's statistics and the changed count), started in the area prior's ellipsoid (a resumed run must
# not stretch its loaded centres again).
GAUSSIANS = dict(gaussians=GaussiansConfig(count=800, densify_every=4, densify_from=0.1, densify_until=0.9,
                                           init_shape="silhouettes"))
GAUSSIAN_ARGS = ["--representation", "gaussians", "--gaussians-count", "800", "--gaussians-densify-every", "4",
                 "--gaussians-densify-from", "0.1", "--gaussians-densify-until", "0.9",
                 "--gaussians-init-shape", "silhouettes"]


def _reference(tmp_root: Path, area: float, representation: str) -> dict:
    """An uninterrupted 16-step run on one thread (as the killed subprocesses run), once per setting."""
    key = (area, representation)
    if key not in _REFERENCE:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        extra = GAUSSIANS if representation == "gaussians" else {}
        try:
            run_generate(_cfg(tmp_root / f"whole-{area}-{representation}", steps=16, area_weight=area,
                              representation=representation, **extra))
        finally:
            torch.set_num_threads(threads)
        _REFERENCE[key] = load_state(tmp_root / f"whole-{area}-{representation}" / "checkpoint.safetensors")
    return _REFERENCE[key]


@pytest.fixture(scope="module")
def reference_root(tmp_path_factory):
    return tmp_path_factory.mktemp("reference")


@pytest.mark.parametrize("area, representation",
                         [(100.0, "nerf"), (0.0, "nerf"), (100.0, "gaussians"), (0.0, "gaussians")],
                         ids=["nerf-area-prior", "nerf-no-area-prior", "gaussians-area-prior", "gaussians-no-area-prior"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_resume_after_a_kill_is_bit_identical(tmp_path, reference_root, sig, area, representation):
    whole = _reference(reference_root, area, representation)
    gaussians = representation == "gaussians"
    out = tmp_path / "run"
    stage = tmp_path / ".run.partial" / "checkpoint.safetensors"
    args = [sys.executable, "-m", "dreamlift.cli", "generate", "a red mug", "--out", str(out), "--steps", "16",
            "--checkpoint-every", "2", "--area-weight", str(area), *ARGS, *(GAUSSIAN_ARGS if gaussians else [])]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 300  # generous: a loaded machine is slow, and nothing here depends on timing
    while time.time() < deadline and proc.poll() is None:
        try:
            if read_state_header(stage)["step"] >= 2:
                break
        except DreamliftError:
            pass  # not there yet
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.fail(f"the run finished before {sig.name} arrived; make it longer")
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("dreamlift generate: interrupted") and "--resume" in err, err
    assert not out.exists()  # the interrupted run is only in its staging folder
    stopped = read_state_header(stage)["step"]
    assert 2 <= stopped < 16
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_generate(_cfg(out, steps=16, area_weight=area, resume=True, representation=representation,
                          **(GAUSSIANS if gaussians else {})))
    finally:
        torch.set_num_threads(threads)
    split = load_state(out / "checkpoint.safetensors")
    assert split["step"] == 16
    if gaussians:  # it densified on the way (800 at the start)
        assert whole["field"]["means"].shape[0] != 800
    for k, v in whole["field"].items():
        assert torch.equal(v, split["field"][k]), k
    assert torch.equal(whole["rng"], split["rng"])
    for i, s in whole["optimizer"]["state"].items():
        assert all(torch.equal(v, split["optimizer"]["state"][i][n]) for n, v in s.items())
    assert [r["sds"] for r in split["history"]] == [r["sds"] for r in whole["history"]]
    assert split["area_targets"] == whole["area_targets"]


# ----------------------------------------------------------------------------- 3. resume checks what it resumes

def test_resume_refuses_another_run_and_names_what_differs(tmp_path, capsys):
    out = tmp_path / "run"
    run_generate(_cfg(out, steps=2))
    base = ["generate", "a red mug", "--out", str(out), "--steps", "2", "--checkpoint-every", "2", *ARGS]
    before = _snapshot(out)
    err = _one_line_exit_2(capsys, ["generate", "a blue car", *base[2:], "--resume", "--steps", "4"])
    assert "prompt ('a red mug' there, 'a blue car' now)" in err
    err = _one_line_exit_2(capsys, [*base, "--resume", "--steps", "4", "--guidance", "7"])
    assert "guidance" in err and "sds.guidance_scale" in err
    err = _one_line_exit_2(capsys, [*base, "--resume", "--steps", "1"])
    assert "past --steps 1" in err
    err = _one_line_exit_2(capsys, [*base, "--resume"])  # a finished run is not overwritten without --force
    assert "finished" in err
    assert _snapshot(out) == before
    # more steps (and other export settings) are what resuming is for
    assert main([*base, "--resume", "--steps", "4", "--mesh-resolution", "20"]) == 0
    state = read_state_header(out / "checkpoint.safetensors")
    assert state["step"] == 4 and json.loads((out / "metrics.json").read_text())["steps"] == 4


# ----------------------------------------------------------------------------- 4. one run per output folder

def test_a_second_run_into_a_locked_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from dreamlift.runfolder import RunFolder\n"
        f"f = RunFolder({str(out)!r}); f.acquire(); print('held', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        err = _one_line_exit_2(capsys, ["generate", "a red mug", "--out", str(out), "--steps", "2", *ARGS])
        assert f"PID {holder.pid}" in err and "another dreamlift run" in err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock file (with its PID) is left, and the next run takes it over
    assert (tmp_path / ".run.lock").read_text().strip() == str(holder.pid)
    assert main(["generate", "a red mug", "--out", str(out), "--steps", "2", *ARGS]) == 0
    assert not (tmp_path / ".run.lock").exists() and (out / "model.glb").is_file()


# ----------------------------------------------------------------------------- 5. all-or-nothing outputs

def test_a_failing_force_run_leaves_the_earlier_run_whole(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    run_generate(_cfg(out, steps=2))
    before = _snapshot(out)
    import dreamlift.export.mesh as mesh

    def full_disk(m, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(mesh, "write_glb", full_disk)
    err = _one_line_exit_2(capsys, ["generate", "a blue car", "--out", str(out), "--steps", "2", "--force", *ARGS])
    assert "No space left on device" in err and "model.glb" in err and "unchanged" in err
    assert _snapshot(out) == before  # not even the new config.json
    monkeypatch.undo()
    assert main(["generate", "a blue car", "--out", str(out), "--steps", "2", "--force", "--resume", *ARGS]) == 0
    assert json.loads((out / "config.json").read_text())["prompt"] == "a blue car"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_nan_loss_in_a_force_run_leaves_the_earlier_run_whole(tmp_path, monkeypatch):
    from dreamlift.guidance.builtin import BuiltinGuidance

    out = tmp_path / "run"
    run_generate(_cfg(out, steps=2))
    before = _snapshot(out)
    monkeypatch.setattr(BuiltinGuidance, "predict_eps", lambda self, x, t, c: torch.full_like(x, float("nan")))
    with pytest.raises(DreamliftError):
        run_generate(_cfg(out, steps=2, force=True))
    assert _snapshot(out) == before


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount_tmpfs(name, options) -> a fresh tmpfs at tmp_path/name (root can mount here; skipped elsewhere)."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_read_only_filesystem_is_one_line_before_any_work(capsys, mount_tmpfs):
    root = mount_tmpfs("ro", "ro,size=1m")
    err = _one_line_exit_2(capsys, ["generate", "a red mug", "--out", str(root / "out"), "--steps", "2", *ARGS])
    assert "Read-only file system" in err


def test_a_full_disk_is_one_line_and_keeps_the_earlier_run(capsys, mount_tmpfs):
    disk = mount_tmpfs("disk", "size=8m")
    out = disk / "run"
    run_generate(_cfg(out, steps=2))
    before = _snapshot(out)
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * (free - 256 * 1024))  # a quarter MiB left: the checkpoint (2 MB) won't fit
    err = _one_line_exit_2(capsys, ["generate", "a blue car", "--out", str(out), "--steps", "2", "--force", *ARGS])
    assert "No space left on device" in err and "unchanged" in err
    assert _snapshot(out) == before
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "run"]  # no staging folder or temporary file left


# ----------------------------------------------------------------------------- 7. signals in every phase

def _start(out: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "dreamlift.cli", "generate", "a red mug", "--out", str(out), *ARGS, *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert path.exists(), f"{path} never appeared"


def test_sigterm_during_setup_exits_130_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = _start(out, "--steps", "4")
    _wait_for(tmp_path / ".run.lock", proc)  # taken before the backend loads
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "during setup" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_sigint_during_export_keeps_the_earlier_run_and_resume_finishes_it(tmp_path):
    out = tmp_path / "run"
    run_generate(_cfg(out, steps=2))
    before = _snapshot(out)
    proc = _start(out, "--steps", "2", "--force", "--video-frames", "48", "--video-resolution", "64")
    _wait_for(tmp_path / ".run.partial" / "model.glb", proc)  # the first export file: the video is next
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "export" in err and "--resume" in err, err
    assert _snapshot(out) == before
    assert main(["generate", "a red mug", "--out", str(out), "--steps", "2", "--resume", *ARGS]) == 0
    assert _snapshot(out) != before and (out / "turntable.mp4").is_file()


def test_signal_handlers_are_restored_after_a_run(tmp_path):
    old = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    run_generate(_cfg(tmp_path / "run", steps=1))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == old


# ----------------------------------------------------------------------------- 6. every bad input

NOT_UTF8 = b"a red \xff\xfe mug".decode("utf-8", "surrogateescape")  # what Python makes of such argv bytes


@pytest.mark.parametrize("args, message", [
    ([NOT_UTF8], "not valid UTF-8"),
    (["a red mug", "--seed", "1e23"], "expected a whole number, got '1e23'"),
    (["a red mug", "--seed", "100000000000000000000000"], "--seed must be a whole number in"),
    (["a red mug", "--seed", "-1"], "--seed must be a whole number in"),
    (["a red mug", "--steps", "2.5"], "argument --steps: expected a whole number, got '2.5'"),
    (["a red mug", "--backend", "foo"], "argument --backend: invalid choice: 'foo'"),
    (["a red mug", "--surface-density", "nan"], "--surface-density must be a finite number"),
    (["a red mug", "--area-weight", "nan"], "--area-weight must be a finite number"),
    (["a red mug", "--orientation-weight", "nan"], "--orientation-weight must be a finite number"),
    (["a red mug", "--guidance", "inf"], "--guidance must be a finite number"),
    (["a red mug", "--lr=-inf"], "--lr must be a finite number"),
    (["a red mug", "--sds-t-min", "nan"], "must be a finite number"),
    (["a red mug", "--mesh-resolution", "1"], "--mesh-resolution must be in [16, 512], got 1"),
    (["a red mug", "--video-resolution", "100000"], "--video-resolution must be in [16, 1024]"),
    (["a red mug", "--area-samples", "0"], "--area-samples must be in [1, 256]"),
    (["a red mug", "--device", "cuda"] if not torch.cuda.is_available() else ["a red mug", "--device", "tpu9"],
     "device"),
])
def test_bad_input_table(tmp_path, capsys, args, message):
    out = tmp_path / "sub" / "out"
    err = _one_line_exit_2(capsys, ["generate", *ARGS, "--out", str(out), *args])  # the bad value given last wins
    assert message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even an empty folder


def test_out_that_is_a_file_or_inside_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    err = _one_line_exit_2(capsys, ["generate", "a red mug", "--out", str(tmp_path / "f"), *ARGS])
    assert "not a folder" in err
    err = _one_line_exit_2(capsys, ["generate", "a red mug", "--out", str(tmp_path / "f" / "o"), *ARGS])
    assert "is a file" in err
    assert [p.name for p in tmp_path.iterdir()] == ["f"] and (tmp_path / "f").read_text() == "x"
