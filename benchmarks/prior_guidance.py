"""The prior's sampling bar across guidance scales and seeds; writes a section of docs/BENCHMARKS.md.

    python benchmarks/prior_guidance.py --guidance 3 4 5 --seeds 1

For every (category, colour) pair, n samples of the canonical prompt ("a red mug") are scored
by the independent evaluator; a pair passes when >= 90% of its samples have the right category
(and, separately, colour). This is item 2 of benchmarks/prior_quality.py, repeated over guidance
scales and sampling seeds, so that a default can be chosen on one seed and checked on another.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from report import write_section

from dreamlift.evaluate.classifier import Evaluator
from dreamlift.prior.model import BuiltinPrior
from dreamlift.world import CATEGORIES, COLOUR_NAMES
from dreamlift.world.captions import canonical_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="prior folder (default: shipped)")
    ap.add_argument("--guidance", type=float, nargs="+", default=[3.0, 4.0, 5.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--n", type=int, default=8, help="samples per pair")
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps")
    ap.add_argument("--eta", type=float, nargs="+", default=[0.0], help="DDIM eta values (0: deterministic)")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast (as dreamlift sample runs)")
    ap.add_argument("--evaluator", type=Path, default=None, help="evaluator folder (default: shipped)")
    ap.add_argument("--samples", type=Path, default=None,
                    help="keep each run's samples here (a .pt per seed and setting) and reuse them when present, "
                         "so another evaluator can judge the same samples")
    ap.add_argument("--section", default="prior-guidance")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    ev, prior = Evaluator(args.evaluator), BuiltinPrior(args.weights)
    pairs = [(c, k) for c in CATEGORIES for k in COLOUR_NAMES]
    prompts = [canonical_prompt(c, k) for c, k in pairs]
    cat_idx = torch.tensor([ev.categories.index(c) for c, _ in pairs]).unsqueeze(1)  # (P, 1)
    col_idx = torch.tensor([ev.colours.index(k) for _, k in pairs]).unsqueeze(1)
    rows, lines = [], []
    for seed in args.seeds:
        for g, eta in [(g, e) for g in args.guidance for e in args.eta]:
            cached = None
            if args.samples is not None:
                weights = "" if args.weights is None else f"{args.weights.name}-"  # another prior, other samples
                cached = args.samples / (f"{weights}s{seed}-g{g:g}-eta{eta:g}-k{args.steps}-n{args.n}-"
                                         f"{'fp32' if args.fp32 else 'bf16'}.pt")
            if cached is not None and cached.is_file():
                stored = torch.load(cached)
                images, seconds = stored["images"], stored["seconds"]
            else:
                t0 = time.perf_counter()
                images = prior.sample(prompts, n_per_prompt=args.n, steps=args.steps, guidance_scale=g, seed=seed,
                                      bf16=not args.fp32, eta=eta)
                seconds = time.perf_counter() - t0
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    torch.save({"images": images, "seconds": seconds}, cached)
            pred = ev.predict(images)
            cat_ok = (pred.category.argmax(-1).reshape(len(pairs), args.n) == cat_idx).float()  # (P, n)
            col_ok = (pred.colour.argmax(-1).reshape(len(pairs), args.n) == col_idx).float()
            cat_acc, col_acc = cat_ok.mean(1), col_ok.mean(1)  # (P,)
            fails = [f"{prompts[i]} ({'category' if cat_acc[i] < 0.9 else ''}"
                     f"{' and ' if cat_acc[i] < 0.9 and col_acc[i] < 0.9 else ''}"
                     f"{'colour' if col_acc[i] < 0.9 else ''} {min(cat_acc[i], col_acc[i]):.0%})"
                     for i in range(len(pairs)) if cat_acc[i] < 0.9 or col_acc[i] < 0.9]
            row = {"seed": seed, "guidance": g, "eta": eta, "pairs_category": int((cat_acc >= 0.9).sum()),
                   "pairs_colour": int((col_acc >= 0.9).sum()), "wrong_category": int((1 - cat_ok).sum()),
                   "wrong_colour": int((1 - col_ok).sum()), "seconds": seconds, "fails": fails}
            rows.append(row)
            line = (f"| {seed} | {g:g} | {eta:g} | {row['pairs_category']} / {len(pairs)} "
                    f"| {row['pairs_colour']} / {len(pairs)} "
                    f"| {row['wrong_category']} | {row['wrong_colour']} | {seconds / images.shape[0]:.3f} | "
                    f"{'; '.join(fails) or 'none'} |")
            lines.append(line)
            print(line, flush=True)
    total = len(pairs) * args.n
    body = (f"DDIM {args.steps} steps (eta 0: deterministic; 1: the DDPM posterior's noise at every step, which is "
            f"ancestral sampling, dreamlift sample's default), {args.n} samples per (category, colour) pair of the "
            f"canonical prompt, {'fp32 (as dreamlift sample runs)' if args.fp32 else 'bf16 autocast'}; "
            f"{'the shipped evaluator' if args.evaluator is None else f'the evaluator in {args.evaluator}'} "
            "judges each sample. A pair passes at >= 90% right, so one wrong sample in "
            f"{args.n} fails it."
            + (f" Samples kept in {args.samples} (--samples) are judged again, not redrawn: s / image is the time of "
               "the run that drew them." if args.samples is not None else "") + "\n\n"
            "| seed | guidance | DDIM eta | pairs >= 90% category | pairs >= 90% colour | wrong category (of "
            f"{total}) | wrong colour | s / image | failing pairs (lowest accuracy) |\n|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n")
    write_section(args.section, "The built-in prior's sampling bar by guidance scale, DDIM eta and seed", body,
                  data={"rows": rows})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
