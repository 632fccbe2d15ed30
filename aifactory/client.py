"""`FactoryClient`: how business systems start agent runs and read their results.

Not workflow-safe. A start sends the agent's name, the tenant, the run key and
the business input (optionally a version pin and labels): the worker resolves
everything that governs the run. The client checks the input against the
agent's input schema before anything starts, where it can see the agent, and a
refused input raises `RunInputRejected` with one sentence per problem, naming
the field. A failed run raises the `RunFailed` subclass named by its failure type
(`StepLimitExceeded`, `PolicyDenied`, ...: the tree is in `aifactory.errors`). A run's workflow id is its business key
(`agent/<name>/<tenant>/<run key>`), so starting the same run twice returns the
first run instead of starting another.

    async with await FactoryClient.connect() as factory:   # or FactoryClient(client, agents_dir)
        handle = await factory.start_run("it-triage", {...}, tenant="acme", run_key="T-1001")
        result = await handle.result()
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.releases.gate import check_agent
from activities.releases.loader import AgentNotFound, find_agent
from activities.releases.registry import ReleaseRefused, ReleaseRegistry
from aifactory.errors import AgentNotAdmitted, ApprovalRefused, RunFailed, RunInputRejected, RunRefused, run_failed
from aifactory.signing import Signer, signing_folders
from contracts import search
from contracts import signing as S
from contracts import visibility as V
from contracts.agent import AgentRelease, Envelope
from contracts.approval import ApprovalDecision, ApprovalLedger, ApprovalRequest, DecisionAnswer, Verdict
from activities.codec_keys import check_codec_keys
from activities.switches import active_switch, lift_switch, set_switch
from activities.budget import BudgetLedger
from contracts.budget import BudgetDecision
from contracts.control import KillSwitchState, StopAnswer, StopOrder, SwitchScope, ToolResolution
from contracts.errors import RELEASE_UNKNOWN
from contracts.run import AgentRunInput, AgentRunResult, RunFailure, RunStatus, run_workflow_id
from contracts.schema import schema_problems
from contracts.wire import Query, Update, Workflow
from policies.loader import policies_dir
from workers.settings import Settings, connect
from workflows.agent import AgentWorkflow


#: A run whose workflow task has been tried this often is failing it, not busy: it cannot take a stop order.
WEDGED_ATTEMPTS = 3


def _failure_details(error: ApplicationError) -> RunFailure | None:
    try:
        return RunFailure.model_validate(error.details[0]) if error.details else None
    except ValidationError:
        return None


@dataclass
class PendingApproval:
    workflow_id: str
    agent: str
    tenant: str
    request: ApprovalRequest


@dataclass
class RunHandle:
    workflow_id: str
    started: bool
    """False when a run with this business key already existed and was returned instead."""
    handle: WorkflowHandle

    async def result(self) -> AgentRunResult:
        """The run's result, or the `RunFailed` subclass named by its failure type (`aifactory.errors`)."""
        try:
            return await self.handle.result()
        except WorkflowFailureError as e:
            cause = e.cause
            while cause is not None and not isinstance(cause, ApplicationError) and cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, ApplicationError):
                raise run_failed(self.workflow_id, cause.type, cause.message, _failure_details(cause)) from None
            raise RunFailed(self.workflow_id, None, str(e.cause or e)) from None

    async def status(self) -> RunStatus:
        return await query_run(self.handle, Query.STATUS, RunStatus)

    async def execution_status(self) -> WorkflowExecutionStatus | None:
        return (await self.handle.describe()).status


log = logging.getLogger("aifactory.client")

#: How long a query waits out a run whose workflow task just failed (a worker timed out under load,
#: or was evicted mid-task): the server refuses queries until the task's retry completes.
QUERY_PATIENCE_S = 15.0


#: How long a listing waits for one run's answer before it lists the others without it.
LISTING_QUERY_TIMEOUT = timedelta(seconds=10)


