"""Compare finished suite runs prompt by prompt (IoU); writes a section of docs/EXPERIMENTS.md.

    python benchmarks/compare_runs.py results/core-v1-blob10 results/core-v1-blob2 results/core-v1-blob5 \\
        --keys nerf.blob_density nerf.blob_radius --section sds-blob \\
        --title "Suite core-v1 with three NeRF density biases"

Each argument is an output folder of ``benchmarks/eval_suite.py`` (its results.json). A run's column is
labelled with the settings named by --keys, read from the resolved config.json of its first prompt,
so the table says what differed rather than trusting folder names. Nothing is rerun.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from report import write_section


def setting(config: dict, key: str):
    """The value at a dotted key; "—" where the run's config has no such setting (an older run)."""
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return "—"
        config = config[part]
    return config


def shared(runs: list[dict]) -> str:
    """'suite core-v1, preset fast, seeds 0, 1 and 2': each run-level setting once, plural where the runs differ."""
    parts = []
    for key in ("suite", "preset", "seed"):
        values = list(dict.fromkeys(str(r[key]) for r in runs))
        parts.append(f"{key} {values[0]}" if len(values) == 1
                     else f"{key}s {', '.join(values[:-1])} and {values[-1]}")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="eval_suite output folders")
    ap.add_argument("--keys", nargs="+", required=True, help="dotted config keys that label each run")
    ap.add_argument("--labels", nargs="+", default=None,
                    help="what else differed, one per run, put before the keys (e.g. the prior's weights, "
                         "which the config names only as the shipped ones)")
    ap.add_argument("--section", required=True)
    ap.add_argument("--title", required=True)
    ap.add_argument("--note", default="", help="a paragraph under the table")
    args = ap.parse_args()

    runs, labels = [], []
    for folder in args.runs:
        res = json.loads((folder / "results.json").read_text())
        first = res["prompts"][0]
        config = json.loads((folder / first["slug"] / "config.json").read_text())
        runs.append(res)
        labels.append(", ".join(f"{k.split('.')[-1]} {setting(config, k)}" for k in args.keys))
    if args.labels is not None:
        if len(args.labels) != len(runs):
            raise SystemExit(f"{len(args.labels)} labels for {len(runs)} runs")
        labels = [f"{extra}; {label}" for extra, label in zip(args.labels, labels)]
    prompts = [p["prompt"] for p in runs[0]["prompts"]]
    iou = [{p["prompt"]: p["iou"] for p in r["prompts"]} for r in runs]
    if any(set(d) != set(prompts) for d in iou):
        raise SystemExit("the runs do not cover the same prompts")
    lines = ["| prompt | " + " | ".join(labels) + " |", "|---|" + "---|" * len(runs)]
    for p in prompts:
        vals = [d[p] for d in iou]
        best = max(vals)
        lines.append(f"| {p} | " + " | ".join(f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in vals) + " |")
    for name, fn in (("median", statistics.median), ("mean", statistics.fmean)):
        lines.append(f"| **{name}** | " + " | ".join(f"{fn(d.values()):.3f}" for d in iou) + " |")
    chamfer = [[p["chamfer"] for p in r["prompts"] if p.get("chamfer") is not None] for r in runs]
    lines.append("| **Chamfer, median** | " + " | ".join(f"{statistics.median(c):.4f}" if c else "—" for c in chamfer)
                 + " |")
    secs = [[p["generate_seconds"] for p in r["prompts"] if p.get("generate_seconds") is not None] for r in runs]
    lines.append("| **generate s, median (max)** | " + " | ".join(
        f"{statistics.median(t):.0f} ({max(t):.0f})" if t else "—" for t in secs) + " |")
    lines.append("| **Janus rate** | " + " | ".join(f"{r['aggregate']['janus_rate']['mean']:.0%}" for r in runs) + " |")
    body = (f"Runs: {', '.join(f'`{f}`' for f in args.runs)} ({shared(runs)}); IoU after the best turn about +y, "
            "best per prompt in bold.\n\n"
            + "\n".join(lines) + "\n" + (f"\n{args.note}\n" if args.note else ""))
    write_section(args.section, args.title, body)
    print(body)


if __name__ == "__main__":
    main()
