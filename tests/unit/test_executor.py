"""The executors batch and eval run on: results, one-line errors, and a retry when a worker dies (real spawned
processes killed with SIGKILL; Ray's are in tests/smoke/test_batch.py)."""

import os
import signal
from pathlib import Path

import pytest

from dreamlift.config import DreamliftError
from dreamlift.executor import Inline, LocalPool, Task, make_executor, one_line


def square(x):
    return x * x


def fail(message):
    raise DreamliftError(message)


def crash():
    return 1 / 0


def die_once(marker: str, value):
    """SIGKILLs its own process the first time (a worker killed mid-task), returns ``value`` the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return value, os.getpid()


def always_die():
    os.kill(os.getpid(), signal.SIGKILL)


def interrupted():
    raise KeyboardInterrupt("SIGTERM at step 3")


def test_local_pool_returns_values_and_one_line_errors_without_stopping_the_others():
    tasks = [Task("a", square, (3,)), Task("b", fail, ("the prompt is empty",)), Task("c", crash),
             Task("d", square, (5,))]
    got = {o.key: o for o in LocalPool(2, threads=1).run(tasks)}
    assert set(got) == {"a", "b", "c", "d"}
    assert got["a"].ok and got["a"].value == 9 and got["a"].attempts == 1
    assert got["d"].value == 25
    assert got["b"].error == "the prompt is empty" and got["b"].attempts == 1  # an error is not retried
    assert got["c"].error == "ZeroDivisionError: division by zero"


def test_a_task_whose_worker_is_killed_runs_again_in_a_new_process(tmp_path):
    marker = tmp_path / "first-pid"
    (o,) = list(LocalPool(1, threads=1).run([Task("k", die_once, (str(marker), "done"))]))
    assert o.ok and o.attempts == 2 and o.deaths == ["killed by SIGKILL"]
    value, pid = o.value
    assert value == "done" and pid != int(marker.read_text())  # the retry ran in another process


def test_a_second_death_is_recorded_as_the_task_error():
    (o,) = list(LocalPool(1, threads=1).run([Task("k", always_die)]))
    assert not o.ok and o.attempts == 2
    assert o.error == "its worker died 2 times (killed by SIGKILL; killed by SIGKILL)"


def test_an_interrupted_task_is_reported_as_such():
    (o,) = list(LocalPool(1, threads=1).run([Task("i", interrupted)]))
    assert o.interrupted and o.error == "SIGTERM at step 3" and o.attempts == 1
    with pytest.raises(KeyboardInterrupt):  # in this process, a stop is the caller's
        list(Inline().run([Task("i", interrupted)]))


def test_inline_runs_in_this_process():
    out = list(Inline().run([Task("a", os.getpid), Task("b", fail, ("bad",))]))
    assert out[0].value == os.getpid() and out[1].error == "bad"


def test_make_executor_and_one_line():
    assert isinstance(make_executor(1, inline_single=True), Inline)
    assert isinstance(make_executor(1), LocalPool) and make_executor(3).slots == 3
    with pytest.raises(DreamliftError, match="--jobs must be >= 1"):
        LocalPool(0)
    assert one_line(ValueError("two\nlines")) == "ValueError: two lines"
    assert one_line(DreamliftError("the prompt is empty")) == "the prompt is empty"
