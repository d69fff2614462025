"""One writer per folder: a lock a stage holds on its run folder (or model folder) for as long as it writes there.

Without it, two runs on one folder compute the same to-do list and append the same ids twice, interleave their
appends, lose each other's manifest sections, cut each other's in-flight lines on resume, and delete a model the
other is training. The lock is the kernel's (flock, through the `filelock` package), so a process killed with
SIGKILL releases it: a stale lock file never blocks the next run. The holder writes its pid into the lock file,
so a refused run can name it. The file sits beside the folder (`.NAME.lock`), not in it, because a model folder
of another identity is deleted whole and its lock must outlive that. Nested holds in one process are one hold.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from synthgen.errors import UserError


def lock_path(folder: Path) -> Path:
    folder = Path(folder).expanduser().resolve()
    return folder.parent / f".{folder.name}.lock"


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


@contextmanager
def hold(folder: Path, noun: str = "run folder") -> Iterator[None]:
    """Hold the folder's lock for the body, or raise `UserError` naming the pid that holds it."""
    from filelock import FileLock, Timeout

    path = lock_path(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, timeout=0, is_singleton=True, on_acquired=_write_pid)
        lock.acquire()
    except Timeout:
        raise UserError(f"{noun} {folder} is in use by pid {holder(path)}") from None
    except OSError as exc:
        raise UserError(f"cannot lock {folder} ({path}: {exc.strerror or exc})") from None
    try:
        yield
    finally:
        lock.release()


def holder(path: Path) -> str:
    """The pid written in a held lock file ("unknown" in the instant between its lock and its write)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return text if text.isdigit() else "unknown"
