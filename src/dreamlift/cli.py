"""The ``dreamlift`` command line, generated from the config dataclasses.

Only argparse and the config helpers are imported at start-up, so ``dreamlift --help``
answers instantly; each subcommand imports torch and friends when it runs.
Errors in the user's input are reported on one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from . import __version__
from .config import (EXPERT, DreamliftError, HelpFormatter, OneLineParser, _printable, add_config_arguments, check_values,
                     config_from_args)

__all__ = ["main", "build_parser"]


def _demo2d(cfg) -> None:
    from .demo2d import run_demo2d

    metrics = run_demo2d(cfg, progress=sys.stderr.isatty())
    print(f"saved {cfg.out} and {cfg.out.with_suffix('.json')}")
    print(f"sliced Wasserstein distance to the target (mean over classes): {metrics['swd_mean']:.4f} "
          f"(two target draws differ by {metrics['swd_floor_mean']:.4f}); samples nearest their own "
          f"component: >= {metrics['nearest_own_component_min']:.1%} in every class")


def _generate(cfg) -> None:
    from .export.outputs import written
    from .generate import run_generate

    m = run_generate(cfg)
    print(f"wrote {written(m['out'])} ({m['steps']} steps in {m['seconds']['train']:.0f} s, "
          f"total {m['seconds']['total']:.0f} s)")


def _lazy(module: str, name: str) -> Callable:
    """A function that imports dreamlift.<module> and returns its attribute ``name``."""

    def load():
        import importlib

        return getattr(importlib.import_module(f"dreamlift.{module}"), name)

    return load


def _call(module: str, name: str) -> Callable:
    return lambda cfg: _lazy(module, name)()(cfg)


# subcommand -> (help, config class loader, runner(config)). One explicit table: grep a command to its code.
COMMANDS: dict[str, tuple[str, Callable[[], type], Callable]] = {
    "generate": ("text to 3D: optimise a NeRF or 3D Gaussians by score distillation from a 2D prior; write a "
                 "mesh (glb, obj), a turntable video, views and metrics to OUT", _lazy("generate", "GenerateConfig"),
                 _generate),
    "image-to-3d": ("image to 3D: one view of an object in, a NeRF or 3D Gaussians out, by score distillation from "
                    "the view-conditioned prior; the same outputs as generate", _lazy("image_to_3d", "ImageTo3DConfig"),
                    _call("image_to_3d", "run_image_to_3d")),
    "demo2d": ("train and sample a conditional DDPM on labelled 2D rings and clusters (seconds on a CPU)",
               _lazy("demo2d", "Demo2DConfig"), _demo2d),
    "sample": ("text-to-image with the built-in prior: save a grid of samples of PROMPT",
               _lazy("prior.commands", "SampleConfig"), _call("prior.commands", "run_sample")),
    "train-prior": ("train (or resume) the built-in prior on world views or a folder of image + .txt pairs",
                    _lazy("prior.train", "TrainPriorConfig"), _call("prior.commands", "run_train")),
    "export-prior": ("turn a train-prior or train-novel-view checkpoint into shippable weights (fp16 safetensors "
                     "+ json)", _lazy("prior.commands", "ExportPriorConfig"), _call("prior.commands", "run_export")),
    "train-novel-view": ("train (or resume) the view-conditioned prior on world view sets (Zero-1-to-3's recipe)",
                         _lazy("prior.novel_view", "TrainNovelViewConfig"),
                         _call("prior.commands", "run_train_novel_view")),
    "novel-view": ("draw an object in a reference image from another camera with the view-conditioned prior",
                   _lazy("prior.commands", "NovelViewConfig"), _call("prior.commands", "run_novel_view")),
    "make-dataset": ("render a dataset of captioned views of the procedural world (sharded .npz)",
                     _lazy("world.dataset", "MakeDatasetConfig"), _call("world.dataset", "run_make_dataset")),
    "eval": ("run a prompt suite through generate (or --ceiling: a fit to ground truth), score each result "
             "against its true object (IoU, Chamfer, colour, R-Precision, Janus); write results.json/.md",
             _lazy("evaluate.runner", "EvalConfig"), _call("evaluate.runner", "run_eval_command")),
    "bench": ("measure generate's speed per preset and device: steps/s, time per phase, peak memory, "
              "SDS step vs one denoiser call", _lazy("evaluate.bench", "BenchConfig"),
              _call("evaluate.bench", "run_bench_command")),
    "batch": ("run many prompts (a text file or JSONL), one generate run each, on local worker processes or a "
              "Ray cluster; resumable; write OUT/summary.json and summary.md", _lazy("batch", "BatchConfig"),
              _call("batch", "run_batch_command")),
    "app": ("start the web app: a prompt box, live progress, the result in an interactive 3D viewer, a gallery "
            "of earlier runs (needs dreamlift[app])", _lazy("app", "AppConfig"), _call("app", "run_app_command")),
    "train-evaluator": ("train the independent category/colour/view classifier on ground-truth renders",
                        _lazy("evaluate.classifier", "TrainEvaluatorConfig"),
                        _call("evaluate.classifier", "run_train_evaluator")),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser. Only the chosen subcommand's config module is imported."""
    parser = OneLineParser(
        prog="dreamlift",
        description="Text-to-3D by Score Distillation Sampling on a from-first-principles DDPM core.",
    )
    parser.add_argument("--version", action="version", version=f"dreamlift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in (argv or []) if a in COMMANDS), None)
    for name, (help_text, load_config, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == chosen:  # building every subcommand's options would import all of dreamlift
            show_expert = "--help-all" in argv
            cls = load_config()
            add_config_arguments(p, cls, show_expert=show_expert)
            if hasattr(cls, "add_extra_arguments"):  # batch: generate's options too
                cls.add_extra_arguments(p, show_expert)
            positional = [a.metavar or a.dest for a in p._actions if not a.option_strings]
            p.usage = " ".join(["%(prog)s [options]", *positional])
            expert = [g.title for g in p._action_groups if (g.title or "").startswith(EXPERT)]
            if expert:
                p.add_argument("--help-all", action="help", help="show this help with the expert options too")
                if not show_expert:
                    p.epilog = (f"Expert options ({', '.join(t[len(EXPERT):] for t in expert)}): "
                                f"dreamlift {name} --help-all. Why each default is so: docs/DEFAULTS.md.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        return 2
    _, load_config, run = COMMANDS[ns.command]
    from .interrupt import EXIT_INTERRUPTED

    try:
        cls = load_config()
        cfg = cls.from_namespace(ns) if hasattr(cls, "from_namespace") else config_from_args(cls, ns)
        check_values(cfg)  # finite, in range, valid UTF-8: before any work
        code = run(cfg)
        return code if isinstance(code, int) else 0
    except DreamliftError as exc:
        _say(ns.command, f"error: {exc}")
        return 2
    except OSError as exc:  # the environment, not a bug: a full disk, a read-only folder, a missing file
        where = f" {exc.filename}" if exc.filename else ""
        _say(ns.command, f"error: cannot write or read{where}: {exc.strerror or exc}")
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (dreamlift.interrupt.Interrupted says where it stopped)
        _say(ns.command, str(exc) or "interrupted")
        return EXIT_INTERRUPTED


def _say(command: str, message: str) -> None:
    print(f"dreamlift {command}: {_printable(' '.join(message.split()))}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
