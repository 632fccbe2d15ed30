"""Cost envelopes: an agent's spend per period, reserved before each model call and settled after.

Workflow-safe. The ledger lives in the factory's SQL store (`activities.budget`);
a run reserves the most its next model call can cost, so concurrent runs on any
number of workers never spend past the envelope, then settles what the call cost.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from contracts.signing import Signature

#: Alert thresholds, as a share of the envelope; each fires once per period.
ALERT_THRESHOLDS = (50, 80, 100)


class EnvelopeRef(BaseModel):
    """What a model call needs to reserve against its agent's envelope (sent with the call)."""

    key: str
    """Envelope key: agent, tenant (or `*`) and period (`contracts.agent.Envelope.key`)."""
    agent: str
    tenant: str
    limit_usd: float
    """The agent's envelope for the period, as the spec says (an operator may have raised it)."""
    max_prompt_tokens: int
    """Upper bound of a call's prompt (the agent's context ceiling): the reservation prices it."""


class BudgetNote(BaseModel):
    """What a model call's reservation found in the ledger."""

    granted: bool
    spent_usd: float
    limit_usd: float
    crossed: list[int] = []
    """Alert thresholds (percent) this call's settlement crossed; each is crossed by exactly one call."""


class BudgetDecision(BaseModel):
    """An operator's answer to a run paused on an exhausted envelope."""

    by: str
    action: Literal["resume", "stop"]
    """`resume` after raising the envelope (`aifactory envelope raise`), or `stop` the run."""
    note: str = ""
    signature: Signature | None = None
    """Proof that `by` made this decision."""
