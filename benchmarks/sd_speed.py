"""One SDS step of `dreamlift generate` with a Stable-Diffusion-sized denoiser: time per phase, and the step in
units of one guided denoiser call. Writes the section sd-speed of docs/BENCHMARKS.md (sd-speed-sd for --preset sd,
sd-speed-sd-cuda for it on a GPU).

    python benchmarks/sd_speed.py --steps 3                 # this CPU: about 10 minutes
    python benchmarks/sd_speed.py --preset sd --steps 3     # threestudio's settings: 64-px renders, 512 samples
    python benchmarks/sd_speed.py --preset sd --device cuda --steps 50 --warmup 5 \
        --variants compact=on,compile=off compact=off,compile=off compact=off,compile=on   # a GPU (fp16)

No weights can be downloaded, so the model has random weights in Stable Diffusion 2.1 base's architecture
(865M-parameter U-Net at 64x64 latents, the 4-level VAE at 512x512, a 23-layer 1024-d text encoder;
``build_sd_shaped`` in tests/unit/guidance/tiny.py): the arithmetic, and so the time, is the real model's.
The folder is loaded through ``StableDiffusionGuidance``'s real loading code and driven by generate's own
``Generator`` (the preset's field and render, resized to 512 for the VAE), so the phases are the ones
``dreamlift bench`` reports for the built-in prior: render, guidance (VAE encode + the U-Net on the 2B batch,
conditional and unconditional), backward (through the VAE encoder and the field), optimizer, scene (the hooks: the
occupancy grid, the hash grid's levels). Each variant (``--variants``: generate's ``--nerf-compact`` and
``--compile``) loads the folder anew and is timed at ``--progress`` of the run, where every shading is drawn and the
hash grid reads most of its levels. Steps are timed as the training loop takes them: their losses are read
(``Generator.settle``) once at the end.

    python benchmarks/sd_speed.py --from-json FILE          # write the section of a run saved with --json-out (a GPU
                                                            # machine's; or one cut short: its "notes" say how)
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
THREESTUDIO_IT_S = 10000 / (30 * 60)  # threestudio's dreamfusion-sd: about 30 min for 10k steps on an RTX 3090


def measure(folder: Path, device_name: str, steps: int, warmup: int, repeats: int, render: int | None,
            preset: str = "fast", compact: str = "auto", compile: str = "off", progress: float = 0.5) -> dict:
    import torch

    from dreamlift.config import with_overrides
    from dreamlift.generate import GenerateConfig, Generator
    from dreamlift.guidance.backends import load_backend
    from dreamlift.guidance.objectives import SDSObjective

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cfg = GenerateConfig(prompt="a red mug", out=Path("unused"), steps=1000, device=device_name, progress=False,
                         backend="stable-diffusion", preset=preset, compile=compile == "on")
    cfg = with_overrides(cfg, [f"nerf.compact={compact}"])
    t0 = time.perf_counter()
    backend = load_backend("stable-diffusion", str(folder), device, compile=cfg.compile)
    load_s = time.perf_counter() - t0
    cfg = with_overrides(cfg, [] if render is None else [f"render_scale={render / backend.resolution}"]).resolved()
    gen = Generator(cfg, SDSObjective(cfg, backend))
    gen.prepare()
    gen.step = int(progress * cfg.steps)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    gen.train_step()  # the first step: compiles where asked
    sync()
    first_s = time.perf_counter() - t0
    for _ in range(warmup):
        gen.train_step(settle=False)
    gen.settle()
    before = dict(gen.times)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        gen.train_step(settle=False)
    gen.settle()  # the loop reads the losses every few steps; one read here
    sync()
    per_step = (time.perf_counter() - t0) / steps
    phases = {k: (gen.times[k] - before[k]) / steps for k in PHASES}
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

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
    compiled = backend._unet is not None and backend._unet.compiled  # False where compiling failed (eager instead)
    return {"device": device_name, "dtype": str(backend.dtype).replace("torch.", ""), "unet_params": unet_params,
            "resolution": backend.resolution, "render": gen.render_size, "load_s": load_s, "first_step_s": first_s,
            "per_step": per_step, "phases": phases, "call": call, "calls": len(calls), "steps": steps,
            "preset": preset, "num_samples": cfg.num_samples, "compact": compact, "compile": compile,
            "compiled": compiled, "progress": progress, "peak_gib": peak_gib, "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if cuda else None}


def markdown(results: list[dict]) -> str:
    ms = lambda s: f"{1000 * s:.0f}" if s >= 0.01 else f"{1000 * s:.1f}"  # noqa: E731
    rate = lambda v: f"{v:.1f}" if v >= 1 else f"{v:.2g}"  # noqa: E731  (a 69 s step reads 0.014, not 0.0)
    r0 = results[0]
    gpu = r0["device"] != "cpu"
    head = ["preset", "device", "dtype", "U-Net params", "render -> VAE input", "samples/ray", "compact", "compile",
            "ms/step", "steps/s", *(f"{p} ms" for p in PHASES), "guided denoiser call (2B) ms", "step / call",
            *(["peak GiB", "first step s"] if gpu else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        compiled = r.get("compile", "off") + (" (failed: eager)" if r.get("compile") == "on" and not r.get("compiled")
                                              else "")
        row = [r.get("preset", "fast"), r["device"], r["dtype"], f"{r['unet_params'] / 1e6:.0f}M",
               f"{r['render']}^2 -> {r['resolution']}^2", str(r.get("num_samples", "")), r.get("compact", "auto"),
               compiled, ms(r["per_step"]), rate(1 / r["per_step"]), *(ms(r["phases"][p]) for p in PHASES),
               ms(r["call"]), f"{r['per_step'] / r['call']:.1f}",
               *([f"{r['peak_gib']:.1f}", f"{r['first_step_s']:.0f}"] if gpu else [])]
        lines.append("| " + " | ".join(row) + " |")
    notes = [f"Timed {r0['steps']} steps (mean) after {r0.get('warmup', 1)} warm-up steps, at {r0.get('progress', 0.0):.0%} "
             f"of a {r0.get('preset', 'fast')} run, and {r0['calls']} denoiser calls (median); torch threads "
             f"{r0['threads']}; loading the folder took {r0['load_s']:.0f} s. 'guidance' is the VAE encoding of the "
             "render plus the U-Net on the conditional and unconditional batch; 'backward' runs through the VAE "
             "encoder and the field. Random weights in SD 2.1 base's architecture: the timing is the real model's, "
             "the images are not."]
    if gpu:
        best = min(results, key=lambda r: r["per_step"])
        notes.append(f"On the GPU the phases are CUDA-event times. The fastest variant runs {1 / best['per_step']:.1f} "
                     f"steps/s, {best['per_step'] * 10000 / 60:.0f} min for the preset's 10,000 steps; threestudio "
                     f"reports about 30 min for its dreamfusion-sd on an RTX 3090 ({THREESTUDIO_IT_S:.1f} it/s). "
                     "'first step' includes torch.compile's compilation where it is on.")
    return "\n".join([*lines, "", *notes])


def section_name(preset: str, device: str) -> str:
    return "sd-speed" + ("" if preset == "fast" else f"-{preset}") + ("" if device == "cpu" else f"-{device}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed SDS steps")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed denoiser calls alone")
    ap.add_argument("--preset", default="fast", help="generate's preset (sd: threestudio's settings, 64-px renders)")
    ap.add_argument("--render", type=int, default=None,
                    help="NeRF render size, resized to the VAE input (default: 128 for fast, the preset's for sd)")
    ap.add_argument("--progress", type=float, default=None,
                    help="where in the run the steps are timed (default: 0.5 for sd, 0 for fast)")
    ap.add_argument("--variants", nargs="+", default=["compact=auto,compile=off"],
                    help="settings to compare, each KEY=VALUE,... of compact (on|off|auto) and compile (on|off)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model instead (checks the script; no figures)")
    ap.add_argument("--json-out", type=Path, help="also write the results and the run's stamp to this file")
    ap.add_argument("--from-json", type=Path, help="write the section of a run saved with --json-out, and stop")
    args = ap.parse_args()
    if args.from_json is not None:
        import json

        saved = json.loads(args.from_json.read_text())
        r0 = saved["results"][0]
        notes = saved.get("notes", [])  # what happened to the run beyond its figures (a variant killed, say)
        write_section(section_name(r0["preset"], r0["device"]), saved["title"],
                      "\n\n".join([markdown(saved["results"]), *notes]),
                      data={"results": saved["results"], "notes": notes}, ran=saved["ran"])
        return
    import torch

    from report import run_stamp

    from tests.unit.guidance.tiny import SD21_BASE, build_sd_shaped

    variants = [dict(kv.split("=", 1) for kv in v.split(",")) for v in args.variants]
    progress = args.progress if args.progress is not None else (0.5 if args.preset != "fast" else 0.0)
    results = []
    title = f"Generate with a Stable-Diffusion-sized denoiser ({args.device}, preset {args.preset})"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = build_sd_shaped(Path(tmp) / "sd21-shaped", **(TINY if args.tiny else SD21_BASE),
                                 dtype=torch.float16)
        print(f"built the random SD-shaped folder in {time.perf_counter() - t0:.0f} s", flush=True)
        render = args.render if args.render is not None or args.preset == "sd" else 128
        for v in variants:
            result = measure(folder, args.device, args.steps, args.warmup, args.repeats, render, args.preset,
                             compact=v.get("compact", "auto"), compile=v.get("compile", "off"), progress=progress)
            result["warmup"] = args.warmup
            results.append(result)
            print(markdown([result]).split("\n\n")[0], flush=True)
            if args.json_out is not None:  # after each variant: a run cut short keeps what it measured
                import json

                args.json_out.write_text(json.dumps({"title": title, "ran": run_stamp(), "results": results},
                                                    indent=1, default=str))
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    table = markdown(results)
    print(table)
    if args.tiny:
        return
    write_section(section_name(args.preset, args.device), title, table, data={"results": results})


if __name__ == "__main__":
    main()
