"""Visibility queries built from checked values: the one place a value meets a query.

Workflow-safe (pure). An operator's tenant string, an agent name from a URL, a
group from a flag: each is checked against its grammar before it becomes part
of a Temporal visibility query, and quoted by `quote`, so no input can add a
clause (`nobody" OR Tenant = "acme`) and widen the set of runs acted on.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from contracts.agent import AGENT_NAME
from contracts.errors import FactoryError
from contracts.run import TENANT

GROUP = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
WORKFLOW_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/#@+-]{0,254}$")
WORKFLOW_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,79}$")
STATUSES = frozenset({"Running", "Completed", "Failed", "Canceled", "Terminated", "ContinuedAsNew", "TimedOut"})

#: What each field accepts, said the way an operator reads it.
FIELDS: dict[str, tuple[re.Pattern | frozenset, str]] = {
    "AgentName": (AGENT_NAME, "an agent name: lowercase letters, digits and dashes, starting with a letter"),
    "Tenant": (TENANT, "a tenant: 1-63 lowercase letters, digits, '.', '_' or '-'"),
    "ApprovalGroup": (GROUP, "an approver group: 1-63 lowercase letters, digits, '.', '_' or '-'"),
    "WorkflowId": (WORKFLOW_ID, "a run id such as agent/it-triage/acme/T-1001"),
    "WorkflowType": (WORKFLOW_TYPE, "a workflow type name"),
    "AgentVersion": (VERSION, "a release version such as 1.3.0+prompt.1b1f601dc7ac"),
    "ExecutionStatus": (STATUSES, "one of " + ", ".join(sorted(STATUSES))),
}
NAMES = {"AgentName": "agent", "Tenant": "tenant", "ApprovalGroup": "approver group", "WorkflowId": "run id",
         "WorkflowType": "workflow type", "AgentVersion": "version", "ExecutionStatus": "status"}  # fmt: skip


class QueryValueRejected(FactoryError, ValueError):
    """A value that may not go into a visibility query; the message names it and what was expected."""


def check(field: str, value: str) -> str:
    """`value` if it fits `field`'s grammar, else `QueryValueRejected` in one sentence."""
    rule, expected = FIELDS[field]
    ok = value in rule if isinstance(rule, frozenset) else bool(isinstance(value, str) and rule.fullmatch(value))
    if not ok:
        raise QueryValueRejected(f"{NAMES[field]} {value!r} refused: expected {expected}")
    return value


def quote(value: str) -> str:
    """A checked value as a quoted literal (escaped as well, should a grammar ever allow a quote)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def eq(field: str, value: str | bool) -> str:
    if isinstance(value, bool):
        return f"{field} = {'true' if value else 'false'}"
    return f"{field} = {quote(check(field, value))}"


def present(field: str) -> str:
    """`AgentName IS NOT NULL`: the runs that carry `field` (a field of `FIELDS`, never a caller's string)."""
    if field not in FIELDS:
        raise QueryValueRejected(f"{field!r} is not a search attribute a query may test")
    return f"{field} IS NOT NULL"


def at_least(field: str, moment: datetime) -> str:
    """`CloseTime >= '...'` and the like: a time is formatted here, never pasted."""
    if field not in ("CloseTime", "StartTime"):
        raise QueryValueRejected(f"{field!r} is not a time field")
    stamp = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{field} >= {quote(stamp)}"


def all_of(*clauses: str) -> str:
    return " AND ".join(f"({c})" if " OR " in c else c for c in clauses if c)


def any_of(*clauses: str) -> str:
    return "(" + " OR ".join(clauses) + ")"
