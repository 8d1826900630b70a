"""One SDS step of `dreamlift generate` with a Stable-Diffusion-sized denoiser: time per phase, and the step in
units of one guided denoiser call. Writes the section sd-speed of docs/BENCHMARKS.md.

    python benchmarks/sd_speed.py --steps 3                 # this CPU: about 10 minutes
    python benchmarks/sd_speed.py --steps 20 --device cuda  # a GPU machine (fp16)
    python benchmarks/sd_speed.py --preset sd --steps 3     # threestudio's settings: 64-px renders, 512 samples (section sd-speed-sd)

No weights can be downloaded, so the model has random weights in Stable Diffusion 2.1 base's architecture
(865M-parameter U-Net at 64x64 latents, the 4-level VAE at 512x512, a 23-layer 1024-d text encoder;
``build_sd_shaped`` in tests/unit/guidance/tiny.py): the arithmetic, and so the time, is the real model's.
The folder is loaded through ``StableDiffusionGuidance``'s real loading code and driven by generate's own
``Generator`` (fast preset NeRF, its render resized to 512 for the VAE), so the phases are the ones
``dreamlift bench`` reports for the built-in prior: render, guidance (VAE encode + the U-Net on the 2B batch,
conditional and unconditional), backward (through the VAE encoder and the NeRF), optimizer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from report import ROOT, write_section

sys.path.insert(0, str(ROOT))  # the model builder lives with the tests' other random-model builders

PHASES = ("render", "guidance", "backward", "optimizer", "scene")
TINY = dict(unet_channels=(32, 64), heads=(2, 4), text_dim=32, text_layers=2, vae_channels=(32, 64), latent_size=16)


def measure(folder: Path, device_name: str, steps: int, warmup: int, repeats: int, render: int | None,
            preset: str = "fast") -> dict:
    import torch

    from dreamlift.generate import GenerateConfig, Generator
    from dreamlift.guidance.backends import load_backend

    device = torch.device(device_name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    backend = load_backend("stable-diffusion", str(folder), device)
    load_s = time.perf_counter() - t0
    cfg = GenerateConfig(prompt="a red mug", out=Path("unused"), steps=warmup + steps, device=device_name,
                         progress=False, backend="stable-diffusion", preset=preset,
                         render_scale=None if render is None else render / backend.resolution).resolved()
    from dreamlift.guidance.objectives import SDSObjective

    gen = Generator(cfg, SDSObjective(cfg, backend))
    for _ in range(warmup):
        gen.train_step()
    before = dict(gen.times)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        gen.train_step()
    sync()
    per_step = (time.perf_counter() - t0) / steps
    phases = {k: (gen.times[k] - before[k]) / steps for k in PHASES}

    g = torch.Generator().manual_seed(0)
    h = backend.resolution // backend.vae_scale_factor
    x = torch.randn(2, 4, h, h, generator=g).to(device)
    t = torch.tensor([500, 500], device=device)
    cond = backend.encode_text(["a red mug, front view", ""])
    backend.predict_eps(x, t, cond)  # warm
    calls = []
    for _ in range(repeats):
        sync()
        c0 = time.perf_counter()
        backend.predict_eps(x, t, cond)
        sync()
        calls.append(time.perf_counter() - c0)
    call = statistics.median(calls)
    unet_params = sum(p.numel() for p in backend.unet.parameters())
    return {"device": device_name, "dtype": str(backend.dtype).replace("torch.", ""), "unet_params": unet_params,
            "resolution": backend.resolution, "render": gen.render_size, "load_s": load_s, "per_step": per_step,
            "phases": phases, "call": call, "calls": len(calls), "steps": steps, "preset": preset,
            "num_samples": cfg.num_samples,
            "threads": torch.get_num_threads()}


def markdown(r: dict) -> str:
    ms = lambda s: f"{1000 * s:.0f}"  # noqa: E731
    head = ["preset", "device", "dtype", "U-Net params", "render -> VAE input", "samples/ray", "ms/step",
            *(f"{p} ms" for p in PHASES), "guided denoiser call (2B) ms", "step / call"]
    row = [r.get("preset", "fast"), r["device"], r["dtype"], f"{r['unet_params'] / 1e6:.0f}M",
           f"{r['render']}^2 -> {r['resolution']}^2", str(r.get("num_samples", "")),
           ms(r["per_step"]), *(ms(r["phases"][p]) for p in PHASES), ms(r["call"]), f"{r['per_step'] / r['call']:.1f}"]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(row) + " |", "",
                      f"Timed {r['steps']} steps after warm-up (mean) and {r['calls']} denoiser calls (median), "
                      f"torch threads {r['threads']}; loading the folder took {r['load_s']:.0f} s. 'guidance' is "
                      "the VAE encoding of the render plus the U-Net on the conditional and unconditional batch; "
                      "'backward' runs through the VAE encoder and the NeRF. Random weights in SD 2.1 base's "
                      "architecture: the timing is the real model's, the images are not."])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed SDS steps")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed denoiser calls alone")
    ap.add_argument("--preset", default="fast", help="generate's preset (sd: threestudio's settings, 64-px renders)")
    ap.add_argument("--render", type=int, default=None,
                    help="NeRF render size, resized to the VAE input (default: 128 for fast, the preset's for sd)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model instead (checks the script; no figures)")
    args = ap.parse_args()
    import torch

    from tests.unit.guidance.tiny import SD21_BASE, build_sd_shaped

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = build_sd_shaped(Path(tmp) / "sd21-shaped", **(TINY if args.tiny else SD21_BASE),
                                 dtype=torch.float16)
        print(f"built the random SD-shaped folder in {time.perf_counter() - t0:.0f} s", flush=True)
        render = args.render if args.render is not None or args.preset == "sd" else 128
        result = measure(folder, args.device, args.steps, args.warmup, args.repeats, render, args.preset)
    table = markdown(result)
    print(table)
    if args.tiny:
        return
    name = "sd-speed" if args.preset == "fast" else f"sd-speed-{args.preset}"
    write_section(name, f"Generate with a Stable-Diffusion-sized denoiser ({args.device}, preset {args.preset})", table,
                  data=result)


if __name__ == "__main__":
    main()
