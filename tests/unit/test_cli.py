import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamlift.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_is_instant_and_lists_commands():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dreamlift.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo2d" in out.stdout
    # --help must not import torch (heavy imports are lazy)
    check = subprocess.run([sys.executable, "-c", "import sys, dreamlift.cli; print('torch' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert check.stdout.strip() == "False"
    assert time.perf_counter() - start < 30  # generous: a sanity bound, not a timing test


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_option_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["demo2d", "--no-such-option", "1"])
    assert exc.value.code == 2


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    marker = "<!-- test-command -->"
    assert marker in readme
    block = readme.split(marker, 1)[1].split("```", 2)[1]  # "bash\n<command>\n"
    command = block.splitlines()[1].strip()
    assert command.startswith("pip install") and "pytest" in command
    assert command in ci


def test_option_help_states_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: None)" not in out  # options whose help already says where their default comes from
    assert "optimisation steps (default: the preset's)" in out
    assert "the random seed (default: 0)" in out
    assert "--[no-]resume continue OUT's run" in out and "--no-resume," not in out  # a boolean is shown once


def _help(argv, columns=80):
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        with pytest.raises(SystemExit) as exc:
            main(argv)
    finally:
        if old is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = old
    assert exc.value.code == 0
    return exc


def test_generate_help_fits_about_100_lines_grouped_with_the_expert_groups_behind_help_all(capsys):
    _help(["generate", "--help"])
    short = capsys.readouterr().out
    _help(["generate", "--help-all"])
    full = capsys.readouterr().out
    assert len(short.splitlines()) <= 100, len(short.splitlines())
    groups = [line[:-1] for line in short.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert groups[:3] == ["positional arguments", "options", "the run"]
    assert {"the prompt", "outputs", "score distillation", "shading", "the area prior"} <= set(groups)
    assert "--gaussians-count" not in short and "--nerf-levels" not in short and "--help-all" in short
    assert "--gaussians-count" in full and "--nerf-levels" in full and "expert: the NeRF:" in full
    # every option is still accepted without --help-all: an expert option is hidden, not removed
    assert main(["generate", "a red mug", "--representation", "gaussians", "--gaussians-count", "0"]) == 2
    assert "--gaussians-count must be >= 1" in capsys.readouterr().err  # parsed, then refused by its range


def test_no_option_help_carries_benchmark_figures_or_more_than_one_sentence(capsys):
    import re

    from dreamlift.cli import COMMANDS

    for command in COMMANDS:
        _help([command, "--help-all"] if command == "generate" else [command, "--help"], columns=400)
        out = capsys.readouterr().out
        options = [line for line in out.splitlines() if line.startswith("  -")]
        for line in options:
            text = re.split(r"\s{2,}", line.strip(), maxsplit=1)[-1]
            assert not re.search(r"BENCHMARKS|docs/decisions|\bsection\b|median IoU|[+-]\d\.\d{3}|calibrated on", text), \
                (command, line)
            body = re.sub(r"\(default: .*\)$", "", text).strip()
            assert not re.search(r"[a-z0-9)]\. [A-Z]", body) and len(body) <= 160, (command, line)


def test_constraints_pin_every_dependency_and_both_readme_commands_use_them():
    import re
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    wanted = [r for r in [*pyproject["project"]["dependencies"], *(r for reqs in extras.values() for r in reqs)]
              if not r.startswith("dreamlift[")]  # the test extra names the app and ray extras
    assert "dreamlift[app,ray]" in extras["test"]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    for req in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", req, 1)[0]).lower()
        assert name in pins, f"{name} is a dependency but constraints.txt does not pin it"
    readme = (ROOT / "README.md").read_text()
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        command = readme.split(marker, 1)[1].split("```", 2)[1].splitlines()[1]
        assert "-c constraints.txt" in command, marker
