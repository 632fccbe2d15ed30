"""Assemble a worker: the agent workflow, the model activity and every tool's activity.

Not workflow-safe. The sandbox pass-through list is declared here, once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.client import Client
from temporalio.plugin import SimplePlugin
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.admission import Admissions
from activities.releases.registry import ReleaseRegistry
from activities.budget import BudgetLedger
from activities.model.activity import HEARTBEAT_EVERY, ModelActivities
from activities.model.endpoints import EndpointRegistry
from activities.model.pricing import Pricing
from activities.model.transcripts import TranscriptStore
from activities.hours import compute_business_deadline
from activities.notify import NotifyActivities
from activities.slack import SlackSettings
from activities.policy import PolicyActivities
from activities.switches import SwitchActivities
from activities.codec_keys import register_codec_keys
from workers.codec import EncryptionCodec, for_workers
from workers.metrics import FactoryMetrics, MetricsInterceptor
from activities.db import create_tables
from activities.tools.families import ToolFamily, installed_families
from contracts.catalog import CATALOG
from activities.audit.activity import AuditActivities
from workflows.agent import AgentWorkflow
from workflows.audit_export import AuditExportWorkflow
from workflows.audit_witness import AuditWitnessWorkflow

log = logging.getLogger("aifactory.worker")

#: Modules the workflow sandbox shares with the worker instead of re-importing per run:
#: deterministic, side-effect-free code (contracts, pure policies, jsonschema). Each tool family's
#: declarations module is added to these by `sandbox_runner` (`ToolFamily.sandbox_modules`).
PASSTHROUGH_MODULES = (
    "contracts",
    "policies",
    "workers.metrics",
    "prometheus_client",
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "rpds",
    "attrs",
    "attr",
    "cryptography",
)

WORKFLOWS = [AgentWorkflow, AuditExportWorkflow, AuditWitnessWorkflow]


def passthrough_modules(families: list[ToolFamily] | None = None) -> tuple[str, ...]:
    """`PASSTHROUGH_MODULES` and every tool family's declarations, the one list the sandbox shares."""
    families = installed_families() if families is None else families
    return (*PASSTHROUGH_MODULES, *(m for f in families for m in f.sandbox_modules))


