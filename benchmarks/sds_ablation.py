"""SDS ablations: how the fast preset's IoU moves with one setting changed, against seed-to-seed spread.

    OMP_NUM_THREADS=1 python benchmarks/sds_ablation.py --jobs 2        # ~30 min on 2 cores

Runs ``dreamlift generate``'s optimisation (no export) for a subset of suite core-v1 once per
(variant, seed, prompt), in worker processes with one torch thread each, and scores the NeRF
with the suite's geometry score (IoU after the best turn about +y, at the run's surface density).
The reference variant runs with several seeds, so a variant's change in mean IoU can be read
against how much the mean moves when only the seed changes. Writes the section sds-ablation.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from dataclasses import replace

from report import write_section

#: name -> GenerateConfig overrides (KEY=VALUE, dotted for nested settings, as ``dreamlift eval --set``) on top
#: of the fast preset. The first is the reference, run with several seeds; every variant pins its camera batch,
#: so the table does not move with the preset.
VARIANTS: dict[str, tuple[str, ...]] = {
    "batch 1 (reference)": ("batch_size=1",),
    "steps 2000": ("steps=2000", "batch_size=1"),
    "batch 2 (cameras per step)": ("batch_size=2",),
    "guidance 10": ("guidance=10", "batch_size=1"),
    "textureless albedo = mean": ("textureless_albedo=mean", "batch_size=1"),
    "no textureless (p = 0)": ("p_textureless=0", "batch_size=1"),
    "density blob radius 1.0": ("nerf.blob_radius=1", "batch_size=1"),
    "density blob 5, radius 0.8": ("nerf.blob_density=5", "nerf.blob_radius=0.8", "batch_size=1"),
    "density blob 2, radius 1.0": ("nerf.blob_density=2", "nerf.blob_radius=1", "batch_size=1"),
    "steps 1500": ("steps=1500", "batch_size=1"),
    "density bias fades by 50%": ("blob_fade=0.5", "batch_size=1"),
    "density bias fades by 100%": ("blob_fade=1", "batch_size=1"),
}
#: Suite core-v1 indices: a chair, snowman, lamp, donut, bottle and top hat (mid and low scorers).
SUBSET = (1, 3, 6, 8, 9, 14)


@functools.lru_cache(maxsize=1)
def _backend():
    """The built-in prior, loaded once per worker process."""
    import torch

    from dreamlift.guidance.backends import load_backend

    return load_backend("builtin", None, torch.device("cpu"))


def run_one(variant: str, seed: int, index: int, steps: int | None = None) -> dict:
    import torch

    torch.set_num_threads(1)
    from dreamlift.evaluate.score import ScoreConfig, geometry_scores, nerf_field
    from dreamlift.evaluate.suite import get_suite
    from dreamlift.config import with_overrides
    from dreamlift.generate import GenerateConfig, Generator

    prompt = get_suite("core-v1")[index]
    cfg = with_overrides(GenerateConfig(prompt=prompt.prompt, seed=seed, progress=False), VARIANTS[variant])
    if steps is not None:  # a quick check of the script; the figures use the variant's own steps
        cfg = replace(cfg, steps=steps)
    cfg = cfg.resolved()
    t0 = time.perf_counter()
    from dreamlift.guidance.objectives import SDSObjective

    gen = Generator(cfg, SDSObjective(cfg, _backend()))
    gen.prepare()  # the area prior's targets, as generate samples them (without this the area prior is off)
    while gen.step < cfg.steps:
        gen.train_step()
    seconds = time.perf_counter() - t0
    scores, _ = geometry_scores(nerf_field(gen.scene, cfg.surface_density), prompt.world_object(), ScoreConfig())
    return {"variant": variant, "seed": seed, "prompt": prompt.prompt, "iou": scores["iou"], "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the reference variant")
    ap.add_argument("--prompts", type=int, nargs="+", default=list(SUBSET), help="core-v1 indices")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="override every variant's steps (quick checks only)")
    ap.add_argument("--no-write", action="store_true", help="print the table instead of writing docs/EXPERIMENTS.md")
    args = ap.parse_args()
    default = next(iter(VARIANTS))
    tasks = [(v, s, i, args.steps) for v in args.variants for s in (args.seeds if v == default else args.seeds[:1])
             for i in args.prompts]
    t0 = time.perf_counter()
    if args.jobs == 1:
        rows = [run_one(*t) for t in tasks]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(run_one, *zip(*tasks)))
    wall = time.perf_counter() - t0

    from dreamlift.evaluate.suite import get_suite

    names = [get_suite("core-v1")[i].prompt for i in args.prompts]
    head = ["variant", "seed", *names, "mean IoU", "median s/run (1 thread)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    means: dict[str, list[float]] = {}
    for v in args.variants:
        for s in sorted({r["seed"] for r in rows if r["variant"] == v}):
            got = {r["prompt"]: r for r in rows if r["variant"] == v and r["seed"] == s}
            ious = [got[n]["iou"] for n in names]
            means.setdefault(v, []).append(statistics.fmean(ious))
            lines.append("| " + " | ".join([v, str(s), *(f"{x:.3f}" for x in ious), f"{means[v][-1]:.3f}",
                                            f"{statistics.median(got[n]['seconds'] for n in names):.0f}"]) + " |")
    spread = means.get(default, [])
    note = ""
    if len(spread) > 1:
        note = (f"\nThe reference's mean IoU over these prompts ranges {min(spread):.3f}-{max(spread):.3f} across "
                f"seeds {', '.join(map(str, args.seeds))} (standard deviation {statistics.stdev(spread):.3f}); a "
                "variant's mean (one seed) is only different from the reference where it falls well outside that.\n")
    if args.no_write:
        print("\n".join(lines) + "\n" + note)
        return
    write_section("sds-ablation", "SDS ablations on a subset of core-v1 (fast preset, one setting changed)",
                  f"Wall time {wall / 60:.1f} min with {args.jobs} job(s). IoU after the best turn about +y "
                  "(dreamlift.evaluate.score, default resolution), no export; each run is one worker on one "
                  "torch thread.\n\n" + "\n".join(lines) + "\n" + note)


if __name__ == "__main__":
    main()
