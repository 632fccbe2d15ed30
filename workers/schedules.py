"""The factory's Temporal Schedules: the audit export pass.

Not workflow-safe. `ensure_audit_schedule` is idempotent: it creates the
schedule once and leaves an existing one (and an operator's pause) alone.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from contracts.audit import AuditPassInput
from workflows.audit_export import AuditExportWorkflow

AUDIT_SCHEDULE_ID = "aifactory-audit-export"


async def ensure_audit_schedule(
    client: Client, task_queue: str, every: timedelta = timedelta(minutes=1), schedule_id: str = AUDIT_SCHEDULE_ID
) -> bool:
    """Create the export schedule if it is missing; True when it was created now."""
    try:
        await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    AuditExportWorkflow.run, AuditPassInput(), id=f"{schedule_id}-pass", task_queue=task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
        return True
    except ScheduleAlreadyRunningError:
        return False
