"""Benchmark world dataset generation (images/s at 64x64), median of several runs.

    python benchmarks/world_dataset.py --images 20000 --runs 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from report import median, write_section

from dreamlift.world.dataset import DatasetConfig, make_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rates = {}
    for cpv in (4, 1):
        rates[cpv] = []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                make_dataset(DatasetConfig(str(Path(tmp) / "d"), num_images=args.images, resolution=64,
                                           colours_per_view=cpv, seed=run, num_workers=args.workers))
                rates[cpv].append(args.images / (time.perf_counter() - t0))
            print(cpv, run, rates[cpv][-1])
    lines = ["| colours per traced view | images/s (median) | runs | 100k images at 64x64 |", "|---|---|---|---|"]
    for cpv, rs in rates.items():
        lines.append(f"| {cpv}{' (default)' if cpv == 4 else ''} | {median(rs):.0f} | "
                     f"{', '.join(f'{r:.0f}' for r in rs)} | {100000 / median(rs) / 60:.1f} min |")
    body = (f"`make_dataset` of {args.images} images at 64x64 with {args.workers} worker processes, wall time "
            "including writing compressed shards. Target: 100k images in well under 10 minutes.\n\n"
            + "\n".join(lines))
    write_section("world", "World dataset generation", body, data={"images_per_second": rates})


if __name__ == "__main__":
    main()
