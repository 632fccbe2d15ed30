"""Settings from the environment, and the Temporal client connection.

Not workflow-safe. With no `TEMPORAL_ADDRESS`, the embedded default applies:
the dev server on 127.0.0.1:7233 that `aifactory dev` starts.

    TEMPORAL_ADDRESS        host:port of a Temporal cluster (unset: embedded dev server)
    TEMPORAL_NAMESPACE      namespace (default `default`)
    TEMPORAL_API_KEY        API key (Temporal Cloud); implies TLS
    TEMPORAL_TLS            `true` for TLS with the system roots
    TEMPORAL_TLS_CERT / TEMPORAL_TLS_KEY / TEMPORAL_TLS_CA   mTLS files
    AIFACTORY_TASK_QUEUE    task queue (default `aifactory-agents`)
    AIFACTORY_HOME          where embedded state lives (default: the `.aifactory` folder of the
                            project you are in, found by walking up to a folder with `.aifactory/`
                            or `agents/`; outside a project, commands that need it say so)
    AIFACTORY_DB_URL        the factory's SQL store (default SQLite under AIFACTORY_HOME)
    AIFACTORY_AGENTS_DIR    folder of agent definitions (default: the project's `agents/`)
    AIFACTORY_CODEC, AIFACTORY_CODEC_KEYS, AIFACTORY_CODEC_KEY_FILE
                            payload encryption keys (see `workers.codec`)
    AIFACTORY_AUDIT_KEYS, AIFACTORY_AUDIT_KEY_FILE
                            the audit chain's MAC keys (see `activities.audit.chain`)
    AIFACTORY_AUDIT_RETENTION_DAYS   how long the audit store keeps a closed run (default 365)
    AIFACTORY_METRICS_ADDRESS        host:port of a worker's Prometheus metrics (unset: not served)
    AIFACTORY_SDK_METRICS_ADDRESS    host:port of the Temporal SDK's metrics on a worker (unset: not served)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from temporalio.client import Client, TLSConfig
from temporalio.converter import DataConverter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities.keys import KeyRing, key_ring_from_env
from workers.codec import codec_key_ring, data_converter
from workers.runtime import current_runtime
from contracts.errors import FactoryError

EMBEDDED_ADDRESS = "127.0.0.1:7233"
REPO_ROOT = Path(__file__).resolve().parent.parent
HOME_DIR = ".aifactory"


class FactoryHomeNotFound(FactoryError, LookupError):
    """No factory home: neither `AIFACTORY_HOME` nor a project folder above the working directory."""


def find_project(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds a factory project (`.aifactory/` or `agents/`)."""
    for folder in (start, *start.parents):
        if (folder / HOME_DIR).is_dir() or (folder / "agents").is_dir():
            return folder
    return None


