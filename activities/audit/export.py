"""Fill the audit store from workflow history, idempotently.

Not workflow-safe (Temporal client and SQL). One pass lists agent runs (closed
since a time, and those still running), reads each execution's history with the
client's data converter (so encrypted histories decrypt here, inside the
exporter), and appends the records past the execution's cursor to the run's
chain, then anchors the new head. Exporting twice changes nothing: a record
belongs to the event that completed it, and only events past the cursor are
new. A running run is exported up to its last event and completed later.

The `AuditExportWorkflow` schedule runs a pass every minute, far inside the
namespace's retention period; `aifactory audit export` runs one on demand.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus

from activities.audit.chain import GENESIS, anchor_mac, canonical, link, run_ref, utc
from activities.audit.extract import Extract, UnreadableHistory, extract
from activities.audit.store import COPIED, AuditAnchor, AuditCursor, AuditJob, AuditRecordRow, AuditRun, utcnow
from activities.db import engine_for
from activities.keys import KeyRing
from contracts.audit import AuditRecord, RecordKind

log = logging.getLogger("aifactory.audit")

AGENT_WORKFLOW = "AgentWorkflow"
#: The status of a run whose history the exporter cannot read: a gap in the store, not a chain.
UNREADABLE = "unreadable"


@dataclass
class ExportReport:
    job_id: int = 0
    runs_seen: int = 0
    runs_changed: int = 0
    records: int = 0
    open_runs: int = 0
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    """Runs found unreadable on this pass (recorded once as a gap; `audit verify` reports them)."""


def record_row(run_pk: int, seq: int, record: AuditRecord, ring: KeyRing, run: str, prev_hash: str) -> AuditRecordRow:
    body = canonical(record)
    copied = {name: _column(getattr(record, name)) for name in COPIED}
    return AuditRecordRow(
        run_pk=run_pk, seq=seq, at=record.at, execution=record.execution, event_id=record.event_id, body=body,
        key_id=ring.active, prev_hash=prev_hash, hash=link(ring, ring.active, run, seq, prev_hash, body), **copied,
    )  # fmt: skip


def _column(value):
    return value.value if hasattr(value, "value") else value


class AuditExporter:
    """Exports agent runs from a Temporal namespace into the audit store."""

    def __init__(self, client: Client, db_url: str, ring: KeyRing, *, workflow_type: str = AGENT_WORKFLOW) -> None:
        self.client = client
        self.engine = engine_for(db_url)
        self.ring = ring
        self.workflow_type = workflow_type

    async def export(
        self, *, since: datetime | None = None, workflow_id: str | None = None, by: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> ExportReport:
        """One pass: runs closed since `since` (all when None) and every run still open.

        `progress` is called with the number of runs read so far (the export activity heartbeats with it).
        """
        report = ExportReport(job_id=await asyncio.to_thread(self._open_job, by))
        query = f"WorkflowType = '{self.workflow_type}'"
        if workflow_id:
            query += f" AND WorkflowId = '{workflow_id}'"
        if since is not None:
            stamp = utc(since).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            query += f" AND (CloseTime >= '{stamp}' OR ExecutionStatus = 'Running')"
        executions = [e async for e in self.client.list_workflows(query)]
        executions.sort(key=lambda e: e.start_time)
        done: set[tuple[str, str]] = set()
        for e in executions:
            if (e.id, e.run_id) in done:
                continue
            report.runs_seen += 1
            if progress is not None:
                progress(report.runs_seen)
            if await asyncio.to_thread(self._finished, e.run_id, retry_unreadable=workflow_id is not None):
                continue  # closed and exported to its last event (or a recorded gap): nothing new
            try:
                changed = await self._export_chain(e.id, e.run_id, report, done)
            except UnreadableHistory as err:  # recorded once as a gap, not retried every pass
                if await asyncio.to_thread(self._record_gap, e.id, e.run_id, e.start_time, str(err)):
                    log.warning("audit export: run %s cannot be read (%s); recorded as a gap", e.id, err)
                    report.gaps.append(f"{e.id}: {err}")
                continue
            except Exception as err:  # one bad run must not stop the pass; it is retried next time
                log.exception("audit export of %s/%s failed", e.id, e.run_id)
                report.errors.append(f"{e.id}/{e.run_id}: {type(err).__name__}: {err}")
                continue
            report.runs_changed += changed
            report.open_runs += e.status == WorkflowExecutionStatus.RUNNING
        await asyncio.to_thread(self._close_job, report)
        log.info("audit export %d: %d runs seen, %d changed, %d records", report.job_id, report.runs_seen, report.runs_changed, report.records)
        return report

    def _open_job(self, by: str) -> int:
        with Session(self.engine) as s:
            job = AuditJob(kind="export", started_at=utcnow(), by=by)
            s.add(job)
            s.commit()
            return job.id or 0

    def _close_job(self, report: ExportReport) -> None:
        with Session(self.engine) as s:
            job = s.get(AuditJob, report.job_id)
            assert job is not None
            job.finished_at, job.runs, job.records = utcnow(), report.runs_changed, report.records
            job.detail = "; ".join(report.errors)[:4000]
            s.add(job)
            s.commit()

    async def _export_chain(self, workflow_id: str, run_id: str, report: ExportReport, done: set) -> int:
        """Export the execution, after any earlier execution of the same run it continued from."""
        chain: list[Extract] = []
        execution: str | None = run_id
        while execution:
            history = await self.client.get_workflow_handle(workflow_id, run_id=execution).fetch_history()
            ex = await extract(history, execution, self.client.data_converter)
            chain.append(ex)
            done.add((workflow_id, execution))
            previous = ex.facts.continued_from
            execution = previous if previous and not await asyncio.to_thread(self._finished, previous) else None
        changed = 0
        for ex in reversed(chain):  # SQL off the event loop: a worker runs agent workflows beside this
            changed |= await asyncio.to_thread(self._append, ex, report.job_id, report)
        return changed

    def _finished(self, execution: str, *, retry_unreadable: bool = False) -> bool:
        """The execution (a Temporal run id, unique) closed and was exported through its last event,
        or was recorded as unreadable (an explicit `--run` export tries that one again)."""
        with Session(self.engine) as s:
            cursor = s.exec(select(AuditCursor).where(AuditCursor.execution == execution)).first()
            if cursor is None or not cursor.closed:
                return False
            if retry_unreadable:
                run = s.get(AuditRun, cursor.run_pk)
                return not (run is not None and run.status == UNREADABLE)
            return True

    def _record_gap(self, workflow_id: str, execution: str, started_at: datetime, why: str) -> bool:
        """Record a run the exporter cannot read: a run row saying so, and its execution set aside.
        False when it was recorded before (the pass says nothing more about it)."""
        parts = workflow_id.split("/")
        agent, tenant, run_key = (parts[1], parts[2], "/".join(parts[3:])) if len(parts) >= 4 and parts[0] == "agent" else ("?", "?", workflow_id)
        with Session(self.engine) as s:
            run = s.exec(select(AuditRun).where(AuditRun.workflow_id == workflow_id)).first()
            if run is None:
                run = AuditRun(
                    workflow_id=workflow_id, first_execution=execution, agent=agent, agent_version="", prompt_sha256="",
                    tenant=tenant, run_key=run_key, started_at=started_at, head_hash=GENESIS, status=UNREADABLE, outcome=why[:500],
                )  # fmt: skip
                s.add(run)
                s.flush()
            elif run.status == UNREADABLE and run.outcome == why[:500]:
                cursor = s.get(AuditCursor, (run.id, execution))
                if cursor is not None and cursor.closed:
                    return False
            else:
                run.status, run.outcome = UNREADABLE, why[:500]
                s.add(run)
            cursor = s.get(AuditCursor, (run.id, execution)) or AuditCursor(run_pk=run.id, execution=execution, started_at=started_at)
            cursor.closed = True
            s.add(cursor)
            s.commit()
        return True

    def _append(self, ex: Extract, job_id: int, report: ExportReport) -> bool:
        f = ex.facts
        ref = run_ref(f.workflow_id, f.first_execution)
        with Session(self.engine) as s:
            try:
                run = s.exec(
                    select(AuditRun).where(AuditRun.workflow_id == f.workflow_id, AuditRun.first_execution == f.first_execution).with_for_update()
                ).first()
                if run is None:
                    run = AuditRun(
                        workflow_id=f.workflow_id, first_execution=f.first_execution, agent=f.input.agent_name,
                        agent_version="", prompt_sha256="", tenant=f.input.tenant,
                        run_key=f.input.run_key, requester=f.input.requester, started_at=f.started_at, head_hash=GENESIS,
                    )  # fmt: skip
                    s.add(run)
                    s.flush()
                if f.release is not None and not run.agent_version:  # the release the worker admitted it under
                    run.agent_version = f.release.release_version
                if f.prompt_sha256 and not run.prompt_sha256:  # the prompt its model activity reported sending
                    run.prompt_sha256 = f.prompt_sha256
                cursor = s.get(AuditCursor, (run.id, f.execution))
                if cursor is None:
                    cursor = AuditCursor(run_pk=run.id, execution=f.execution, started_at=f.started_at)
                if cursor.closed and cursor.through_event_id >= f.last_event_id:
                    return False
                new = [r for r in ex.records if r.event_id > cursor.through_event_id]
                seq, head = run.head_seq, run.head_hash or GENESIS
                for record in new:
                    seq += 1
                    row = record_row(run.id, seq, record, self.ring, ref, head)
                    s.add(row)
                    head = row.hash
                    self._summarise(run, record)
                if f.policy is not None and run.policy_bundle is None:
                    run.policy_bundle = f"{f.policy.bundle.name}@{f.policy.bundle.version}"
                    run.policy_sha256 = f.policy.bundle.sha256
                if f.status not in ("running", "continued"):
                    run.status, run.outcome, run.closed_at = f.status, f.outcome, f.closed_at
                closed = f.status != "running"
                if not new and cursor.through_event_id == f.last_event_id and cursor.closed == closed:
                    return False
                cursor.through_event_id, cursor.closed = f.last_event_id, closed
                s.add(cursor)
                if new:
                    run.head_seq, run.head_hash = seq, head
                    at = utcnow()
                    s.add(
                        AuditAnchor(
                            run_pk=run.id, seq=seq, head_hash=head, job_id=job_id, at=at, key_id=self.ring.active,
                            mac=anchor_mac(self.ring, self.ring.active, ref, seq, head, job_id, at),
                        )
                    )
                s.add(run)
                s.commit()
            except IntegrityError:
                # Another exporter appended the same records first; its chain stands, ours is dropped.
                s.rollback()
                log.info("audit export of %s raced another exporter; left its records", ref)
                return False
        report.records += len(new)
        return True

    @staticmethod
    def _summarise(run: AuditRun, r: AuditRecord) -> None:
        if r.step is not None:
            run.steps = max(run.steps, r.step)
        if r.kind is RecordKind.MODEL_CALL:
            run.input_tokens += r.input_tokens or 0
            run.output_tokens += r.output_tokens or 0
            run.cost_usd = round(run.cost_usd + (r.cost_usd or 0.0), 10)
        elif r.kind is RecordKind.TOOL_CALL:
            run.tool_calls += 1
            run.denials += r.outcome == "denied"
            if r.policy and run.policy_bundle is None:
                run.policy_bundle, run.policy_sha256 = r.policy, r.policy_sha256

