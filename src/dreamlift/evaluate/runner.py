"""`dreamlift eval`: run a prompt suite through generate (or the ceiling fit), score every result, summarise.

    dreamlift eval --suite core-v1 --out results/core-v1 --jobs 2
    dreamlift eval --suite core-v1 --ceiling            # the same NeRF fitted to ground truth

Layout of OUT: one folder per prompt, OUT/<slug>/ (generate's outputs plus score.json), and
the summary OUT/results.json and OUT/results.md (a table per prompt, medians and means).
Resumable: a prompt whose folder holds metrics.json and a finished score.json is skipped; one
with only a checkpoint continues from it (``--resume``); one without is started afresh. With
``--jobs N`` prompts run in N worker processes (spawned, one torch thread each).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ..config import DreamliftError, atomic_write, config_to_dict, option, with_overrides
from .score import ScoreConfig
from .suite import SuitePrompt

__all__ = ["EvalConfig", "run_eval", "summarise", "results_markdown", "SUMMARY_METRICS"]

#: Metrics summarised over a suite (key in score.json, column title, format).
SUMMARY_METRICS: tuple[tuple[str, str, str], ...] = (
    ("iou", "IoU", "{:.3f}"), ("chamfer", "Chamfer", "{:.3f}"), ("delta_e_named", "dE00", "{:.1f}"),
    ("r_precision_colour", "R-P colour", "{:.2f}"), ("r_precision_textureless", "R-P texless", "{:.2f}"),
)
#: Image suites also score held-out novel views against the true object's (dreamlift.evaluate.views).
VIEW_METRICS: tuple[tuple[str, str, str], ...] = (("psnr", "PSNR", "{:.1f}"), ("ssim", "SSIM", "{:.3f}"))


@dataclass
class EvalConfig:
    """Settings of ``dreamlift eval``. Unset (None) generate settings come from the preset."""

    suite: str = option("core-v1", "prompt suite (see dreamlift.evaluate.suite.SUITES)")
    out: Path | None = option(None, "output folder (default: results/<suite>, or results/<suite>-ceiling)")
    preset: Literal["fast", "quality"] = option("fast", "generate preset")
    representation: Literal["nerf", "gaussians"] = option("nerf", "the 3D representation of every run")
    steps: int | None = option(None, "optimisation steps per prompt (default: the preset's)")
    seed: int = option(0, "random seed of every run")
    jobs: int = option(1, "prompts run in parallel worker processes (one torch thread each)")
    ray: str | None = option(None, "run each prompt as a task on a Ray cluster: auto or its ADDRESS, e.g. "
                                   "127.0.0.1:6379 (needs dreamlift[ray])", metavar="ADDRESS")
    num_cpus: float = option(1.0, "Ray: CPUs each prompt asks for (also its torch threads)", low=0.01, high=1024)
    num_gpus: float = option(0.0, "Ray: GPUs each prompt asks for (use with --device cuda)", low=0, high=64)
    ceiling: bool = option(False, "fit the representation to ground-truth renders instead of SDS (its ceiling)")
    text: bool = option(False, "image suites: make each object from its caption with generate instead of from its "
                               "reference image (the text-to-3D comparison)")
    caption: bool = option(False, "image suites: give image-to-3d each object's caption too (the text prior's SDS "
                                  "beside the view-conditioned prior's)")
    force: bool = option(False, "redo prompts that are already finished")
    device: str = option("auto", "cpu, cuda or auto")
    render_scale: float | None = option(None, "generate: render size relative to the prior's")
    num_samples: int | None = option(None, "generate: samples per ray")
    mesh_resolution: int | None = option(None, "generate: marching-cubes grid size")
    video_frames: int | None = option(None, "generate: turntable frames")
    video_resolution: int | None = option(None, "generate: turntable size")
    progress: bool = option(True, "show generate's progress bar (jobs = 1 only)")
    only: tuple[str, ...] = option((), "run and report only these prompts, comma-separated slugs (e.g. a-red-"
                                       "mug,a-blue-chair); R-Precision still ranks the whole suite")
    set: tuple[str, ...] = option((), "generate settings for every prompt, comma-separated KEY=VALUE "
                                  "(dotted for nested ones), e.g. nerf.blob_density=2,area_weight=100")
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def validate(self) -> None:
        from .suite import get_suite

        get_suite(self.suite)
        if self.steps is not None and self.steps <= 0:
            raise DreamliftError(f"--steps must be positive, got {self.steps}")
        if self.jobs < 1:
            raise DreamliftError(f"--jobs must be >= 1, got {self.jobs}")
        self.score.validate()
        self.selected(get_suite(self.suite))
        if self.caption and not self._image_runs(get_suite(self.suite)):
            raise DreamliftError("--caption is for image suites made with image-to-3d (not with --text or --ceiling)")
        from ..generate import _device

        _device(self.device)  # a missing GPU is refused now, not after the first prompt's setup
        if self.set:
            from ..generate import GenerateConfig
            from ..image_to_3d import ImageTo3DConfig

            base = ImageTo3DConfig() if self._image_runs(get_suite(self.suite)) else GenerateConfig()
            with_overrides(base, self.set)  # unknown keys and bad values fail here, before any work

    def _image_runs(self, suite) -> bool:
        """Whether this eval makes its objects with image-to-3d (an image suite, not --ceiling or --text)."""
        return any(p.reference is not None for p in suite) and not (self.ceiling or self.text)

    @property
    def out_dir(self) -> Path:
        mode = "-ceiling" if self.ceiling else "-text" if self.text else "-caption" if self.caption else ""
        return self.out if self.out is not None else Path("results") / (self.suite + mode)

    def selected(self, suite: tuple[SuitePrompt, ...]) -> tuple[SuitePrompt, ...]:
        """The prompts of ``suite`` that ``--only`` names (all of them without it), in the suite's order."""
        if not self.only:
            return suite
        slugs = {p.slug for p in suite}
        unknown = [s for s in self.only if s not in slugs]
        if unknown:
            raise DreamliftError(f"--only: {', '.join(unknown)} not in suite {self.suite} (its slugs: "
                                 f"{', '.join(p.slug for p in suite)})")
        return tuple(p for p in suite if p.slug in self.only)

    def generate_config(self, prompt: SuitePrompt):
        """The GenerateConfig of one suite prompt (its folder OUT/<slug>)."""
        from ..generate import GenerateConfig

        sizes = {k: getattr(self, k) for k in ("steps", "render_scale", "num_samples", "mesh_resolution",
                                               "video_frames", "video_resolution")}
        common = dict(out=self.out_dir / prompt.slug, preset=self.preset, representation=self.representation,
                      seed=self.seed, device=self.device, progress=self.progress and self.jobs == 1 and not self.ray,
                      **sizes)
        if prompt.reference is not None and not (self.ceiling or self.text):
            from ..image_to_3d import ImageTo3DConfig

            az, el = prompt.reference
            caption = dict(prompt=prompt.prompt, accept_rewrite=True) if self.caption else {}
            cfg = ImageTo3DConfig(image=reference_path(self.out_dir, prompt), ref_azimuth=az, ref_elevation=el,
                                  **caption, **common)
        else:
            if prompt.reference is not None and self.ceiling:  # an image suite's ceiling: image-to-3d's level and steps
                from ..image_to_3d import IMAGE_SURFACE_DENSITY, image_steps

                common["surface_density"] = IMAGE_SURFACE_DENSITY
                common["steps"] = image_steps(self.representation, self.preset, self.steps)
            cfg = GenerateConfig(prompt=prompt.prompt, accept_rewrite=True,  # held-out words are part of a suite
                                 **common)
        return with_overrides(cfg, self.set)


