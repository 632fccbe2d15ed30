"""The agent run's one state model: what continue-as-new carries, plus what one execution knows.

Workflow-safe: no I/O; the clock and ids only through `temporalio.workflow`. `AgentState.carry`
*is* the `RunCarry` the next execution receives (its wire shape is unchanged, so old histories
decode), so no counter is copied by hand between attributes and the carry. The parts of the run
(`gate`, `envelope`, `stop`, ...) are functions over an `AgentState`, composable by another workflow.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.agent import AgentSpec, ModelSettings, PinnedRelease
    from contracts.budget import BudgetDecision
    from contracts.control import Admission, KillSwitchState, StopOrder, ToolResolution
    from contracts.model import ChatMessage, Usage
    from contracts.run import AgentRunInput, RunCarry, RunFailure, RunState, RunStatus
    from contracts.tools import ToolCallRecord, ToolOutcome
    from policies.approvals import ApprovalBook

from .patches import WORKER_RESOLVES_PATCH

#: Nonces of signed decisions a run remembers (a replay of any of them is refused).
MAX_NONCES_KEPT = 1000


class AgentState:
    """One agent run's state. `carry` crosses continue-as-new; the rest is rebuilt by each execution."""

    def __init__(self) -> None:
        self.inp: AgentRunInput | None = None
        self.release: PinnedRelease | None = None
        self.legacy: bool | None = None
        """True for histories recorded before the worker resolved releases (no patch marker)."""
        self.sealed = True
        """Whether the start input arrived encrypted (a worker with a key ring marks clear text)."""
        self.phase = RunState.STARTING
        self.waiting_on = "nothing"
        self.last_call_cost = 0.0
        self.memory: list[ChatMessage] | None = []
        """Full conversation in worker memory only, to resend if the store lost it; unknown after continue-as-new."""
        self.answer_asked = False
        self.stop: StopOrder | None = None
        self.switched: KillSwitchState | None = None
        """The kill switch that refused this run at its start, if one did."""
        self.envelope_ended = False
        """Whether the cost envelope (not the run's own cap) ended the run: its owner had the envelope's alerts."""
        self.budget_decision: BudgetDecision | None = None
        self.inflight: workflow.ActivityHandle | None = None
        self.admission: Admission | None = None
        """Sent with the first model call until it answers (runs recorded with `admit_in_first_call`)."""
        self.listed_awaiting = False
        """Whether the run's search attributes say it waits for an approval."""
        self.resolution: ToolResolution | None = None
        self.stuck = 0
        self.sent_prompt: str | None = None
        """SHA-256 of the prompt the model activity sent, as it reported it."""
        self.restore(None)

    def restore(self, carry: RunCarry | None) -> None:
        """The run's counters and records: fresh, or as the previous execution carried them."""
        self.carry = carry if carry is not None else RunCarry(step=0, transcript_seq=0, usage=Usage())
        self.book = ApprovalBook(self.carry.ledger)
        if carry is not None:
            self.memory = None

    def next_carry(self) -> RunCarry:
        """The carry for continue-as-new: the state as it stands, with the release pinned and the run's lineage."""
        release = self.release
        assert release is not None
        return self.carry.model_copy(
            update={
                "release": PinnedRelease(spec=release.spec, prompt_sha256=release.prompt_sha256),
                "lineage": workflow.info().first_execution_run_id,
                "nonces": self.carry.nonces[-MAX_NONCES_KEPT:],
            }
        )

    # -- what the run is ------------------------------------------------------------------------

    @property
    def spec(self) -> AgentSpec:
        assert self.release is not None
        return self.release.spec

    def model(self) -> ModelSettings:
        """The model of the tier the run has reached."""
        spec = self.spec
        return [spec.model, *spec.model_tiers][self.carry.tier]

    def is_legacy(self) -> bool:
        """Was this run started before workers resolved releases? (Asked once; not from a query.)"""
        if self.legacy is None:
            self.legacy = not workflow.patched(WORKER_RESOLVES_PATCH)
        return self.legacy

    @property
    def agent(self) -> str:
        if self.release is not None:
            return self.release.spec.name
        parts = workflow.info().workflow_id.split("/")  # before the input is read: the business key
        return parts[1] if len(parts) >= 4 else "unknown"

    @property
    def tenant(self) -> str:
        if self.inp is not None:
            return self.inp.tenant
        parts = workflow.info().workflow_id.split("/")
        return parts[2] if len(parts) >= 4 else "unknown"

    def owner_channels(self) -> list[str]:
        """The agent's named owner and its escalation contact, as the spec gives them (each once)."""
        spec = self.release.spec if self.release else None
        return list(dict.fromkeys([spec.owner.contact, spec.escalation_contact])) if spec else []

    def status(self) -> RunStatus:
        return RunStatus(
            state=self.phase,
            step=self.carry.step,
            step_limit=self.release.spec.step_limit if self.release else 0,
            usage=self.carry.usage,
            waiting_on=self.waiting_on,
            tool_calls=len(self.carry.tool_calls),
            invalid_tool_calls=self.carry.invalid_tool_calls,
            denials=self.carry.denials,
            approval=next(iter(self.book.pending()), None),
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def fail(self, message: str, type_: str) -> ApplicationError:
        """A typed, non-retryable run failure carrying what the audit trail finds nowhere else in history."""
        details = RunFailure(step=self.carry.step, usage=self.carry.usage, settled=self.carry.settled)
        return ApplicationError(message, details, type=type_, non_retryable=True)

    def set_state(self, state: RunState, waiting_on: str) -> None:
        self.phase = state
        self.waiting_on = waiting_on
        limit = self.release.spec.step_limit if self.release else 0
        usage = self.carry.usage
        workflow.set_current_details(
            f"**{state.value}** · step {self.carry.step}/{limit} · waiting on {waiting_on} · "
            f"tokens {usage.total_tokens} · cost ${usage.cost_usd:.4f}"
        )

    def ran_nothing(self, record: ToolCallRecord, outcome: ToolOutcome | None = None, error: str | None = None) -> ToolCallRecord:
        """Record a call that ran no activity; it reaches history with the next model call (or the failure)."""
        if outcome is not None:
            record = record.model_copy(update={"outcome": outcome, "error": error})
        self.carry.tool_calls.append(record)
        self.carry.settled.append(record)
        return record

