"""`AuditWitnessWorkflow`: the audit store's chain heads, kept where a store insider cannot edit them.

Workflow-safe. Every export pass signals the day's witness (`aifactory-audit-witness/<day>`,
started by the first signal) with the heads it anchored, each MACed under the audit key,
which the store does not hold. The signals are the record: Temporal history is append-only
to whoever can write the audit store's database, so `aifactory audit verify` can tell a
truncated tail, a rolled-back head or a deleted run from the history of these workflows.
A witness closes a day after its own, and its history lives as long as the namespace's
retention keeps closed workflows.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.audit import WitnessBatch
    from contracts.wire import Query, Signal, Workflow

#: How long after its day a witness stays open for the passes that straddle midnight.
GRACE = timedelta(hours=1)


@workflow.defn(name=Workflow.AUDIT_WITNESS)
class AuditWitnessWorkflow:
    def __init__(self) -> None:
        self._entries = 0

    @workflow.run
    async def run(self, day: str) -> int:
        end = datetime.combine(datetime.fromisoformat(day).date() + timedelta(days=1), time(), tzinfo=timezone.utc) + GRACE
        remaining = end - workflow.now()
        if remaining > timedelta(0):
            await workflow.sleep(remaining)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._entries

    @workflow.signal(name=Signal.WITNESS)
    def witness(self, batch: WitnessBatch) -> None:
        # Nothing to do: the signal in history is the witness. The count is for the UI.
        self._entries += len(batch.entries)

    @workflow.query(name=Query.ENTRIES)
    def entries(self) -> int:
        return self._entries
