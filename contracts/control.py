"""Operator control contracts: kill switches, the stop order a run receives, and admission.

Workflow-safe.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from contracts.agent import PinnedRelease
from contracts.policy import PolicySet
from contracts.signing import Signature


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
    """Input of the `check_kill_switch` local activity (runs recorded before `Admission`)."""

    agent: str
    tenant: str


class Admission(BaseModel):
    """What a run's first model call settles before the call is made (sent with that call only)."""

    agent: str
    tenant: str
    policy: str
    """The policy bundle that gates the run's tool calls (the agent's `policy`)."""


class Admitted(BaseModel):
    """The first model call's answer to `Admission`, recorded in history with its result."""

    switch: KillSwitchState | None = None
    """A kill switch on for the run's agent or tenant: the run is refused and the call was not made."""
    policy: PolicySet | None = None
    """The bundle and directory that gate the run for its whole life (None when refused)."""


class RunAdmission(BaseModel):
    """Input of the `admit_run` local activity: what a run asks for, before anything else happens."""

    agent: str
    version: str | None = None
    """A version pin (`1.3.0` or `1.3.0+prompt.<12 hex>`); None: the worker's current release."""
    tenant: str


class StartRefusal(BaseModel):
    """Why the worker refused to admit a run: its typed failure and one sentence."""

    type: str
    """The failure type the run ends with (`contracts.errors`)."""
    message: str


class RunAdmitted(BaseModel):
    """The worker's answer to `RunAdmission`, pinned in history for the run's whole life."""

    release: PinnedRelease | None = None
    """The release the run runs under, from the worker's own registry (None when refused)."""
    policy: PolicySet | None = None
    """The bundle and directory that gate its tool calls."""
    refused: StartRefusal | None = None
    """Set when the run may not start: unknown release, not admitted, kill switch, spent envelope."""


class ToolResolution(BaseModel):
    """An operator's answer to a run whose write or external tool ran out of retries (`resolve_tool`)."""

    action: Literal["retry", "give_up"]
    """`retry` runs the call again now (same arguments, same idempotency key: still one effect);
    `give_up` tells the model the call was not done, with the reason, and the run goes on."""
    by: str
    """The operator (person id)."""
    reason: str = ""
    """Why; required to give up."""
    signature: Signature | None = None
    """Proof that `by` made this decision."""


class StopOrder(BaseModel):
    """What the `stop` update hands a run in flight."""

    by: str
    """The operator (person id) who threw the switch."""
    reason: str
    switch_id: int | None = None
    """The kill switch this stop belongs to, if any."""
    signature: Signature | None = None
    """Proof that `by` gave this order."""


class StopAnswer(BaseModel):
    """The run's acknowledgement: from here on it starts no activity."""

    acknowledged: bool
    state: str
    """The run's state when it received the order."""
