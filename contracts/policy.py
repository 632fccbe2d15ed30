"""Policy contracts: bundles, rules, approver directory, and the decisions made from them.

Workflow-safe. A bundle travels with the run (with its content hash), so every
decision can be reproduced from history. Field docstrings are the reference for
bundle authors (`policies/bundles/*.yaml`).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.classes import DataClass, SideEffect


class Autonomy(StrEnum):
    """How far an agent may act without a person: every new agent starts supervised."""

    SUPERVISED = "supervised"
    """Every write or external call needs approval unless a rule lowers it."""
    ASSISTED = "assisted"
    """Rules may lower approval for named, low-risk calls."""
    AUTONOMOUS = "autonomous"
    """Proven in production; high-risk rules still require approval."""


class Outcome(StrEnum):
    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"


class SafeDefault(StrEnum):
    """What happens when nobody answers after the last tier of the chain."""

    DENY = "deny"
    """Don't act: the call is denied, the model is told, the run goes on."""
    STOP = "stop"
    """Don't act and end the run with `ApprovalExpired`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Clock(StrEnum):
    """What a tier's SLA counts."""

    WALL = "wall"
    """Every hour counts, nights and weekends too."""
    BUSINESS = "business"
    """Only working time in the tier group's calendar (the directory's `groups:`) counts."""


class Tier(_Strict):
    """One level of an escalation chain."""

    group: str
    """Approver group (from the directory) asked at this level."""
    sla: timedelta
    """How long this level has to answer before the request escalates (e.g. `PT15M` or `900`)."""
    clock: Clock = Clock.WALL
    """`wall`: the SLA runs around the clock. `business`: it runs only in the working hours of the group's
    calendar, so a 15-minute SLA raised Friday 17:55 (hours 09:00-18:00 Mon-Fri) expires Monday 09:10."""


class ApprovalSpec(_Strict):
    chain: list[Tier] = Field(min_length=1)
    """Tiers asked in order; the first is asked at once."""
    safe_default: SafeDefault = SafeDefault.DENY
    """Applied when the last tier's SLA expires."""


class Match(_Strict):
    """Conditions a tool call must meet for a rule to apply; an omitted condition matches anything."""

    agents: list[str] | None = None
    tools: list[str] | None = None
    tenants: list[str] | None = None
    side_effects: list[SideEffect] | None = None
    data_classes: list[DataClass] | None = None
    """Matches when the tool touches any of these."""
    autonomy: list[Autonomy] | None = None
    when: str | None = None
    """Predicate over the tool arguments, e.g. `amount > 10000 and country not in ['US']`."""


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{1,80}$")
    """Unique within the bundle; recorded with every decision it makes."""
    description: str = ""
    match: Match = Match()
    decision: Outcome
    reason: str = Field(min_length=3)
    """Why the rule exists; shown to the model on a denial and to approvers on a request."""
    approval: ApprovalSpec | None = None
    """For `require_approval`: who approves (defaults to the bundle's default approval)."""


class PolicyBundle(_Strict):
    name: str
    version: str
    default_approval: ApprovalSpec
    """Approval used by `require_approval` rules without their own, and for the write/external default."""
    rules: list[Rule] = Field(default_factory=list)
    sha256: str = ""
    """Content hash of the bundle file, set by the loader."""

    @model_validator(mode="after")
    def _unique_ids(self) -> "PolicyBundle":
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} is used twice")
            seen.add(r.id)
        return self


class PersonKey(_Strict):
    """A public key a person (or service) signs decisions with (`aifactory keys init` prints the entry)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")
    """The key's id, named in every signature made with it."""
    public_key: str
    """Ed25519 public key, raw 32 bytes, base64."""
    valid_from: datetime | None = None
    """Signatures made before this are refused."""
    valid_until: datetime | None = None
    """Signatures made (or checked) after this are refused: the key expired."""
    revoked_at: datetime | None = None
    """Set to revoke the key: nothing it signs counts from this moment on."""


