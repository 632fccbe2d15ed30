"""The names the platform speaks on the wire: workflow types, activities, signals, updates, queries.

Workflow-safe (constants only). Histories, schedules, other languages' starters and the
Temporal UI hold these strings: never rename a member, add a new one. Each is a `StrEnum`, so a
member is the string itself wherever Temporal takes a name (`@workflow.defn(name=Workflow.AGENT)`,
`handle.query(Query.STATUS)`). Tool activities are named by their tool family's declarations
(`contracts.tools` / the tool catalog), not here.
"""

from __future__ import annotations

from enum import StrEnum


class Workflow(StrEnum):
    """Workflow types."""

    AGENT = "AgentWorkflow"
    """One agent run (`workflows.agent`): started by the client, the gateway, or any Temporal starter."""
    AUDIT_EXPORT = "AuditExportWorkflow"
    """One audit export pass and the retention job, run by the audit schedule."""
    AUDIT_WITNESS = "AuditWitnessWorkflow"
    """The audit store's chain heads for one store and UTC day."""


class Activity(StrEnum):
    """Platform activities (`@activity.defn(name=...)` and the workflows that call them)."""

    ADMIT_RUN = "admit_run"
    CALL_MODEL = "call_model"
    RESOLVE_POLICY = "resolve_policy"
    RESOLVE_DIRECTORY = "resolve_directory"
    CHECK_KILL_SWITCH = "check_kill_switch"
    COMPUTE_BUSINESS_DEADLINE = "compute_business_deadline"
    SEND_NOTIFICATION = "send_notification"
    EXPORT_AUDIT = "export_audit"
    ENFORCE_AUDIT_RETENTION = "enforce_audit_retention"


class Signal(StrEnum):
    """Signals. An agent run takes `approve` and `reject` (kept for starters that cannot send updates)."""

    APPROVE = "approve"
    REJECT = "reject"
    WITNESS = "witness"
    """To `AuditWitnessWorkflow`: the heads an export pass anchored."""


class Update(StrEnum):
    """Updates an agent run takes; each is answered (accepted, or refused with a reason)."""

    DECIDE_APPROVAL = "decide_approval"
    STOP = "stop"
    BUDGET_DECISION = "budget_decision"
    RESOLVE_TOOL = "resolve_tool"


class Query(StrEnum):
    """Queries."""

    STATUS = "status"
    """An agent run's `RunStatus`."""
    APPROVALS = "approvals"
    """An agent run's `ApprovalLedger`."""
    ENTRIES = "entries"
    """How many batches an `AuditWitnessWorkflow` holds."""


#: What an agent run takes (its dynamic handlers answer anything else with `MessageRefused`).
AGENT_SIGNALS = (Signal.APPROVE, Signal.REJECT)
AGENT_UPDATES = (Update.DECIDE_APPROVAL, Update.STOP, Update.BUDGET_DECISION, Update.RESOLVE_TOOL)
