"""One `aifactory dev` or `demo` per factory home: a lock file with the holder's PID.

Not workflow-safe. A second stack on the same home would share the dev
server's and the store's files with the first; it is told which process holds
the home instead (exit 2 on the command line).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from aifactory.errors import FactoryError

LOCK_FILE = "stack.lock"


class StackRunning(FactoryError, RuntimeError):
    """Another `aifactory dev` or `demo` runs on this factory home; the message names its process."""


@contextlib.contextmanager
def home_lock(home: Path):
    """Hold the factory home for one `dev` or `demo` at a time (a lock file with the holder's PID).

    The operating system releases the lock when its process ends, however it ends, so a crashed
    stack never leaves the home locked."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StackRunning(
            f"the factory in {home} is already running (pid {holder}): use that one, stop it first (Ctrl-C where it runs), "
            "or set AIFACTORY_HOME to another folder"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
