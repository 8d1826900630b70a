"""Run a prompt suite through generate (or the ground-truth ceiling) and write its scores to docs/BENCHMARKS.md.

    OMP_NUM_THREADS=1 python benchmarks/eval_suite.py --suite core-v1 --jobs 2             # SDS, ~40 CPU minutes
    OMP_NUM_THREADS=1 python benchmarks/eval_suite.py --suite core-v1 --jobs 2 --ceiling   # the representation's ceiling

Resumable (it is ``dreamlift eval``): rerun the same command after an interruption. Each mode and
suite gets its own section (eval-<suite>, eval-<suite>-ceiling).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from report import write_section

from dreamlift.evaluate.runner import EvalConfig, results_markdown, run_eval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="core-v1")
    ap.add_argument("--out", type=Path, default=None, help="default: results/<suite>[-ceiling]")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--ceiling", action="store_true")
    ap.add_argument("--set", default="", help="generate settings, comma-separated KEY=VALUE (e.g. area_weight=0)")
    ap.add_argument("--no-write", action="store_true", help="print the table; leave docs/BENCHMARKS.md alone "
                    "(for variants, compared afterwards by compare_runs.py)")
    args = ap.parse_args()
    cfg = EvalConfig(suite=args.suite, out=args.out, preset=args.preset, steps=args.steps, seed=args.seed,
                     jobs=args.jobs, ceiling=args.ceiling, progress=False,
                     set=tuple(x for x in args.set.replace(" ", "").split(",") if x))
    summary = run_eval(cfg)
    body = results_markdown(summary).split("\n", 2)[2]  # drop the markdown title; the section has its own
    steps = summary["prompts"][0].get("steps")
    before = len(summary["prompts"]) - summary["run_now"]
    name = f"eval-{args.suite}" + ("-ceiling" if args.ceiling else "")
    what = "NeRF fitted to ground-truth renders (ceiling)" if args.ceiling else "SDS with the built-in prior"
    if args.no_write:
        print(body)
        return
    write_section(name, f"Suite {args.suite}: {what}, preset {args.preset}, {steps} steps, seed {args.seed}",
                  f"Wall time {summary['wall_seconds'] / 60:.1f} min with {args.jobs} job(s) for the "
                  f"{summary['run_now']} prompt(s) run by this invocation"
                  + (f" ({before} finished by an earlier run were scored from their files)" if before else "")
                  + f"; results in `{cfg.out_dir}`. Column 'time s' is each prompt's own generate wall time.\n\n{body}",
                  data=summary)


if __name__ == "__main__":
    main()
