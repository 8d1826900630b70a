"""How many DDIM steps do the area prior's samples need? Writes a section of docs/EXPERIMENTS.md.

    python benchmarks/area_sample_steps.py [--suite calib-v1] [--steps 10 15] [--reference 25]

Before each text-to-3D run with the built-in prior, the area prior (``dreamlift.guidance.silhouette``)
samples ``--area-samples`` images per view word and measures their foreground: the area targets, and the
proportions the Gaussians may start from. On one CPU thread that is about as long as the Gaussians' whole
optimisation takes for its first 200 steps, so fewer sampling steps pay; but fewer DDIM steps draw blurrier
edges, which the foreground detector counts as larger areas. For each prompt of the suite this draws the
targets at the reference step count with seeds 0 and 1 (the spread of two seeds: what the targets vary by
anyway) and at each candidate step count with seed 0 (the same starting noise as the reference's seed 0, so
the difference is the steps' alone), and reports per step count:

- time: the median wall time of one prompt's targets (four view words);
- area ratio: the median over prompts and view words of area / reference area, a steady factor that
  ``--area-scale`` can divide out;
- residual: the median |log(area / reference area)| left after dividing that factor out, against the two
  seeds' median |log ratio|;
- proportions: the median |log(proportion / reference proportion)| over prompts and axes.

The calibration suite is used so that nothing is tuned on core-v1.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from report import write_section

from dreamlift.config import DreamliftError
from dreamlift.evaluate.suite import get_suite
from dreamlift.generate import DEFAULT_AREA_STEPS
from dreamlift.guidance.backends import load_backend
from dreamlift.guidance.silhouette import VIEW_WORDS, sample_targets


def targets(backend, prompt: str, samples: int, seed: int, steps: int):
    t0 = time.perf_counter()
    try:
        found = sample_targets(backend, prompt, samples, seed, steps=steps)
    except DreamliftError as e:
        raise SystemExit(f"{e} (at {steps} steps)") from None
    return found, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="calib-v1")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 15], help="candidate DDIM step counts")
    ap.add_argument("--reference", type=int, default=25, help="the step count the area scale was calibrated at")
    ap.add_argument("--samples", type=int, default=8, help="samples per view word (generate's --area-samples)")
    args = ap.parse_args()
    if any(s < 1 for s in [*args.steps, args.reference]) or args.samples < 1:
        raise SystemExit("--steps, --reference and --samples must be positive")

    torch.manual_seed(0)
    backend = load_backend("builtin", None, "cpu")
    runs = [(args.reference, 0), (args.reference, 1), *((s, 0) for s in args.steps)]
    found: dict[tuple[int, int], list] = {r: [] for r in runs}
    seconds: dict[tuple[int, int], list[float]] = {r: [] for r in runs}
    prompts = [p.prompt for p in get_suite(args.suite)]
    for prompt in prompts:
        for steps, seed in runs:
            tg, dt = targets(backend, prompt, args.samples, seed, steps)
            found[(steps, seed)].append(tg)
            seconds[(steps, seed)].append(dt)
        print(prompt, {f"{s}/{sd}": round(seconds[(s, sd)][-1], 1) for s, sd in runs}, flush=True)

    ref = found[(args.reference, 0)]
    rows, data = [], []
    for steps, seed in runs[1:]:
        logs = [math.log(t.area[w] / r.area[w]) for t, r in zip(found[(steps, seed)], ref) for w in VIEW_WORDS]
        factor = statistics.median(logs)
        residual = statistics.median(abs(x - factor) for x in logs)
        props = [abs(math.log(a / b)) for t, r in zip(found[(steps, seed)], ref)
                 for a, b in zip(t.proportions(), r.proportions())]
        t_med = statistics.median(seconds[(steps, seed)])
        what = "another seed" if steps == args.reference else "same noise"
        rows.append(f"| {steps} | {seed} ({what}) | {t_med:.1f} | {math.exp(factor):.3f} | "
                    f"{statistics.median(abs(x) for x in logs):.3f} | {residual:.3f} | {statistics.median(props):.3f} |")
        data.append({"steps": steps, "seed": seed, "seconds_median": t_med, "area_ratio": math.exp(factor),
                     "abs_log_area_median": statistics.median(abs(x) for x in logs),
                     "residual_median": residual, "abs_log_proportion_median": statistics.median(props)})
    t_ref = statistics.median(seconds[(args.reference, 0)])
    body = (f"Suite {args.suite}, {len(prompts)} prompts; {args.samples} samples per view word, guidance 3, DDIM "
            f"(eta 0); each row against {args.reference} steps at seed 0 ({t_ref:.1f} s per prompt, median). "
            f"'area ratio' is the median of area / reference area over prompts and view words, '|log|' the median "
            f"|log| of that ratio, 'residual' the same after dividing the ratio out, 'proportions' the median "
            f"|log| ratio of the proportions. Generate samples "
            + ", ".join(f"{s} steps for {r}" for r, s in DEFAULT_AREA_STEPS.items()) + " at this commit.\n\n"
            "| DDIM steps | seed | s per prompt | area ratio | area \\|log\\| | residual | proportions \\|log\\| |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    write_section(f"area-sample-steps-{args.suite}", f"The area prior's samples: DDIM steps ({args.suite})", body,
                  data={"suite": args.suite, "samples": args.samples, "reference": args.reference,
                        "reference_seconds_median": t_ref, "rows": data})
    print(body)


if __name__ == "__main__":
    main()
