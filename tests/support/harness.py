"""Helpers shared by the tests: agents, workers on fresh task queues, replay."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.model.endpoints import Endpoint, EndpointRegistry
from activities.model.scripted import ScriptedModel
from activities.policy import PolicyActivities
from activities.tools.it_desk_activities import seed_directory
from policies.loader import PolicyStore
from aifactory.client import FactoryClient
from aifactory.registry import find_agent
from contracts.agent import AgentRelease
from workers.worker import WORKFLOWS, WorkerParts, build_worker, sandbox_runner

REPO = Path(__file__).resolve().parents[2]
AGENTS = REPO / "agents"


def triage_release(task_queue: str, **spec_changes: Any) -> AgentRelease:
    release = find_agent(AGENTS, "it-triage").release
    assert release is not None
    spec = release.spec.model_copy(update={"task_queue": task_queue, **spec_changes})
    return release.model_copy(update={"spec": spec})


def seed_db(db_url: str) -> None:
    seed_directory(db_url, json.loads((AGENTS / "it-triage" / "directory.json").read_text()))


class FactoryUnderTest:
    """A worker on a fresh task queue, pointed at a scripted model, plus a client for it."""

    def __init__(self, client: Client, db_url: str, base_url: str, task_queue: str) -> None:
        self.client = client
        self.db_url = db_url
        self.task_queue = task_queue
        endpoints = EndpointRegistry(env={})
        endpoints.register(Endpoint("default", base_url, api_key="sk-test-secret-never-in-history"))
        self.parts = WorkerParts(db_url=db_url, endpoints=endpoints)
        self.factory = FactoryClient(client, AGENTS)

    def worker(self, sandboxed: bool = True, **options):
        # Tests run the sandboxed runner: it catches nondeterminism that production workers,
        # which run unsandboxed for throughput, would not notice at run time.
        return build_worker(self.client, self.task_queue, self.parts, sandboxed=sandboxed, **{"max_cached_workflows": 0, **options})

    def release(self, **spec_changes: Any) -> AgentRelease:
        return triage_release(self.task_queue, **spec_changes)

    async def start(
        self, input: dict[str, Any], run_key: str | None = None, tenant: str = "acme", requester: str = "", **spec_changes: Any
    ):
        from contracts.agent import AgentSpec
        from contracts.run import AgentRunInput

        unknown = set(spec_changes) - set(AgentSpec.model_fields)
        assert not unknown, f"not agent spec fields: {unknown}"
        run_input = AgentRunInput(
            release=self.release(**spec_changes), input=input, tenant=tenant, run_key=run_key or uuid.uuid4().hex[:12],
            requester=requester,
        )
        return await self.factory.start_prepared(run_input)


@contextlib.asynccontextmanager
async def factory_with(
    client: Client, db_url: str, model: ScriptedModel, policy_root: Path | None = None, webhook_url: str | None = None,
    task_queue: str | None = None, audit=None, metrics=None, **worker_options: Any,
) -> AsyncIterator[FactoryUnderTest]:
    with model.serve() as base_url:
        fut = FactoryUnderTest(client, db_url, base_url, task_queue or f"tq-{uuid.uuid4().hex[:10]}")
        if policy_root is not None:
            fut.parts.policies = PolicyActivities(PolicyStore(policy_root))
        fut.parts.webhook_url = webhook_url
        fut.parts.audit = audit
        fut.parts.metrics = metrics
        async with fut.worker(**worker_options):
            yield fut


async def replay(handle: WorkflowHandle, data_converter=None) -> None:
    """Replay a run's own history against today's workflow code: it must not diverge."""
    history = await handle.fetch_history()
    await Replayer(
        workflows=WORKFLOWS, data_converter=data_converter or pydantic_data_converter, workflow_runner=sandbox_runner()
    ).replay_workflow(history)


def encrypted_client(client: Client, ring) -> Client:
    """The same server connection, with the factory's encrypting data converter."""
    from workers.codec import data_converter

    return Client(client.service_client, namespace=client.namespace, data_converter=data_converter(ring))


async def history_json(handle: WorkflowHandle) -> str:
    return (await handle.fetch_history()).to_json()


def write_policy(root: Path, name: str, rules: list[dict], chain: list[tuple[str, float]], safe_default: str = "deny") -> Path:
    """A bundle and the shipped directory under `root`, for tests that need short SLAs."""
    import shutil

    import yaml

    (root / "bundles").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "policies" / "directory.yaml", root / "directory.yaml")
    bundle = {
        "name": name,
        "version": "1.0.0",
        "default_approval": {"chain": [{"group": g, "sla": s} for g, s in chain], "safe_default": safe_default},
        "rules": rules,
    }
    (root / "bundles" / f"{name}.yaml").write_text(yaml.safe_dump(bundle))
    return root