@dataclass(frozen=True)
class Settings:
    temporal_address: str | None = None
    namespace: str = "default"
    api_key: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    task_queue: str = "aifactory-agents"
    home_dir: Path | None = None
    """Where embedded state lives (`AIFACTORY_HOME`, or the project's `.aifactory`); None outside a project."""
    db_url_setting: str = ""
    """`AIFACTORY_DB_URL`; empty: SQLite in the home."""
    agents_dir: Path = Path("agents")
    key_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The codec and audit key settings, read when a ring is first needed."""
    audit_retention_days: int = 365
    metrics_address: str | None = None
    """host:port where a worker serves its Prometheus metrics (`AIFACTORY_METRICS_ADDRESS`)."""
    sdk_metrics_address: str | None = None
    """host:port where a worker serves the Temporal SDK's own metrics (`AIFACTORY_SDK_METRICS_ADDRESS`)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> "Settings":
        env = os.environ if env is None else env
        project = find_project((cwd or Path.cwd()).resolve())
        if env.get("AIFACTORY_HOME"):
            home: Path | None = Path(env["AIFACTORY_HOME"]).resolve()
        else:
            home = project / HOME_DIR if project is not None else None
        agents = env.get("AIFACTORY_AGENTS_DIR")
        if agents:
            agents_dir = Path(agents)
        elif project is not None and (project / "agents").is_dir():
            agents_dir = project / "agents"
        elif home is not None and (home.parent / "agents").is_dir():
            agents_dir = home.parent / "agents"
        else:
            agents_dir = REPO_ROOT / "agents"
        return cls(
            temporal_address=env.get("TEMPORAL_ADDRESS") or None,
            namespace=env.get("TEMPORAL_NAMESPACE") or "default",
            api_key=env.get("TEMPORAL_API_KEY") or None,
            tls=(env.get("TEMPORAL_TLS", "").lower() in ("1", "true", "yes")),
            tls_cert=env.get("TEMPORAL_TLS_CERT") or None,
            tls_key=env.get("TEMPORAL_TLS_KEY") or None,
            tls_ca=env.get("TEMPORAL_TLS_CA") or None,
            task_queue=env.get("AIFACTORY_TASK_QUEUE") or "aifactory-agents",
            home_dir=home,
            db_url_setting=env.get("AIFACTORY_DB_URL") or "",
            agents_dir=agents_dir.resolve(),
            key_env={k: v for k, v in env.items() if k.startswith(("AIFACTORY_CODEC", "AIFACTORY_AUDIT_KEY"))},
            audit_retention_days=int(env.get("AIFACTORY_AUDIT_RETENTION_DAYS") or 365),
            metrics_address=env.get("AIFACTORY_METRICS_ADDRESS") or None,
            sdk_metrics_address=env.get("AIFACTORY_SDK_METRICS_ADDRESS") or None,
        )

    @property
    def home(self) -> Path:
        """The factory home, or `FactoryHomeNotFound` saying how to name one."""
        if self.home_dir is None:
            raise FactoryHomeNotFound(
                "no factory home here: set AIFACTORY_HOME to your factory's state folder (for example "
                "/path/to/project/.aifactory), or run the command from inside the project folder"
            )
        return self.home_dir

    @property
    def db_url(self) -> str:
        """`AIFACTORY_DB_URL`, or the embedded SQLite store in the home."""
        return self.db_url_setting or f"sqlite:///{self.home / 'factory.db'}"

    @property
    def embedded(self) -> bool:
        return self.temporal_address is None

    @property
    def address(self) -> str:
        return self.temporal_address or EMBEDDED_ADDRESS

    def key_ring(self) -> KeyRing | None:
        """The payload encryption keys; the embedded default creates its key file on first use."""
        return codec_key_ring(self.key_env, self.home_dir, embedded=self.embedded, require_home=lambda: self.home)

    def audit_key_ring(self) -> KeyRing:
        """The audit chain's MAC keys; the embedded default creates its key file on first use."""
        return key_ring_from_env(self.key_env, self.home_dir, prefix="AIFACTORY_AUDIT", embedded=self.embedded, require_home=lambda: self.home)

    def data_converter(self) -> DataConverter:
        return data_converter(self.key_ring())

    def tls_config(self) -> TLSConfig | bool:
        if self.tls_cert or self.tls_key or self.tls_ca:
            read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
            return TLSConfig(
                client_cert=read(self.tls_cert), client_private_key=read(self.tls_key), server_root_ca_cert=read(self.tls_ca)
            )
        return bool(self.tls or self.api_key)


async def connect(settings: Settings, address: str | None = None, *, runtime: Runtime | None = None) -> Client:
    """A client with the factory's data converter: pydantic models, encrypted at rest in history.

    Without `runtime`, it runs on the runtime of the command in progress (`workers.runtime`), if any.
    A server that cannot be reached raises `ConnectionError`, naming the address.
    """
    target = address or settings.address
    try:
        return await Client.connect(
            target,
            namespace=settings.namespace,
            api_key=settings.api_key,
            tls=settings.tls_config(),
            data_converter=settings.data_converter(),
            runtime=runtime or current_runtime(),
        )
    except RuntimeError as e:  # how the SDK reports a failed connect: refused, TLS, name lookup
        raise ConnectionError(f"cannot reach Temporal at {target} ({_reason(e)}): is it running, and is TEMPORAL_ADDRESS right?") from None


def _reason(e: RuntimeError) -> str:
    """The OS's words from the SDK's transport error, where it has them ("Connection refused")."""
    found = re.search(r'(?:message|error): "([^"]+)"', str(e))
    return found.group(1) if found else str(e).removeprefix("Failed client connect: ")


def sdk_metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime that serves the SDK's own metrics (workflow and activity task latency,
    schedule-to-start, slots, poller counts) for Prometheus on `address` (host:port)."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
