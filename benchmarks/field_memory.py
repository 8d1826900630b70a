"""Memory and time of one training render of the sd preset's NeRF (hash grid, 64 x 64 rays x 512 samples,
lambertian, so with the finite-difference normals) and its backward pass, on this machine's CPU: compacted or
masked samples (``--nerf-compact``), with the hash encoding's recomputing backward (shipped) or plain autograd
(``HashEncoding.reference``). Each variant runs in a fresh process whose address space is capped (``--cap-gib``),
so a variant that needs more fails with an allocation error instead of waking the kernel's OOM killer.
Writes the section field-memory of docs/BENCHMARKS.md.

    python benchmarks/field_memory.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from report import ROOT, write_section

VARIANTS = [("on", "recompute"), ("on", "autograd"), ("off", "recompute"), ("off", "autograd")]


def child(compact: str, encoding: str, repeats: int, cap_gib: float) -> None:
    import resource
    import time

    cap = int(cap_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch

    from dreamlift.config import config_to_dict, with_overrides
    from dreamlift.generate import GenerateConfig
    from dreamlift.render.camera import CameraDistribution, LightDistribution
    from dreamlift.scene import build_representation
    from dreamlift.scene.hashgrid import HashEncoding

    if encoding == "autograd":
        HashEncoding.forward = HashEncoding.reference
    cfg = with_overrides(GenerateConfig(prompt="a red mug", out="unused", backend="stable-diffusion", preset="sd"),
                         [f"nerf.compact={compact}"]).resolved()
    torch.manual_seed(0)
    scene = build_representation(config_to_dict(cfg))
    g = torch.Generator().manual_seed(0)
    scene.before_step(0, 0.5, g)  # mid-run: 14 of 16 levels read, the occupancy grid updated
    times = []
    try:
        for _ in range(repeats):
            cams = CameraDistribution().sample(1, g, height=64)
            light = LightDistribution().sample(cams, g)
            t0 = time.perf_counter()
            out = scene.render(cams.camera, light, "lambertian", generator=g)
            (out.rgb.mean() + out.orientation).backward()
            times.append(time.perf_counter() - t0)
            scene.zero_grad(set_to_none=True)
        result = {"ok": True, "seconds": statistics.median(times)}
    except (RuntimeError, MemoryError) as exc:
        result = {"ok": False, "error": str(exc).splitlines()[0][:120]}
    result.update(compact=compact, encoding=encoding, occupied=scene.occupancy.occupied_fraction(),
                  levels=scene.hash._active, peak_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2, help="renders + backward passes timed per variant (median)")
    ap.add_argument("--cap-gib", type=float, default=20.0, help="address-space cap of each variant's process")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.repeats, args.cap_gib)
        return
    rows = []
    for compact, encoding in VARIANTS:
        run = subprocess.run([sys.executable, __file__, "--child", compact, encoding, "--repeats", str(args.repeats),
                              "--cap-gib", str(args.cap_gib)], capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        r = json.loads(lines[-1]) if lines else {"ok": False, "compact": compact, "encoding": encoding,
                                                  "error": f"exit {run.returncode}: {run.stderr.strip()[-120:]}"}
        print(r, flush=True)
        rows.append(r)
    head = ["compact", "hash backward", "peak RSS GiB", "render + backward s", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['compact']} | {r['encoding']} | "
                     f"{r['peak_gib']:.1f} | " if "peak_gib" in r else f"| {r['compact']} | {r['encoding']} | - | ")
        lines[-1] += (f"{r['seconds']:.1f} | |" if r["ok"] else f"- | failed: {r['error']} |")
    r0 = next((r for r in rows if "occupied" in r), {})
    body = "\n".join([*lines, "", f"One render of 1 camera at 64 x 64 rays x 512 samples, lambertian, mid-run "
                      f"({r0.get('levels', '?')} hash levels read, {r0.get('occupied', 0):.0%} of the occupancy grid "
                      f"occupied), and its backward pass; median of {args.repeats}. Each variant in its own process, "
                      f"capped at {args.cap_gib:g} GiB of address space; peak RSS is the whole process's (Python and "
                      "torch included)."])
    print(body)
    write_section("field-memory", "The sd preset's NeRF: memory of a training render, compacted or masked", body,
                  data={"rows": rows})


if __name__ == "__main__":
    main()
