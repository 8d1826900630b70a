"""`dreamlift bench`: how fast is generate, per preset and device, and where does a step's time go?

    dreamlift bench --presets fast,quality --steps 50

For each preset and device (cpu, and cuda when there is one) in a fresh process:
``warmup`` untimed steps, then ``steps`` timed steps of :class:`dreamlift.generate.Generator`
with the built-in prior, reporting steps/s, the per-phase split of ``Generator.times``
(render, guidance, backward, optimizer, scene: the representation's hooks, e.g. the NeRF's occupancy grid), peak memory (max RSS of the process on
the CPU, ``torch.cuda.max_memory_allocated`` on a GPU), the estimated training time of one
prompt at the preset's full step count, and the cost of a full SDS step in units of one
guided denoiser call (``backend.predict_eps`` on the 2B batch, conditional + unconditional,
timed alone). Only training is timed; exporting (mesh, video) is not part of a step.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import DreamliftError, atomic_write, option

__all__ = ["BenchConfig", "run_bench", "bench_one", "bench_markdown"]

PHASES = ("render", "guidance", "backward", "optimizer", "scene")


@dataclass
class BenchConfig:
    """Settings of ``dreamlift bench``."""

    presets: tuple[str, ...] = option(("fast", "quality"), "presets to measure, comma-separated")
    representations: tuple[str, ...] = option(("nerf",), "representations to measure, comma-separated (nerf, "
                                              "gaussians)")
    steps: int = option(50, "timed optimisation steps per preset")
    warmup: int = option(3, "untimed steps first (allocations, caches)")
    repeats: int = option(10, "timed denoiser calls (median)")
    prompt: str = option("a red mug", "the prompt being optimised")
    device: str = option("auto", "cpu, cuda, or auto (the CPU, plus CUDA when available)")
    render_scale: float | None = option(None, "override the presets' render scale (for quick checks)")
    num_samples: int | None = option(None, "override the presets' samples per ray (for quick checks)")
    isolate: bool = option(True, "measure each preset in a fresh process, so peak memory is its own")
    out: Path | None = option(None, "also write bench.json and bench.md into this folder")

    def validate(self) -> None:
        from ..generate import PRESET_BACKENDS

        builtin = [p for p, backend in PRESET_BACKENDS.items() if backend is None]  # bench runs the built-in prior
        bad = [p for p in self.presets if p not in builtin]
        if bad or not self.presets:
            raise DreamliftError(f"unknown preset(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(builtin)}"
                                 + (" (sd and if: benchmarks/sd_speed.py)" if set(bad) & {"sd", "if"} else ""))
        if self.steps <= 0 or self.repeats <= 0 or self.warmup < 0:
            raise DreamliftError("--steps and --repeats must be positive and --warmup >= 0")
        from ..scene import REPRESENTATIONS

        unknown = [r for r in self.representations if r not in REPRESENTATIONS]
        if unknown or not self.representations:
            raise DreamliftError(f"unknown representation(s) {', '.join(unknown) or '(none given)'}; choose from "
                                 f"{', '.join(REPRESENTATIONS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise DreamliftError(f"--device must be cpu, cuda or auto, got {self.device!r}")

    def devices(self) -> list[str]:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise DreamliftError("--device cuda was asked for but no CUDA GPU is available")
        if self.device == "auto":
            return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
        return [self.device]


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_one(cfg: BenchConfig, preset: str, device_name: str, threads: int | None = None,
              representation: str = "nerf") -> dict:
    """Measure one preset on one device in this process. -> a row (see the module docstring)."""
    import resource

    import torch

    from ..generate import PRESETS, GenerateConfig, Generator
    from ..guidance.backends import load_backend

    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    backend = load_backend("builtin", None, device)
    gcfg = GenerateConfig(prompt=cfg.prompt, out=Path("unused"), preset=preset, representation=representation,
                          steps=cfg.warmup + cfg.steps,
                          device=device_name, progress=False, render_scale=cfg.render_scale,
                          num_samples=cfg.num_samples).resolved()
    from ..guidance.objectives import make_objective

    gen = Generator(gcfg, make_objective(gcfg, backend))
    gen.prepare()  # the area prior's samples: part of setup, as in generate
    setup = time.perf_counter() - t0
    for _ in range(cfg.warmup):
        gen.train_step()
    before = dict(gen.times)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        gen.train_step()
    _sync(device)
    per_step = (time.perf_counter() - t0) / cfg.steps
    phases = {k: 1000 * (gen.times[k] - before[k]) / cfg.steps for k in PHASES}

    # One guided denoiser call: the 2B batch (conditional + unconditional) that sds_step sends.
    B, res = gcfg.batch_size, backend.resolution
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * B, 3, res, res, generator=g).to(device)
    t = torch.randint(20, 980, (2 * B,), generator=g).to(device)
    cond = backend.encode_text([f"{cfg.prompt}, front view"] * B + [""] * B)
    backend.predict_eps(x, t, cond)  # warm
    calls = []
    for _ in range(cfg.repeats):
        _sync(device)
        c0 = time.perf_counter()
        backend.predict_eps(x, t, cond)
        _sync(device)
        calls.append(time.perf_counter() - c0)
    call = statistics.median(calls)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    from ..generate import REPRESENTATION_PRESETS

    full_steps = int(REPRESENTATION_PRESETS.get(representation, {}).get(preset, PRESETS[preset])["steps"])
    return {"preset": preset, "representation": representation, "device": device_name, "render_size": gen.render_size, "batch": B,
            "num_samples": gcfg.num_samples, "steps_timed": cfg.steps, "steps_per_s": 1.0 / per_step,
            "ms_per_step": 1000 * per_step, "ms_per_phase": phases, "peak_memory_mib": peak_mib,
            "memory_kind": "max allocated (CUDA)" if device.type == "cuda" else "max RSS (process)",
            "denoiser_call_ms": 1000 * call, "step_over_call": per_step / call, "setup_s": setup,
            "full_steps": full_steps, "est_train_minutes_per_prompt": (setup + full_steps * per_step) / 60,
            "torch_threads": torch.get_num_threads()}


def run_bench(cfg: BenchConfig) -> dict:
    """Measure every preset x device; returns {"rows": [...], "markdown": str} (and writes OUT files)."""
    import torch

    cfg.validate()
    threads = torch.get_num_threads()
    rows = []
    for device in cfg.devices():
        for representation in cfg.representations:
            for preset in cfg.presets:
                if cfg.isolate:
                    import multiprocessing as mp
                    from concurrent.futures import ProcessPoolExecutor

                    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                        rows.append(pool.submit(bench_one, cfg, preset, device, threads, representation).result())
                else:
                    rows.append(bench_one(cfg, preset, device, threads, representation))
    result = {"rows": rows, "markdown": bench_markdown(rows)}
    if cfg.out is not None:
        atomic_write(cfg.out / "bench.json", (json.dumps(rows, indent=2) + "\n").encode())
        atomic_write(cfg.out / "bench.md", result["markdown"].encode())
    return result


def bench_markdown(rows: list[dict]) -> str:
    """A markdown table of bench rows."""
    head = ["representation", "preset", "device", "render", "batch x samples", "steps/s", "ms/step", *(f"{p} ms" for p in PHASES),
            "peak memory", "denoiser call (2B)", "step / call", "est. train min/prompt (steps)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.get("representation", "nerf"), r["preset"], r["device"], f"{r['render_size']}^2", f"{r['batch']} x {r['num_samples']}",
                 f"{r['steps_per_s']:.2f}", f"{r['ms_per_step']:.0f}",
                 *(f"{r['ms_per_phase'][p]:.0f}" for p in PHASES),
                 f"{r['peak_memory_mib']:.0f} MiB ({r['memory_kind']})", f"{r['denoiser_call_ms']:.1f} ms",
                 f"{r['step_over_call']:.1f}", f"{r['est_train_minutes_per_prompt']:.1f} ({r['full_steps']})"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Timed {rows[0]['steps_timed']} steps per row after warm-up, torch threads "
              f"{rows[0]['torch_threads']}; phases from Generator.times; 'step / call' is a whole SDS step "
              "in units of one guided denoiser call on the 2B batch.", ""]
    return "\n".join(lines)


def run_bench_command(cfg: BenchConfig) -> None:
    result = run_bench(cfg)
    print(result["markdown"])
