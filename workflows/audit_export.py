"""`AuditExportWorkflow`: one audit export pass and the retention job, run by a Temporal Schedule.

Workflow-safe. The schedule (`aifactory-audit-export`, every minute by default)
makes export durable and visible like any other run: a pass that fails is
retried, and operators see each pass in the Temporal UI.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts.audit import AuditPassInput, AuditPassResult
    from contracts.wire import Activity, Workflow


@workflow.defn(name=Workflow.AUDIT_EXPORT)
class AuditExportWorkflow:
    @workflow.run
    async def run(self, inp: AuditPassInput) -> AuditPassResult:
        retry = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=5)
        result = await workflow.execute_activity(
            Activity.EXPORT_AUDIT, inp, result_type=AuditPassResult,
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2), retry_policy=retry,
            summary="export agent runs to the audit store",
        )  # fmt: skip
        if inp.enforce_retention:
            deleted = await workflow.execute_activity(
                Activity.ENFORCE_AUDIT_RETENTION, inp, result_type=list[str],
                start_to_close_timeout=timedelta(minutes=10), retry_policy=retry, summary="audit retention",
            )  # fmt: skip
            result = result.model_copy(update={"deleted_runs": len(deleted)})
        return result
