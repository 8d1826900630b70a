"""The README's commands and code run as written: the core example is executed, every `dreamlift ...` command
in a code block parses with today's options, and (slow tier) the main command's generate runs as typed."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dreamlift.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks() -> list[str]:
    return re.findall(r"```(?:bash|python)?\n(.*?)```", README, flags=re.S)


def _dreamlift_commands() -> list[list[str]]:
    commands = []
    for block in _blocks():
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.split("#", 1)[0])
                words = [w for w in words if "=" not in w or w.startswith("-")]  # drop VAR=value prefixes
                if words and words[0] == "dreamlift":
                    commands.append(words[1:])
    return commands


def test_the_core_example_runs():
    block = README.split("<!-- core-example -->", 1)[1].split("```", 2)[1].split("\n", 1)[1]
    scope: dict = {}
    exec(compile(block, "README core example", "exec"), scope)
    assert tuple(scope["x"].shape) == (4, 2) and tuple(scope["x_t"].shape) == (4, 2)


def test_every_dreamlift_command_in_the_readme_parses():
    commands = _dreamlift_commands()
    assert ["generate", "a red mug"] in commands and len(commands) >= 2
    for argv in commands:
        ns = build_parser(argv).parse_args(argv)  # an unknown option or a bad value exits 2 here
        assert ns.command == argv[0]


def test_every_command_the_readme_names_exists():
    from dreamlift.cli import COMMANDS

    named = set(re.findall(r"`dreamlift ([a-z0-9-]+)", README)) | set(re.findall(r"`(train-[a-z]+|export-prior)`", README))
    assert "generate" in named and not named - set(COMMANDS), named - set(COMMANDS)


@pytest.mark.slow
def test_the_main_command_runs_as_typed(tmp_path):
    """The README's main command after its install: `dreamlift generate "a red mug"`, in an empty folder."""
    main = README.split("<!-- main-command -->", 1)[1].split("```", 2)[1].splitlines()[1]
    argv = shlex.split(main.split("&&", 1)[1])
    assert argv[:2] == ["dreamlift", "generate"]
    proc = subprocess.run([sys.executable, "-m", "dreamlift.cli", *argv[1:], "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "outputs" / "a-red-mug"
    for name in ("model.glb", "model.obj", "turntable.mp4", "views.png", "metrics.json", "config.json"):
        assert (out / name).is_file(), name
