"""Benchmark generate's speed per preset (and on CUDA when present); writes a section of docs/BENCHMARKS.md.

    OMP_NUM_THREADS=1 python benchmarks/speed.py --steps 50

Runs ``dreamlift bench`` (``dreamlift.evaluate.bench``): each preset in a fresh process, steps/s,
the per-phase split of a step, peak memory, and a full SDS step in units of one guided denoiser call.
"""

from __future__ import annotations

import argparse

from report import write_section

from dreamlift.evaluate.bench import BenchConfig, run_bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per preset")
    ap.add_argument("--presets", default="fast,quality")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    cfg = BenchConfig(presets=tuple(p for p in args.presets.split(",") if p), steps=args.steps, device=args.device)
    result = run_bench(cfg)
    print(result["markdown"])
    body = ("Prompt 'a red mug', built-in prior. 'est. train min/prompt' = setup + the preset's full step count at "
            "the measured rate (export of mesh and video not included).\n\n" + result["markdown"])
    write_section("speed", "Generate: speed per preset", body, data=result)


if __name__ == "__main__":
    main()
