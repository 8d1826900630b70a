"""Is the area prior's size right in 3D? Writes a section of docs/EXPERIMENTS.md (volume-calibration-<label>).

    OMP_NUM_THREADS=1 python benchmarks/eval_suite.py --suite calib-v1 --jobs 2 --out results/calib-v1 --no-write
    python benchmarks/volume_calibration.py results/calib-v1

The area prior (``dreamlift.guidance.silhouette``) holds each render's opacity near a target
taken from the prior's own samples, times ``area_scale``. area_calibration.py sets that scale
from 2D areas. This checks it where the score is taken: in 3D, on the finished ``generate``
results for suite calib-v1 (objects core-v1 never scores). Per object, after the best turn
about the up axis that the score found:

- volume ratio: voxels inside the scored surface over the true object's voxels (1 = right size);
- precision and recall of those voxels against the truth, and the IoU.

A shape that is right up to scale s has volume ratio s^3 and silhouette area ratio s^2, so a
median volume ratio V says the targets are V^(2/3) too large in area: the suggested scale is
``area_scale / V^(2/3)``. Nothing from core-v1 is used.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from report import write_section

from dreamlift.evaluate.metrics import occupancy_grid
from dreamlift.evaluate.score import load_field
from dreamlift.evaluate.suite import get_suite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="output folder of dreamlift eval on suite calib-v1")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--label", default=None, help="section suffix (default: the results folder's name)")
    args = ap.parse_args()

    rows, volumes, ious, scales = [], [], [], set()
    for p in get_suite("calib-v1"):
        folder = args.results / p.slug
        score = json.loads((folder / "score.json").read_text())
        field, config = load_field(folder)
        scales.add((config["area_weight"], config["area_scale"]))
        pred = occupancy_grid(lambda x: field.density(x) > field.threshold, args.resolution,
                              rotation_deg=score["rotation_deg"])
        true = occupancy_grid(p.world_object().occupancy, args.resolution)
        both = (pred & true).sum().item()
        n_pred, n_true = pred.sum().item(), true.sum().item()
        volume = n_pred / n_true
        volumes.append(volume)
        ious.append(score["iou"])
        rows.append(f"| {p.prompt} | {volume:.2f} | {both / max(n_pred, 1):.2f} | {both / n_true:.2f} | "
                    f"{score['iou']:.3f} |")
        print(rows[-1], flush=True)
    if len(scales) != 1:
        raise SystemExit(f"the results mix area settings {sorted(scales)}; calibrate one setting at a time")
    (weight, scale), = scales
    v = statistics.median(volumes)
    suggested = scale / v ** (2 / 3)
    body = (f"Results `{args.results}` (area_weight {weight:g}, area_scale {scale:g}), scored at the run's "
            f"surface level on a {args.resolution}^3 grid.\n\n"
            "| object | volume / true | precision | recall | IoU |\n|---|---|---|---|---|\n" + "\n".join(rows)
            + f"\n| **median** | **{v:.2f}** | | | {statistics.median(ious):.3f} |\n\n"
            f"Median volume ratio {v:.2f}: the scored shapes are {v ** (1 / 3):.2f}x the true size in each "
            f"direction. At area_scale {scale:g} that suggests area_scale {scale:g} / {v:.2f}^(2/3) = "
            f"**{suggested:.2f}**.\n")
    write_section(f"volume-calibration-{args.label or args.results.name}",
                  f"Area prior in 3D: scored volume against the truth on calib-v1 ({args.results.name})", body)
    print(body)


if __name__ == "__main__":
    main()
