"""`pip install` with its output kept in a log file and summarized as progress lines.

Not workflow-safe (processes, files, clock). With `-v`, pip passes a source build's
output through as it comes (without it, pip shows a spinner, or nothing when its
output is not a terminal): a CMake build under scikit-build-core prints one line
per build step, `[n/N] ...` from Ninja or `[ p%] ...` from Make. `BuildProgress`
turns those lines into a line for people every `every` seconds and at each phase
change; `pip_install` writes everything to the log and, on failure, says the
log's last lines before it raises `PipFailed`.
"""

from __future__ import annotations

import collections
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

Say = Callable[[str], None]

_NINJA = re.compile(r"^\s*\[(\d+)/(\d+)\]\s")
_MAKE = re.compile(r"^\s*\[\s*(\d+)%\]\s")
#: Lines that open a phase. pip's nested install of the build tools prints the last two too,
#: indented, so those count only unindented (pip's own top level).
_PHASES = (
    ("Installing build dependencies: started", "installing the build tools", False),
    ("*** Configuring CMake", "configuring", False),
    ("*** Building project", "compiling", False),
    ("*** Installing project into wheel", "packing the wheel", False),
    ("Installing collected packages", "installing", True),
    ("Successfully installed", "installed", True),
)
_COLLECTING = re.compile(r"^Collecting \S+")


class Step(NamedTuple):
    """What one log line says: a new phase, or n of N done in the current one."""

    phase: str | None = None
    done: int | None = None
    total: int | None = None


class PipFailed(Exception):
    """pip exited with an error; its last lines were said, the whole output is in `log`."""

    def __init__(self, returncode: int, log: Path):
        super().__init__(f"pip exited with {returncode}; see {log}")
        self.returncode = returncode
        self.log = log


def build_step(line: str) -> Step | None:
    """Read a line of `pip install -v` output for a CMake source build."""
    if m := _NINJA.match(line):
        return Step("compiling", int(m[1]), int(m[2]))
    if m := _MAKE.match(line):
        return Step("compiling", int(m[1]), 100)
    for opening, phase, top_level in _PHASES:
        if (line if top_level else line.lstrip()).startswith(opening):
            return Step(phase)
    return None


def download_step(total: int) -> Callable[[str], Step | None]:
    """Count the packages of a `pip install` of `total` wheels (no build): one `Collecting` line each."""
    seen = 0

    def step(line: str) -> Step | None:
        nonlocal seen
        if _COLLECTING.match(line):
            seen += 1
            return Step("downloading", seen, total)
        return build_step(line)

    return step


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


@dataclass
class BuildProgress:
    """Say where a long pip run is: at each new phase, and every `every` seconds in between."""

    say: Say
    label: str
    read: Callable[[str], Step | None] = build_step
    every: float = 30.0
    clock: Callable[[], float] = time.monotonic
    phase: str = "starting"
    done: int = 0
    total: int = 0
    _started: float = field(init=False)
    _last_said: float = field(init=False)
    _counting_since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._started = self._last_said = self.clock()

    def feed(self, line: str) -> None:
        step = self.read(line)
        if step is not None:
            new_phase = step.phase is not None and step.phase != self.phase
            if new_phase:
                self.phase, self.done, self.total, self._counting_since = step.phase, 0, 0, None
            if step.total:
                if self._counting_since is None:
                    self._counting_since = self.clock()
                self.done, self.total = max(self.done, step.done or 0), step.total
            if new_phase:
                self._say()
                return
        self.tick()

    def tick(self) -> None:
        """Say the state if `every` seconds have passed since the last line said."""
        if self.clock() - self._last_said >= self.every:
            self._say()

    def line(self) -> str:
        now = self.clock()
        text = f"  {self.label}: {_clock(now - self._started)} elapsed, {self.phase}"
        if self.total:
            text += f" {self.done} of {self.total} ({100 * self.done // self.total}%)"
            counted_for = now - self._counting_since if self._counting_since is not None else 0.0
            if counted_for >= self.every and 0.1 <= self.done / self.total < 1:
                left = counted_for * (self.total - self.done) / self.done
                text += f", about {max(1, math.ceil(left / 60))} min left"
        return text

    def _say(self) -> None:
        self._last_said = self.clock()
        self.say(self.line())


def _pump(stream, lines: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


def pip_install(args: list[str], progress: BuildProgress, log: Path, *, env: dict[str, str] | None = None, tail: int = 15) -> None:
    """Run `python -m pip install ARGS` into `log`, feeding `progress`; on failure say the tail and raise."""
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    last: collections.deque[str] = collections.deque(maxlen=tail)
    lines: queue.Queue[str | None] = queue.Queue()
    with log.open("w") as out:
        out.write("$ " + " ".join(command) + "\n")
        proc = subprocess.Popen(
            command, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
        )
        # A reader thread, so the progress line still comes while one step prints nothing for minutes.
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                progress.tick()
                continue
            if line is None:
                break
            out.write(line)
            last.append(line.rstrip()[:400])
            progress.feed(line)
        returncode = proc.wait()
    if returncode != 0:
        for line in last:
            progress.say(f"  | {line}")
        raise PipFailed(returncode, log)
