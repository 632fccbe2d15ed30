"""Group calendars in the approver directory and business-clock tiers: what the loader takes and refuses."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest
import yaml

from contracts.approval import ApprovalRequest
from contracts.policy import Clock, Directory, PolicySet, Tier
from policies.loader import PolicyFileError, PolicyStore
from tests.support.harness import write_policy

RULES = [{"id": "p1-needs-a-lead", "match": {"tools": ["create_ticket"]}, "decision": "require_approval", "reason": "P1 pages on-call"}]
BERLIN_HOURS = {"time_zone": "Europe/Berlin", "holidays": ["2026-12-25"]}


def store(tmp_path: Path, chain: list[tuple], groups: list[dict] | None) -> PolicyStore:
    return PolicyStore(write_policy(tmp_path / "pol", "hours", RULES, chain, groups=groups))


def test_a_calendar_with_defaults_loads(tmp_path):
    groups = [{"id": "it-desk-leads", "calendar": BERLIN_HOURS, "slack_channel": "C0123"}]
    policy = store(tmp_path, [("it-desk-leads", "PT15M", "business"), ("it-managers", 1800)], groups).get("hours")
    calendar = policy.directory.calendar("it-desk-leads")
    assert calendar is not None and calendar.time_zone == "Europe/Berlin"
    assert [d.value for d in calendar.working_days] == ["mon", "tue", "wed", "thu", "fri"]
    assert (calendar.start, calendar.end, calendar.holidays) == (time(9), time(18), [date(2026, 12, 25)])
    assert policy.directory.group("it-desk-leads").slack_channel == "C0123"
    assert [t.clock for t in policy.bundle.default_approval.chain] == [Clock.BUSINESS, Clock.WALL]
    assert policy.directory.calendar("it-managers") is None


def test_a_business_tier_whose_group_has_no_calendar_is_refused_naming_bundle_rule_and_group(tmp_path):
    root = write_policy(tmp_path / "pol", "hours", RULES, [("it-desk-leads", 900)], groups=[])
    bundle = yaml.safe_load((root / "bundles" / "hours.yaml").read_text())
    bundle["rules"][0]["approval"] = {"chain": [{"group": "it-managers", "sla": 900, "clock": "business"}]}
    (root / "bundles" / "hours.yaml").write_text(yaml.safe_dump(bundle))
    with pytest.raises(PolicyFileError) as refused:
        PolicyStore(root).get("hours")
    message = str(refused.value)
    assert "bundle 'hours'" in message and "rule 'p1-needs-a-lead'" in message and "'it-managers'" in message
    assert "no calendar" in message


@pytest.mark.parametrize(
    ("calendar", "named"),
    [
        ({"time_zone": "Mars/Olympus"}, "field calendar.time_zone: unknown IANA time zone 'Mars/Olympus'"),
        ({"time_zone": "Europe/Berlin", "start": "18:00", "end": "09:00"}, "field calendar: end (09:00) must be after start (18:00)"),
        ({"time_zone": "Europe/Berlin", "start": "09:00", "end": "09:00"}, "must be after start"),
        ({"time_zone": "Europe/Berlin", "working_days": []}, "field calendar.working_days: expected at least one working day"),
        ({"time_zone": "Europe/Berlin", "working_days": ["mon", "funday"]}, "field calendar.working_days.1"),
        ({"time_zone": "Europe/Berlin", "end": 1080}, 'field calendar.end: expected a local time written as a quoted "HH:MM"'),
        ({"time_zone": "Europe/Berlin", "holidays": ["christmas"]}, "field calendar.holidays.0"),
        ({"time_zone": "Europe/Berlin", "hours": "9-5"}, "field calendar.hours: Extra inputs are not permitted"),
        ({}, "field calendar.time_zone: Field required"),
    ],
)
def test_a_bad_calendar_is_refused_naming_the_group_and_field(tmp_path, calendar, named):
    groups = [{"id": "it-desk-leads", "calendar": calendar}]
    with pytest.raises(PolicyFileError) as refused:
        store(tmp_path, [("it-desk-leads", 900)], groups).get("hours")
    assert "directory.yaml: group 'it-desk-leads' (groups[0])" in str(refused.value)
    assert named in str(refused.value)


def test_a_group_listed_twice_is_refused(tmp_path):
    groups = [{"id": "it-desk-leads"}, {"id": "it-desk-leads", "calendar": BERLIN_HOURS}]
    with pytest.raises(PolicyFileError, match="group 'it-desk-leads' is listed twice"):
        store(tmp_path, [("it-desk-leads", 900)], groups).get("hours")


def test_runs_recorded_before_calendars_still_read_back():
    """Pinned policy sets and requests in old histories have no `groups` and no `clock`: the defaults apply."""
    old = {"people": [{"id": "a", "name": "A", "tenants": ["*"], "groups": ["g"]}], "require_signatures": True, "sha256": "x"}
    assert Directory.model_validate(old).groups == []
    assert Tier.model_validate({"group": "g", "sla": 900}).clock is Clock.WALL
    policy = PolicySet.model_validate(
        {"bundle": {"name": "b", "version": "1", "default_approval": {"chain": [{"group": "g", "sla": 900}]}}, "directory": old}
    )
    request = ApprovalRequest.model_validate(
        {"id": "1.0", "tool": "t", "arguments": {}, "rule_id": "r", "reason": "why", "approval": policy.bundle.default_approval.model_dump(),
         "requester": "", "tenant": "acme", "requested_at": "2026-01-01T00:00:00Z", "deadline": "2026-01-01T00:15:00Z"}
    )  # fmt: skip
    assert request.approval.chain[0].clock is Clock.WALL


def test_the_shipped_directory_keeps_wall_clock_slas():
    policy = PolicyStore(Path(__file__).resolve().parents[1] / "policies").get("it-desk")
    assert all(t.clock is Clock.WALL for t in policy.bundle.default_approval.chain)


def test_the_commented_example_in_the_shipped_directory_loads():
    text = (Path(__file__).resolve().parents[1] / "policies" / "directory.yaml").read_text()
    example = text[text.index("# groups:") :].splitlines()
    groups = yaml.safe_load("\n".join(line.removeprefix("# ") for line in example))
    directory = Directory.model_validate({"people": [], **groups})
    assert directory.calendar("it-desk-leads").holidays[0] == date(2026, 12, 24)
