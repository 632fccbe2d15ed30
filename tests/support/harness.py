"""Helpers shared by the tests: agents, workers on fresh task queues, replay."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import uuid
from datetime import datetime, timezone
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
from activities.releases.loader import find_agent
from activities.releases.registry import ReleaseRegistry
from contracts.agent import AgentRelease
from contracts.run import AgentRunInput
from workers.worker import WORKFLOWS, WorkerParts, build_worker, sandbox_runner

REPO = Path(__file__).resolve().parents[2]
AGENTS = REPO / "agents"


@functools.lru_cache(maxsize=1)
def shipped_triage() -> AgentRelease:
    release = find_agent(AGENTS, "it-triage").release
    assert release is not None
    return release


def triage_release(task_queue: str, **spec_changes: Any) -> AgentRelease:
    """it-triage on `task_queue` with `spec_changes`, under a version of its own (`1.3.0-t.<hash>`),
    so a worker can hold it next to the shipped release and a start can pin it."""
    from contracts.agent import AgentSpec

    unknown = set(spec_changes) - set(AgentSpec.model_fields)
    assert not unknown, f"not agent spec fields: {unknown}"
    release = shipped_triage()
    spec = release.spec.model_copy(update={"task_queue": task_queue, **spec_changes})
    digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:10]
    spec = spec.model_copy(update={"version": f"{release.spec.version}-t.{digest}"})
    return release.model_copy(update={"spec": spec})


def agent_folder(root: Path, task_queue: str, **spec_changes: Any) -> Path:
    """An agents folder holding it-triage as a worker process would be deployed with it: the shipped
    files, with `spec_changes` written into its agent.yaml (and no evaluation, so the gate admits it)."""
    import yaml

    folder = root / "agents" / "it-triage"
    shutil.copytree(AGENTS / "it-triage", folder, ignore=shutil.ignore_patterns("eval"))
    spec = shipped_triage().spec.model_copy(update={"task_queue": task_queue, **spec_changes})
    (folder / "agent.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    return root / "agents"


@functools.lru_cache(maxsize=1)
def people_keys() -> dict:
    """A signing key for every person in the shipped directory, made once per test process."""
    from aifactory.signing import generate

    people = yaml_load(REPO / "policies" / "directory.yaml")["people"]
    return {p["id"]: generate(p["id"], key_id=f"{p['id']}-test") for p in people}


@functools.lru_cache(maxsize=1)
def people_keys_dir() -> Path:
    """The test people's private keys as `aifactory` finds them (`AIFACTORY_CONFIG_DIR=<this>`)."""
    import tempfile

    from aifactory.signing import save

    root = Path(tempfile.mkdtemp(prefix="aif-keys-"))
    for key in people_keys().values():
        save(key, root / "keys")
    return root


@functools.lru_cache(maxsize=1)
def directory_keys() -> Path:
    """The test people's public keys, as the directory overlay every test worker reads."""
    import tempfile

    from aifactory.keys_cli import register

    path = Path(tempfile.mkdtemp(prefix="aif-dir-")) / "directory.yaml"
    for person, key in people_keys().items():
        # Valid from long ago, no expiry: the time-skipping test server moves its clock more than a century
        # ahead over a session, and a run's clock may lag the moment this overlay was written.
        register(path, person, key.directory_entry(valid_days=None, now=datetime(2020, 1, 1, tzinfo=timezone.utc)))
    return path


def people_signer(*, service: str | None = None):
    from aifactory.signing import Signer

    return Signer(people_keys().values(), service=service)


def policies_with_keys(root: Path | None = None) -> PolicyActivities:
    return PolicyActivities(PolicyStore(root, overlay=directory_keys()))


