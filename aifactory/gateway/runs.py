"""What the gateway does with the factory: start, read, list what waits for a person, decide.

Not workflow-safe. Everything goes through the `FactoryClient` the app was
built with. Every name that reaches Temporal has been checked against the
contracts' grammars first (whole values: `fullmatch`), and the one visibility
query here is built by `contracts.visibility`, which checks each value again
and quotes it, so no caller's string can add a clause to it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from activities.releases.loader import AgentNotFound
from aifactory.client import AgentNotAdmitted, FactoryClient, RunFailed, RunHandle
from aifactory.gateway.bodies import (
    Decide, Decision, Failure, Links, PendingDecision, PendingDecisions, Phase, RunStarted, RunView, StartRun,
    run_key_problem, tenant_problem,
)  # fmt: skip
from aifactory.gateway.callers import Caller
from aifactory.gateway.errors import Forbidden, InvalidRequest, NotFound
from contracts import visibility as V
from contracts.agent import AGENT_NAME
from contracts.approval import ApprovalLedger
from contracts.run import RunStatus, run_workflow_id
from contracts.wire import Query

log = logging.getLogger("aifactory.gateway")

QUERY_TIMEOUT = timedelta(seconds=10)
"""How long a run may take to answer a query before the gateway answers without it."""
PHASES = {
    WorkflowExecutionStatus.RUNNING: Phase.RUNNING, WorkflowExecutionStatus.COMPLETED: Phase.COMPLETED,
    WorkflowExecutionStatus.FAILED: Phase.FAILED, WorkflowExecutionStatus.CANCELED: Phase.CANCELED,
    WorkflowExecutionStatus.TERMINATED: Phase.TERMINATED, WorkflowExecutionStatus.TIMED_OUT: Phase.TIMED_OUT,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: Phase.RUNNING,  # it goes on in its next execution
}  # fmt: skip


def agent_problem(value: str) -> str | None:
    return None if AGENT_NAME.fullmatch(value) else "must be an agent name: lowercase letters, digits and dashes, starting with a letter"


def checked(where: str, value: str, problem: str | None) -> str:
    if problem:
        raise InvalidRequest(f"{where}: {problem}", [f"{where}: {problem}"])
    return value


def group_problem(value: str) -> str | None:
    try:
        V.check("ApprovalGroup", value)
    except V.QueryValueRejected:
        return "must be an approver group name such as 'it-desk-leads' (1-63 lowercase letters, digits, '.', '_' or '-')"
    return None


@dataclass(frozen=True)
class RunId:
    agent: str
    tenant: str
    run_key: str

    @property
    def workflow_id(self) -> str:
        return run_workflow_id(self.agent, self.tenant, self.run_key)

    @classmethod
    def parse(cls, raw: str) -> "RunId":
        """A run id as the gateway hands them out (`agent/<agent>/<tenant>/<run key>`), checked part by part."""
        parts = raw.split("/")
        if len(parts) != 4 or parts[0] != "agent":
            raise InvalidRequest("path parameter 'run_id': a run id is agent/<agent>/<tenant>/<run key>, e.g. agent/it-triage/acme/T-1001")
        run = cls(*parts[1:])
        problems = [
            f"run id's {what}: {p}"
            for what, p in (("agent", agent_problem(run.agent)), ("tenant", tenant_problem(run.tenant)), ("run key", run_key_problem(run.run_key)))
            if p
        ]  # fmt: skip
        if problems:
            raise InvalidRequest("path parameter 'run_id': " + "; ".join(problems), problems)
        return run


def links(workflow_id: str) -> Links:
    return Links(run=f"/v1/runs/{workflow_id}", decisions=f"/v1/runs/{workflow_id}/decisions")


def in_scope(caller: Caller, agent: str, tenant: str) -> None:
    if not caller.may_tenant(tenant):
        raise Forbidden(f"{caller.name} does not cover tenant {tenant!r}")
    if not caller.may_agent(agent):
        raise Forbidden(f"{caller.name} does not cover agent {agent!r}")


# -- start ---------------------------------------------------------------------------------------


def run_key_of(body: StartRun, idempotency_key: str | None) -> str:
    header = idempotency_key.strip() if idempotency_key is not None else None
    if header is not None:
        checked("header 'Idempotency-Key'", header, run_key_problem(header))
    if body.run_key and header and body.run_key != header:
        raise InvalidRequest("field 'run_key' and header 'Idempotency-Key' differ: send one of them, or the same key in both")
    key = body.run_key or header
    if not key:
        raise InvalidRequest("field 'run_key' is required (or send it as the Idempotency-Key header)", ["field 'run_key' is required"])
    return key


def requester_of(caller: Caller, body: StartRun) -> str:
    """A person's key starts runs as that person, so no one can name someone else as the
    requester of a run and then approve it; a system's key names the person it acts for."""
    if caller.person is None:
        return body.requester.strip() or caller.requester
    if body.requester.strip() and body.requester.strip() != caller.person:
        raise Forbidden(f"{caller.name} acts for {caller.person} and starts runs as that person: leave out 'requester'")
    return caller.person


async def start(factory: FactoryClient, caller: Caller, agent: str, body: StartRun, idempotency_key: str | None) -> RunStarted:
    checked("path parameter 'agent'", agent, agent_problem(agent))
    run_key = run_key_of(body, idempotency_key)
    in_scope(caller, agent, body.tenant)
    handle = await factory.start_run(
        agent, body.input, tenant=body.tenant, run_key=run_key, requester=requester_of(caller, body),
        version=body.version, labels=body.labels,
    )  # fmt: skip
    wid = handle.workflow_id
    return RunStarted(run_id=wid, started=handle.started, agent=agent, tenant=body.tenant, run_key=run_key, links=links(wid))


