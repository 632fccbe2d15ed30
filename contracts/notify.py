"""Notification contracts: what a run asks the notification activity to send.

Workflow-safe.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Notification(BaseModel):
    """What the workflow asks to send (workflow-safe model)."""

    key: str
    kind: str
    """approval_requested, approval_escalated, approval_expired, approval_decided, approval_refused."""
    run_id: str
    agent: str
    tenant: str
    group: str | None = None
    recipients: list[str] = Field(default_factory=list)
    subject: str
    details: dict = Field(default_factory=dict)


class NotificationReceipt(BaseModel):
    key: str
    outbox_id: int
    delivered: bool
    first_time: bool