def yaml_load(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


def seed_db(db_url: str) -> None:
    seed_directory(db_url, json.loads((AGENTS / "it-triage" / "seed" / "it_desk.json").read_text()))


class FactoryUnderTest:
    """A worker on a fresh task queue, pointed at a scripted model, plus a client for it.

    The worker and the client share one release registry: the shipped agents, plus the variants
    tests start (`start(..., step_limit=3)` runs it-triage with that spec change, on this queue).
    """

    def __init__(self, client: Client, db_url: str, base_url: str, task_queue: str) -> None:
        self.client = client
        self.db_url = db_url
        self.task_queue = task_queue
        endpoints = EndpointRegistry(env={})
        endpoints.register(Endpoint("default", base_url, api_key="sk-test-secret-never-in-history"))
        self.releases = ReleaseRegistry([shipped_triage()])
        self.parts = WorkerParts(db_url=db_url, releases=self.releases, endpoints=endpoints, policies=policies_with_keys())
        self.factory = FactoryClient(client, AGENTS, releases=self.releases, signer=people_signer())

    def worker(self, sandboxed: bool = True, **options):
        # Tests run the sandboxed runner: it catches nondeterminism that production workers,
        # which run unsandboxed for throughput, would not notice at run time.
        return build_worker(self.client, self.task_queue, self.parts, sandboxed=sandboxed, **{"max_cached_workflows": 0, **options})

    def release(self, **spec_changes: Any) -> AgentRelease:
        """it-triage on this test's queue with `spec_changes`, held by the test's worker."""
        return self.releases.add(triage_release(self.task_queue, **spec_changes), current=False)

    def run_input(
        self, input: dict[str, Any], run_key: str | None = None, tenant: str = "acme", requester: str = "",
        history_budget_events: int = 0, **spec_changes: Any,
    ) -> AgentRunInput:  # fmt: skip
        """The thin start of a run of the variant with `spec_changes`, pinned to its version."""
        release = self.release(**spec_changes)
        return AgentRunInput(
            agent=release.spec.name, version=release.spec.version, input=input, tenant=tenant,
            run_key=run_key or uuid.uuid4().hex[:12], requester=requester, history_budget_events=history_budget_events,
        )  # fmt: skip

    def signed(
        self, workflow_id: str, person: str, verdict: str = "approve", request_id: str | None = None, note: str | None = None, now=None
    ):
        """An approval decision signed with `person`'s test key, to send as a raw signal or update."""
        from contracts import signing as S
        from contracts.approval import ApprovalDecision

        decision = ApprovalDecision(approver=person, verdict=verdict, request_id=request_id, note=note)
        decision.signature = people_signer().sign(S.APPROVAL, workflow_id, person, S.approval_body(request_id, verdict, note), now=now)
        return decision

    async def start(self, input: dict[str, Any], run_key: str | None = None, tenant: str = "acme", requester: str = "", **spec_changes: Any):
        return await self.factory.start_prepared(self.run_input(input, run_key, tenant, requester, **spec_changes))


@contextlib.asynccontextmanager
async def factory_with(
    client: Client, db_url: str, model: ScriptedModel, policy_root: Path | None = None, webhook_url: str | None = None,
    task_queue: str | None = None, audit=None, metrics=None, policies: PolicyActivities | None = None, slack=None,
    releases: ReleaseRegistry | None = None, **worker_options: Any,
) -> AsyncIterator[FactoryUnderTest]:
    """A worker on a fresh queue against `model`; `releases` replaces the worker's registry (the
    client's stays: the shipped it-triage and the variants the test starts)."""
    with model.serve() as base_url:
        fut = FactoryUnderTest(client, db_url, base_url, task_queue or f"tq-{uuid.uuid4().hex[:10]}")
        if releases is not None:
            fut.parts.releases = releases
        if policy_root is not None:
            fut.parts.policies = policies_with_keys(policy_root)
        if policies is not None:
            fut.parts.policies = policies
        fut.parts.webhook_url = webhook_url
        fut.parts.slack = slack
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


def write_policy(
    root: Path, name: str, rules: list[dict], chain: list[tuple], safe_default: str = "deny", groups: list[dict] | None = None
) -> Path:
    """A bundle and the shipped directory under `root`, for tests that need short SLAs.

    A chain entry is `(group, sla)` or `(group, sla, clock)`; `groups` become the directory's `groups:`
    (calendars, Slack channels)."""
    import shutil

    import yaml

    (root / "bundles").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "policies" / "directory.yaml", root / "directory.yaml")
    if groups is not None:
        directory = yaml.safe_load((root / "directory.yaml").read_text())
        (root / "directory.yaml").write_text(yaml.safe_dump({**directory, "groups": groups}, sort_keys=False))
    tiers = [{"group": t[0], "sla": t[1], **({"clock": t[2]} if len(t) > 2 else {})} for t in chain]
    bundle = {
        "name": name,
        "version": "1.0.0",
        "default_approval": {"chain": tiers, "safe_default": safe_default},
        "rules": rules,
    }
    (root / "bundles" / f"{name}.yaml").write_text(yaml.safe_dump(bundle))
    return root
