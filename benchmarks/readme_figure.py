"""The README's picture: results of `dreamlift eval` beside the true objects, from the same cameras and light.

    python benchmarks/readme_figure.py results/current-core-v1/nerf-s0 --out docs/images/results.png

For each prompt (default: six of suite core-v1), the front and side tiles of the result's views.png (lit
column) and the world object sphere-traced from the same two cameras with the same light
(``dreamlift.export.outputs``: an orbit at 15 degrees, a light above and left of the camera); the IoU of the
result is written under it (from its score.json). Rows: prompts; columns: result front, truth front, result
side, truth side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dreamlift.evaluate.suite import get_suite
from dreamlift.export.outputs import _orbit_light
from dreamlift.render.camera import CameraDistribution, Light
from dreamlift.world import get_object
from dreamlift.world.render import RenderConfig, render_object

PROMPTS = ("a yellow house", "a cyan snowman", "an orange traffic cone", "a blue rocket", "a pink donut",
           "a red mug")
TILE, PAD = 64, 2  # views.png: 4 x 4 tiles of TILE px, PAD px apart; column 0 lit, rows front, right, back, left


def tile(grid: Image.Image, row: int, col: int) -> Image.Image:
    x, y = PAD + col * (TILE + PAD), PAD + row * (TILE + PAD)
    return grid.crop((x, y, x + TILE, y + TILE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a dreamlift eval folder")
    ap.add_argument("--out", type=Path, default=Path("docs/images/results.png"))
    ap.add_argument("--prompts", nargs="+", default=list(PROMPTS))
    ap.add_argument("--scale", type=int, default=2)
    args = ap.parse_args()
    suite = {p.prompt: p for s in ("core-v1", "calib-v1") for p in get_suite(s)}
    cams = CameraDistribution().orbit(4, elevation_deg=15.0, height=TILE)
    light = _orbit_light(cams)
    rows = []
    for prompt in args.prompts:
        p = suite[prompt]
        folder = args.results / p.slug
        grid = Image.open(folder / "views.png").convert("RGB")
        truth = []
        for i in (0, 1):
            one = Light(light.position[i:i + 1], light.ambient[i:i + 1])
            rgb = render_object(get_object(p.category, p.colour), cams.camera[i:i + 1], one, RenderConfig()).rgb[0]
            truth.append(Image.fromarray((rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8)))
        iou = json.loads((folder / "score.json").read_text()).get("iou")
        rows.append(([tile(grid, 0, 0), truth[0], tile(grid, 1, 0), truth[1]], f"{prompt}: IoU {iou:.2f}"))
    s, label_h = args.scale, 14
    width = 4 * TILE * s + 5 * PAD
    height = len(rows) * (TILE * s + label_h + PAD) + PAD + label_h
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, head in enumerate(("result, front", "truth, front", "result, side", "truth, side")):
        draw.text((PAD + j * (TILE * s + PAD) + 4, 1), head, fill=(60, 60, 60))
    y = label_h
    for tiles, label in rows:
        for j, t in enumerate(tiles):
            canvas.paste(t.resize((TILE * s, TILE * s), Image.NEAREST), (PAD + j * (TILE * s + PAD), y))
        draw.text((PAD + 4, y + TILE * s + 1), label, fill=(0, 0, 0))
        y += TILE * s + label_h + PAD
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