def reference_path(out: Path, prompt: SuitePrompt) -> Path:
    """Where eval keeps an image-suite prompt's reference image: OUT/references/<slug>.png."""
    return Path(out) / "references" / f"{prompt.slug}.png"


def _write_references(out: Path, prompts) -> None:
    """Render the reference image of each image-suite prompt that has none yet (``suite.render_reference``)."""
    import io

    from .suite import render_reference

    for p in prompts:
        path = reference_path(out, p)
        if p.reference is not None and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            render_reference(p).save(buf, format="PNG")
            atomic_write(path, buf.getvalue())


def _finished(out: Path) -> dict | None:
    from .score import read_score

    return read_score(out) if (out / "metrics.json").is_file() else None


def run_prompt(gen_cfg, prompt: SuitePrompt, suite: tuple[SuitePrompt, ...], score_cfg: ScoreConfig,
               ceiling: bool, threads: int | None = None, fresh: bool = False) -> dict:
    """Generate (or fit) one prompt into gen_cfg.out if not done yet (or ``fresh``: again from scratch), score
    it, write score.json. -> row."""
    import torch

    from ..executor import orphaned

    if orphaned():  # its eval died: take no new prompt
        os._exit(1)
    if threads is not None:
        torch.set_num_threads(threads)
    from ..generate import resumable_checkpoint, run_generate
    from .ceiling import run_ceiling
    from .score import score_result, write_score

    out = Path(gen_cfg.out)
    t0 = time.perf_counter()
    try:
        if fresh or not (out / "metrics.json").is_file():
            # an interrupted prompt continues from its checkpoint; --force starts it again (OUT's old files stay
            # whole until the new run is swapped in)
            resume = not fresh and resumable_checkpoint(out) is not None
            cfg = replace(gen_cfg, resume=resume, force=True)
            if ceiling:
                run_ceiling(cfg, prompt)
            elif prompt.reference is not None and hasattr(cfg, "image"):
                from ..image_to_3d import run_image_to_3d

                run_image_to_3d(cfg)
            else:
                run_generate(cfg)
        scores = score_result(out, prompt, suite, score_cfg)
        if prompt.reference is not None:  # image suites: held-out novel views against the true object's
            from .score import load_scene
            from .views import novel_view_scores

            scores |= novel_view_scores(load_scene(out)[0], prompt.world_object(), prompt.reference[0])
    except KeyboardInterrupt:
        if orphaned():  # stopped because its eval died (the checkpoint is saved): end the worker
            os._exit(1)
        raise
    except DreamliftError as exc:
        if orphaned():
            os._exit(1)
        return {"prompt": prompt.prompt, "slug": prompt.slug, "error": str(exc)}
    write_score(out, scores)
    return _row(out, scores, time.perf_counter() - t0)


