"""Suite core-v1 through `dreamlift batch` on the local pool and on a local Ray cluster; writes section batch.

    python benchmarks/batch.py --steps 200 --jobs 2

Both executors run the suite's 22 prompts with the same generate settings, two runs at a time on this
machine's two cores (local: ``--jobs 2``, a fresh spawned process per prompt; Ray: a head node started here
with ``ray start --head --num-cpus 2``, ``--num-cpus 1`` per task). For each executor: the batch's wall time, the
sum of the prompts' own generate times (from their metrics.json: setup, optimisation, export), the sum of the
tasks' times in their workers (the same plus importing dreamlift and torch in a fresh process), and the
scheduling overhead per task: (wall x slots - sum of generate times) / prompts, which also counts the slots
left idle while the last prompts finish. Outputs go to results/current-batch/<executor>/ (``--fresh`` first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
from pathlib import Path

from report import ROOT, write_section

CODE = "import sys; from dreamlift.cli import main; sys.exit(main(sys.argv[1:]))"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(prompts: Path, out: Path, settings: list[str], executor: list[str]) -> dict:
    cmd = [sys.executable, "-c", CODE, "batch", str(prompts), "--out", str(out), "--no-progress", *settings, *executor]
    print("+", " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"batch failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text())


def _figures(summary: dict, slots: int) -> dict:
    runs = summary["runs"]
    gen = [r["seconds"] for r in runs]
    task = [r["task_seconds"] for r in runs if r.get("task_seconds") is not None]
    wall = summary["wall_seconds"]
    return {"executor": summary["executor"], "prompts": len(runs), "slots": slots, "wall_seconds": wall,
            "sum_generate_seconds": sum(gen), "sum_task_seconds": sum(task),
            "median_generate_seconds": statistics.median(gen),
            "worker_overhead_per_task": (sum(task) - sum(gen)) / len(task) if task else None,
            "scheduling_overhead_per_task": (wall * slots - sum(gen)) / len(runs),
            "speedup_vs_sequential_sum": sum(gen) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="core-v1")
    ap.add_argument("--steps", type=int, default=200, help="optimisation steps per prompt (fast preset otherwise)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--executors", default="local,ray")
    ap.add_argument("--fresh", action="store_true", help="delete earlier outputs first (else finished runs are skipped)")
    args = ap.parse_args()
    from dreamlift.evaluate.suite import get_suite

    base = ROOT / "results" / "current-batch"
    if args.fresh and base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True, exist_ok=True)
    prompts = base / f"{args.suite}.txt"
    prompts.write_text("".join(p.prompt + "\n" for p in get_suite(args.suite)))
    settings = ["--steps", str(args.steps), "--accept-rewrite"]
    results = {}
    for name in (e for e in args.executors.split(",") if e):
        out = base / name
        if out.exists():
            shutil.rmtree(out)  # a timing needs every prompt run now
        if name == "local":
            results[name] = _figures(_batch(prompts, out, settings, ["--jobs", str(args.jobs)]), args.jobs)
        elif name == "ray":
            ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
            port, env = _free_port(), {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
            subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            f"--num-cpus={args.jobs}", "--num-gpus=0", "--include-dashboard=false",
                            "--disable-usage-stats"], check=True, capture_output=True, env=env)
            try:
                summary = _batch(prompts, out, settings, ["--ray", f"127.0.0.1:{port}", "--num-cpus", "1"])
            finally:
                subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env)
            results[name] = _figures(summary, args.jobs)
        else:
            raise SystemExit(f"unknown executor {name!r}")
        print(json.dumps(results[name], indent=1), flush=True)
    head = ["executor", "prompts", "slots", "wall s", "sum of generate s", "sum of task s", "speed-up vs the sum",
            "worker overhead s/task", "scheduling overhead s/task"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, f in results.items():
        rows.append("| " + " | ".join([f["executor"], str(f["prompts"]), str(f["slots"]), f"{f['wall_seconds']:.0f}",
                                       f"{f['sum_generate_seconds']:.0f}", f"{f['sum_task_seconds']:.0f}",
                                       f"{f['speedup_vs_sequential_sum']:.2f}x",
                                       f"{f['worker_overhead_per_task']:.1f}", f"{f['scheduling_overhead_per_task']:.1f}"])
                    + " |")
    body = (f"Suite {args.suite} ({len(get_suite(args.suite))} prompts), preset fast at {args.steps} steps, seed 0, "
            f"two runs at a time on this machine. 'sum of generate s': the prompts' own wall times (their "
            "metrics.json), what one after another would take; 'worker overhead': a task's time in its worker "
            "minus its generate time (a fresh process importing torch and dreamlift); 'scheduling overhead': "
            "(wall x slots - sum of generate s) / prompts, idle slots at the end included.\n\n" + "\n".join(rows))
    write_section("batch", f"Batch runs: suite {args.suite} on the local pool and on a local Ray cluster", body,
                  data={"suite": args.suite, "steps": args.steps, "jobs": args.jobs, "results": results})


if __name__ == "__main__":
    main()
