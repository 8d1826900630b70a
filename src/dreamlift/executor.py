"""Where many runs execute: in this process, in local worker processes, or as tasks on a Ray cluster.

``dreamlift batch`` and ``dreamlift eval`` hand their runs to one of these executors, so the same suite runs
on a laptop (``--jobs 2``) or on a cluster (``--ray ADDRESS``) unchanged:

    executor = make_executor(jobs=2)                      # or make_executor(ray="127.0.0.1:6379")
    for outcome in executor.run([Task("a-red-mug", run_one, (cfg,))]):
        print(outcome.key, outcome.value, outcome.error)

A task is a module-level function and its arguments (both picklable). Its return value comes back as
``Outcome.value``; an exception it raises comes back as a one-line ``Outcome.error`` and is not retried (the
same input would fail the same way). A task whose *worker* dies (killed, out of memory, a crash in native
code) is run once more; a second death is recorded as its error. Each local task runs in a fresh spawned
process, so a death takes only its own task with it; on Ray, each task is a Ray task with its own ``num_cpus``
and ``num_gpus`` and the retry is ours (``max_retries=0``), so both executors count attempts the same way.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .config import DreamliftError

__all__ = ["Task", "Outcome", "Inline", "LocalPool", "RayPool", "make_executor", "one_line", "orphaned",
           "init_worker", "MAX_ATTEMPTS"]

MAX_ATTEMPTS = 2  # the first run and one retry after a worker death


@dataclass(frozen=True)
class Task:
    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class Outcome:
    key: str
    value: Any = None
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0  # wall time of the last attempt, as its worker measured it (start to return)
    deaths: list[str] = field(default_factory=list)  # how each dead worker ended ("killed by SIGKILL", ...)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def one_line(exc: BaseException) -> str:
    """An exception as one line for a summary: the message of a DreamliftError, else its type and message."""
    text = " ".join(str(exc).split())
    if isinstance(exc, DreamliftError):
        return text or "failed"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot write or read{' ' + str(exc.filename) if exc.filename else ''}: {exc.strerror}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------- in a worker
_PARENT: int | None = None  # in a local worker process: the pid of the command that started it


def init_worker(threads: int | None, prctl: bool = True, parent: int | None = None) -> None:
    """The start of a local worker process: its torch threads, and stopping when its parent dies. ``prctl``:
    let Linux signal the death at once; only for a worker started by a thread that outlives it (Linux signals
    when the starting *thread* ends: not for one started from a web server's pool thread)."""
    global _PARENT
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    _PARENT = os.getppid() if parent is None else parent
    if os.getppid() != _PARENT:  # it died while this process was starting
        os._exit(1)
    _stop_with_parent(_PARENT, prctl)
    if threads is not None and "torch" in sys.modules:  # (else OMP_NUM_THREADS sets it when torch is imported)
        sys.modules["torch"].set_num_threads(threads)


def orphaned() -> bool:
    """True in a local worker whose parent command has died."""
    return _PARENT is not None and os.getppid() != _PARENT


def _stop_with_parent(parent: int, prctl: bool = True) -> None:
    """A worker whose parent command dies (killed, or its terminal closed) stops instead of running on orphaned
    beside the next command (sharing the CPU and the output folders with it): it gets SIGTERM, so a generate
    inside it saves a checkpoint at the next whole step and stops, and a watch thread ends it 30 s later
    whatever it is doing. Linux delivers the SIGTERM the moment the parent dies (prctl PR_SET_PDEATHSIG);
    elsewhere the thread sends it within a second (only there: a second SIGTERM would stop generate at once
    instead of at a whole step)."""
    import signal
    import threading

    armed = False
    if prctl:
        try:
            import ctypes

            armed = ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0  # PDEATHSIG
        except (OSError, AttributeError):
            armed = False

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        if not armed:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="dreamlift-parent-watch").start()


def _call(fn: Callable, args: tuple) -> tuple[str, Any, float]:
    """Run one task: ("ok", value, seconds), ("error", message, seconds) or ("interrupted", message, seconds)."""
    t0 = time.perf_counter()
    try:
        value = fn(*args)
    except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: generate saved its checkpoint and stopped
        return "interrupted", " ".join(str(exc).split()) or "interrupted", time.perf_counter() - t0
    except Exception as exc:
        return "error", one_line(exc), time.perf_counter() - t0
    return "ok", value, time.perf_counter() - t0


def _local_main(conn, threads: int | None, prctl: bool, parent: int) -> None:
    """A local worker: watch the parent first, then receive the task (unpickling it imports torch: seconds in
    which the parent may die), run it, send the result."""
    init_worker(threads, prctl, parent)
    fn, args = conn.recv()
    conn.send(_call(fn, args))
    conn.close()


def start_worker(ctx, fn: Callable, args: tuple, threads: int | None, prctl: bool = True, name: str = "dreamlift"):
    """Start a spawned worker process running ``fn(*args)`` -> (process, the parent's end of its pipe)."""
    mine, theirs = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=_local_main, args=(theirs, threads, prctl, os.getpid()), name=name)
    proc.start()
    theirs.close()
    try:
        mine.send((fn, args))
    except OSError:  # it died at once: its exit code tells the caller
        pass
    return proc, mine


def _signal_name(exitcode: int | None) -> str:
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode} before returning"


def _outcome(key: str, result: tuple[str, Any, float], attempts: int, deaths: list[str]) -> Outcome:
    status, value, seconds = result
    if status == "ok":
        return Outcome(key, value=value, attempts=attempts, seconds=seconds, deaths=deaths)
    return Outcome(key, error=value, attempts=attempts, seconds=seconds, deaths=deaths,
                   interrupted=status == "interrupted")