async def query_run(
    handle: WorkflowHandle, name: str, result_type: type, *, patience_s: float = QUERY_PATIENCE_S, rpc_timeout: timedelta | None = None
):
    """Query a run, waiting out a workflow task in a failed state for a little while before saying so."""
    delay, waited = 0.1, 0.0
    while True:
        try:
            return await handle.query(name, result_type=result_type, rpc_timeout=rpc_timeout)
        except RPCError as e:
            if e.status != RPCStatusCode.FAILED_PRECONDITION or "Workflow Task in failed state" not in str(e) or waited >= patience_s:
                raise
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 2.0)


class FactoryClient:
    def __init__(
        self, client: Client, agents_dir: Path | None = None, *, evaluation_gate: bool = True, db_url: str | None = None,
        releases: ReleaseRegistry | None = None, task_queue: str = "aifactory-agents", signer: Signer | None = None,
    ) -> None:  # fmt: skip
        self.client = client
        self.agents_dir = agents_dir
        """Where the client reads agents to check inputs before starting (None: the worker checks them)."""
        self.evaluation_gate = evaluation_gate
        """False only for `aifactory eval`, which must run an agent whose evaluation is pending."""
        self.db_url = db_url
        """The factory's SQL store, where kill switches are kept. Given it, a start under a switch is
        refused here with `RunRefused`; without it the run itself refuses at its first step."""
        self.releases = releases
        """The releases the workers run, where the caller has them (tests, `aifactory eval`): starts are
        checked against these instead of the agents folder."""
        self.task_queue = task_queue
        """Where runs start when the client cannot see the agent's spec (its `task_queue` otherwise)."""
        self.signer = signer
        """Signs the decisions this client sends (approvals, stops, budget and tool decisions): people's
        own keys, or a service's key for the people it acts for. None: decisions go unsigned (refused
        by runs unless the directory says `require_signatures: false`)."""
        self._admitted: dict[str, tuple[tuple, AgentRelease]] = {}

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> "FactoryClient":
        """A client with the settings of the environment: the factory's home (or `AIFACTORY_DB_URL`),
        its Temporal address and its key ring, which must be the workers' (`KeyRingError` if not).
        Outside a project with no `AIFACTORY_HOME`, `FactoryHomeNotFound` names the setting."""
        settings = settings or Settings.from_env()
        db_url = settings.db_url
        ring = settings.key_ring()
        if ring is not None:
            await asyncio.to_thread(check_codec_keys, db_url, ring)
        agents = settings.agents_dir if settings.agents_dir.is_dir() else None
        signer = Signer.from_folders(*signing_folders(settings))
        return cls(await connect(settings), agents, db_url=db_url, task_queue=settings.task_queue, signer=signer)

    async def __aenter__(self) -> "FactoryClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def release(self, agent: str, version: str | None = None) -> AgentRelease:
        """The agent as admitted, or `AgentNotAdmitted` listing what the gate refused.

        The gate reads every file of the agent and its policy bundle; its verdict is kept until
        one of those files changes, so starting runs does not re-read them each time.
        """
        if self.releases is not None:
            try:
                return self.releases.resolve(agent, version)
            except ReleaseRefused as e:
                raise (AgentNotFound if e.type == RELEASE_UNKNOWN else AgentNotAdmitted)(str(e)) from None
        if self.agents_dir is None:
            raise AgentNotAdmitted(f"this client has no agents folder to read agent {agent!r} from")
        stamp = self._stamp(agent)
        cached = self._admitted.get(agent)
        if cached and cached[0] == stamp:
            return cached[1]
        loaded = find_agent(self.agents_dir, agent)
        problems = check_agent(loaded, evaluation_gate=self.evaluation_gate)
        if problems or loaded.release is None:
            raise AgentNotAdmitted(f"agent {agent!r} is not admitted: " + "; ".join(map(str, problems)))
        self._admitted[agent] = (stamp, loaded.release)
        return loaded.release

    def _stamp(self, agent: str) -> tuple:
        assert self.agents_dir is not None
        folders = [self.agents_dir / agent, policies_dir()]  # includes eval/baseline.json
        return tuple(
            (str(p), p.stat().st_mtime_ns) for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()
        )

    def _visible(self, agent: str, version: str | None) -> AgentRelease | None:
        """The release the client can check a start against, if it sees the agent at all."""
        if self.releases is None and self.agents_dir is None:
            return None
        return self.release(agent, version)

    def build_input(
        self, agent: str, input: dict[str, Any], *, tenant: str, run_key: str, requester: str = "",
        version: str | None = None, labels: dict[str, str] | None = None,
    ) -> AgentRunInput:  # fmt: skip
        """The thin start of a run, checked against the agent where the client can see it."""
        release = self._visible(agent, version)
        if not isinstance(input, dict):
            raise RunInputRejected(agent, ["input must be a JSON object"])
        problems = schema_problems(release.spec.input_schema, input) if release is not None else []
        try:
            run_input = AgentRunInput(
                agent=agent, version=version, input=input, tenant=tenant, run_key=run_key, requester=requester, labels=labels or {}
            )
        except ValidationError as e:
            problems += [f"{'.'.join(map(str, err['loc']))} {err['msg'].removeprefix('Value error, ')}" for err in e.errors()]
            run_input = None
        if problems or run_input is None:
            raise RunInputRejected(agent, problems)
        return run_input

    async def start_run(
        self, agent: str, input: dict[str, Any], *, tenant: str, run_key: str, requester: str = "",
        version: str | None = None, labels: dict[str, str] | None = None,
    ) -> RunHandle:  # fmt: skip
        """Start a run, or return the existing run with the same business key."""
        run_input = self.build_input(agent, input, tenant=tenant, run_key=run_key, requester=requester, version=version, labels=labels)
        return await self.start_prepared(run_input)

    async def start_prepared(self, run_input: AgentRunInput) -> RunHandle:
        release = self._visible(run_input.agent_name, run_input.version)
        name, tenant, wid = run_input.agent_name, run_input.tenant, run_input.workflow_id
        if self.db_url is not None:  # refused here at once; the worker refuses it too, at admission
            switch = await asyncio.to_thread(active_switch, self.db_url, name, tenant)
            if switch is not None:
                raise RunRefused(f"run of {name} for tenant {tenant} refused: {switch.describe()}")
            if release is not None and release.spec.envelope is not None:
                key = self.envelope_key(name, tenant, release.spec.envelope)
                spent = await asyncio.to_thread(BudgetLedger(self.db_url).exhausted, key)
                if spent is not None:
                    raise RunRefused(
                        f"run of {name} for tenant {tenant} refused: its cost envelope {key} is spent "
                        f"(${spent.spent_usd:.4f} of ${spent.limit_usd:.4f}); raise it with `aifactory envelope raise`"
                    )
        labels = [SearchAttributePair(search.AGENT_NAME, name), SearchAttributePair(search.TENANT, tenant)]
        if release is not None:  # the worker sets them from the release it resolves, and corrects these
            labels += [
                SearchAttributePair(search.AGENT_VERSION, release.release_version),
                SearchAttributePair(search.AGENT_OWNER, release.spec.owner.name),
            ]
        try:
            handle = await self.client.start_workflow(
                AgentWorkflow.run,
                run_input,
                id=wid,
                task_queue=release.spec.task_queue if release is not None else self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes(labels),
                static_summary=f"{name} {release.release_version if release else ''} for {tenant}".replace("  ", " "),
                static_details=(f"Owner: {release.spec.owner.name} ({release.spec.owner.contact}) · " if release else "")
                + f"run key {run_input.run_key}",
            )
        except WorkflowAlreadyStartedError:
            # Same business key, open or closed: the run exists once; hand back that run.
            return RunHandle(wid, False, self.client.get_workflow_handle(wid, result_type=AgentRunResult))
        return RunHandle(wid, True, handle)

    def run_handle(self, agent: str, tenant: str, run_key: str) -> RunHandle:
        wid = run_workflow_id(agent, tenant, run_key)
        return RunHandle(wid, False, self.client.get_workflow_handle(wid, result_type=AgentRunResult))

    def handle(self, workflow_id: str) -> RunHandle:
        return RunHandle(workflow_id, False, self.client.get_workflow_handle(workflow_id, result_type=AgentRunResult))

    # -- approvals ---------------------------------------------------------------------------

    def _sign(self, kind: str, run_id: str, person: str, body: dict, evidence: str | None = None):
        return self.signer.sign(kind, run_id, person, body, evidence=evidence) if self.signer is not None else None

    async def decide(
        self, workflow_id: str, person: str, verdict: Verdict | str, note: str | None = None, request_id: str | None = None,
        *, evidence: str | None = None,
    ) -> DecisionAnswer:
        """Approve or reject a pending request, signed with `person`'s key (or this client's service key,
        naming `evidence`); the run answers synchronously, refusals raise `ApprovalRefused`."""
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            if request_id is None and self.signer is not None:  # a signature binds the decision to one request
                ledger = await query_run(handle, Query.APPROVALS, ApprovalLedger)
                pending = [r for r in ledger.requests if r.status.value == "pending"]
                request_id = pending[0].id if pending else (ledger.requests[-1].id if ledger.requests else None)
            decision = ApprovalDecision(approver=person, note=note, request_id=request_id, verdict=Verdict(verdict))
            body = S.approval_body(decision.request_id, decision.verdict.value, decision.note)
            decision.signature = self._sign(S.APPROVAL, workflow_id, person, body, evidence)
            return await handle.execute_update(Update.DECIDE_APPROVAL, decision, result_type=DecisionAnswer)
        except (RPCError, WorkflowUpdateFailedError) as e:
            raise _refusal(ApprovalRefused, workflow_id, e, "; nothing is waiting for a decision") from None

    async def pending_approvals(self, group: str | None = None) -> list[PendingApproval]:
        """Runs parked on an approval (optionally for one group), with what they wait for."""
        query = V.all_of(V.eq("AwaitingApproval", True), V.eq("ExecutionStatus", "Running"), V.eq("ApprovalGroup", group) if group is not None else "")
        out: list[PendingApproval] = []
        async for wf in self.client.list_workflows(query):
            try:
                ledger = await query_run(self.client.get_workflow_handle(wf.id), Query.APPROVALS, ApprovalLedger, rpc_timeout=LISTING_QUERY_TIMEOUT)
            except RPCError as e:  # no worker answers for it (its queue has none): list the others
                log.warning("run %s waits for an approval but did not answer (%s): is a worker polling its queue?", wf.id, e.message or e.status)
                continue
            attrs = wf.typed_search_attributes
            for request in ledger.requests:
                if request.status.value == "pending" and (group is None or request.group == group):
                    out.append(
                        PendingApproval(wf.id, attrs.get(search.AGENT_NAME) or "?", attrs.get(search.TENANT) or "?", request)
                    )
        return sorted(out, key=lambda p: p.request.deadline)

    # -- writes that ran out of retries ------------------------------------------------------

    async def resolve_tool(self, workflow_id: str, action: str, *, by: str, reason: str = "") -> StopAnswer:
        """Retry now (`retry`), or give up (`give_up`, with a reason), the call a run waits on an operator for."""
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            resolution = ToolResolution(action=action, by=by, reason=reason, signature=self._sign(S.TOOL, workflow_id, by, S.tool_body(action, reason)))
            return await handle.execute_update(Update.RESOLVE_TOOL, resolution, result_type=StopAnswer)
        except (RPCError, WorkflowUpdateFailedError) as e:
            raise _refusal(RunRefused, workflow_id, e) from None

    # -- kill switches ---------------------------------------------------------------------

    async def kill(self, scope: SwitchScope, target: str, *, reason: str, by: str, passes: int = 12) -> "KillReport":
        """Turn a kill switch on and stop every matching run in flight.

        The switch is written first, so a run that starts from now on is refused; then every
        running run in scope gets the `stop` update. Its acknowledgement means the run starts no
        further activity. Listing repeats until a pass finds no run left to stop, which also
        catches runs that started just before the switch and were not yet visible. A run that
        cannot take the order (its workflow task keeps failing, or no worker answers it through
        every pass) is terminated, with the switch and the reason recorded on the termination.
        """
        if self.db_url is None:
            raise RunRefused("kill switches need the factory's SQL store (AIFACTORY_DB_URL)")
        # The scope is checked before the switch is written: a refused value stops nothing and records nothing.
        query = running_runs_query(
            agent=target if scope is SwitchScope.AGENT else None, tenant=target if scope is SwitchScope.TENANT else None
        )
        switch = await asyncio.to_thread(set_switch, self.db_url, scope, target, reason=reason, by=by)
        order = StopOrder(by=by, reason=reason, switch_id=switch.id)
        report = KillReport(switch)
        gate = asyncio.Semaphore(25)

        async def terminate(wid: str, why: str) -> None:
            try:
                await self.client.get_workflow_handle(wid).terminate(
                    reason=f"kill switch #{switch.id} by {by}: {reason} (terminated: {why})"
                )
                report.terminated.append(wid)
            except RPCError as e:
                if e.status is RPCStatusCode.NOT_FOUND:
                    report.finished.append(wid)

        async def stop(wid: str, last: bool) -> None:
            async with gate:
                handle = self.client.get_workflow_handle(wid)
                try:
                    pending = (await handle.describe()).raw_description.pending_workflow_task
                    if pending.attempt >= WEDGED_ATTEMPTS:
                        return await terminate(wid, f"its workflow task failed {pending.attempt - 1} times, so it cannot take a stop order")
                    signed = order.model_copy(update={"signature": self._sign(S.STOP, wid, by, S.stop_body(reason, switch.id))})
                    answer = await handle.execute_update(Update.STOP, signed, result_type=StopAnswer, rpc_timeout=timedelta(seconds=15))
                    if answer.acknowledged:
                        report.stopped.append(wid)
                except RPCError as e:
                    if e.status is RPCStatusCode.NOT_FOUND:
                        report.finished.append(wid)  # it ended on its own between the listing and the order
                    elif last:
                        await terminate(wid, f"the stop order could not be delivered ({e.message})")
                except WorkflowUpdateRPCTimeoutOrCancelledError:
                    if last:  # no worker took the order through every pass
                        await terminate(wid, "no worker took the stop order")
                except WorkflowUpdateFailedError:
                    report.finished.append(wid)

        todo: list[str] = []
        for attempt in range(passes):
            done = set(report.stopped) | set(report.finished) | set(report.terminated)
            todo = [wf.id async for wf in self.client.list_workflows(query) if wf.id not in done]
            if not todo:
                break
            await asyncio.gather(*(stop(wid, attempt == passes - 1) for wid in todo))
            await asyncio.sleep(min(0.25 * 2**attempt, 5.0))
        report.missed = [wid for wid in todo if wid not in report.stopped and wid not in report.finished and wid not in report.terminated]
        return report

    async def unkill(self, scope: SwitchScope, target: str, *, reason: str, by: str) -> list[KillSwitchState]:
        """Lift the switch: new runs may start again. Runs it stopped stay stopped."""
        if self.db_url is None:
            raise RunRefused("kill switches need the factory's SQL store (AIFACTORY_DB_URL)")
        running_runs_query(agent=target if scope is SwitchScope.AGENT else None, tenant=target if scope is SwitchScope.TENANT else None)
        stored_target = "" if scope is SwitchScope.ALL else target

        def sign(switch_id: int):  # proof of who lifted it: a worker honours no lift without it
            return self._sign(S.SWITCH_LIFT, f"switch/{switch_id}", by.strip(), S.switch_body(scope.value, stored_target, reason.strip()))

        return await asyncio.to_thread(lambda: lift_switch(self.db_url, scope, target, reason=reason, by=by, sign=sign))

    # -- cost envelopes --------------------------------------------------------------------

    def envelope_key(self, agent: str, tenant: str, env: Envelope | None = None) -> str:
        """Today's (or this month's) envelope key of `agent` for `tenant`, as runs compute it
        (from the admitted spec's envelope unless `env` is given)."""
        env = env or self.release(agent).spec.envelope
        if env is None:
            raise RunRefused(f"agent {agent!r} has no cost envelope")
        return env.key(agent, tenant, datetime.now(timezone.utc).date())

    async def decide_budget(
        self, agent: str, tenant: str | None, decision: BudgetDecision, *, raise_to: float | None = None, key: str | None = None
    ) -> list[str]:
        """Raise the envelope `key` (default: the agent's for `tenant` today) to `raise_to`, if given,
        and hand every run of `agent` paused on it the decision; returns the runs that took it."""
        if raise_to is not None:
            if self.db_url is None:
                raise RunRefused("cost envelopes need the factory's SQL store (AIFACTORY_DB_URL)")
            key = key or self.envelope_key(agent, tenant or "*")
            try:
                await asyncio.to_thread(BudgetLedger(self.db_url).raise_limit, key, raise_to, decision.by)
            except (KeyError, ValueError) as e:
                raise RunRefused(str(e).strip("'\"")) from None
        taken = []
        async for wf in self.client.list_workflows(running_runs_query(agent=agent, tenant=tenant)):
            handle = self.client.get_workflow_handle(wf.id)
            status = await query_run(handle, Query.STATUS, RunStatus)
            if status.state.value == "awaiting_budget":
                signed = decision.model_copy(update={"signature": self._sign(S.BUDGET, wf.id, decision.by, S.budget_body(decision.action, decision.note))})
                answer = await handle.execute_update(Update.BUDGET_DECISION, signed, result_type=StopAnswer)
                if answer.acknowledged:
                    taken.append(wf.id)
        return taken


