"""The audit activities the export schedule runs: an export pass and the retention job.

Not workflow-safe (Temporal client, SQL).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import Session, col, select
from temporalio import activity

from activities.audit.export import AuditExporter
from activities.audit.query import retire_runs
from activities.audit.store import AuditJob
from activities.db import engine_for
from activities.keys import KeyRing
from contracts.audit import AuditPassInput, AuditPassResult
from contracts.wire import Activity

SCHEDULED_BY = "schedule"


class AuditActivities:
    def __init__(self, db_url: str, ring: KeyRing, retention_days: int = 365) -> None:
        self.db_url = db_url
        self.ring = ring
        self.retention_days = retention_days

    @activity.defn(name=Activity.EXPORT_AUDIT)
    async def export_audit(self, inp: AuditPassInput) -> AuditPassResult:
        with Session(engine_for(self.db_url)) as s:
            last = s.exec(
                select(AuditJob).where(AuditJob.kind == "export", AuditJob.by == SCHEDULED_BY, col(AuditJob.finished_at).is_not(None), AuditJob.detail == "")
                .order_by(col(AuditJob.started_at).desc())
            ).first()  # fmt: skip
        since = last.started_at - timedelta(minutes=inp.overlap_minutes) if last else None
        exporter = AuditExporter(activity.client(), self.db_url, self.ring, witness_queue=activity.info().task_queue)
        report = await exporter.export(since=since, by=SCHEDULED_BY, progress=activity.heartbeat)
        return AuditPassResult(
            job_id=report.job_id, runs_changed=report.runs_changed, records=report.records, errors=report.errors,
            queues_without_workers=report.queues_without_workers,
        )  # fmt: skip

    @activity.defn(name=Activity.ENFORCE_AUDIT_RETENTION)
    async def enforce_audit_retention(self, inp: AuditPassInput) -> list[str]:
        retired = await asyncio.to_thread(retire_runs, self.db_url, self.retention_days)
        exporter = AuditExporter(activity.client(), self.db_url, self.ring, witness_queue=activity.info().task_queue)
        await exporter.witness_retired(retired)
        return [r.workflow_id for r in retired]