# -- read ----------------------------------------------------------------------------------------


async def existing(factory: FactoryClient, run: RunId) -> tuple[RunHandle, Phase]:
    handle = factory.handle(run.workflow_id)
    try:
        desc = await handle.handle.describe()
    except RPCError as e:
        if e.status is not RPCStatusCode.NOT_FOUND:
            raise
        raise NotFound(f"no run {run.workflow_id}") from None
    return handle, PHASES.get(desc.status, Phase.RUNNING) if desc.status is not None else Phase.RUNNING


async def progress(handle: RunHandle) -> RunStatus | None:
    try:
        return await handle.handle.query(Query.STATUS, result_type=RunStatus, rpc_timeout=QUERY_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as e:
        log.warning("run %s did not answer its status query: %s", handle.workflow_id, e)
        return None


async def read(factory: FactoryClient, run: RunId) -> RunView:
    handle, phase = await existing(factory, run)
    view = RunView(run_id=run.workflow_id, agent=run.agent, tenant=run.tenant, run_key=run.run_key, status=phase, links=links(run.workflow_id))
    if phase is Phase.RUNNING:
        view.progress = await progress(handle)
    elif phase is Phase.COMPLETED:
        view.result = await handle.result()
    else:
        try:
            view.result = await handle.result()
        except RunFailed as e:
            kind = e.type or phase.value.replace("_", " ").title().replace(" ", "")
            view.failure = Failure(type=kind, message=str(e).removeprefix(f"run {run.workflow_id} failed ({e.type or 'error'}): "))
    return view


# -- approvals -----------------------------------------------------------------------------------


def agent_known(factory: FactoryClient, agent: str) -> bool:
    """Whether the factory deploys `agent` (True when this client cannot see the agents at all)."""
    if factory.releases is None and factory.agents_dir is None:
        return True
    try:
        factory.release(agent)
    except AgentNotFound:
        return False
    except AgentNotAdmitted:
        return True
    return True


def approvals_query(tenants: list[str] | None, agents: list[str] | None, group: str | None) -> str:
    """Running agent runs parked on an approval, of these tenants and agents (None: any), for `group`."""
    return V.all_of(
        V.present("AgentName"), V.eq("ExecutionStatus", "Running"), V.eq("AwaitingApproval", True),
        V.any_of(*(V.eq("Tenant", t) for t in tenants)) if tenants is not None else "",
        V.any_of(*(V.eq("AgentName", a) for a in agents)) if agents is not None else "",
        V.eq("ApprovalGroup", group) if group is not None else "",
    )  # fmt: skip


async def pending(
    factory: FactoryClient, caller: Caller, *, group: str | None, tenant: str | None, agent: str | None, limit: int
) -> PendingDecisions:
    """Runs waiting for a person, selected by the caller's scope in the visibility query itself,
    so a caller's listing never touches (or waits on) another tenant's runs."""
    if group is not None:
        checked("query parameter 'group'", group, group_problem(group))
    tenants, agents = caller.scope_terms()
    if tenant is not None:
        checked("query parameter 'tenant'", tenant, tenant_problem(tenant))
        if not caller.may_tenant(tenant):
            raise Forbidden(f"{caller.name} does not cover tenant {tenant!r}")
        tenants = [tenant]
    if agent is not None:
        checked("query parameter 'agent'", agent, agent_problem(agent))
        if not caller.may_agent(agent):
            raise Forbidden(f"{caller.name} does not cover agent {agent!r}")
        if not agent_known(factory, agent):
            raise NotFound(f"no agent {agent!r} is deployed on this factory")
        agents = [agent]
    if tenants == [] or agents == []:
        return PendingDecisions(approvals=[])
    gate = asyncio.Semaphore(16)

    async def waiting(wid: str) -> list[PendingDecision]:
        async with gate:
            try:
                ledger = await factory.client.get_workflow_handle(wid).query(Query.APPROVALS, result_type=ApprovalLedger, rpc_timeout=QUERY_TIMEOUT)
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as e:
                log.warning("run %s did not answer its approvals query, left out of the listing: %s", wid, e)
                return []
        try:
            run = RunId.parse(wid)
        except InvalidRequest:
            return []  # not a run id the gateway hands out
        return [
            PendingDecision(run_id=wid, agent=run.agent, tenant=run.tenant, request=r, links=links(wid))
            for r in ledger.requests
            if r.status.value == "pending" and (group is None or r.group == group) and caller.may_tenant(run.tenant) and caller.may_agent(run.agent)
        ]  # fmt: skip

    wids = [wf.id async for wf in factory.client.list_workflows(approvals_query(tenants, agents, group), limit=limit)]
    found = [p for batch in await asyncio.gather(*(waiting(w) for w in wids)) for p in batch]
    return PendingDecisions(approvals=sorted(found, key=lambda p: p.request.deadline))


# -- decide --------------------------------------------------------------------------------------


async def decide(factory: FactoryClient, caller: Caller, run: RunId, body: Decide) -> Decision:
    in_scope(caller, run.agent, run.tenant)
    if caller.person is None:
        raise Forbidden(f"{caller.name} acts for no person, and decisions are made by a person: use a key created with --person, or a token that names one")
    await existing(factory, run)
    answer = await factory.decide(run.workflow_id, caller.person, body.verdict, body.note, body.request_id, evidence=f"gateway {caller.name}")
    return Decision(
        run_id=run.workflow_id, person=caller.person, accepted=answer.accepted, request_id=answer.request_id,
        status=answer.status, reason=answer.reason, duplicate=answer.duplicate,
    )  # fmt: skip
