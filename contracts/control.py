"""Operator control contracts: kill switches and the stop order a run receives.

Workflow-safe.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel


class SwitchScope(StrEnum):
    AGENT = "agent"
    """Every run of one agent."""
    TENANT = "tenant"
    """Every run of one tenant."""
    ALL = "all"
    """Every run of every agent."""


class KillSwitchState(BaseModel):
    """A switch that is on: who set it, when, why."""

    id: int
    scope: SwitchScope
    target: str
    """Agent name or tenant; empty for `all`."""
    reason: str
    set_by: str
    set_at: datetime

    def describe(self) -> str:
        what = {"agent": f"agent {self.target}", "tenant": f"tenant {self.target}", "all": "every agent"}[self.scope.value]
        return f"kill switch #{self.id} on {what}, set by {self.set_by} at {self.set_at:%Y-%m-%d %H:%M:%S} UTC: {self.reason}"


class SwitchQuery(BaseModel):
    """Input of the `check_kill_switch` local activity."""

    agent: str
    tenant: str


class StopOrder(BaseModel):
    """What the `stop` update hands a run in flight."""

    by: str
    """The operator (person id) who threw the switch."""
    reason: str
    switch_id: int | None = None
    """The kill switch this stop belongs to, if any."""


class StopAnswer(BaseModel):
    """The run's acknowledgement: from here on it starts no activity."""

    acknowledged: bool
    state: str
    """The run's state when it received the order."""
