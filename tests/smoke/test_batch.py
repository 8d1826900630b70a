"""`dreamlift batch` end to end with real generate runs, on the local pool and on a real local Ray cluster
(``ray start --head`` on 127.0.0.1): a bad prompt is recorded and the others finish, a rerun skips the finished
runs, and a worker killed with SIGKILL mid-run is retried and its prompt finishes (resuming its checkpoint)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamlift.prior.model import SHIPPED_WEIGHTS

from ._net import free_port

pytestmark = pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")

TINY = ["--steps", "4", "--render-scale", "0.5", "--num-samples", "16", "--mesh-resolution", "40",
        "--video-frames", "4", "--video-resolution", "32", "--area-samples", "1", "--checkpoint-every", "2",
        "--no-progress"]
CODE = "import sys; from dreamlift.cli import main; sys.exit(main(sys.argv[1:]))"


def _batch(prompts: Path, out: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CODE, "batch", str(prompts), "--out", str(out), *TINY, *extra],
                          capture_output=True, text=True, timeout=timeout)


def _three_prompts(tmp_path: Path) -> Path:
    f = tmp_path / "prompts.jsonl"
    f.write_text("\n".join(json.dumps(o) for o in [
        {"prompt": "a red mug"},
        {"prompt": "a corgi"},  # outside the built-in prior's world: refused inside its worker
        {"prompt": "a blue chair", "seed": 1},
    ]) + "\n")
    return f


def _check_two_results_one_error(out: Path, proc: subprocess.CompletedProcess) -> dict:
    import trimesh

    assert proc.returncode == 1, proc.stderr[-2000:]  # a prompt failed: exit 1, after the others finished
    summary = json.loads((out / "summary.json").read_text())
    runs = {r["prompt"]: r for r in summary["runs"]}
    assert [r["prompt"] for r in summary["runs"]] == ["a red mug", "a corgi", "a blue chair"]
    assert runs["a corgi"]["status"] == "error" and "corgi" in runs["a corgi"]["error"]
    assert "\n" not in runs["a corgi"]["error"]
    for p in ("a red mug", "a blue chair"):
        r = runs[p]
        assert r["status"] == "ok" and r["error"] is None and r["steps"] == 4 and r["seconds"] > 0, r
        mesh = trimesh.load(out / r["slug"] / "model.glb", force="mesh")
        assert len(mesh.faces) > 50
    assert json.loads((out / "a-blue-chair" / "config.json").read_text())["seed"] == 1
    md = (out / "summary.md").read_text()
    assert "| a red mug | ok" in md and "| a corgi | error |" in md
    return summary


def _kill_mid_run(out: Path, slug: str, proc: subprocess.Popen, deadline_s: float = 300) -> int:
    """Wait until the run of ``slug`` has saved a checkpoint, then SIGKILL the process that holds its lock."""
    stage, lock = out / f".{slug}.partial", out / f".{slug}.lock"
    deadline = time.time() + deadline_s
    while time.time() < deadline and proc.poll() is None:
        if (stage / "checkpoint.safetensors").is_file() and lock.is_file():
            pid = int(lock.read_text().strip() or 0)
            if pid:
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.2)
    raise AssertionError(f"the run of {slug} never reached a checkpoint: {proc.poll()}")


def _retried(out: Path, prompts: Path, extra: list[str]) -> None:
    slow = [a if a != "4" else "40" for a in TINY]  # long enough to be killed mid-run
    prompts.write_text("a green tree\n")
    proc = subprocess.Popen([sys.executable, "-c", CODE, "batch", str(prompts), "--out", str(out), *slow, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed = _kill_mid_run(out, "a-green-tree", proc)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "running it again" in err
    (run,) = json.loads((out / "summary.json").read_text())["runs"]
    assert run["status"] == "ok" and run["attempts"] == 2 and run["steps"] == 40, run
    assert run["resumed"] is True  # the retry continued from the killed run's checkpoint
    lock_pid_now = out / ".a-green-tree.lock"
    assert not lock_pid_now.exists() and killed > 0
    assert (out / "a-green-tree" / "model.glb").is_file()


def test_batch_on_the_local_pool(tmp_path):
    prompts, out = _three_prompts(tmp_path), tmp_path / "runs"
    proc = _batch(prompts, out, "--jobs", "2")
    first = _check_two_results_one_error(out, proc)
    assert first["executor"].startswith("local pool (2 worker processes")
    mtimes = {p: (out / p / "model.glb").stat().st_mtime for p in ("a-red-mug", "a-blue-chair")}
    again = _batch(prompts, out, "--jobs", "2")  # the finished runs are skipped; the corgi is refused again
    summary = _check_two_results_one_error(out, again)
    assert summary["ran_now"] == 1 and all(r.get("skipped") for r in summary["runs"] if r["status"] == "ok")
    assert {p: (out / p / "model.glb").stat().st_mtime for p in mtimes} == mtimes


def test_a_killed_local_worker_is_retried_and_its_prompt_finishes(tmp_path):
    _retried(tmp_path / "runs", tmp_path / "one.txt", ["--jobs", "1"])


# ------------------------------------------------------------------------------------------------ Ray
@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'dreamlift[ray]')")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, env=env, timeout=180)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_batch_on_a_local_ray_cluster(tmp_path, ray_cluster):
    prompts, out = _three_prompts(tmp_path), tmp_path / "runs"
    proc = _batch(prompts, out, "--ray", ray_cluster, "--num-cpus", "1")
    summary = _check_two_results_one_error(out, proc)
    assert summary["executor"].startswith(f"Ray cluster at {ray_cluster} (2 CPUs")
    again = _batch(prompts, out, "--ray", ray_cluster)
    assert _check_two_results_one_error(out, again)["ran_now"] == 1


def test_a_killed_ray_worker_is_retried_and_its_prompt_finishes(tmp_path, ray_cluster):
    _retried(tmp_path / "runs", tmp_path / "one.txt", ["--ray", ray_cluster])


def test_eval_runs_its_suite_on_the_ray_cluster(tmp_path, ray_cluster):
    out = tmp_path / "e"
    args = ["eval", "--suite", "smoke-v1", "--only", "a-red-mug", "--steps", "3", "--render-scale", "0.5",
            "--num-samples", "16", "--mesh-resolution", "40", "--video-frames", "4", "--video-resolution", "32",
            "--no-progress", "--score-resolution", "32", "--score-surface-resolution", "32",
            "--score-chamfer-points", "512", "--score-views", "4", "--score-janus-views", "8",
            "--score-render-size", "32", "--score-num-samples", "16", "--set", "area_samples=1",
            "--out", str(out), "--ray", ray_cluster]
    proc = subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads((out / "results.json").read_text())["prompts"]
    assert row["slug"] == "a-red-mug" and 0.0 <= row["iou"] <= 1.0 and row["attempts"] == 1
