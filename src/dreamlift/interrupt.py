"""Ctrl-C and SIGTERM as a request to stop *between* steps, the same way in every long command.

A signal handler that raises (Python's default for SIGINT) can fire in the middle of an
optimisation step: the random generator has advanced and the parameters may be half
updated while the step counter has not, so a checkpoint saved then does not resume to the
result of an uninterrupted run. Here the handler only records the request; the loop asks
``stop.requested`` between steps, saves a checkpoint of a whole step and stops with
:class:`Interrupted`. Setup and export phases call ``stop.check()`` at their boundaries.

    with interruptible() as stop:
        while step < steps:
            one_step()
            if stop.requested:
                save(); raise Interrupted(stop.signal_name)

A second signal while a stop is pending raises at once (the user insists). The previous
handlers are restored on leaving the block, also when it raises.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["Interrupted", "StopRequest", "interruptible", "EXIT_INTERRUPTED"]

EXIT_INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM at a step boundary (a KeyboardInterrupt, so callers that catch
    Ctrl-C catch it too). ``str()`` is a one-line message for the user."""


class StopRequest:
    """What the signal handler records: whether a stop was asked for, and by which signal."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def check(self, what: str = "") -> None:
        """Raise :class:`Interrupted` if a stop was asked for (call at a phase boundary)."""
        if self.signum is not None:
            raise Interrupted(f"{self.signal_name} received{' during ' + what if what else ''}")

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise Interrupted(f"{signal.Signals(signum).name} received twice; stopped at once")
        self.signum = signum


@contextmanager
def interruptible() -> Iterator[StopRequest]:
    """Install SIGINT/SIGTERM handlers that set a flag; restore the previous ones on exit.

    Outside the main thread (where Python cannot install handlers) the block runs without them.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, stop._handle)
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
