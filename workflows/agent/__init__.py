"""The agent workflow, split by concern: `AgentWorkflow` (in `workflow`) and the parts it composes.

Workflow-safe: every module here is deterministic orchestration, checked by `tests/test_determinism.py`.
"""

from .gate import MAX_DENIALS, MAX_INVALID_TOOL_CALLS, idempotency_key
from .listings import summarize
from .model import ANSWER_NOW, LONG_MODEL_CALL, MODEL_HEARTBEAT, MODEL_RETRY
from .notify import BREAKER_TRIPS
from .patches import (
    BREAKERS_PATCH,
    BUSINESS_HOURS_PATCH,
    KILL_SWITCH_PATCH,
    OWNER_ALERTS_PATCH,
    POLICY_GATE_PATCH,
    SIGNED_DECISIONS_PATCH,
    WORKER_RESOLVES_PATCH,
    WRITES_PARK_PATCH,
)
from .state import MAX_NONCES_KEPT, AgentState
from .workflow import MAX_REPAIRS, SIGNALS, UPDATES, AgentWorkflow

__all__ = [
    "ANSWER_NOW", "AgentState", "AgentWorkflow", "BREAKERS_PATCH", "BREAKER_TRIPS", "BUSINESS_HOURS_PATCH",
    "KILL_SWITCH_PATCH", "LONG_MODEL_CALL", "MAX_DENIALS", "MAX_INVALID_TOOL_CALLS", "MAX_NONCES_KEPT", "MAX_REPAIRS",
    "MODEL_HEARTBEAT", "MODEL_RETRY", "OWNER_ALERTS_PATCH", "POLICY_GATE_PATCH", "SIGNALS", "SIGNED_DECISIONS_PATCH",
    "UPDATES", "WORKER_RESOLVES_PATCH", "WRITES_PARK_PATCH", "idempotency_key", "summarize",
]  # fmt: skip
