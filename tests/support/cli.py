"""The real `aifactory` command as a subprocess, pointed at a test's own dev server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.harness import AGENTS, REPO, people_keys_dir

AIFACTORY = str(Path(sys.executable).parent / "aifactory")


def cli_env(address: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of an operator's shell for the server at `address`: nothing of the test
    process's own factory settings, its state under `home`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AIFACTORY_", "TEMPORAL_"))}
    environ.update(TEMPORAL_ADDRESS=address, AIFACTORY_HOME=str(home), AIFACTORY_AGENTS_DIR=str(AGENTS),
                   AIFACTORY_CONFIG_DIR=str(people_keys_dir()), **extra)  # fmt: skip
    return environ


def run_cli(*argv: str, env: dict[str, str], timeout: float = 120, **options: Any) -> subprocess.CompletedProcess:
    """Run `aifactory ARGV...` to the end; stdout and stderr are captured as text unless redirected."""
    options.setdefault("stdout", subprocess.PIPE)
    options.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([AIFACTORY, *argv], env=env, cwd=REPO, text=True, timeout=timeout, **options)


def one_sentence(stderr: str, prefix: str) -> str:
    """The single line a refused command writes to stderr; fails on a traceback or more lines."""
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]
