"""Fuzzing generate's and sample's options: every input runs or is one line and exit 2, and nothing is written.

The options are read from the parser itself, so a new option is fuzzed without a change here. "Runs" means
the command got past every check to the point where it loads its model; that point is replaced by a
sentinel, so an example costs milliseconds and the work itself is never started.
"""

import contextlib
import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamlift.cli import build_parser, main


class ReachedWork(Exception):
    """Raised where the command would start loading its model: every check passed."""


def _reached(*args, **kwargs):
    raise ReachedWork


def _options(command: str) -> list:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return [a for a in sub._actions if a.option_strings and a.dest not in ("help", "help_all", "out")]


AWKWARD = ["nan", "-nan", "inf", "-inf", "1e23", "-1e23", "2.5", "0", "-0", "-1", "1", "", " ", "none", "abc",
           "1e-320", "100000000000000000000000", "0x10", "\udcff\udcfe", "10", "0.5", "cuda", "cpu", "auto"]
VALUES = st.one_of(st.sampled_from(AWKWARD), st.integers(-(2**70), 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=12))
PROMPTS = st.one_of(st.sampled_from(["a red mug", "a blue car", "", "   ", "a mug " * 80, "a red \udcff mug",
                                     "the eiffel tower", "a cobalt sedan"]), st.text(max_size=40))


def _argv(draw, command: str, options: list) -> list[str]:
    chosen = draw(st.lists(st.sampled_from(options), max_size=6, unique_by=lambda a: a.dest))
    argv = [command, draw(PROMPTS)]
    for action in chosen:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:  # --x / --no-x
            argv.append(flag)
        elif action.choices and draw(st.booleans()):
            argv.append(f"{flag}={draw(st.sampled_from(list(action.choices)))}")
        else:
            argv.append(f"{flag}={draw(VALUES)}")
    return argv


def _check(argv: list[str], out_flag: str, out_name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        err = io.StringIO()
        cwd = os.getcwd()
        os.chdir(root)  # anything written to a default path would land here
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main([*argv, f"{out_flag}={root / 'sub' / out_name}"])
                except SystemExit as exc:
                    code = exc.code
                except ReachedWork:
                    code = "ran"
        finally:
            os.chdir(cwd)
        text = err.getvalue()
        assert code in (2, "ran"), (argv, code, text)
        if code == 2:
            assert len(text.strip().splitlines()) == 1 and "Traceback" not in text, (argv, text)
        left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        assert left == [], (argv, left)  # nothing written, inside OUT or out of it


@pytest.fixture
def stub_work(monkeypatch):
    import dreamlift.guidance.backends as backends
    import dreamlift.prior.model as model

    monkeypatch.setattr(backends, "load_backend", _reached)
    monkeypatch.setattr(model, "BuiltinPrior", _reached)


GENERATE = _options("generate")
SAMPLE = _options("sample")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generate_options_run_or_exit_2_on_one_line(stub_work, data):
    _check(_argv(data.draw, "generate", GENERATE), "--out", "run")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_sample_options_run_or_exit_2_on_one_line(stub_work, data):
    _check(_argv(data.draw, "sample", SAMPLE), "--out", "grid.png")


def test_the_fuzzer_reaches_the_work_with_good_options(stub_work):
    with pytest.raises(ReachedWork):
        main(["generate", "a red mug", "--steps", "3"])
    with pytest.raises(ReachedWork):
        main(["sample", "a red mug", "--n", "2", "--out", str(Path(tempfile.gettempdir()) / "never.png")])
