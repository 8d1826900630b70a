"""Does the prior draw an object in its true proportions? Writes a section of docs/EXPERIMENTS.md.

    python benchmarks/extent_calibration.py [--suite calib-v1]

The area prior's samples (``dreamlift.guidance.silhouette.sample_targets``: 8 per view word, 25 DDIM steps
(``AREA_SAMPLE_STEPS``, as ``dreamlift generate`` draws them for the Gaussians; the NeRF's 10 differ by a steady
factor in area, section area-sample-steps-calib-v1), guidance 3) also give the median bounding box of each view
word's foreground; ``SilhouetteTargets.extents`` reads the object's width (x, front and back views), height
(y, front and back) and depth (z, side views) from them, and ``proportions`` divides those by their
geometric mean. The 3D Gaussians' start takes those proportions at the ball's volume
(``--gaussians-init-shape silhouettes``). This compares them with the truth: half the sides of the world
object's bounding box (its occupancy at the voxel centres of a 96^3 grid in [-1, 1]^3), as sizes (the extents seen by the view
words' nominal camera, distance 3.3 and field of view 45 degrees, against the true half sides) and as
proportions (both divided by their geometric mean). Suite calib-v1 by default (every category in a colour
core-v1 does not pair with it); nothing here enters a score.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from report import write_section

from dreamlift.evaluate.metrics import occupancy_grid
from dreamlift.evaluate.suite import get_suite
from dreamlift.guidance.backends import load_backend
from dreamlift.guidance.silhouette import sample_targets, unit_proportions
from dreamlift.render.camera import CameraDistribution


def true_half_extents(obj, resolution: int = 96) -> list[float]:
    """Half the sides of the box round the voxel centres inside ``obj`` (``occupancy_grid``, [x, y, z])."""
    inside = occupancy_grid(obj.occupancy, resolution).nonzero().float()  # (N, 3) voxel indices
    return (0.5 * (inside.amax(0) - inside.amin(0)) * (2.0 / resolution)).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="calib-v1")
    ap.add_argument("--samples", type=int, default=8, help="samples per view word (generate's --area-samples)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(0)
    backend = load_backend("builtin", None, "cpu")
    nominal = CameraDistribution()
    distance, fov = sum(nominal.distance) / 2, sum(nominal.fov_y_deg) / 2
    frame = 2 * distance * math.tan(math.radians(fov) / 2)  # the frame's side at the origin, world units
    rows, table, size_ratios, shape_errors, t0 = [], [], [], [], time.perf_counter()
    fmt = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    for p in get_suite(args.suite):
        targets = sample_targets(backend, p.prompt, args.samples, args.seed)
        est = [0.5 * frame * e for e in targets.extents()]
        true = true_half_extents(p.world_object())
        shape, true_shape = list(targets.proportions()), list(unit_proportions(true))
        size = [e / t for e, t in zip(est, true)]
        shape_ratio = [s / t for s, t in zip(shape, true_shape)]
        size_ratios.extend(size)
        shape_errors.extend(abs(math.log(r)) for r in shape_ratio)
        ball_errors = [abs(math.log(1 / t)) for t in true_shape]  # the ball's proportions are 1 : 1 : 1
        rows.append(f"| {p.prompt} | {fmt(true)} | {fmt(est)} | {fmt(true_shape)} | {fmt(shape)} | "
                    f"{max(ball_errors):.2f} | {max(abs(math.log(r)) for r in shape_ratio):.2f} |")
        table.append({"prompt": p.prompt, "true_half_extents": true, "sample_half_extents": est,
                      "true_proportions": true_shape, "sample_proportions": shape})
        print(rows[-1], flush=True)
    ball = [max(abs(math.log(1 / t)) for t in r["true_proportions"]) for r in table]
    sil = [max(abs(math.log(s / t)) for s, t in zip(r["sample_proportions"], r["true_proportions"])) for r in table]
    med_size = statistics.median(size_ratios)
    body = (f"Suite {args.suite}, {len(rows)} objects; {args.samples} samples per view word, seed {args.seed}, as "
            f"`dreamlift generate` draws them for the area prior. Half extents x / y / z in world units (the objects "
            f"fit the unit sphere), the samples' seen by the nominal camera (distance {distance:.1f}, field of view "
            f"{fov:.0f} degrees); proportions are half extents over their geometric mean. 'error' is the largest "
            "|log(proportion / true proportion)| over the three axes, for the ball (1 : 1 : 1) and for the "
            "samples' proportions.\n\n"
            "| object | true half extents | samples' | true proportions | samples' | error: ball | error: samples |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows)
            + f"\n| **median** | | | | | **{statistics.median(ball):.2f}** | **{statistics.median(sil):.2f}** |\n\n"
            f"The samples show objects {med_size:.2f}x their true extent (median over axes and objects; the area "
            f"prior's size bias, which proportions cancel). Their proportions are closer to the truth than the "
            f"ball's for {sum(s < b for s, b in zip(sil, ball))} of {len(rows)} objects. "
            f"Wall time {time.perf_counter() - t0:.0f} s.\n")
    write_section(f"extent-calibration-{args.suite}", f"Proportions from the area prior's samples ({args.suite})",
                  body, data={"suite": args.suite, "rows": table, "size_ratio_median": med_size,
                              "error_ball_median": statistics.median(ball), "error_samples_median": statistics.median(sil)})
    print(body)


if __name__ == "__main__":
    main()