def _row(out: Path, scores: dict, seconds: float | None = None) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    return {**{k: v for k, v in scores.items() if k != "score_config"}, "slug": out.name,
            "steps": metrics.get("steps"), "generate_seconds": metrics.get("seconds", {}).get("total"),
            "wall_seconds": seconds}


def run_eval(cfg: EvalConfig) -> dict:
    """Run ``dreamlift eval``; returns the summary written to OUT/results.json."""
    from .suite import get_suite

    cfg.validate()
    if cfg.ray:  # a Ray worker's working folder is not ours
        cfg = replace(cfg, out=Path(os.path.abspath(cfg.out_dir)))
    suite = get_suite(cfg.suite)
    out = cfg.out_dir
    if out.exists() and not out.is_dir():
        raise DreamliftError(f"{out} exists and is not a folder")
    chosen = cfg.selected(suite)
    if cfg._image_runs(suite):
        _write_references(out, chosen)
    for prompt in chosen:  # fail early on a bad setting, before hours of runs
        cfg.generate_config(prompt).resolved()
    rows: dict[str, dict] = {}
    todo = []
    for prompt in chosen:
        gen_cfg = cfg.generate_config(prompt)
        done = None if cfg.force else _finished(gen_cfg.out)
        if done is not None:
            rows[prompt.slug] = _row(gen_cfg.out, done)
            print(f"[eval] {prompt.prompt}: finished before, skipped", file=sys.stderr)
        else:
            todo.append((gen_cfg, prompt))
    from ..executor import Task, make_executor

    executor = make_executor(cfg.jobs if len(todo) > 1 else 1, cfg.ray, inline_single=True,
                             threads=1 if cfg.jobs > 1 else None)
    tasks = [Task(p.slug, run_prompt, (g, p, suite, cfg.score, cfg.ceiling, None, cfg.force), num_cpus=cfg.num_cpus,
                  num_gpus=cfg.num_gpus) for g, p in todo]
    by_slug = {p.slug: p for _, p in todo}
    t0 = time.perf_counter()
    for outcome in executor.run(tasks):
        prompt = by_slug[outcome.key]
        row = outcome.value if outcome.ok else {"prompt": prompt.prompt, "slug": prompt.slug, "error": outcome.error}
        rows[prompt.slug] = _report({**row, "attempts": outcome.attempts})
    ordered = [rows[p.slug] for p in chosen]
    mode = "ceiling" if cfg.ceiling else "image" if cfg._image_runs(suite) else "sds"
    summary = {"suite": cfg.suite, "mode": mode, "preset": cfg.preset,
               "steps": cfg.steps, "seed": cfg.seed, "wall_seconds": time.perf_counter() - t0,
               "run_now": len(todo),
               "config": config_to_dict(cfg), "aggregate": summarise(ordered), "prompts": ordered}
    atomic_write(out / "results.json", (json.dumps(summary, indent=2) + "\n").encode())
    atomic_write(out / "results.md", results_markdown(summary).encode())
    failed = [r for r in ordered if "error" in r]
    if failed:
        raise DreamliftError(f"{len(failed)} of {len(ordered)} prompts failed (see {out / 'results.md'}); "
                             f"first: {failed[0]['prompt']!r}: {failed[0]['error']}")
    return summary


