"""`dreamlift batch`: many prompts, one generate run each, on local worker processes or a Ray cluster.

    dreamlift batch prompts.txt --out runs/ --jobs 2 --steps 500
    dreamlift batch prompts.jsonl --out runs/ --ray 127.0.0.1:6379 --num-cpus 4

PROMPTS is a text file (one prompt a line; blank lines and lines starting with # are skipped) or JSONL (one
object a line: ``{"prompt": "a red mug", "steps": 300, "nerf": {"blob_density": 2}}``, settings named as
generate's options with underscores, nested or dotted; ``num_cpus`` / ``num_gpus`` set that run's Ray
resources). generate's options given on the command line apply to every line that does not set its own.

Each prompt runs into OUT/<slug>/ (``-2``, ``-3`` ... for repeats). Resumable: a rerun skips the finished runs
and resumes the interrupted ones from their checkpoints. A run whose worker dies is run once more; a prompt that
fails (refused, a bad setting, a NaN) is recorded with its one-line error and the others go on. At the end
OUT/summary.json (``{"runs": [{"prompt", "status": "ok" | "error", "error", "seconds", ...}]}``) and
OUT/summary.md (a table); the exit code is 1 when any prompt failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import (DreamliftError, add_config_arguments, atomic_write, check_output_folder, check_values,
                     config_from_args, option, with_overrides)

__all__ = ["BatchConfig", "BatchLine", "read_prompts", "run_batch", "run_one", "summary_markdown"]

# generate's options that belong to the batch itself (each line's folder, resumption, the progress display)
_NOT_PER_LINE = ("prompt", "out", "resume", "force", "progress")
_RESOURCES = ("num_cpus", "num_gpus")


def _generate_config_class():
    from .generate import GenerateConfig

    return GenerateConfig


@dataclass
class BatchConfig:
    """Settings of ``dreamlift batch``; ``base`` holds the generate options given on the command line."""

    OPTION_GROUPS = ("the batch",)

    prompts: Path | None = option(None, "a text file (one prompt a line) or JSONL (one object a line: a prompt "
                                        "and any generate settings)", positional=True)
    out: Path | None = option(None, "output folder, one subfolder per prompt (default: outputs/<PROMPTS name>)",
                              group="the batch")
    jobs: int = option(1, "runs at once in local worker processes", group="the batch", low=1, high=256)
    ray: str | None = option(None, "run each prompt as a task on a Ray cluster: auto (the one `ray start` made "
                                   "here) or its ADDRESS, e.g. 127.0.0.1:6379 (needs dreamlift[ray])",
                             group="the batch", metavar="ADDRESS")
    num_cpus: float = option(1.0, "Ray: CPUs each run asks for (also its torch threads)", group="the batch",
                             low=0.01, high=1024)
    num_gpus: float = option(0.0, "Ray: GPUs each run asks for (use with --device cuda)", group="the batch",
                             low=0, high=64)
    force: bool = option(False, "run finished prompts again (their old outputs stay until the new ones are "
                                "written)", group="the batch")
    progress: bool = option(True, "show a progress bar over the prompts", group="the batch")
    base: object = field(default=None, metadata={"cli": False, "flat": True})  # a GenerateConfig: the command line's settings

    # ------------------------------------------------------------------ the CLI's extra options
    @staticmethod
    def add_extra_arguments(parser: argparse.ArgumentParser, show_expert: bool) -> None:
        """generate's options (not its prompt, out, resume, force, progress): they apply to every line."""
        add_config_arguments(parser, _generate_config_class(), skip=_NOT_PER_LINE, show_expert=show_expert)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> BatchConfig:
        cfg = config_from_args(cls, ns)
        return replace(cfg, base=config_from_args(_generate_config_class(), ns))

    @property
    def out_dir(self) -> Path:
        if self.out is not None:
            return self.out
        return Path("outputs") / (Path(self.prompts).stem if self.prompts is not None else "batch")

    def validate(self) -> None:
        check_values(self)
        if self.prompts is None:
            raise DreamliftError("name a PROMPTS file (one prompt a line, or JSONL)")
        path = Path(self.prompts)
        if not path.exists():
            raise DreamliftError(f"PROMPTS {path} does not exist")
        if not path.is_file():
            raise DreamliftError(f"PROMPTS {path} is not a file")
        if self.jobs < 1:
            raise DreamliftError(f"--jobs must be >= 1, got {self.jobs}")
        check_output_folder(self.out_dir, "--out")


