"""Which density is a NeRF's surface? Rescore finished suite runs at several levels; writes a section of
docs/BENCHMARKS.md (surface-level-<label>).

    OMP_NUM_THREADS=1 python benchmarks/eval_suite.py --suite calib-v1 --jobs 2 --out results/calib-v1 --no-write
    python benchmarks/surface_level.py results/calib-v1 --levels 1 2 5 10 20
    python benchmarks/surface_level.py results/calib-v1-gaussians --levels 0.5 1 --gaussian-filter 0 --label g-f0

For 3D Gaussians the field is a sum of opacity-weighted kernels, and ``--gaussian-filter`` rescores the same
checkpoints with another 3D filter (``GaussiansConfig.filter_scale``; 0 = the raw Gaussians).

A NeRF has no surface of its own: the scored shape and the exported mesh are {density > level} for
generate's ``surface_density``. How visible a level is depends on it: a ray sample of spacing delta is
1 - exp(-sigma delta) opaque, so at the fast preset's spacing (about 2 / 48 through the middle of the unit
sphere) density 1 is 4% opaque and density 17 is half opaque. Too low a level scores the faint halo around a
distilled object as solid; too high a level erodes thin parts. Nothing is rerun: each prompt's checkpoint
is rescored (IoU after the best turn about +y, and the volume ratio to the truth, on the same grid as
``dreamlift eval``). Choose the level on calib-v1, which core-v1 never scores, then test it on core-v1.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from report import write_section

from dreamlift.evaluate.metrics import occupancy_grid
from dreamlift.evaluate.score import ScoreConfig, geometry_scores, load_field
from dreamlift.evaluate.suite import get_suite


def rescore(folder: Path, prompt, levels: list[float], resolution: int,
            gaussian_filter: float | None = None) -> dict[float, tuple[float, float]]:
    """level -> (IoU after the best turn, scored volume / true volume) for one finished prompt.

    ``gaussian_filter``: for 3D Gaussians, score with this 3D filter instead of the run's own."""
    field, _ = load_field(folder)
    if gaussian_filter is not None:
        field = _refiltered(folder, gaussian_filter)
    obj = prompt.world_object()
    true = occupancy_grid(obj.occupancy, resolution).sum().item()
    out = {}
    for level in levels:
        field.threshold = float(level)
        scores, _ = geometry_scores(field, obj, ScoreConfig(resolution=resolution, chamfer_points=256))
        pred = occupancy_grid(lambda x: field.density(x) > level, resolution, rotation_deg=scores["rotation_deg"])
        out[level] = (scores["iou"], pred.sum().item() / true)
    return out


def _refiltered(folder: Path, filter_scale: float):
    from dreamlift.checkpoint import load_state
    from dreamlift.evaluate.score import scene_field
    from dreamlift.scene import build_representation

    state = load_state(folder / "checkpoint.safetensors")
    config = state["config"]
    if config.get("representation") != "gaussians":
        raise SystemExit(f"--gaussian-filter needs a Gaussians run; {folder} is {config.get('representation')}")
    config["gaussians"]["filter_scale"] = filter_scale
    scene = build_representation(config)
    scene.load_state_dict(state["field"])
    return scene_field(scene, config["surface_density"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="output folder of dreamlift eval / eval_suite.py")
    ap.add_argument("--suite", default=None, help="the suite it ran (default: read from results.json)")
    ap.add_argument("--levels", type=float, nargs="+", default=[1, 2, 5, 10, 20])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--label", default=None, help="section suffix (default: the results folder's name)")
    ap.add_argument("--gaussian-filter", type=float, default=None,
                    help="3D Gaussians: rescore with this 3D filter (world units) instead of the runs' own")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    suite = args.suite or json.loads((args.results / "results.json").read_text())["suite"]
    levels = sorted(args.levels)
    rows, table = [], {}
    for p in get_suite(suite):
        table[p.prompt] = got = rescore(args.results / p.slug, p, levels, args.resolution, args.gaussian_filter)
        rows.append(f"| {p.prompt} | " + " | ".join(f"{got[lv][0]:.3f} ({got[lv][1]:.2f})" for lv in levels) + " |")
        print(rows[-1], flush=True)
    med_iou = {lv: statistics.median(t[lv][0] for t in table.values()) for lv in levels}
    mean_iou = {lv: statistics.fmean(t[lv][0] for t in table.values()) for lv in levels}
    med_vol = {lv: statistics.median(t[lv][1] for t in table.values()) for lv in levels}
    head = "| prompt | " + " | ".join(f"level {lv:g}" for lv in levels) + " |\n|---|" + "---|" * len(levels)
    filt = "" if args.gaussian_filter is None else f" with the Gaussians' 3D filter at {args.gaussian_filter:g}"
    body = (f"Results `{args.results}` (suite {suite}), rescored from their checkpoints{filt}; each cell is the IoU after "
            f"the best turn about +y and, in brackets, the scored volume over the true volume ({args.resolution}^3 "
            "grid).\n\n" + head + "\n" + "\n".join(rows) + "\n"
            + "| **median IoU** | " + " | ".join(f"**{med_iou[lv]:.3f}**" for lv in levels) + " |\n"
            + "| **mean IoU** | " + " | ".join(f"{mean_iou[lv]:.3f}" for lv in levels) + " |\n"
            + "| **median volume ratio** | " + " | ".join(f"{med_vol[lv]:.2f}" for lv in levels) + " |\n")
    print(body)
    if not args.no_write:
        write_section(f"surface-level-{args.label or args.results.name}",
                      f"Surface level: suite {suite} rescored at several densities ({args.results.name})", body)


if __name__ == "__main__":
    main()