class Person(_Strict):
    id: str
    name: str
    tenants: list[str]
    """Tenants this person may decide for (`*` for all)."""
    groups: list[str] = Field(default_factory=list)
    keys: list[PersonKey] = Field(default_factory=list)
    """The keys this person signs decisions with."""
    acts_for: list[str] = Field(default_factory=list)
    """For a service (the Slack endpoint, the gateway): the people it may sign decisions for (`*`: anyone).
    The decision is still checked as that person's (group, tenant, not the requester)."""
    slack_user_id: str | None = Field(default=None, pattern=r"^[UW][A-Z0-9]{2,20}$")
    """The person's Slack user id (`U024BE7LH`): a button they press in Slack decides as them."""


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday 0 ... Sunday 6, as `date.weekday()`."""
        return list(Weekday).index(self)


class Calendar(_Strict):
    """A group's working hours, in which business-clock SLAs count (one shift a day, in local time).

    The zone name is checked against the time-zone database when the directory is loaded
    (`policies.loader`), not here: a run's pinned directory must read back on any machine.
    """

    time_zone: str = Field(min_length=1)
    """IANA time-zone name the hours are in, e.g. `Europe/Berlin`; local hours hold across daylight-saving changes."""
    working_days: list[Weekday] = Field(default_factory=lambda: [Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI])
    """Days with working hours (`mon` ... `sun`); Monday to Friday when omitted."""
    start: time = time(9, 0)
    """Local time the working day starts, quoted: `"09:00"`."""
    end: time = time(18, 0)
    """Local time the working day ends, quoted: `"18:00"`; after `start` (no shifts over midnight)."""
    holidays: list[date] = Field(default_factory=list)
    """Dates without working hours, e.g. `2026-12-25`."""

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock_time(cls, value: Any) -> Any:
        # Unquoted 18:00 is the integer 1080 to YAML (base 60), which pydantic would read as 00:18.
        if isinstance(value, (int, float)):
            raise ValueError('expected a local time written as a quoted "HH:MM", e.g. "09:00"')
        return value

    @field_validator("start", "end")
    @classmethod
    def _naive(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("expected a local time without an offset: the calendar's time_zone says where")
        return value

    @field_validator("working_days")
    @classmethod
    def _days(cls, value: list[Weekday]) -> list[Weekday]:
        if not value:
            raise ValueError("expected at least one working day (mon ... sun)")
        if len(set(value)) != len(value):
            raise ValueError("a working day is listed twice")
        return value

    @model_validator(mode="after")
    def _hours(self) -> "Calendar":
        if self.end <= self.start:
            raise ValueError(f"end ({self.end:%H:%M}) must be after start ({self.start:%H:%M}); shifts over midnight are not supported")
        return self


class Group(_Strict):
    """Settings of one approver group (its members are the people who list it in `groups`)."""

    id: str
    """The group's name, as tiers and people name it."""
    calendar: Calendar | None = None
    """Working hours for tiers of this group with `clock: business`; required by those tiers."""
    slack_channel: str | None = Field(default=None, pattern=r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CG][A-Z0-9]{2,20})$")
    """Slack channel (`#it-desk-leads` or its id `C024BE91L`) approval requests for this group are posted to,
    with Approve and Reject buttons (the bot must be in the channel)."""


class Directory(_Strict):
    """Who is in which approver group, and their signing keys; travels with the run next to the bundle."""

    people: list[Person] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)
    """Settings of approver groups (calendar, Slack channel); a group needs no entry here to have members."""
    require_signatures: bool = True
    """Decisions count only when signed by a key in this directory. A deployment turns this off only
    explicitly (`require_signatures: false`); the audit record says whether each decision was signed."""
    sha256: str = ""

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)

    def members(self, group: str) -> list[str]:
        return [p.id for p in self.people if group in p.groups]

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id), None)

    def by_slack_user(self, slack_user_id: str) -> Person | None:
        return next((p for p in self.people if p.slack_user_id and p.slack_user_id == slack_user_id), None)

    def calendar(self, group_id: str) -> Calendar | None:
        """The group's working hours, if it has any."""
        g = self.group(group_id)
        return g.calendar if g else None

    @model_validator(mode="after")
    def _unique_groups(self) -> "Directory":
        seen: set[str] = set()
        for g in self.groups:
            if g.id in seen:
                raise ValueError(f"group {g.id!r} is listed twice")
            seen.add(g.id)
        return self


class PolicySet(_Strict):
    """The bundle and directory a run uses, fixed when the run starts."""

    bundle: PolicyBundle
    directory: Directory


class ToolCallFacts(_Strict):
    """Everything a decision may depend on; all of it is in history."""

    agent: str
    tenant: str
    autonomy: Autonomy
    tool: str
    side_effect: SideEffect
    data_classes: tuple[DataClass, ...] = ()
    arguments: dict[str, Any] = Field(default_factory=dict)


class PolicyDecision(_Strict):
    outcome: Outcome
    rule_id: str
    """The deciding rule, or `default:deny` / `default:write-approval`."""
    reason: str
    bundle: str
    """`name@version`."""
    bundle_sha256: str
    approval: ApprovalSpec | None = None
    """Set when the outcome is `require_approval`."""
