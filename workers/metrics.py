"""Worker metrics for operators: prometheus-client, labelled by agent, version and tenant.

Not workflow-safe as a module, but its workflow interceptor only touches the
registry when the workflow is not replaying, so a replayed run is never counted
twice. Everything else is counted where the work happens, in activities:

- `call_model`, every attempt: latency, tokens, cost, errors, envelope utilisation; and the tool calls
  that ran nothing (refused, denied, stopped), which reach the model activity as
  `settled` records, with their policy decisions.
- each tool activity: calls by tool and outcome, and the policy decision that let it run.
- `send_notification`: approvals pending (requested, decided, expired).
- runs started: the `admit_run` local activity, once per run (a local activity can run again when
  its workflow task is retried or evicted: the worker remembers the runs it counted);
- runs finished by outcome (the workflow interceptor, outside replay), kill switches on (read from
  the store at scrape time).
- `aifactory_agent_info`: the releases the worker serves and who owns each (read from its release
  registry at scrape time), for alert rules to route by owner.

Labels are agent, version, tenant plus small closed sets (outcome, tool,
direction); never a run id, an argument or anything else unbounded.

    AIFACTORY_METRICS_PORT       expose these on 127.0.0.1:<port>/metrics (or
                                 AIFACTORY_METRICS_ADDRESS host:port); unset: not exposed
    AIFACTORY_SDK_METRICS_ADDRESS  host:port for the Temporal SDK's own metrics
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from activities.releases.registry import ReleaseRegistry
from activities.switches import switch_history
from activities.tools.catalog import tool_for_activity
from contracts.tools import ToolContext
from contracts.wire import Workflow
from workers.agent_info import AgentInfoCollector

RUN = ("agent", "version", "tenant")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


class FactoryMetrics:
    """The factory's metric families, on one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs_started = Counter("aifactory_runs_started", "Runs started.", RUN, registry=r)
        self.runs_finished = Counter("aifactory_runs_finished", "Runs finished, by outcome (completed or the failure type).", (*RUN, "outcome"), registry=r)
        self.model_calls = Counter("aifactory_model_calls", "Model call attempts, by outcome (ok or the error type).", (*RUN, "outcome"), registry=r)
        self.model_latency = Histogram("aifactory_model_call_seconds", "Latency of one model call attempt (one agent step).", RUN, buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("aifactory_tokens", "Model tokens, by direction (input or output).", (*RUN, "direction"), registry=r)
        self.cost = Counter("aifactory_cost_usd", "Model cost in US dollars.", RUN, registry=r)
        self.tool_calls = Counter("aifactory_tool_calls", "Tool calls the model proposed, by tool and outcome.", (*RUN, "tool", "outcome"), registry=r)
        self.tool_latency = Histogram("aifactory_tool_call_seconds", "Latency of one tool activity attempt.", (*RUN, "tool"), buckets=LATENCY_BUCKETS, registry=r)
        self.policy_decisions = Counter("aifactory_policy_decisions", "Policy decisions on tool calls, by outcome (allow, deny, require_approval).", (*RUN, "outcome"), registry=r)
        self.approvals_pending = Gauge("aifactory_approvals_pending", "Approval requests waiting for a person.", ("agent", "tenant"), registry=r)
        self.approval_latency = Histogram("aifactory_approval_wait_seconds", "How long a decided approval waited for a person.", ("agent", "tenant"), buckets=(10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600), registry=r)
        self.envelope_utilisation = Gauge("aifactory_envelope_utilisation", "Share of the cost envelope spent this period (0..1), as of the last model call.", ("agent", "tenant"), registry=r)
        self.export_passes = Counter("aifactory_audit_export_passes", "Audit export passes, by outcome (ok, errors: some runs not exported, failed).", ("outcome",), registry=r)
        self.export_last_success = Gauge("aifactory_audit_export_last_success_timestamp_seconds", "When the last audit export pass that exported everything ended (Unix time).", registry=r)
        self.runs_without_workers = Gauge("aifactory_runs_without_workers", "Running agent runs on a task queue that no worker polls, as the last export pass saw them.", ("task_queue",), registry=r)
        self.runs_without_workers_seen: set[str] = set()
        self.admitted: OrderedDict[str, None] = OrderedDict()
        """Runs this worker counted as started (a run's admission may run more than once)."""
        self.approvals_past_sla = Counter("aifactory_approvals_escalated", "Approval requests escalated or expired because nobody decided in time.", ("agent", "tenant", "event"), registry=r)
        self._agent_info = AgentInfoCollector()
        r.register(self._agent_info)

    def watch_releases(self, releases: ReleaseRegistry) -> None:
        """Expose `aifactory_agent_info{agent,version,owner,...}` for the releases `releases` holds,
        read at scrape time (workers/agent_info.py). Building another worker on these metrics points
        it at that worker's registry."""
        self._agent_info.registry = releases

    def watch_switches(self, db_url: str) -> None:
        """Expose `aifactory_kill_switch_on{scope,target}`, read from the store at scrape time."""
        self.registry.register(_SwitchCollector(db_url))


class _SwitchCollector:
    """Reads the switches that are on at scrape time (not the whole history, which only grows)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("aifactory_kill_switch_on", "Kill switches on (1) by scope and target.", labels=["scope", "target"])

    def describe(self):
        return [self._family()]

    def collect(self):
        family = self._family()
        try:
            rows = switch_history(self.db_url, on_only=True)
        except Exception:  # a scrape must not fail because the store is briefly unavailable
            rows = []
        for r in rows:
            family.add_metric([r.scope, r.target or "*"], 1.0)
        yield family


def _labels_from_workflow_id(workflow_id: str | None) -> tuple[str, str]:
    parts = (workflow_id or "").split("/")
    if len(parts) >= 4 and parts[0] == "agent":
        return parts[1], parts[2]
    return "unknown", "unknown"


class MetricsInterceptor(Interceptor):
    """Counts what activities do and how runs end; give it to `Worker(interceptors=[...])`."""

    def __init__(self, metrics: FactoryMetrics) -> None:
        self.metrics = metrics
        self._workflow_class = type("_BoundWorkflowMetrics", (_WorkflowMetrics,), {"metrics": metrics})

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityMetrics(next, self.metrics)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor] | None:
        return self._workflow_class


class _ActivityMetrics(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: FactoryMetrics) -> None:
        super().__init__(next)
        self.m = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        kind = info.activity_type
        if info.is_local:
            result = await super().execute_activity(input)
            if kind == "admit_run":
                self._admitted(info.workflow_id, info.workflow_run_id, result)
            return result
        started = time.monotonic()
        try:
            result = await super().execute_activity(input)
        except BaseException as e:
            self._observe(kind, input.args, None, e, time.monotonic() - started)
            raise
        self._observe(kind, input.args, result, None, time.monotonic() - started)
        return result

    def _admitted(self, workflow_id: str, run_id: str, admitted: Any) -> None:
        if run_id in self.m.admitted:
            return
        self.m.admitted[run_id] = None
        while len(self.m.admitted) > 10_000:
            self.m.admitted.popitem(last=False)
        agent, tenant = _labels_from_workflow_id(workflow_id)
        release = getattr(admitted, "release", None)
        self.m.runs_started.labels(release.spec.name if release else agent, release.release_version if release else "unknown", tenant).inc()

    def _observe(self, kind: str, args: Any, result: Any, error: BaseException | None, seconds: float) -> None:
        try:
            if kind == "call_model":
                self._model_call(args[0], result, "ok" if error is None else _error_type(error), seconds)
            elif kind == "send_notification":
                if error is None:
                    self._notification(args[0])
            elif kind == "export_audit":
                self._export_pass(result, error)
            elif args and isinstance(args[0], ToolContext):
                self._tool_call(kind, args[0], error, seconds)
        except Exception:  # metrics never break the work they describe
            activity.logger.exception("metrics: could not record %s", kind)

    def _model_call(self, inp, result, outcome: str, seconds: float) -> None:
        if result is not None and result.admitted is not None and result.admitted.switch is not None:
            return  # refused at admission: no call was made
        agent, tenant = _labels_from_workflow_id(activity.info().workflow_id)
        run = (agent, getattr(inp, "release_version", "") or "unknown", tenant)
        self.m.model_calls.labels(*run, outcome).inc()
        self.m.model_latency.labels(*run).observe(seconds)
        if result is not None and result.budget is not None and result.budget.limit_usd > 0:
            envelope = inp.envelope
            self.m.envelope_utilisation.labels(agent, envelope.tenant if envelope else tenant).set(result.budget.spent_usd / result.budget.limit_usd)
        if result is not None:
            u = result.usage
            self.m.tokens.labels(*run, "input").inc(u.prompt_tokens)
            self.m.tokens.labels(*run, "output").inc(u.completion_tokens)
            self.m.cost.labels(*run).inc(u.cost_usd)
        if activity.info().attempt == 1:  # settled calls ride on every attempt of the next call: count once
            for record in inp.settled:
                self.m.tool_calls.labels(*run, record.tool, record.outcome.value).inc()
                if record.decision is not None:
                    self.m.policy_decisions.labels(*run, record.decision.outcome.value).inc()

    def _tool_call(self, kind: str, ctx: ToolContext, error: BaseException | None, seconds: float) -> None:
        run = (ctx.agent, ctx.agent_version or "unknown", ctx.tenant)
        # Labelled by the tool's short name, as the run's records are, not by its activity name.
        definition = tool_for_activity(kind)
        tool = definition.name if definition is not None else kind
        self.m.tool_latency.labels(*run, tool).observe(seconds)
        # One count per call, on the attempt that ends it: success, a non-retryable error, or the last attempt.
        last = definition is not None and activity.info().attempt >= definition.meta.max_attempts
        if error is None or last or (isinstance(error, ApplicationError) and error.non_retryable):
            self.m.tool_calls.labels(*run, tool, "ok" if error is None else "failed").inc()
            if ctx.decision is not None:
                self.m.policy_decisions.labels(*run, ctx.decision.outcome.value).inc()

    def _export_pass(self, result, error: BaseException | None) -> None:
        if error is not None or result is None:
            self.m.export_passes.labels("failed").inc()
            return
        self.m.export_passes.labels("errors" if result.errors else "ok").inc()
        if not result.errors:
            self.m.export_last_success.set(time.time())
        for queue in set(self.m.runs_without_workers_seen) - set(result.queues_without_workers):
            self.m.runs_without_workers.labels(queue).set(0)  # a worker came back for it
        for queue, runs in result.queues_without_workers.items():
            self.m.runs_without_workers.labels(queue).set(runs)
        self.m.runs_without_workers_seen = set(result.queues_without_workers) | self.m.runs_without_workers_seen

    def _notification(self, n) -> None:
        gauge = self.m.approvals_pending.labels(n.agent, n.tenant)
        if n.kind == "approval_requested":
            gauge.inc()
        elif n.kind in ("approval_decided", "approval_expired"):
            gauge.dec()
        if n.kind == "approval_decided" and isinstance(n.details.get("waited_s"), (int, float)):
            self.m.approval_latency.labels(n.agent, n.tenant).observe(n.details["waited_s"])
        if n.kind.startswith("approval_escalated") or n.kind == "approval_expired":
            self.m.approvals_past_sla.labels(n.agent, n.tenant, "expired" if n.kind == "approval_expired" else "escalated").inc()


def _error_type(e: BaseException) -> str:
    if isinstance(e, ApplicationError) and e.type:
        return e.type
    return type(e).__name__


class _WorkflowMetrics(WorkflowInboundInterceptor):
    metrics: FactoryMetrics

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if workflow.info().workflow_type != Workflow.AGENT:
            return await super().execute_workflow(input)
        try:
            result = await super().execute_workflow(input)
        except (Exception, asyncio.CancelledError) as e:
            # How a run ends: a failure, or a cancellation. Not the BaseExceptions that only end this
            # worker's copy of it (continue-as-new, eviction, the coroutine closed when a stopping worker
            # drops it): the last can come outside the workflow's event loop, where asking whether the
            # workflow replays raises instead of answering.
            if not workflow.unsafe.is_replaying():
                labels = _run_labels()
                self._withdraw_pending(labels)
                self.metrics.runs_finished.labels(*labels, _error_type(e)).inc()
                # The calls that ended the run ran nothing and reach no model call: count them here.
                details = e.details[0] if isinstance(e, ApplicationError) and e.details else None
                for record in getattr(details, "settled", ()):
                    self.metrics.tool_calls.labels(*labels, record.tool, record.outcome.value).inc()
                    if record.decision is not None:
                        self.metrics.policy_decisions.labels(*labels, record.decision.outcome.value).inc()
            raise
        if not workflow.unsafe.is_replaying():
            labels = _run_labels()
            self.metrics.runs_finished.labels(*labels, "completed").inc()
            self._withdraw_pending(labels)
        return result

    def _withdraw_pending(self, labels: tuple[str, str, str]) -> None:
        """A run that ends with an approval still pending (stopped, failed, cancelled while it waited)
        no longer waits for anyone: the gauge goes back down by what it counted for the run."""
        pending = getattr(workflow.instance(), "pending_approvals", 0)
        if pending:
            self.metrics.approvals_pending.labels(labels[0], labels[2]).dec(pending)


def _run_labels() -> tuple[str, str, str]:
    """(agent, version, tenant) of the run this workflow task belongs to: the release it was admitted
    under, and the tenant of its business key (`unknown` before the worker resolved a release)."""
    agent, tenant = _labels_from_workflow_id(workflow.info().workflow_id)
    release = getattr(workflow.instance(), "release", None)
    return (release.spec.name if release else agent), (release.release_version if release else "unknown"), tenant
