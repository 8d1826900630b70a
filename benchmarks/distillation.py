"""Distillation methods against the shipped default, in one run: SDS, classifier score distillation (CSD),
interval score matching (ISM), SDS with Perp-Neg's view negatives (weight 1), variational score distillation
(VSD) and SDS from the camera-aware prior (``--model camera``), on both representations, scored against the
world's true shapes; writes the section distillation-<suite> of docs/EXPERIMENTS.md.

    OMP_NUM_THREADS=1 python benchmarks/distillation.py --suite calib-v1 --seeds 0 --jobs 2
    OMP_NUM_THREADS=1 python benchmarks/distillation.py --suite core-v1 --seeds 0 1 2 --jobs 2

Each (method, representation, seed) is one ``dreamlift eval`` folder under OUT (the fast preset of the
representation, ``--objective METHOD``); with ``--jobs 2`` every prompt runs in its own worker process of one
torch thread beside one other, so all methods are timed under the same load. Per run: median and mean IoU after
the best turn about +y, median volume ratio (scored volume at the run's surface level / true volume, 64^3),
median Chamfer, the Janus rate on front-facing categories and the median whole-run time per prompt; then IoU
per category. Resumable: rerun the same command and finished prompts are read from their files.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from report import write_section

from dreamlift.evaluate.metrics import occupancy_grid
from dreamlift.evaluate.runner import EvalConfig, run_eval
from dreamlift.evaluate.score import load_field
from dreamlift.evaluate.suite import get_suite

#: method -> generate settings (KEY=VALUE) on top of the fast preset; the first is the shipped default.
METHODS: dict[str, tuple[str, ...]] = {
    "sds": (),
    "csd": ("objective=csd",),
    "ism": ("objective=ism",),
    "sds+perp-neg": ("sds.perp_neg=1",),
    "vsd": ("objective=vsd",),
    "sds+camera-prior": ("model=camera",),
}


def _volume_ratio(folder: Path, prompt, resolution: int = 64) -> float:
    field, _ = load_field(folder)
    obj = prompt.world_object()
    true = occupancy_grid(obj.occupancy, resolution).sum().item()
    pred = occupancy_grid(lambda x: field.density(x) > field.threshold, resolution).sum().item()
    return pred / true


def _run(args, method: str, rep: str, seed: int) -> dict:
    cfg = EvalConfig(suite=args.suite, out=args.out / f"{method}-{rep}-s{seed}", representation=rep, seed=seed,
                     jobs=args.jobs, progress=False,
                     set=METHODS[method] + tuple(x for x in args.set.replace(" ", "").split(",") if x))
    summary = run_eval(cfg)
    prompts = {p.prompt: p for p in get_suite(args.suite)}
    for row in summary["prompts"]:
        row["volume_ratio"] = _volume_ratio(cfg.out_dir / row["slug"], prompts[row["prompt"]])
    summary["folder"] = str(cfg.out_dir)
    return summary


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="calib-v1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--representations", nargs="+", default=["nerf", "gaussians"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="default: results/distillation-<suite>")
    ap.add_argument("--set", default="", help="generate settings for every run, comma-separated KEY=VALUE "
                    "(for a quick check of this script: steps=10,mesh_resolution=32)")
    ap.add_argument("--no-write", action="store_true", help="print; leave docs/EXPERIMENTS.md alone")
    ap.add_argument("--note", default="", help="a sentence for the section, e.g. which runs were read back from "
                    "an earlier invocation at which commit")
    args = ap.parse_args()
    args.out = args.out or Path("results") / f"distillation-{args.suite}"
    methods, reps, seeds = args.methods, args.representations, args.seeds

    runs = {(m, r, s): _run(args, m, r, s) for r in reps for s in seeds for m in methods}

    lines = [f"Suite {args.suite}, the fast preset of each representation, `--objective` as named (sds is the "
             f"shipped default); {args.jobs} worker process(es) of one torch thread each; results under "
             f"`{args.out}`. IoU after the best turn about +y; volume ratio = scored volume at the run's surface "
             "level / true volume (64^3 grid); Chamfer in object radii; Janus on front-facing categories; time "
             "= each prompt's whole generate run." + (f" {args.note}" if args.note else ""), "",
             "| representation | method | seed | median IoU | mean IoU | median volume ratio | median Chamfer | "
             "Janus | median s / prompt | time vs sds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in reps:
        for s in seeds:
            base = sum(p["generate_seconds"] for p in runs[(methods[0], r, s)]["prompts"])
            for m in methods:
                rows = runs[(m, r, s)]["prompts"]
                ious = [p["iou"] for p in rows]
                janus = runs[(m, r, s)]["aggregate"]["janus_rate"]
                janus = "—" if janus is None else f"{janus['mean']:.0%}"
                secs = [p["generate_seconds"] for p in rows]
                lines.append(
                    f"| {r} | {m} | {s} | {statistics.median(ious):.3f} | {statistics.fmean(ious):.3f} | "
                    f"{_med(p['volume_ratio'] for p in rows):.2f} | {_med(p.get('chamfer') for p in rows):.3f} | "
                    f"{janus} | {statistics.median(secs):.0f} | "
                    f"{sum(secs) / base:.2f}x |")
    by_prompt = {p.prompt: p.category for p in get_suite(args.suite)}
    cats = sorted(set(by_prompt.values()))
    cols = [(m, r, s) for r in reps for s in seeds for m in methods]
    lines += ["", "IoU per category (the mean over the suite's prompts of that category):", "",
              "| category | " + " | ".join(f"{r[0].upper()} {m} s{s}" for m, r, s in cols) + " |",
              "|---|" + "---|" * len(cols)]
    for c in cats:
        cells = []
        for col in cols:
            vals = [p["iou"] for p in runs[col]["prompts"] if by_prompt[p["prompt"]] == c]
            cells.append(f"{statistics.fmean(vals):.3f}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "N = NeRF, G = Gaussians."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(f"distillation-{args.suite}", f"Suite {args.suite}: distillation methods ({', '.join(methods)}) in "
                      f"one run (seeds {', '.join(map(str, seeds))})", body,
                      data={"runs": {f"{m}-{r}-s{s}": v for (m, r, s), v in runs.items()}})


if __name__ == "__main__":
    main()