def _report(row: dict) -> dict:
    if "error" in row:
        print(f"[eval] {row['prompt']}: failed: {row['error']}", file=sys.stderr)
    else:
        print(f"[eval] {row['prompt']}: IoU {row['iou']:.3f}, R-P colour {row['r_precision_colour']:.2f}",
              file=sys.stderr)
    return row


def summarise(rows: list[dict]) -> dict:
    """Mean, median and max of each summary metric and of generate's wall time over the rows that have
    them, and the Janus rate."""
    agg: dict[str, dict] = {}
    for key in (*(k for k, _, _ in SUMMARY_METRICS + VIEW_METRICS), "generate_seconds"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        agg[key] = {"mean": statistics.fmean(vals), "median": statistics.median(vals), "max": max(vals),
                    "n": len(vals)} if vals else None
    janus = [r["janus"]["janus"] for r in rows if r.get("janus")]
    agg["janus_rate"] = {"mean": sum(janus) / len(janus), "n": len(janus)} if janus else None
    agg["failed"] = sum("error" in r for r in rows)
    return agg


def _fmt(fmt: str, v) -> str:
    return "—" if v is None else fmt.format(v)


def results_markdown(summary: dict) -> str:
    """The per-prompt table and the medians/means of a summary as markdown."""
    metrics = SUMMARY_METRICS + (VIEW_METRICS if any("psnr" in r for r in summary["prompts"]) else ())
    head = ["prompt", *(title for _, title, _ in metrics), "turn", "Janus (views)", "steps", "time s"]
    lines = [f"# {summary['suite']} ({summary['mode']}, preset {summary['preset']}, seed {summary['seed']})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary["prompts"]:
        if "error" in r:
            lines.append(f"| {r['prompt']} | failed: {r['error']} |" + " |" * (len(head) - 2))
            continue
        j = r.get("janus")
        janus = "—" if not j else f"{'yes' if j['janus'] else 'no'} ({j['views']})"
        cells = [r["prompt"], *(_fmt(f, r.get(k)) for k, _, f in metrics),
                 _fmt("{:.0f}", r.get("rotation_deg")), janus, str(r.get("steps")),
                 _fmt("{:.0f}", r.get("generate_seconds"))]
        lines.append("| " + " | ".join(cells) + " |")
    agg = summary["aggregate"]
    times = agg.get("generate_seconds")
    for stat in ("median", "mean"):
        cells = [f"**{stat}**", *(_fmt(f, agg[k][stat] if agg.get(k) else None) for k, _, f in metrics), "",
                 _fmt("{:.0%} Janus", agg["janus_rate"]["mean"]) if agg.get("janus_rate") and stat == "mean" else "",
                 "", _fmt("{:.0f}", times[stat] if times else None)
                 + (f" (max {times['max']:.0f})" if times and stat == "mean" else "")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "IoU after the best turn about +y (turn in degrees); Chamfer in object radii; dE00: CIEDE2000 of "
              "the mean albedo on the named-colour parts; R-P: R-Precision of lambertian / textureless orbit "
              "renders under the evaluator; Janus: front-facing categories only, one letter per view "
              "(F front, S side, B back, O overhead); time s: generate's wall time for the prompt (setup, "
              "optimisation, export), from its metrics.json. See dreamlift.evaluate.score."
              + (" PSNR / SSIM: Lambertian renders at 7 held-out cameras round the object against the true "
                 "object's (dreamlift.evaluate.views)." if metrics != SUMMARY_METRICS else ""), ""]
    return "\n".join(lines)


def run_eval_command(cfg: EvalConfig) -> None:
    summary = run_eval(cfg)
    agg = summary["aggregate"]
    print(f"wrote {cfg.out_dir / 'results.md'} and results.json: {len(summary['prompts'])} prompts, "
          f"median IoU {agg['iou']['median']:.3f}, median R-Precision (colour) "
          f"{agg['r_precision_colour']['median']:.2f}")