@dataclass
class BatchLine:
    """One prompt of the file: its settings resolved into a GenerateConfig, or the error that stops it."""

    number: int  # line number in the file (1-based)
    prompt: str
    slug: str
    config: object | None = None  # GenerateConfig
    error: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0


def _json_value(key: str, value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise DreamliftError(f"setting {key!r} must be a number, text, true/false or null, got {json.dumps(value)}")


def _flatten(obj: dict, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for k, v in obj.items():
        if isinstance(v, dict):
            items += _flatten(v, f"{prefix}{k}.")
        else:
            items.append((prefix + str(k), v))
    return items


def _parse_line(text: str, jsonl: bool) -> tuple[str, list[str], dict]:
    """-> (prompt, KEY=VALUE settings, Ray resources) of one line. Raises DreamliftError."""
    if not jsonl:
        return text.strip(), [], {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DreamliftError(f"not a JSON object ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DreamliftError("not a JSON object")
    prompt = obj.pop("prompt", None)
    if not isinstance(prompt, str):
        raise DreamliftError('no "prompt" text in this line')
    resources = {}
    for k in _RESOURCES:
        if k in obj:
            v = obj.pop(k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1024:
                raise DreamliftError(f"{k} must be a number in [0, 1024], got {json.dumps(v)}")
            resources[k] = float(v)
    items = []
    for key, value in _flatten(obj):
        if key.split(".")[0] in _NOT_PER_LINE:
            raise DreamliftError(f"{key!r} cannot be set per line (the batch sets each run's folder and resumption)")
        items.append(f"{key}={_json_value(key, value)}")
    return prompt, items, resources


def read_prompts(cfg: BatchConfig) -> list[BatchLine]:
    """The prompts of PROMPTS, each with its GenerateConfig into OUT/<slug> or its error. Raises DreamliftError
    for a file that cannot be read at all (not text, no prompts)."""
    from .generate import _slug

    path = Path(cfg.prompts)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DreamliftError(f"PROMPTS {path} is not UTF-8 text") from None
    rows = [(i + 1, line) for i, line in enumerate(text.splitlines())
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise DreamliftError(f"PROMPTS {path} holds no prompts")
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or rows[0][1].lstrip().startswith("{")
    out = Path(os.path.abspath(cfg.out_dir))  # absolute: a Ray worker's working folder is not ours
    seen: dict[str, int] = {}
    lines = []
    for number, raw in rows:
        prompt, items, resources, error = raw.strip(), [], {}, None
        try:
            prompt, items, resources = _parse_line(raw, jsonl)
        except DreamliftError as exc:
            error = str(exc)
        slug = _slug(prompt) if error is None and prompt.strip() else f"line-{number}"
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}-{seen[slug]}"
        line = BatchLine(number, prompt, slug, num_cpus=resources.get("num_cpus", cfg.num_cpus),
                         num_gpus=resources.get("num_gpus", cfg.num_gpus), error=error)
        if error is None:
            try:
                gen = with_overrides(replace(cfg.base, prompt=prompt, out=out / slug, progress=False), items)
                gen.resolved()  # an empty prompt, a value out of range: recorded now, before any run
                line.config = gen
            except DreamliftError as exc:
                line.error = str(exc)
        lines.append(line)
    return lines


def run_one(cfg, fresh: bool = False) -> dict:
    """One generate run into cfg.out (in a worker): skipped if finished, resumed from its checkpoint if
    interrupted. -> {"metrics": ...}; a failure raises (the executor records its one-line message)."""
    from .generate import resumable_checkpoint, run_generate

    out = Path(cfg.out)
    if not fresh and (out / "metrics.json").is_file():
        return {"metrics": json.loads((out / "metrics.json").read_text()), "skipped": True}
    resume = not fresh and resumable_checkpoint(out) is not None
    metrics = run_generate(replace(cfg, resume=resume, force=True))
    return {"metrics": metrics, "resumed": resume}


def _run_record(line: BatchLine, status: str, error: str | None = None, metrics: dict | None = None,
                **extra) -> dict:
    rec = {"prompt": line.prompt, "slug": line.slug, "line": line.number, "status": status, "error": error,
           "seconds": None, "out": str(line.config.out) if line.config is not None else None, **extra}
    if metrics:
        seconds = metrics.get("seconds", {})
        losses = metrics.get("final_losses", {})
        rec.update(seconds=seconds.get("total"), train_seconds=seconds.get("train"), steps=metrics.get("steps"),
                   final_sds=losses.get("sds"), conditioning_prompt=metrics.get("conditioning_prompt"))
    return rec


def run_batch(cfg: BatchConfig) -> dict:
    """Run ``dreamlift batch``; returns the summary written to OUT/summary.json."""
    from .executor import Task, make_executor
    from .interrupt import Interrupted

    cfg.validate()
    lines = read_prompts(cfg)
    out = cfg.out_dir
    records: dict[int, dict] = {}
    tasks = []
    for line in lines:
        if line.error is not None:
            records[line.number] = _run_record(line, "error", line.error)
            print(f"[batch] line {line.number} ({line.prompt[:60]!r}): {line.error}", file=sys.stderr)
        elif not cfg.force and (line.config.out / "metrics.json").is_file():
            metrics = json.loads((line.config.out / "metrics.json").read_text())
            records[line.number] = _run_record(line, "ok", metrics=metrics, skipped=True)
        else:
            tasks.append(Task(str(line.number), run_one, (line.config, cfg.force), num_cpus=line.num_cpus,
                              num_gpus=line.num_gpus))
    executor = make_executor(cfg.jobs, cfg.ray) if tasks else None
    by_number = {line.number: line for line in lines}
    skipped = sum(1 for r in records.values() if r.get("skipped"))
    print(f"[batch] {len(lines)} prompts: {skipped} finished before, {len(lines) - len(records)} to run"
          + (f" on {executor.name}" if executor else ""), file=sys.stderr)
    bar = None
    if cfg.progress and tasks:
        from tqdm import tqdm

        bar = tqdm(total=len(lines), initial=len(records), desc="batch", unit="prompt", dynamic_ncols=True)
    t0 = time.perf_counter()
    interrupted = None
    try:
        for outcome in (executor.run(tasks) if executor else ()):
            line = by_number[int(outcome.key)]
            common = dict(attempts=outcome.attempts, task_seconds=outcome.seconds)
            if outcome.ok:
                records[line.number] = _run_record(line, "ok", metrics=outcome.value["metrics"],
                                                   resumed=outcome.value.get("resumed", False), **common)
            else:
                records[line.number] = _run_record(line, "error", outcome.error, **common)
                print(f"[batch] {line.prompt[:60]!r}: {outcome.error}", file=sys.stderr)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt as exc:
        interrupted = exc
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    for line in lines:
        records.setdefault(line.number, _run_record(line, "interrupted", "the batch was interrupted first"))
    runs = [records[line.number] for line in lines]
    summary = {"prompts_file": str(cfg.prompts), "out": str(out), "executor": executor.name if executor else None,
               "wall_seconds": wall, "ran_now": len(tasks), "ok": sum(r["status"] == "ok" for r in runs),
               "failed": sum(r["status"] == "error" for r in runs), "runs": runs}
    atomic_write(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    atomic_write(out / "summary.md", summary_markdown(summary).encode())
    if interrupted is not None:
        raise Interrupted(f"interrupted ({' '.join(str(interrupted).split()) or 'Ctrl-C'}); {summary['ok']} prompts "
                          f"finished; run the same command again to continue (finished runs are skipped, "
                          "interrupted ones resume from their checkpoints)")
    return summary


def _fmt(v, f: str) -> str:
    return "—" if v is None else f.format(v)


def summary_markdown(summary: dict) -> str:
    head = ["prompt", "status", "time s", "steps", "final SDS loss", "attempts", "folder or error"]
    lines = [f"# Batch {summary['prompts_file']}", "",
             f"{summary['ok']} ok, {summary['failed']} failed, {len(summary['runs'])} in all; run on "
             f"{summary['executor'] or 'nothing (all finished before)'}; wall time {summary['wall_seconds']:.0f} s "
             f"for the {summary['ran_now']} run now.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary["runs"]:
        where = r["slug"] + "/" if r["status"] == "ok" else (r["error"] or "").replace("|", "\\|")
        cells = [r["prompt"].replace("|", "\\|") or "(empty)", r["status"] + (" (before)" if r.get("skipped") else ""),
                 _fmt(r.get("seconds"), "{:.0f}"), _fmt(r.get("steps"), "{}"), _fmt(r.get("final_sds"), "{:.4g}"),
                 _fmt(r.get("attempts"), "{}"), where]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "time s: generate's wall time for the prompt (setup, optimisation, export), from its metrics.json.", ""]
    return "\n".join(lines)


def run_batch_command(cfg: BatchConfig) -> int:
    summary = run_batch(cfg)
    out = cfg.out_dir
    print(f"wrote {out / 'summary.json'} and summary.md: {summary['ok']} ok, {summary['failed']} failed "
          f"of {len(summary['runs'])} prompts")
    return 1 if summary["failed"] else 0