def _refusal(kind: type[Exception], workflow_id: str, e: Exception, idle: str = "") -> Exception:
    """An update the run refused (its reason), or one for a run that is not running; other RPC errors as they are."""
    if isinstance(e, RPCError):
        return kind(f"run {workflow_id} is not running ({e.message}){idle}") if e.status is RPCStatusCode.NOT_FOUND else e
    cause = getattr(e, "cause", None)
    return kind(cause.message if isinstance(cause, ApplicationError) else str(cause or e))


def running_runs_query(*, agent: str | None = None, tenant: str | None = None) -> str:
    """Visibility query for the agent runs in flight, of one agent and/or tenant, or all of them
    (each value checked against its grammar: `QueryValueRejected` names one that is not).

    An agent run is one that carries `AgentName` (set at start, corrected by the worker), whatever
    its workflow type: a type is an implementation name, the agent is what an operator means. With
    no agent named, an agent workflow started without the label (a raw start its worker has not yet
    admitted, perhaps never will) is in scope too, so `kill --all` reaches it."""
    every_agent = V.any_of(V.present("AgentName"), V.eq("WorkflowType", Workflow.AGENT.value))
    return V.all_of(
        V.eq("AgentName", agent) if agent is not None else every_agent, V.eq("ExecutionStatus", "Running"),
        V.eq("Tenant", tenant) if tenant is not None else "",
    )  # fmt: skip


@dataclass
class KillReport:
    switch: KillSwitchState
    stopped: list[str] = field(default_factory=list)
    """Runs that acknowledged the stop order."""
    finished: list[str] = field(default_factory=list)
    """Runs that ended on their own before the order reached them."""
    terminated: list[str] = field(default_factory=list)
    """Runs that could not take the stop order (a failing workflow task, no worker) and were terminated."""
    missed: list[str] = field(default_factory=list)
    """Runs still running after every pass (not even termination went through): the operator must look."""

