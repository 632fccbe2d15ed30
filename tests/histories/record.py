"""Record reference histories of `AgentWorkflow` for the replay test.

Run when a workflow change ships, *before* changing the workflow code, so the
committed files are histories the old code produced (name scenarios to record
only those):

    python -m tests.histories.record [SCENARIO ...]

The first three were recorded before the policy gate (`policy-gate-v1`) and
replay through the unpatched branch; `gated_*` ones replay through the gate's
patch marker; `input_gated_*` ones were started with `policy_gate` in the run
input (no marker) and carry the calls that ran nothing with each model call;
`checked_at_start_*` and `refused_at_start_*` were started with `kill_switch_check`
too, and asked the two local activities at start (`resolve_policy`,
`check_kill_switch`) that the first model call's admission replaced;
`admitted_*` ones were started with the whole release and `admit_in_first_call`
in the run input (admission in the first model call), before the worker resolved
releases itself: one approved after a refusal, one stopped by a kill switch while
it waited for approval, and the last execution of one that continued as new;
`resolved_*` ones were started thin, admitted by the worker (`admit_run`), before
a write tool that runs out of retries parked the run for an operator;
`business_hours_*` ones wait on a business-clock tier (its deadline from the
`compute_business_deadline` local activity, behind `business-hours-v1`) and
are approved with a signed decision.

Each scenario runs on a throwaway dev server against the scripted model and
writes `tests/histories/<scenario>.json`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.db import dispose_all
from activities.switches import set_switch
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.client import RunFailed
from contracts.approval import ApprovalDecision
from contracts.control import SwitchScope
from contracts import search
from contracts.wire import Signal, Update
from tests.support.harness import factory_with, seed_db
from workers.devserver import temporal_cli

HERE = Path(__file__).parent
TICKET = {"ticket_text": "Outlook keeps asking for my password.", "requester_email": "jonas.berg@example.com", "channel": "email"}
CREATE = {"requester_email": "jonas.berg@example.com", "category": "email", "priority": "P3", "summary": "Outlook password prompts"}
FINAL = {"category": "email", "priority": "P3", "ticket_id": "INC0000001", "summary": "Outlook password prompts", "requester_department": "Finance"}

P1 = {**CREATE, "priority": "P1", "summary": "Outlook down for the whole floor"}
P1_FINAL = {**FINAL, "priority": "P1", "summary": "Outlook down for the whole floor"}

#: Scenarios recorded with a kill switch on for the run's tenant.
SWITCHED = {"refused_at_start_by_switch"}

#: Scenarios stopped by a kill switch (the `stop` update) once they wait for approval.
STOPPED = {"admitted_stopped_while_waiting"}

#: Scenarios whose store loses the ticket table: every create_ticket attempt fails until the retries run out.
NO_TICKET_TABLE = {"resolved_write_failed_after_retries"}

#: Scenarios that continue as new after this many history events (the last execution is recorded).
CONTINUED = {"admitted_continued_as_new": 12}

#: Scenarios that park on an approval: who decides once the run is waiting.
DECISIONS = {
    "gated_approved_after_refusal": [("approve", "tom.becker"), ("approve", "maria.keller")],
    "input_gated_invalid_then_approved": [("reject", "omar.haddad"), ("approve", "maria.keller")],
    "admitted_approved_after_refusal": [("approve", "tom.becker"), ("approve", "maria.keller")],
}

#: Scenarios run under a bundle whose first tier counts business hours, approved by a signed decision.
BUSINESS_HOURS = {"business_hours_approved": "maria.keller"}

SCENARIOS: dict[str, list[Reply]] = {
    "business_hours_approved": [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.tool("create_ticket", P1),
        Reply.text(P1_FINAL),
    ],
    "gated_approved_after_refusal": [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.tool("create_ticket", P1),
        Reply.text(P1_FINAL),
    ],
    "completed_with_tools": [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.error(429, retry_after=0.1),
        Reply.tool("create_ticket", CREATE),
        Reply.text(FINAL),
    ],
    "invalid_arguments_then_repair": [
        Reply.tool("create_ticket", {**CREATE, "priority": "urgent"}),
        Reply.tool_as_text("create_ticket", CREATE),
        Reply.text({"category": "email"}),
        Reply.text(FINAL),
    ],
    "failed_output_invalid": [Reply.text("not json"), Reply.text({"category": "email"})],
    "input_gated_invalid_then_approved": [
        Reply.tool("delete_mailbox", {"email": "jonas.berg@example.com"}),
        Reply.tool("create_ticket", {**P1, "priority": "urgent"}),
        Reply.tool("create_ticket", P1),
        Reply.text(P1_FINAL),
    ],
    "checked_at_start_with_envelope": [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.tool("create_ticket", CREATE),
        Reply.text(FINAL),
    ],
    "refused_at_start_by_switch": [Reply.text(FINAL)],
    "admitted_approved_after_refusal": [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.tool("create_ticket", P1),
        Reply.text(P1_FINAL),
    ],
    "admitted_stopped_while_waiting": [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.tool("create_ticket", P1),
        Reply.text(P1_FINAL),
    ],
    "resolved_write_failed_after_retries": [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.tool("create_ticket", CREATE),
        Reply.text({**FINAL, "ticket_id": None}),
    ],
    "admitted_continued_as_new": [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.tool("create_ticket", CREATE),
        Reply.text(FINAL),
    ],
}


def _business_hours_policy(tmp: Path) -> Path:
    from tests.support.harness import write_policy

    rule = {"id": "p1-needs-a-lead", "match": {"tools": ["create_ticket"], "when": "priority == 'P1'"}, "decision": "require_approval", "reason": "P1 pages on-call"}
    calendar = {"time_zone": "Europe/Berlin", "holidays": ["2026-12-25"]}
    return write_policy(
        tmp / "pol", "hours", [{"id": "lookups", "match": {"tools": ["lookup_requester"]}, "decision": "allow", "reason": "read-only"}, rule],
        [("it-desk-leads", 900, "business"), ("it-managers", 1800)], groups=[{"id": "it-desk-leads", "calendar": calendar}],
    )  # fmt: skip


async def record() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(), search_attributes=search.ALL, data_converter=pydantic_data_converter
    )
    try:
        only = set(sys.argv[1:])
        for name, script in SCENARIOS.items():
            if only and name not in only:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                db_url = f"sqlite:///{tmp}/factory.db"
                seed_db(db_url)
                if name in NO_TICKET_TABLE:
                    import sqlite3

                    with sqlite3.connect(f"{tmp}/factory.db") as conn:
                        conn.execute("DROP TABLE service_ticket")
                if name in SWITCHED:
                    set_switch(db_url, SwitchScope.TENANT, "acme", reason="recorded", by="maria.keller")
                policy_root, policy = None, {}
                if name in BUSINESS_HOURS:
                    policy_root, policy = _business_hours_policy(Path(tmp)), {"policy": "hours"}
                async with factory_with(env.client, db_url, ScriptedModel(Turns(script)), policy_root=policy_root) as f:
                    if name in CONTINUED:
                        from contracts.run import AgentRunInput

                        run = await f.factory.start_prepared(
                            AgentRunInput(release=f.release(), input=TICKET, tenant="acme", run_key=name,
                                          requester="tom.becker", history_budget_events=CONTINUED[name])
                        )
                    else:
                        run = await f.start(TICKET, run_key=name, requester="tom.becker", **policy)
                    if name in STOPPED:
                        from contracts.control import StopOrder, StopAnswer

                        while (await run.status()).approval is None:
                            await asyncio.sleep(0.05)
                        await run.handle.execute_update(Update.STOP, StopOrder(by="maria.keller", reason="recorded", switch_id=1), result_type=StopAnswer)
                    if name in DECISIONS:
                        while (await run.status()).approval is None:
                            await asyncio.sleep(0.05)
                        for verdict, person in DECISIONS[name]:
                            await run.handle.signal(verdict, ApprovalDecision(approver=person, note="recorded"))
                    if name in BUSINESS_HOURS:
                        while (await run.status()).approval is None:
                            await asyncio.sleep(0.05)
                        request = (await run.status()).approval
                        await run.handle.signal(Signal.APPROVE, f.signed(run.workflow_id, BUSINESS_HOURS[name], "approve", request.id, "recorded"))
                    try:
                        await run.result()
                    except RunFailed:
                        pass
                    history = await run.handle.fetch_history()
                dispose_all()
            (HERE / f"{name}.json").write_text(history.to_json())
            print(f"recorded {name}: {len(history.events)} events")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
