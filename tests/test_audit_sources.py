"""The audit export reads histories recorded by earlier workflow code, and its schedule is created once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.audit.extract import extract
from contracts.audit import RecordKind
from contracts.wire import Workflow
from workers.schedules import AUDIT_SCHEDULE_ID, ensure_audit_schedule

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_committed_histories_read_into_records(path: Path):
    history = WorkflowHistory.from_json(f"agent/it-triage/acme/{path.stem}", path.read_text())
    ex = await extract(history, "run-1", pydantic_data_converter)
    kinds = [r.kind for r in ex.records]
    carry = ex.facts.input.carry
    # A continued execution's story goes on from its carry; the first one opens with the start.
    assert (kinds[0] is RecordKind.RUN_STARTED) == (carry is None)
    assert kinds[-1] in (RecordKind.RUN_COMPLETED, RecordKind.RUN_FAILED)
    models = [r for r in ex.records if r.kind is RecordKind.MODEL_CALL]
    first = carry.step + 1 if carry else 1
    assert [r.step for r in models] == list(range(first, first + len(models)))
    assert [r.event_id for r in ex.records] == sorted(r.event_id for r in ex.records)
    if ex.facts.result is not None:  # every call the run's result lists is in the records, once
        calls = [(r.step, r.tool, r.outcome) for r in ex.records if r.kind is RecordKind.TOOL_CALL]
        listed = [t for t in ex.facts.result.tool_calls if not carry or t.step > carry.step]
        assert sorted(calls) == sorted((t.step, t.tool, t.outcome.value) for t in listed)


async def test_the_export_schedule_is_created_once(client):
    schedule_id = f"{AUDIT_SCHEDULE_ID}-{uuid.uuid4().hex[:6]}"
    assert await ensure_audit_schedule(client, "tq-audit", schedule_id=schedule_id) is True
    assert await ensure_audit_schedule(client, "tq-audit", schedule_id=schedule_id) is False
    described = await client.get_schedule_handle(schedule_id).describe()
    assert described.schedule.action.workflow == Workflow.AUDIT_EXPORT
    assert described.schedule.spec.intervals[0].every.total_seconds() == 60
    await client.get_schedule_handle(schedule_id).delete()