def _died_twice(key: str, attempts: int, deaths: list[str]) -> Outcome:
    return Outcome(key, error=f"its worker died {attempts} times ({'; '.join(deaths)})", attempts=attempts,
                   deaths=deaths)


# ---------------------------------------------------------------------------------------------- executors
class Inline:
    """Every task in this process, one after another (``--jobs 1`` of eval: progress bars stay visible)."""

    slots = 1
    name = "this process"

    def run(self, tasks: list[Task]) -> Iterator[Outcome]:
        for task in tasks:
            result = _call(task.fn, task.args)
            if result[0] == "interrupted":
                raise KeyboardInterrupt(result[1])
            yield _outcome(task.key, result, 1, [])


class LocalPool:
    """Up to ``jobs`` tasks at once, each in a fresh spawned worker process with ``threads`` torch threads."""

    def __init__(self, jobs: int, threads: int | None = None):
        if jobs < 1:
            raise DreamliftError(f"--jobs must be >= 1, got {jobs}")
        self.slots = jobs
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // jobs)
        self.name = f"local pool ({jobs} worker process{'es' if jobs > 1 else ''}, {self.threads} thread(s) each)"

    def run(self, tasks: list[Task]) -> Iterator[Outcome]:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")
        queue = list(reversed(tasks))
        attempts: dict[str, int] = {}
        deaths: dict[str, list[str]] = {}
        running: dict[Any, tuple[Task, Any, Any]] = {}  # sentinel -> (task, process, parent end of the pipe)
        try:
            while queue or running:
                while queue and len(running) < self.slots:
                    task = queue.pop()
                    attempts[task.key] = attempts.get(task.key, 0) + 1
                    proc, receive = start_worker(ctx, task.fn, task.args, self.threads, name=f"dreamlift-{task.key}")
                    running[proc.sentinel] = (task, proc, receive)
                for sentinel in wait(list(running)):
                    task, proc, receive = running.pop(sentinel)
                    result = None
                    try:
                        if receive.poll():
                            result = receive.recv()
                    except (EOFError, OSError):
                        result = None
                    receive.close()
                    proc.join()
                    if result is not None:
                        yield _outcome(task.key, result, attempts[task.key], deaths.get(task.key, []))
                        continue
                    deaths.setdefault(task.key, []).append(_signal_name(proc.exitcode))
                    if attempts[task.key] < MAX_ATTEMPTS:
                        print(f"[dreamlift] {task.key}: its worker {deaths[task.key][-1]}; running it again",
                              file=sys.stderr)
                        queue.append(task)
                    else:
                        yield _died_twice(task.key, attempts[task.key], deaths[task.key])
        finally:  # interrupted (Ctrl-C) or the caller stopped early: each run saves its checkpoint and stops
            import signal

            for task, proc, receive in running.values():
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGTERM)
            for task, proc, receive in running.values():
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.kill()
                    proc.join()


def _ray_main(fn: Callable, args: tuple, num_cpus: float) -> tuple[str, Any, float]:
    threads = max(1, int(num_cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    return _call(fn, args)


class RayPool:
    """Each task a Ray task on the cluster at ``address`` (``auto``: the one ``ray start`` made on this machine),
    with its own ``num_cpus`` and ``num_gpus``; Ray runs as many at once as the cluster has room for."""

    def __init__(self, address: str):
        try:
            import ray
        except ImportError:
            raise DreamliftError("--ray needs the ray package: pip install 'dreamlift[ray]'") from None
        self.ray = ray
        self.address = address
        if not ray.is_initialized():
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=True)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise DreamliftError(f"--ray {address}: cannot connect to a Ray cluster ({' '.join(str(exc).split())[:200]}); "
                                     "start one with `ray start --head`") from None
        cpus = ray.cluster_resources().get("CPU", 1.0)
        self.slots = max(1, int(cpus))
        self.name = f"Ray cluster at {address} ({cpus:g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs)"

    def run(self, tasks: list[Task]) -> Iterator[Outcome]:
        ray = self.ray
        remote = ray.remote(_ray_main)
        attempts: dict[str, int] = {}
        deaths: dict[str, list[str]] = {}
        pending: dict[Any, Task] = {}

        def submit(task: Task) -> None:
            attempts[task.key] = attempts.get(task.key, 0) + 1
            ref = remote.options(num_cpus=task.num_cpus, num_gpus=task.num_gpus, max_retries=0,
                                 name=f"dreamlift-{task.key}").remote(task.fn, task.args, task.num_cpus)
            pending[ref] = task

        for task in tasks:
            submit(task)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # _call catches the task's own errors: a bug here
                        yield Outcome(task.key, error=one_line(exc), attempts=attempts[task.key])
                        continue
                    except ray.exceptions.RayError as exc:  # the worker (or its node) died
                        deaths.setdefault(task.key, []).append(f"{type(exc).__name__}")
                        if attempts[task.key] < MAX_ATTEMPTS:
                            print(f"[dreamlift] {task.key}: its Ray worker died ({type(exc).__name__}); running it "
                                  "again", file=sys.stderr)
                            submit(task)
                        else:
                            yield _died_twice(task.key, attempts[task.key], deaths[task.key])
                        continue
                    yield _outcome(task.key, result, attempts[task.key], deaths.get(task.key, []))
        finally:
            for ref in pending:  # interrupted: SIGTERM-like cancel (generate saves its checkpoint and stops)
                ray.cancel(ref, force=False)


def make_executor(jobs: int = 1, ray: str | None = None, inline_single: bool = False, threads: int | None = None):
    """The executor for ``--jobs`` / ``--ray``: Ray when an address is given, else a local pool (or, with
    ``inline_single`` and one job, this process)."""
    if ray:
        return RayPool(ray)
    if jobs == 1 and inline_single:
        return Inline()
    return LocalPool(jobs, threads)
