"""Notification contracts: what a run asks the notification activity to send.

Workflow-safe.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Notification(BaseModel):
    """What the workflow asks to send (workflow-safe model)."""

    key: str
    kind: str
    """approval_requested, approval_escalated_tierN, approval_expired, approval_decided, approval_refused,
    envelope_alert, breaker_tripped, kill_switch, tool_stuck."""
    run_id: str
    agent: str
    tenant: str
    group: str | None = None
    recipients: list[str] = Field(default_factory=list)
    subject: str
    details: dict = Field(default_factory=dict)
    channels: list[str] = Field(default_factory=list)
    """Where to deliver besides the factory's webhook: Slack channels (`#name` or an id), webhook URLs,
    email addresses (kept in the outbox for a mail relay). Approvals go to the group's Slack channel,
    alerts to the agent's owner and escalation contact."""


class NotificationReceipt(BaseModel):
    key: str
    outbox_id: int
    delivered: bool
    first_time: bool