def sandbox_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner, with the tool families loaded so the workflow finds their tools in the catalog."""
    modules = passthrough_modules()
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*modules))


def sandbox_enabled(env: dict[str, str] | None = None) -> bool:
    """`AIFACTORY_WORKFLOW_SANDBOX=1` runs workflows in Temporal's sandbox on production workers.

    The sandbox guards determinism at run time by re-importing the workflow module per run and
    proxying every payload through it; on the agent workflow that costs about a third of a
    worker's throughput (bench/README.md). Production workers therefore run it unsandboxed by
    default, and determinism is guarded before shipping instead: every test runs the sandboxed
    runner, committed histories are replayed in CI, and a static check refuses nondeterministic
    calls in workflow-safe code (tests/test_determinism.py).
    """
    value = (os.environ if env is None else env).get("AIFACTORY_WORKFLOW_SANDBOX", "")
    return value.lower() in ("1", "true", "yes", "on")


@dataclass
class WorkerParts:
    """What a worker process runs; tests swap in their own endpoints or database."""

    db_url: str
    releases: ReleaseRegistry = field(default_factory=ReleaseRegistry)
    """The agent releases this worker runs (`ReleaseRegistry.from_folder` of its agents folder): runs
    are resolved against these, never against what their starter sent."""
    endpoints: EndpointRegistry = field(default_factory=EndpointRegistry)
    pricing: Pricing = field(default_factory=Pricing)
    policies: PolicyActivities = field(default_factory=PolicyActivities)
    webhook_url: str | None = field(default_factory=lambda: os.environ.get("AIFACTORY_NOTIFY_WEBHOOK_URL") or None)
    slack: SlackSettings | None = field(default_factory=SlackSettings.from_env)
    """Slack Web API access (`AIFACTORY_SLACK_BOT_TOKEN`): approvals to each group's channel, alerts to owners."""
    extra_activities: list = field(default_factory=list)
    audit: AuditActivities | None = None
    """The audit export pass and retention job, on workers that run the export schedule."""
    metrics: FactoryMetrics | None = None
    """Where this worker counts runs, steps, tokens, cost and tool calls (None: not counted)."""

    def activities(self, budget: BudgetLedger | None = None) -> list:
        """The activities of one worker; `budget` is its envelope ledger (leases are per worker)."""
        admissions = Admissions(self.db_url, self.policies, self.releases)
        model = ModelActivities(self.endpoints, TranscriptStore(self.db_url), self.pricing, budget or BudgetLedger(self.db_url), admissions)
        notify = NotifyActivities(self.db_url, self.webhook_url, self.slack)
        switches = SwitchActivities(self.db_url)
        acts = [
            model.call_model, admissions.admit_run_activity, self.policies.resolve_policy, self.policies.resolve_directory, switches.check_kill_switch, notify.send_notification,
            compute_business_deadline,
            *self.tool_activities(), *self.extra_activities,
        ]  # fmt: skip
        if self.audit is not None:
            acts += [self.audit.export_audit, self.audit.enforce_audit_retention]
        names = {getattr(a, "__temporal_activity_definition").name for a in acts}
        missing = sorted(d.name for d in CATALOG.values() if d.activity_name not in names)
        if missing:
            log.warning("tools declared without an implementation on this worker: %s", ", ".join(missing))
        return acts

    def tool_activities(self) -> list:
        """Every installed tool family's activities, with the family's tables created in this database."""
        acts: list = []
        for family in installed_families():
            create_tables(self.db_url, family.tables)  # a family installed after the store was first opened
            acts += family.activities(self.db_url)
        return acts


def build_worker(client: Client, task_queue: str, parts: WorkerParts, *, sandboxed: bool | None = None, **options) -> Worker:
    """A worker for the agent workflow and every registered tool on `task_queue`."""
    if sandboxed is None:
        sandboxed = sandbox_enabled()
    if parts.metrics is not None:  # who answers for each release it serves, for alert routing
        parts.metrics.watch_releases(parts.releases)
    budget = BudgetLedger(parts.db_url)
    activities = parts.activities(budget)
    # Activity owners with connections to close when the worker stops (the model endpoints' clients).
    owners = {id(a.__self__): a.__self__ for a in activities if hasattr(getattr(a, "__self__", None), "aclose")}

    @asynccontextmanager
    async def lifetime() -> AsyncIterator[None]:
        try:
            yield
        finally:  # the worker has stopped and its calls have settled: its envelope leases go back
            try:
                await asyncio.to_thread(budget.close)
            except Exception:  # the store is unreachable: the leases expire on their own
                log.exception("could not return this worker's envelope leases")
            for owner in owners.values():
                await owner.aclose()

    # Model calls heartbeat every few seconds while they wait; without a heartbeat timeout the SDK
    # would hold those back for 30 s, and a kill switch's cancellation rides on them.
    options.setdefault("default_heartbeat_throttle_interval", timedelta(seconds=HEARTBEAT_EVERY))
    # Decoding on a worker never fails a workflow task: what it cannot open reaches the workflow marked.
    codec = client.data_converter.payload_codec
    if isinstance(codec, EncryptionCodec):  # clients check theirs against these when they connect
        register_codec_keys(parts.db_url, codec.ring)
    converter = for_workers(client.data_converter)
    if converter is not client.data_converter:
        client = Client(client.service_client, namespace=client.namespace, data_converter=converter)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        plugins=[SimplePlugin("aifactory.worker", run_context=lifetime), *options.pop("plugins", [])],
        workflow_runner=sandbox_runner() if sandboxed else UnsandboxedWorkflowRunner(),
        interceptors=[MetricsInterceptor(parts.metrics)] if parts.metrics is not None else [],
        **options,
    )
