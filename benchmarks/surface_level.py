"""Which density is a NeRF's surface? Rescore finished suite runs at several levels; writes a section of
docs/EXPERIMENTS.md (surface-level-<label>).

    OMP_NUM_THREADS=1 python benchmarks/eval_suite.py --suite calib-v1 --jobs 2 --out results/calib-v1 --no-write
    python benchmarks/surface_level.py results/calib-v1 --levels 1 2 5 10 20
    python benchmarks/surface_level.py results/calib-v1-gaussians --levels 0.5 1 --gaussian-filter 0 --label g-f0

For 3D Gaussians the field is a sum of opacity-weighted kernels, as DreamGaussian's (``dreamlift.scene.gaussians``);
``--gaussian-filter`` rescores the same checkpoints with another 3D filter (``GaussiansConfig.filter_scale``;
0 = the raw Gaussians), and ``--gaussian-field extinction`` with each kernel weighted by its extinction per
unit length instead, sigma_i = -ln(1 - o_i) / (sqrt(2 pi) s_i) with s_i the geometric mean of its standard
deviations (a ray through its centre then integrates to -ln(1 - o_i), so 1 - exp(-that) = o_i: the NeRF's
units, where level 1 means what the NeRF's surface_density 1 does):

    python benchmarks/surface_level.py results/calib8-gaussians --levels 1 --label g-osum
    python benchmarks/surface_level.py results/calib8-gaussians --levels 0.5 1 2 --gaussian-field extinction --label g-ext

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
import math
import statistics
from pathlib import Path

import torch
from report import write_section

from dreamlift.evaluate.metrics import occupancy_grid
from dreamlift.evaluate.score import ScoreConfig, geometry_scores, load_field
from dreamlift.evaluate.suite import get_suite


def rescore(folder: Path, prompt, levels: list[float], resolution: int,
            gaussian_filter: float | None = None, gaussian_field: str = "extinction") -> dict[float, tuple[float, float]]:
    """level -> (IoU after the best turn, scored volume / true volume) for one finished prompt.

    ``gaussian_filter``: for 3D Gaussians, score with this 3D filter instead of the run's own;
    ``gaussian_field``: "extinction" scores the extinction-weighted field instead of the opacity sum."""
    if gaussian_filter is not None or gaussian_field != "opacity-sum":
        field = _refiltered(folder, gaussian_filter, gaussian_field)
    else:
        field, _ = load_field(folder)
    obj = prompt.world_object()
    true = occupancy_grid(obj.occupancy, resolution).sum().item()
    out = {}
    for level in levels:
        field.threshold = float(level)
        scores, _ = geometry_scores(field, obj, ScoreConfig(resolution=resolution, chamfer_points=256))
        pred = occupancy_grid(lambda x: field.density(x) > level, resolution, rotation_deg=scores["rotation_deg"])
        out[level] = (scores["iou"], pred.sum().item() / true)
    return out


def _refiltered(folder: Path, filter_scale: float | None, gaussian_field: str = "opacity-sum"):
    from dreamlift.checkpoint import load_state
    from dreamlift.evaluate.score import scene_field
    from dreamlift.scene import build_representation

    state = load_state(folder / "checkpoint.safetensors")
    config = state["config"]
    if config.get("representation") != "gaussians":
        raise SystemExit(f"--gaussian-filter and --gaussian-field need a Gaussians run; {folder} is "
                         f"{config.get('representation')}")
    if filter_scale is not None:
        config["gaussians"]["filter_scale"] = filter_scale
    scene = build_representation(config)
    scene.load_state_dict(state["field"])
    if gaussian_field == "extinction":  # each kernel weighted by its extinction instead of its opacity
        def extinction(self):
            o = torch.sigmoid(self.opacity_logits).clamp(max=1.0 - 1e-6)
            return -torch.log1p(-o) / (math.sqrt(2.0 * math.pi) * self.filtered_log_scales.mean(-1).exp())

        scene.__class__ = type("Extinction", (type(scene),), {"opacity": property(extinction)})
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
    ap.add_argument("--gaussian-field", choices=("opacity-sum", "extinction"), default="opacity-sum",
                    help="3D Gaussians: the field scored (the shipped opacity sum, or the extinction)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    summary = json.loads((args.results / "results.json").read_text())
    suite = args.suite or summary["suite"]
    ran = {row["slug"] for row in summary["prompts"]}  # all of the suite, or the prompts of eval --only
    levels = sorted(args.levels)
    rows, table = [], {}
    for p in get_suite(suite):
        if p.slug not in ran:
            continue
        table[p.prompt] = got = rescore(args.results / p.slug, p, levels, args.resolution, args.gaussian_filter,
                                        args.gaussian_field)
        rows.append(f"| {p.prompt} | " + " | ".join(f"{got[lv][0]:.3f} ({got[lv][1]:.2f})" for lv in levels) + " |")
        print(rows[-1], flush=True)
    med_iou = {lv: statistics.median(t[lv][0] for t in table.values()) for lv in levels}
    mean_iou = {lv: statistics.fmean(t[lv][0] for t in table.values()) for lv in levels}
    med_vol = {lv: statistics.median(t[lv][1] for t in table.values()) for lv in levels}
    head = "| prompt | " + " | ".join(f"level {lv:g}" for lv in levels) + " |\n|---|" + "---|" * len(levels)
    filt = "" if args.gaussian_filter is None else f" with the Gaussians' 3D filter at {args.gaussian_filter:g}"
    if args.gaussian_field != "opacity-sum":
        filt += f", the Gaussians' field as {args.gaussian_field}"
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
