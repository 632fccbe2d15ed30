"""Business-hours SLAs on the time-skipping server: a tier escalates in its group's working time.

The server's clock starts near real time and only moves forward (other tests may have moved it far
ahead), so each test first skips it to the local moment it needs: a Friday 17:55, a holiday, the
weekend of a daylight-saving change.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.notify import read_outbox
from activities.policy import PolicyActivities
from contracts.policy import Calendar, Group, PolicySet
from policies.loader import PolicyStore
from tests.support.harness import directory_keys, factory_with, replay, write_policy
from tests.test_approvals_timeskip import NOT_OPENED, P1, TICKET, p1_rule, tickets

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
FRIDAY = 4
SLACK = timedelta(seconds=2)  # timers fire on the server's clock; a run's steps take real milliseconds


def group(zone: str, holidays: list[date] | None = None) -> list[dict]:
    """it-desk-leads works 09:00-18:00 Monday to Friday in `zone`."""
    return [{"id": "it-desk-leads", "calendar": {"time_zone": zone, "holidays": holidays or []}, "slack_channel": "C0DESK"}]


def next_local(after: datetime, tz: ZoneInfo, at: time, weekday: int | None = None) -> datetime:
    """The first local `at` (on `weekday`) a minute or more after `after`."""
    day = after.astimezone(tz).date()
    while True:
        moment = datetime.combine(day, at, tzinfo=tz)
        if (weekday is None or day.weekday() == weekday) and moment > after + timedelta(minutes=1):
            return moment
        day += timedelta(days=1)


def next_dst_change(after: datetime, tz: ZoneInfo) -> datetime:
    """The first hour (UTC) after `after` whose offset in `tz` differs from the hour before."""
    moment = after.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 400):
        if (moment + timedelta(hours=1)).astimezone(tz).utcoffset() != moment.astimezone(tz).utcoffset():
            return moment + timedelta(hours=1)
        moment += timedelta(hours=1)
    raise AssertionError(f"{tz} has no daylight-saving change within 400 days")


async def skip_to(ts_env, moment: datetime) -> None:
    now = await ts_env.get_current_time()
    assert moment > now, f"the server's clock is past {moment}"
    await ts_env.sleep(moment - now)


async def run_unanswered(ts_env, db_url, tmp_path, chain: list[tuple], groups: list[dict]):
    """A P1 ticket that needs a lead; nobody answers, so every tier expires; returns (request, outbox)."""
    root = write_policy(tmp_path / "pol", "hours", p1_rule(), chain, groups=groups)
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(NOT_OPENED)]))
    async with factory_with(ts_env.client, db_url, model, policy_root=root) as f:
        run = await f.start(TICKET, policy="hours", requester="tom.becker")
        result = await run.result()
        await replay(run.handle)
        recorded = await markers(run.handle)
    assert any("compute_business_deadline" in m for m in recorded) and any("business-hours-v1" in m for m in recorded)
    assert tickets(db_url) == []
    (request,) = result.approvals
    assert request.status == "expired"
    outbox = {m.kind: json.loads(m.details) for m in read_outbox(db_url, run_id=run.workflow_id)}
    return request, outbox


async def markers(handle) -> list[str]:
    """The run's markers, name and decoded details: the deadlines a replay reads instead of recomputing."""
    found = []
    for event in (await handle.fetch_history()).events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            details = " ".join(p.data.decode(errors="replace") for v in marker.details.values() for p in v.payloads)
            found.append(f"{marker.marker_name} {details}")
    return found


def close_to(actual: datetime, expected: datetime) -> bool:
    return abs(actual - expected) <= SLACK


async def test_raised_friday_1755_a_15_minute_business_sla_escalates_monday_0910(ts_env, db_url, tmp_path):
    friday = next_local(await ts_env.get_current_time(), BERLIN, time(17, 55), FRIDAY)
    await skip_to(ts_env, friday)
    chain = [("it-desk-leads", 900, "business"), ("it-managers", 1800)]  # the managers' tier runs on the wall clock
    request, outbox = await run_unanswered(ts_env, db_url, tmp_path, chain, group("Europe/Berlin"))

    monday = datetime.combine(friday.date() + timedelta(days=3), time(9, 10), tzinfo=BERLIN)
    # 5 minutes on Friday, the rest from Monday's opening: exact, given when the request was raised.
    offset = request.requested_at - friday  # the run's first steps take real time
    assert timedelta(0) <= offset < timedelta(minutes=1)
    expected = monday + offset
    first_deadline = datetime.fromisoformat(outbox["approval_requested"]["deadline"])
    assert first_deadline == expected and first_deadline.utcoffset() == timedelta(0)  # the UTC deadline
    # Escalated at that deadline: the managers' 30 wall-clock minutes run from Monday 09:10.
    escalated_at = datetime.fromisoformat(outbox["approval_escalated_tier2"]["deadline"]) - timedelta(minutes=30)
    assert close_to(escalated_at, expected)
    assert request.escalations == ["it-managers"] and close_to(request.decided_at, expected + timedelta(minutes=30))
    assert list(outbox) == ["approval_requested", "approval_escalated_tier2", "approval_expired"]


