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
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.common import WorkflowIDReusePolicy

from activities.audit.chain import GENESIS, anchor_mac, canonical, link, run_ref, utc, witness_mac, witness_scope
from activities.audit.extract import Extract, UnreadableHistory, extract
from activities.audit.store import COPIED, AuditAnchor, AuditCursor, AuditJob, AuditRecordRow, AuditRun, AuditWitnessed, utcnow
from activities.audit.summary import summarise
from activities.db import engine_for
from activities.keys import KeyRing
from contracts import visibility as V
from contracts.audit import WITNESS_WORKFLOW, AuditRecord, WitnessBatch, WitnessEntry, witness_id
from contracts.wire import Signal, Workflow

log = logging.getLogger("aifactory.audit")

AGENT_WORKFLOW = Workflow.AGENT
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
    witnessed: int = 0
    """Chain heads this pass sent to the witness."""
    queues_without_workers: dict[str, int] = field(default_factory=dict)
    """Task queues with running agent runs that no worker polls, and how many runs wait there."""


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

    def __init__(
        self, client: Client, db_url: str, ring: KeyRing, *, workflow_type: str = AGENT_WORKFLOW, witness_queue: str | None = "aifactory-agents"
    ) -> None:
        self.client = client
        self.engine = engine_for(db_url)
        self.ring = ring
        self.workflow_type = workflow_type
        self.witness_queue = witness_queue
        """The task queue of the workers that run the witness workflow (None: no witness, tests only)."""

    async def export(
        self, *, since: datetime | None = None, workflow_id: str | None = None, by: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> ExportReport:
        """One pass: runs closed since `since` (all when None) and every run still open.

        `progress` is called with the number of runs read so far (the export activity heartbeats with it).
        """
        report = ExportReport(job_id=await asyncio.to_thread(self._open_job, by))
        query = V.all_of(
            V.eq("WorkflowType", self.workflow_type), V.eq("WorkflowId", workflow_id) if workflow_id else "",
            V.any_of(V.at_least("CloseTime", utc(since)), V.eq("ExecutionStatus", "Running")) if since is not None else "",
        )  # fmt: skip
        executions = [e async for e in self.client.list_workflows(query)]
        executions.sort(key=lambda e: e.start_time)
        try:
            report.queues_without_workers = await self._queues_without_workers(executions)
        except Exception as err:  # a check for operators: it never holds up the export
            log.warning("audit export: could not check the task queues' pollers: %s", err)
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
        if self.witness_queue is not None:
            try:
                report.witnessed = await self._witness(report.job_id)
            except Exception as err:  # the heads stay unwitnessed and go with the next pass
                log.warning("audit export %d: the witness could not be signalled: %s", report.job_id, err)
                report.errors.append(f"witness: {type(err).__name__}: {err}")
        await asyncio.to_thread(self._close_job, report)
        log.info("audit export %d: %d runs seen, %d changed, %d records", report.job_id, report.runs_seen, report.runs_changed, report.records)
        return report

    async def _queues_without_workers(self, executions: list) -> dict[str, int]:
        """Running runs per task queue whose queue no worker polls (a worker never deployed, or down)."""
        waiting: dict[str, int] = {}
        for e in executions:
            if e.status == WorkflowExecutionStatus.RUNNING and e.task_queue:
                waiting[e.task_queue] = waiting.get(e.task_queue, 0) + 1
        out = {}
        for queue, runs in waiting.items():
            described = await self.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
                )
            )
            if not described.pollers:
                out[queue] = runs
        return out

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
                cursor = s.get(AuditCursor, (run.id, f.execution))
                if cursor is None:
                    cursor = AuditCursor(run_pk=run.id, execution=f.execution, started_at=f.started_at)
                if cursor.closed and cursor.through_event_id >= f.last_event_id:
                    return False
                new = [r for r in ex.records if r.event_id > cursor.through_event_id]
                seq, head = run.head_seq, run.head_hash or GENESIS
                bodies = [json.loads(b) for b in s.exec(select(AuditRecordRow.body).where(AuditRecordRow.run_pk == run.id).order_by(col(AuditRecordRow.seq)))]
                for record in new:
                    seq += 1
                    row = record_row(run.id, seq, record, self.ring, ref, head)
                    s.add(row)
                    bodies.append(json.loads(row.body))
                    head = row.hash
                # The summary row is what the chain says, recomputed whole (and by `audit verify`).
                for name, value in summarise(bodies).fields().items():
                    setattr(run, name, value)
                if f.status not in ("running", "continued"):
                    run.closed_at = f.closed_at
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

    async def witness_retired(self, retired: list) -> int:
        """Tell the witness which runs the retention job deleted, so their absence is not a deletion."""
        if not retired or self.witness_queue is None:
            return 0
        now = utcnow()
        entries = [
            WitnessEntry(
                workflow_id=r.workflow_id, first_execution=r.first_execution, seq=r.head_seq, head_hash=r.head_hash,
                closed=True, retired=True, job_id=r.job_id, at=now, key_id=self.ring.active,
                mac=witness_mac(self.ring, self.ring.active, run_ref(r.workflow_id, r.first_execution), r.head_seq, r.head_hash, True, r.job_id, now, True),
            )
            for r in retired
        ]  # fmt: skip
        await self._signal_witness(WitnessBatch(entries=entries))
        return len(entries)

    async def _signal_witness(self, batch: WitnessBatch) -> None:
        day = utcnow().date().isoformat()
        await self.client.start_workflow(
            WITNESS_WORKFLOW, day, id=witness_id(witness_scope(self.ring, self.ring.active), day), task_queue=self.witness_queue,
            start_signal=Signal.WITNESS, start_signal_args=[batch], id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )  # fmt: skip

    async def _witness(self, job_id: int) -> int:
        """Send every anchor not yet witnessed to today's witness workflow; returns how many went."""
        pending = await asyncio.to_thread(self._unwitnessed)
        if not pending:
            return 0
        await self._signal_witness(WitnessBatch(entries=[entry for _, entry in pending]))
        await asyncio.to_thread(self._mark_witnessed, [anchor_id for anchor_id, _ in pending])
        return len(pending)

    def _unwitnessed(self, limit: int = 2000) -> list[tuple[int, WitnessEntry]]:
        with Session(self.engine) as s:
            rows = s.exec(
                select(AuditAnchor, AuditRun)
                .join(AuditRun, col(AuditRun.id) == col(AuditAnchor.run_pk))
                .outerjoin(AuditWitnessed, col(AuditWitnessed.anchor_id) == col(AuditAnchor.id))
                .where(col(AuditWitnessed.anchor_id).is_(None))
                .order_by(col(AuditAnchor.id))
                .limit(limit)
            ).all()
            out = []
            for anchor, run in rows:
                closed = run.status not in ("running",) and anchor.seq == run.head_seq
                at = utc(anchor.at)
                ref = run_ref(run.workflow_id, run.first_execution)
                mac = witness_mac(self.ring, self.ring.active, ref, anchor.seq, anchor.head_hash, closed, anchor.job_id, at)
                out.append((anchor.id, WitnessEntry(
                    workflow_id=run.workflow_id, first_execution=run.first_execution, seq=anchor.seq, head_hash=anchor.head_hash,
                    closed=closed, job_id=anchor.job_id, at=at, key_id=self.ring.active, mac=mac,
                )))  # fmt: skip
            return out

    def _mark_witnessed(self, anchor_ids: list[int]) -> None:
        now = utcnow()
        with Session(self.engine) as s:
            for anchor_id in anchor_ids:
                s.merge(AuditWitnessed(anchor_id=anchor_id, at=now))
            s.commit()
