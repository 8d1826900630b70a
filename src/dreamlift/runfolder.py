"""One run per output folder, and an output folder that always holds one whole run.

A run never writes into OUT directly. It works in a staging folder beside it,
``.<OUT name>.partial`` (config, checkpoints, then the exported files and metrics), and
only when everything is written does it swap that folder in for OUT. So a failed or
interrupted ``--force`` run leaves the earlier run's files untouched, and a folder never
mixes the files of two runs. An interrupted run's checkpoint stays in the staging folder,
where ``--resume`` finds it.

Two runs into one OUT are kept apart by a lock file beside it, ``.<OUT name>.lock``: an
exclusive ``flock`` (released by the kernel when its process dies, so a stale lock of a
killed run is simply taken over) holding the owner's PID, for the error message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

from .config import DreamliftError, check_output_folder

__all__ = ["RunFolder"]


class RunFolder:
    """OUT, its staging folder and its lock. Use as a context manager: the lock is held inside."""

    def __init__(self, out: Path):
        out = Path(out)
        absolute = Path(os.path.abspath(out))
        if absolute == absolute.parent:
            raise DreamliftError(f"--out {out} is a filesystem root; name a folder to write into")
        self.out = out
        self.parent = absolute.parent
        self.stage = self.parent / f".{absolute.name}.partial"
        self.lock_path = self.parent / f".{absolute.name}.lock"
        self._fd: int | None = None
        self._made: list[Path] = []

    # ------------------------------------------------------------------ checks before any work
    def check_target(self) -> None:
        """OUT must be a folder or not exist, and nothing above it may be a file."""
        check_output_folder(self.out, "--out")

    # ------------------------------------------------------------------ the lock
    def __enter__(self) -> RunFolder:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise DreamliftError naming the PID that holds it."""
        self._made = [p for p in (self.parent, *self.parent.parents) if not p.exists()]  # removed if left empty
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DreamliftError(f"cannot create {self.parent}: {exc.strerror}") from None
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise DreamliftError(f"cannot write into {self.parent}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise DreamliftError(f"another dreamlift run (PID {owner}) is writing {self.out}; wait for it "
                                         "or choose another --out") from None
                raise DreamliftError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
            try:  # the holder before us may have unlinked the file between our open and our flock
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        for p in self._made:  # deepest first: a refused run leaves no empty folders behind
            try:
                p.rmdir()
            except OSError:
                break

    # ------------------------------------------------------------------ staging and the swap
    def fresh_stage(self) -> Path:
        """An empty staging folder (an interrupted run's leftovers are removed)."""
        if self.stage.exists():
            shutil.rmtree(self.stage)
        self.stage.mkdir()
        return self.stage

    def commit(self) -> None:
        """Put the staging folder in OUT's place: rename OUT aside, rename the stage in, delete the old one.

        Between the two renames OUT is briefly absent, never mixed; a crash there leaves the old run
        whole in ``.<name>.old``.
        """
        old = self.parent / f".{self.stage.name[1:-len('.partial')]}.old"
        if old.exists():
            shutil.rmtree(old)
        if self.out.exists():
            os.rename(self.out, old)
        os.rename(self.stage, self.out)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