async def test_raised_on_a_holiday_the_sla_starts_at_the_next_working_start(ts_env, db_url, tmp_path):
    now = await ts_env.get_current_time()
    raised = next_local(now, BERLIN, time(11, 0))
    while raised.weekday() >= 5:  # a holiday on a working day, late morning
        raised = next_local(raised, BERLIN, time(11, 0))
    await skip_to(ts_env, raised)
    request, outbox = await run_unanswered(ts_env, db_url, tmp_path, [("it-desk-leads", 900, "business")], group("Europe/Berlin", [raised.date()]))

    next_working = raised.date() + timedelta(days=1)
    while next_working.weekday() >= 5:
        next_working += timedelta(days=1)
    expected = datetime.combine(next_working, time(9, 15), tzinfo=BERLIN)
    assert close_to(request.deadline, expected)
    assert request.deadline == datetime.fromisoformat(outbox["approval_requested"]["deadline"])
    assert close_to(request.decided_at, expected)  # one tier: it expired at the deadline, and no sooner
    assert list(outbox) == ["approval_requested", "approval_expired"]


async def test_over_a_dst_change_monday_still_opens_at_0900_local(ts_env, db_url, tmp_path):
    now = await ts_env.get_current_time()
    change = next_dst_change(now, NEW_YORK)
    friday = datetime.combine(change.astimezone(NEW_YORK).date() - timedelta(days=2), time(17, 55), tzinfo=NEW_YORK)
    if friday <= now + timedelta(minutes=1):  # too late for this one: take the change after it
        change = next_dst_change(change + timedelta(days=1), NEW_YORK)
        friday = datetime.combine(change.astimezone(NEW_YORK).date() - timedelta(days=2), time(17, 55), tzinfo=NEW_YORK)
    assert friday.weekday() == FRIDAY
    await skip_to(ts_env, friday)
    # Both tiers in business time: the second one's deadline is computed when the request escalates.
    chain = [("it-desk-leads", 900, "business"), ("it-desk-leads", timedelta(hours=9).total_seconds(), "business")]
    request, outbox = await run_unanswered(ts_env, db_url, tmp_path, chain, group("America/New_York"))

    offset = request.requested_at - friday
    monday = datetime.combine(friday.date() + timedelta(days=3), time(9, 10), tzinfo=NEW_YORK)
    tuesday = datetime.combine(friday.date() + timedelta(days=4), time(9, 10), tzinfo=NEW_YORK)
    first = datetime.fromisoformat(outbox["approval_requested"]["deadline"])
    assert first == monday + offset
    assert first.astimezone(NEW_YORK).utcoffset() != friday.utcoffset(), "the weekend crossed the change"
    # 09:10 local on Monday: the UTC gap from Friday is an hour shorter or longer than the wall-clock one.
    assert abs((first - request.requested_at) - timedelta(days=2, hours=15, minutes=15)) == timedelta(hours=1)
    second = datetime.fromisoformat(outbox["approval_escalated_tier2"]["deadline"])
    assert second == request.deadline and close_to(second, tuesday + offset) and close_to(request.decided_at, second)


class ZoneLessStore(PolicyStore):
    """A store whose directory names a zone this worker's tz database lacks (the loader would refuse it;
    a worker with older zone data than the one that loaded the directory meets it at run time)."""

    def get(self, name: str) -> PolicySet:
        policy = super().get(name)
        calendar = Calendar(time_zone="Mars/Olympus")
        return policy.model_copy(update={"directory": policy.directory.model_copy(update={"groups": [Group(id="it-desk-leads", calendar=calendar)]})})


async def test_a_deadline_this_worker_cannot_compute_falls_back_to_the_wall_clock(ts_env, db_url, tmp_path):
    friday = next_local(await ts_env.get_current_time(), BERLIN, time(17, 55), FRIDAY)
    await skip_to(ts_env, friday)
    root = write_policy(tmp_path / "pol", "hours", p1_rule(), [("it-desk-leads", 900, "business")], groups=group("Europe/Berlin"))
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(NOT_OPENED)]))
    policies = PolicyActivities(ZoneLessStore(root, overlay=directory_keys()))
    async with factory_with(ts_env.client, db_url, model, policies=policies) as f:
        run = await f.start(TICKET, policy="hours", requester="tom.becker")
        result = await run.result()
        await replay(run.handle)
    (request,) = result.approvals
    # Asked sooner, never stranded: the 15 minutes ran on the wall clock, Friday 18:10.
    assert request.status == "expired" and request.deadline == request.requested_at + timedelta(minutes=15)
    assert close_to(request.decided_at, request.deadline) and request.requested_at - friday < timedelta(minutes=1)
