"""NeRF and 3D Gaussians on one suite in one run: shape quality and whole-run time per seed, where the time
goes, the Gaussians' ceiling and a step in units of one guided denoiser call; writes the section
representations-<suite> of docs/BENCHMARKS.md.

    OMP_NUM_THREADS=1 python benchmarks/representations.py --suite core-v1 --seeds 0 1 2 --jobs 2 --ceiling

For each seed, each representation runs the whole suite through ``dreamlift eval`` (the fast preset of
each: 1000 steps for both since 2026-12-08; before, 500 Gaussian steps), all on this machine in this one
invocation; with ``--jobs 2`` every prompt runs in its own worker process with one torch thread, beside one
other prompt, whichever the representation, so the two are timed under the same load. Then ``--ceiling``
fits the Gaussians to ground-truth renders (the representation's ceiling), and ``dreamlift bench`` times steps
of each representation (the per-phase split of a step and the step / guided-denoiser-call ratio).

Resumable: every (representation, seed) is a ``dreamlift eval`` folder under OUT; rerun the same command
after an interruption and finished prompts are scored from their files (their times are the runs' own).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from report import write_section

from dreamlift.evaluate.bench import BenchConfig, run_bench
from dreamlift.evaluate.runner import EvalConfig, run_eval

#: Where a whole generate run's time goes (keys of metrics.json "seconds"), in the order of a run.
PHASES = (("setup", "setup (all)"), ("area_prior", "of it: area prior"), ("train", "optimisation"),
          ("export_mesh", "mesh (glb, obj)"), ("export_video", "turntable"), ("export_views", "views"),
          ("export_representation", "model.ply"), ("total", "whole run"))
#: The split of one optimisation step (keys of metrics.json "ms_per_step").
STEP_PHASES = ("render", "guidance", "backward", "optimizer", "scene")


def _run(args, representation: str, seed: int, ceiling: bool = False) -> dict:
    name = f"{representation}-s{seed}" + ("-ceiling" if ceiling else "")
    cfg = EvalConfig(suite=args.suite, out=args.out / name, representation=representation, seed=seed,
                     jobs=args.jobs, ceiling=ceiling, progress=False,
                     set=tuple(x for x in args.set.replace(" ", "").split(",") if x))
    summary = run_eval(cfg)
    summary["folder"] = cfg.out_dir
    for row in summary["prompts"]:
        row["metrics"] = json.loads((cfg.out_dir / row["slug"] / "metrics.json").read_text())
    return summary


def _med(xs) -> str:
    xs = [x for x in xs if x is not None]
    return f"{statistics.median(xs):.1f}" if xs else "—"


def _iou_table(runs: dict[tuple[str, int], dict], reps: list[str], seeds: list[int]) -> list[str]:
    cols = [(r, s) for s in seeds for r in reps]
    lines = ["| prompt | " + " | ".join(f"{r}, seed {s}" for r, s in cols) + " |", "|---|" + "---|" * len(cols)]
    prompts = [p["prompt"] for p in runs[cols[0]]["prompts"]]
    iou = {c: {p["prompt"]: p["iou"] for p in runs[c]["prompts"]} for c in cols}
    for p in prompts:
        cells = []
        for s in seeds:
            best = max(iou[(r, s)][p] for r in reps)
            cells += [f"**{iou[(r, s)][p]:.3f}**" if iou[(r, s)][p] == best else f"{iou[(r, s)][p]:.3f}" for r in reps]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    for name, fn in (("median IoU", statistics.median), ("mean IoU", statistics.fmean)):
        lines.append(f"| **{name}** | " + " | ".join(f"{fn(iou[c].values()):.3f}" for c in cols) + " |")
    secs = {c: [p["generate_seconds"] for p in runs[c]["prompts"]] for c in cols}
    lines.append("| **generate s, median (max)** | " + " | ".join(
        f"{statistics.median(secs[c]):.0f} ({max(secs[c]):.0f})" for c in cols) + " |")
    lines.append("| **Janus rate** | " + " | ".join(
        f"{runs[c]['aggregate']['janus_rate']['mean']:.0%}" for c in cols) + " |")
    return lines


def _time_table(runs: dict[tuple[str, int], dict], reps: list[str], seeds: list[int]) -> list[str]:
    rows = {r: [p["metrics"] for s in seeds for p in runs[(r, s)]["prompts"]] for r in reps}
    lines = ["| phase | " + " | ".join(reps) + " |", "|---|" + "---|" * len(reps)]
    for key, label in PHASES:
        lines.append(f"| {label}, s | " + " | ".join(
            _med(m['seconds'].get(key) for m in rows[r]) for r in reps) + " |")
    lines.append("| steps | " + " | ".join(_med(m['steps'] for m in rows[r]) for r in reps) + " |")
    for key in STEP_PHASES:
        lines.append(f"| a step: {key}, ms | " + " | ".join(
            _med(m['ms_per_step'].get(key) for m in rows[r]) for r in reps) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="core-v1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--representations", nargs="+", default=["nerf", "gaussians"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--ceiling", action="store_true", help="also fit the Gaussians to ground truth (seed 0)")
    ap.add_argument("--bench-steps", type=int, default=50, help="timed steps per representation (0: no bench)")
    ap.add_argument("--out", type=Path, default=None, help="default: results/representations-<suite>")
    ap.add_argument("--set", default="", help="generate settings for every run, comma-separated KEY=VALUE "
                    "(for a quick check of this script: steps=10,mesh_resolution=32)")
    ap.add_argument("--no-write", action="store_true", help="print; leave docs/BENCHMARKS.md alone")
    args = ap.parse_args()
    args.out = args.out or Path("results") / f"representations-{args.suite}"
    reps, seeds = args.representations, args.seeds

    runs = {(r, s): _run(args, r, s) for s in seeds for r in reps}
    ceiling = _run(args, "gaussians", seeds[0], ceiling=True) if args.ceiling else None
    bench = run_bench(BenchConfig(presets=("fast",), representations=tuple(reps), steps=args.bench_steps,
                                  repeats=max(3, min(10, args.bench_steps)))) if args.bench_steps > 0 else None

    steps = {r: sorted({p["steps"] for s in seeds for p in runs[(r, s)]["prompts"]}) for r in reps}
    said = ", ".join(f"{r} {'/'.join(map(str, v))}" for r, v in steps.items())
    lines = [f"Suite {args.suite}, fast preset of each representation (steps: {said}), seed(s) "
             f"{', '.join(map(str, seeds))}; {args.jobs} worker process(es) of one torch thread each; results under "
             f"`{args.out}`. IoU after the best turn about +y, best of the representations per prompt and seed in "
             "bold; 'generate s' is each prompt's whole generate run (setup, area prior, optimisation, every "
             "export).", ""]
    lines += _iou_table(runs, reps, seeds)
    if len(reps) == 2:
        a, b = reps
        lines += ["", f"Per seed, {b} against {a}:", ""]
        for s in seeds:
            ia = statistics.median(p["iou"] for p in runs[(a, s)]["prompts"])
            ib = statistics.median(p["iou"] for p in runs[(b, s)]["prompts"])
            ta = [p["generate_seconds"] for p in runs[(a, s)]["prompts"]]
            tb = [p["generate_seconds"] for p in runs[(b, s)]["prompts"]]
            per_prompt = statistics.median(y / x for x, y in zip(ta, tb))
            lines.append(f"- seed {s}: median IoU {ib:.3f} against {ia:.3f} ({'>=' if ib >= ia else '<'}); "
                         f"whole-run time {sum(tb) / sum(ta):.2f}x in total ({sum(tb) / 60:.1f} against "
                         f"{sum(ta) / 60:.1f} min), median per-prompt ratio {per_prompt:.2f}x")
    lines += ["", "Where a run's time goes (medians over every prompt and seed, seconds, from each run's "
              "metrics.json):", ""]
    lines += _time_table(runs, reps, seeds)
    if ceiling is not None:
        agg = ceiling["aggregate"]
        lines += ["", f"The Gaussians' ceiling (fitted to ground-truth renders, seed {seeds[0]}, "
                  f"`{ceiling['folder']}`): median IoU {agg['iou']['median']:.3f}, mean {agg['iou']['mean']:.3f}, "
                  f"generate median {agg['generate_seconds']['median']:.0f} s."]
    if bench is not None:
        lines += ["", "`dreamlift bench` (prompt 'a red mug'; a fresh process per row, the same threads):", "",
                  bench["markdown"]]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(f"representations-{args.suite}", f"Suite {args.suite}: NeRF and 3D Gaussians in one run "
                      f"(fast presets, seeds {', '.join(map(str, seeds))})", body,
                      data={"runs": {f"{r}-s{s}": runs[(r, s)] for r, s in runs}, "ceiling": ceiling,
                            "bench": bench})


if __name__ == "__main__":
    main()
