"""Regenerate docs/BENCHMARKS.md: every section of the current defaults, at one commit, with the inputs they need.

    python benchmarks/run_all.py                     # every area, in order (about 5 h on 2 CPU cores)
    python benchmarks/run_all.py --areas speed core  # some of them

Areas, each one benchmark script (its docstring says what it measures) writing its section and JSON:

- ``speed``: ``dreamlift bench`` per preset (``speed.py``), minutes.
- ``prior``: the built-in prior's sampling bar and its evaluator on held-out renders (``prior_quality.py``),
  the bar at the settings ``dreamlift sample`` uses at five seeds (``prior_guidance.py``) and what the bar can
  measure (``evaluator_bar.py``); the held-out set (``data/world-heldout``, 10,000 renders of seed 1) is made
  first if it is missing.
- ``colour-words``: the colour tables and the prior's samples of colour words (``colour_words.py``), 10 min.
- ``core``: suite core-v1 with both representations, the Gaussians' ceiling and the step split
  (``representations.py``, seeds from ``--seeds``), then the NeRF's ceiling (``eval_suite.py --ceiling``);
  about 50 min a seed, 12 min the NeRF ceiling, with 2 worker processes.
- ``sd-speed``: one SDS step with a Stable-Diffusion-sized denoiser (``sd_speed.py``) at the fast preset and at
  ``--preset sd`` (threestudio's settings), 4 and 7 min on this CPU, then the sd preset field's memory compacted
  and masked (``field_memory.py``, 9 min).
- ``batch``: suite core-v1 through ``dreamlift batch`` on the local pool and on a local Ray cluster
  (``batch.py``), 30-40 min.
- ``image``: the view-conditioned prior alone (``novel_view.py``, 3 seeds, 8 min) and suite image-v1 with
  Gaussians (``image_to_3d.py``: image-to-3d at 3 seeds, the reference-only and text-to-3D baselines and the
  ceiling at seed 0, 60-80 min), then image-to-3d with the NeRF at the first seed (``--representation nerf``,
  about 15 min).
- ``world``, ``demo2d``: making the world's datasets (``world_dataset.py``) and the 2D DDPM demo (``demo2d.py``).

Results go to ``results/current-*`` (made by these scripts, resumable: a rerun after an interruption scores the
prompts already finished). Run it alone on the machine: the figures include wall times. A section stamps the
commit it ran at; run it on a clean tree so every section names the same one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AREAS = ("speed", "prior", "colour-words", "core", "sd-speed", "batch", "image", "world", "demo2d")


def _run(argv: list[str], env: dict | None = None) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, env={**os.environ, **(env or {})})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", nargs="+", choices=AREAS, default=list(AREAS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the core-v1 runs")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    if dirty:
        print("warning: the tree has uncommitted changes; the sections will name a commit that is not what ran",
              file=sys.stderr)
    one_thread = {"OMP_NUM_THREADS": "1"}  # each worker process is one torch thread beside the other
    for area in args.areas:
        if area == "speed":
            _run(["benchmarks/speed.py", "--steps", "50"])
        elif area == "prior":
            heldout = ROOT / "data" / "world-heldout"
            if not heldout.exists():
                _run(["-m", "dreamlift.cli", "make-dataset", "--out", str(heldout), "--num-images", "10000",
                      "--seed", "1"])
            _run(["benchmarks/prior_quality.py", "--heldout", str(heldout)])
            samples, seeds = ROOT / "results" / "current-samples", ["0", "1", "2", "3", "4"]
            _run(["benchmarks/prior_guidance.py", "--guidance", "3", "--eta", "1", "--fp32", "--seeds", *seeds,
                  "--samples", str(samples), "--section", "prior-fp32-shipped-judge"])
            _run(["benchmarks/evaluator_bar.py", "--heldout", str(heldout), "--evaluators", "shipped",
                  "--draws", "2000", "--prior-samples",
                  *(str(samples / f"s{s}-g3-eta1-k50-n8-fp32.pt") for s in seeds)])
        elif area == "colour-words":
            _run(["benchmarks/colour_words.py"])
        elif area == "core":
            _run(["benchmarks/representations.py", "--suite", "core-v1", "--seeds", *map(str, args.seeds),
                  "--jobs", str(args.jobs), "--ceiling", "--out", "results/current-core-v1"], env=one_thread)
            _run(["benchmarks/eval_suite.py", "--suite", "core-v1", "--jobs", str(args.jobs), "--ceiling",
                  "--out", "results/current-core-v1-ceiling"], env=one_thread)
        elif area == "sd-speed":
            _run(["benchmarks/sd_speed.py", "--steps", "3", "--warmup", "1", "--repeats", "3"])
            _run(["benchmarks/sd_speed.py", "--preset", "sd", "--steps", "3", "--warmup", "1", "--repeats", "3"])
            _run(["benchmarks/field_memory.py", "--repeats", "2"])
        elif area == "batch":
            _run(["benchmarks/batch.py", "--steps", "200", "--fresh"])
        elif area == "image":
            _run(["benchmarks/novel_view.py", "--seeds", "0", "1", "2"])
            _run(["benchmarks/image_to_3d.py", "--seeds", *map(str, args.seeds), "--baseline-seeds", str(args.seeds[0]),
                  "--jobs", str(args.jobs), "--out", "results/current-image-v1"], env=one_thread)
            _run(["benchmarks/image_to_3d.py", "--representation", "nerf", "--seeds", str(args.seeds[0]),
                  "--baseline-seeds", "--no-ceiling", "--jobs", str(args.jobs), "--out",
                  "results/current-image-v1-nerf"], env=one_thread)
        elif area == "world":
            _run(["benchmarks/world_dataset.py", "--images", "10000", "--runs", "3"])
        elif area == "demo2d":
            _run(["benchmarks/demo2d.py", "--runs", "2"])


if __name__ == "__main__":
    main()
