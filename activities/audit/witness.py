"""Check the audit store against what it cannot rewrite: the witness's history, and Temporal's runs.

Not workflow-safe (Temporal client, SQL). The store's own anchors live in the
same database as its records, so an insider who truncates a chain can delete
the anchors past the cut and move the head back, or delete a run altogether.
Two things outside the database catch that:

- the witness: every export pass signalled the day's `AuditWitnessWorkflow` with
  the heads it anchored, MACed under the audit key; the store must still hold
  each witnessed head, record for record;
- Temporal itself: every agent run it still knows (within the namespace's
  retention) must be in the store once an export pass had time to take it, and
  a closed run's story must end with its closing record.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowExecutionStatus

from activities.audit.chain import run_ref, witness_mac, witness_scope
from activities.audit.store import AuditRecordRow, AuditRun
from activities.audit.summary import ends
from activities.audit.verify import Problem
from activities.db import engine_for
from activities.keys import KeyRing
from contracts import visibility as V
from contracts.audit import WITNESS_PREFIX, WITNESS_WORKFLOW, WitnessBatch, WitnessEntry
from contracts.wire import Signal, Workflow

AGENT_WORKFLOW = Workflow.AGENT


@dataclass
class Witnessed:
    """The furthest head the witness saw for one run."""

    entry: WitnessEntry
    witness: str
    """The witness workflow that holds it."""


async def witnessed_heads(
    client: Client, ring: KeyRing, *, workflow_id: str | None = None
) -> tuple[dict[tuple[str, str], Witnessed], list[Problem]]:
    """The furthest head witnessed per run of this store (or of one run), and entries that do not verify."""
    scopes = {witness_scope(ring, kid) for kid in ring.keys}
    heads: dict[tuple[str, str], Witnessed] = {}
    problems: list[Problem] = []
    async for wf in client.list_workflows(V.eq("WorkflowType", WITNESS_WORKFLOW)):
        scope = wf.id.removeprefix(WITNESS_PREFIX).split("/")[0]
        if not wf.id.startswith(WITNESS_PREFIX) or scope not in scopes:
            continue  # another store's witness (or not a witness)
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        for event in history.events:
            if not event.HasField("workflow_execution_signaled_event_attributes"):
                continue
            a = event.workflow_execution_signaled_event_attributes
            if a.signal_name != Signal.WITNESS:
                continue
            [batch] = await client.data_converter.decode(a.input.payloads, [WitnessBatch])
            for e in batch.entries:
                if workflow_id is not None and e.workflow_id != workflow_id:
                    continue
                ref = run_ref(e.workflow_id, e.first_execution)
                if e.key_id not in ring.keys or not hmac.compare_digest(
                    e.mac, witness_mac(ring, e.key_id, ref, e.seq, e.head_hash, e.closed, e.job_id, e.at, e.retired)
                ):
                    problems.append(Problem(e.workflow_id, 0, f"an entry of witness {wf.id} does not verify under the audit key (forged?)"))
                    continue
                seen = heads.get((e.workflow_id, e.first_execution))
                if seen is None or e.seq > seen.entry.seq or (e.retired and e.seq >= seen.entry.seq):
                    heads[(e.workflow_id, e.first_execution)] = Witnessed(e, wf.id)
    return heads, problems


def check_witnessed(db_url: str, heads: dict[tuple[str, str], Witnessed]) -> list[Problem]:
    """Every witnessed head must still be in the store, as the witness saw it."""
    problems = []
    with Session(engine_for(db_url)) as s:
        for (workflow_id, first_execution), seen in sorted(heads.items()):
            e = seen.entry
            if e.retired:  # deleted by the retention job, and the witness was told so
                continue
            when = f"export {e.job_id} at {e.at:%Y-%m-%d %H:%M:%S} UTC"
            run = s.exec(select(AuditRun).where(AuditRun.workflow_id == workflow_id, AuditRun.first_execution == first_execution)).first()
            if run is None:
                problems.append(Problem(workflow_id, 0, f"deleted: the witness saw its chain up to #{e.seq} ({when}); the store has no such run"))
                continue
            last = s.exec(select(AuditRecordRow.seq).where(AuditRecordRow.run_pk == run.id).order_by(col(AuditRecordRow.seq).desc())).first() or 0
            at = s.exec(select(AuditRecordRow).where(AuditRecordRow.run_pk == run.id, AuditRecordRow.seq == e.seq)).first()
            if last < e.seq:
                missing = f"#{last + 1}" if last + 1 == e.seq else f"#{last + 1}..#{e.seq}"
                problems.append(Problem(workflow_id, last + 1, f"missing: the witness saw the chain up to #{e.seq} ({when}), the store ends at #{last} (records {missing} gone)"))
            elif at is None or at.hash != e.head_hash:
                problems.append(Problem(workflow_id, e.seq, f"is not the record the witness saw ({when}): rewritten"))
            elif run.head_seq < e.seq:
                problems.append(Problem(workflow_id, run.head_seq + 1, f"the run's head was moved back to #{run.head_seq}; the witness saw #{e.seq} ({when})"))
    return problems


async def check_complete(
    client: Client, db_url: str, *, grace: timedelta = timedelta(minutes=10), now: datetime | None = None, workflow_id: str | None = None
) -> list[Problem]:
    """Runs Temporal knows that the store lacks, and closed runs whose story has no closing record.

    A run counts once `grace` has passed since it started (or closed): an export pass had time for it."""
    now = now or datetime.now(timezone.utc)
    latest: dict[str, object] = {}
    query = V.all_of(V.eq("WorkflowType", AGENT_WORKFLOW), V.eq("WorkflowId", workflow_id) if workflow_id else "")
    async for wf in client.list_workflows(query):
        seen = latest.get(wf.id)
        if seen is None or wf.start_time > seen.start_time:  # type: ignore[attr-defined]
            latest[wf.id] = wf
    problems = []
    with Session(engine_for(db_url)) as s:
        for workflow_id, wf in sorted(latest.items()):
            run = s.exec(select(AuditRun).where(AuditRun.workflow_id == workflow_id).order_by(col(AuditRun.started_at).desc())).first()
            status = wf.status.name.lower() if wf.status else "unknown"  # type: ignore[attr-defined]
            if run is None:
                if wf.start_time < now - grace:  # type: ignore[attr-defined]
                    problems.append(Problem(workflow_id, 0, f"missing from the store: Temporal has this run ({status}, started {wf.start_time:%Y-%m-%d %H:%M:%S} UTC)"))  # type: ignore[attr-defined]
                continue
            if run.status == "unreadable" or wf.status == WorkflowExecutionStatus.RUNNING:  # type: ignore[attr-defined]
                continue
            closed = wf.close_time  # type: ignore[attr-defined]
            if closed is None or wf.status == WorkflowExecutionStatus.CONTINUED_AS_NEW or closed > now - grace:  # type: ignore[attr-defined]
                continue
            bodies = [{"kind": kind} for kind in s.exec(select(AuditRecordRow.kind).where(AuditRecordRow.run_pk == run.id).order_by(col(AuditRecordRow.seq)))]
            if not ends(bodies):
                problems.append(Problem(workflow_id, 0, f"incomplete: the run closed ({status}, {closed:%Y-%m-%d %H:%M:%S} UTC); its story in the store has no closing record"))
    return problems


async def verify_against_temporal(
    client: Client, db_url: str, ring: KeyRing, *, grace: timedelta = timedelta(minutes=10), workflow_id: str | None = None
) -> list[Problem]:
    """Witness and completeness problems of the store (or of one run), for `aifactory audit verify`."""
    heads, problems = await witnessed_heads(client, ring, workflow_id=workflow_id)
    return problems + check_witnessed(db_url, heads) + await check_complete(client, db_url, grace=grace, workflow_id=workflow_id)
