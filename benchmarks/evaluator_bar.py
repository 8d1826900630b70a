"""The prior's per-pair bar applied to ground truth; writes a section of docs/BENCHMARKS.md.

    python benchmarks/evaluator_bar.py --heldout data/world-heldout --evaluators shipped runs/evaluator2

The bar of issue 3 asks, for every one of the 150 (category, colour) pairs, that >= 90% of 8
samples get the right category and colour from the evaluator: with 8 samples, all 1,200 right.
A perfect prior draws views like the world's renders, so the bar is worth knowing on the renders
themselves: for each evaluator this script measures its error per held-out render, where those
errors lie (elevation), and how often 8 renders per pair drawn at random from the held-out set
(the camera distribution the prior was trained on) meet the bar.

The evaluator also scores text-to-3D results (docs/EVALUATION.md) on renders unlike the world's
own: grey textureless renders for R-Precision, and a 16-view orbit for the multi-face (Janus)
score. So each is also checked there, on the true objects: category accuracy on the textureless
orbit (8 views at elevation 20) of every category in every colour's shape, and whether the orbit of
each front-facing category is one-faced (the calibration docs/EVALUATION.md states and
tests/unit/evaluate/test_score.py tests for the shipped evaluator).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import torch
from report import write_section

from dreamlift.evaluate.classifier import VIEWS, Evaluator
from dreamlift.evaluate.score import ScoreConfig, _orbit, janus_from_field, world_field
from dreamlift.prior.data import load_training_data
from dreamlift.world import CATEGORIES, COLOUR_NAMES, FRONT_FACING, get_object


def out_of_world_checks(ev: Evaluator) -> tuple[float, list[str]]:
    """(category accuracy on grey textureless orbits of every category, front-facing categories whose
    ground-truth orbit the Janus rule calls multi-faced)."""
    cfg = ScoreConfig()
    cams, light = _orbit(cfg.views, cfg.view_elevation, cfg.render_size)
    right = 0
    for c in CATEGORIES:
        pred = ev.predict(world_field(get_object(c, "blue")).render(cams, light, "textureless"))
        right += int((pred.category.argmax(-1) == ev.categories.index(c)).sum())
    janus = [c for c in FRONT_FACING if janus_from_field(world_field(get_object(c, "blue")), ev, cfg)["front_arcs"] != 1]
    return right / (len(CATEGORIES) * cfg.views), janus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", type=Path, default=Path("data/world-heldout"))
    ap.add_argument("--evaluators", nargs="+", default=["shipped"],
                    help="evaluator folders ('shipped': the package's own)")
    ap.add_argument("--n", type=int, default=8, help="renders per pair in one trial of the bar")
    ap.add_argument("--draws", type=int, default=2000, help="trials of the bar")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior-samples", type=Path, nargs="*", default=[],
                    help="samples kept by prior_guidance.py --samples: their share judged 'overhead' is compared "
                         "with the truth's")
    ap.add_argument("--section", default="evaluator-bar")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows, lines = [], []
    evaluators = {name: Evaluator(None if name == "shipped" else name) for name in args.evaluators}
    data = load_training_data(args.heldout, next(iter(evaluators.values())).resolution)
    lab = data.labels
    truth = data.images.permute(0, 3, 1, 2).float() / 255
    by_pair = collections.defaultdict(list)
    for i, (c, k) in enumerate(zip(lab["category"].tolist(), lab["colour"].tolist())):
        by_pair[(c, k)].append(i)
    groups = [torch.tensor(v) for v in by_pair.values()]
    # the front-facing prior samples, loaded once: prior_guidance.py samples n per pair in this pair order
    pairs = [(c, k) for c in CATEGORIES for k in COLOUR_NAMES]
    front_samples = []
    for f in args.prior_samples:
        images = torch.load(f)["images"]
        keep = torch.tensor([c in FRONT_FACING for c, _ in pairs]).repeat_interleave(images.shape[0] // len(pairs))
        front_samples.append(images[keep])
    for name, ev in evaluators.items():
        pred = ev.predict(truth)
        wrong_cat = pred.category.argmax(-1) != lab["category"]
        wrong_col = pred.colour.argmax(-1) != lab["colour"]
        wrong = wrong_cat | wrong_col
        high = lab["elevation"] >= 60
        g = torch.Generator().manual_seed(args.seed)
        met = 0
        for _ in range(args.draws):
            met += all(not wrong[v[torch.randperm(len(v), generator=g)[:args.n]]].any() for v in groups)
        n_img = len(wrong)
        p = float(wrong.float().mean())
        texless, janus = out_of_world_checks(ev)
        front_ids = torch.tensor([ev.categories.index(c) for c in FRONT_FACING])
        ff = torch.isin(lab["category"], front_ids)
        truth_overhead = float((pred.view.argmax(-1)[ff] == VIEWS.index("overhead")).float().mean())
        sample_overhead = None
        if front_samples:
            judged = [ev.predict(x).view.argmax(-1) == VIEWS.index("overhead") for x in front_samples]
            sample_overhead = float(torch.cat(judged).float().mean())
        row = {"evaluator": name, "renders": n_img, "wrong_category": int(wrong_cat.sum()),
               "wrong_colour": int(wrong_col.sum()), "wrong_either": int(wrong.sum()),
               "wrong_at_elevation_60_plus": int((wrong & high).sum()), "share_elevation_60_plus": float(high.float().mean()),
               "pairs": len(groups), "bar_met": met, "draws": args.draws,
               "expected_wrong_of_bar": p * len(groups) * args.n, "textureless_category_accuracy": texless,
               "ground_truth_not_one_faced": janus, "truth_judged_overhead": truth_overhead,
               "samples_judged_overhead": sample_overhead}
        rows.append(row)
        line = (f"| {name} | {row['wrong_category']} | {row['wrong_colour']} | {row['wrong_either']} ({p:.2%}) "
                f"| {row['wrong_at_elevation_60_plus']} | {row['expected_wrong_of_bar']:.1f} "
                f"| {met} / {args.draws} ({met / args.draws:.1%}) | {texless:.0%} | {', '.join(janus) or 'none'} "
                f"| {truth_overhead:.1%} | {'' if sample_overhead is None else f'{sample_overhead:.1%}'} |")
        lines.append(line)
        print(line, flush=True)
    total = len(groups) * args.n
    body = (f"Ground-truth renders of the held-out set ({n_img} views, another seed than any training data; "
            f"{row['share_elevation_60_plus']:.1%} of them from 60 degrees of elevation or more), judged by each "
            f"evaluator. One trial of the bar draws {args.n} renders of each of the {len(groups)} (category, colour) "
            f"pairs at random from the set and passes when all {total} get the right category and colour, as the "
            "prior's samples must.\n\n"
            f"| evaluator | wrong category (of {n_img}) | wrong colour | wrong either | of them at elevation >= 60 "
            f"| expected wrong of {total} | trials meeting the bar | textureless orbits: category right "
            "| true front-facing objects not one-faced | front-facing truth judged overhead | front-facing prior "
            "samples judged overhead |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n")
    write_section(args.section, "The prior's sampling bar applied to ground-truth renders", body, data={"rows": rows})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
