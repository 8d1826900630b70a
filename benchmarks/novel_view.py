"""The view-conditioned prior alone: PSNR / SSIM of its drawn views of held-out objects against the true renders,
beside two baselines from the same inputs. Writes the section novel-view of docs/BENCHMARKS.md.

    python benchmarks/novel_view.py                          # the shipped weights, 3 seeds: about 5 min on 2 cores
    python benchmarks/novel_view.py --weights runs/nv-export # another export

For each of the 15 objects of image-v1 (HELD_OUT_OBJECTS: never in the prior's training data), the reference is
its image-v1 render (azimuth 0, elevation 15), and the targets are the 7 held-out cameras of
``dreamlift.evaluate.views`` (azimuths 45, 90, ..., 315 at elevation 15, each with its fixed light), rendered at
64 px and area-averaged to the prior's 32 px as its training data were. Compared at 32 px:

- novel-view prior: DDIM 50 steps, guidance 3 over the reference, no caption;
- reference copy: the reference image itself as the guess for every target;
- text prior: the shipped text prior's sample for the object's caption with the target's view word
  ("a yellow mug, side view"), DDIM 50 steps, guidance 3 (it knows the object but not this one's look).

Medians over objects and views, per seed; the table gives the median over seeds and the per-azimuth medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from report import write_section


def truth_views(prompt, size: int = 32):
    """(7, 3, size, size) true renders at the held-out cameras, rendered at 2x and area-averaged."""
    import torch.nn.functional as F

    from dreamlift.evaluate.views import held_out_cameras, held_out_light
    from dreamlift.world.render import render_object

    cams = held_out_cameras(prompt.reference[0], size=2 * size)
    rgb = render_object(prompt.world_object(), cams.camera, held_out_light(cams)).rgb.permute(0, 3, 1, 2)
    return F.interpolate(rgb.clamp(0, 1), size=(size, size), mode="area"), cams


def run(weights: Path | None, seeds: list[int], steps: int) -> dict:
    import io

    import torch
    from PIL import Image

    from dreamlift.evaluate.suite import get_suite, render_reference
    from dreamlift.evaluate.views import psnr, ssim
    from dreamlift.images import load_reference_image
    from dreamlift.prior.model import BuiltinPrior
    from dreamlift.prior.novel_view import NovelViewPrior, relative_camera
    from dreamlift.render.camera import view_word

    nv = NovelViewPrior(weights)
    text = BuiltinPrior(encoder=nv.encoder)
    R = nv.resolution
    rows = []  # one per (seed, object, view)
    t0 = time.perf_counter()
    for p in get_suite("image-v1"):
        buf = io.BytesIO()
        render_reference(p).save(buf, format="PNG")
        path = Path(f"/tmp/dreamlift-novel-view-{p.slug}.png")
        path.write_bytes(buf.getvalue())
        ref = load_reference_image(path, R).rgb  # as image-to-3d reads it
        path.unlink()
        truth, cams = truth_views(p, R)
        n = truth.shape[0]
        zero = torch.zeros(n)
        cam = relative_camera(zero + p.reference[0], zero + p.reference[1], zero + 3.3, cams.azimuth_deg,
                              cams.elevation_deg, cams.distance)
        words = [f"{p.prompt}, {view_word(float(a), float(e))} view" for a, e in zip(cams.azimuth_deg,
                                                                                   cams.elevation_deg)]
        for seed in seeds:
            drawn = nv.sample(ref[None].expand(n, -1, -1, -1), cam, None, steps=steps, guidance_scale=3.0, seed=seed)
            texts = text.sample(words, 1, steps=steps, guidance_scale=3.0, seed=seed, method="ddim")
            copy = ref[None].expand(n, -1, -1, -1)
            for name, guess in (("novel-view prior", drawn), ("reference copy", copy), ("text prior", texts)):
                for v, (ps, ss) in enumerate(zip(psnr(guess, truth).tolist(), ssim(guess, truth).tolist())):
                    rows.append({"method": name, "seed": seed, "object": p.slug, "azimuth": float(cams.azimuth_deg[v]),
                                 "psnr": ps, "ssim": ss})
        print(f"{p.slug}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"rows": rows, "seeds": seeds, "steps": steps, "weights": str(weights or "shipped"),
            "train_steps": nv.meta.get("train_steps"), "seconds": time.perf_counter() - t0}


def markdown(result: dict) -> str:
    rows = result["rows"]
    methods = ["novel-view prior", "reference copy", "text prior"]
    per_seed = {m: [statistics.median(r["psnr"] for r in rows if r["method"] == m and r["seed"] == s)
                    for s in result["seeds"]] for m in methods}
    per_seed_ssim = {m: [statistics.median(r["ssim"] for r in rows if r["method"] == m and r["seed"] == s)
                         for s in result["seeds"]] for m in methods}
    lines = [f"Weights: {result['weights']} ({result['train_steps']} training steps). 15 held-out objects x 7 "
             f"held-out views, {len(result['seeds'])} seeds, DDIM {result['steps']} steps, 32 px.", "",
             "| method | PSNR dB (median; per seed) | SSIM (median; per seed) |", "|---|---|---|"]
    for m in methods:
        lines.append(f"| {m} | {statistics.median(per_seed[m]):.2f} ({', '.join(f'{v:.2f}' for v in per_seed[m])}) | "
                     f"{statistics.median(per_seed_ssim[m]):.3f} ({', '.join(f'{v:.3f}' for v in per_seed_ssim[m])}) |")
    azimuths = sorted({r["azimuth"] for r in rows})
    lines += ["", "Per target azimuth (degrees from the reference), median PSNR / SSIM over objects and seeds:", "",
              "| method | " + " | ".join(f"{a:.0f}" for a in azimuths) + " |", "|---" * (len(azimuths) + 1) + "|"]
    for m in methods:
        cells = []
        for a in azimuths:
            sel = [r for r in rows if r["method"] == m and r["azimuth"] == a]
            cells.append(f"{statistics.median(r['psnr'] for r in sel):.1f} / "
                         f"{statistics.median(r['ssim'] for r in sel):.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {result['seconds']:.0f} s."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="a folder with novel_view.json (default: shipped)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args()
    result = run(args.weights, args.seeds, args.steps)
    table = markdown(result)
    print(table)
    if not args.no_write:
        write_section("novel-view", "The view-conditioned prior alone (image-v1 objects, held-out views)", table,
                      data=result)


if __name__ == "__main__":
    main()
