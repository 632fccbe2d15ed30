"""The cost envelope an agent run spends from, and the model tier it drops to when money runs short.

Workflow-safe: the model activity reserves and settles the money; the run only reads its notes,
alerts the owner at thresholds, and stops or waits for an operator when the envelope is spent.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.budget import BudgetDecision, BudgetNote, EnvelopeRef
    from contracts.control import StopAnswer
    from contracts.run import RunState

from .notify import notify
from .state import AgentState
from .stop import check_stop


def envelope_ref(st: AgentState) -> EnvelopeRef | None:
    """The envelope the next model call spends from (today's, for the run's agent and tenant), if any."""
    spec = st.spec
    env = spec.envelope
    if env is None:
        return None
    return EnvelopeRef(
        key=env.key(spec.name, st.tenant, workflow.now().date()), agent=spec.name,
        tenant=env.tenant_of(st.tenant), limit_usd=env.limit_usd, max_prompt_tokens=spec.breakers.max_context_tokens,
    )  # fmt: skip


def economise(st: AgentState, note: BudgetNote | None) -> None:
    """Drop to the cheapest tier once the envelope is spent past the agent's `economise_at`."""
    at = st.spec.routing.economise_at
    if st.carry.tier and at is not None and note is not None and note.limit_usd > 0 and note.spent_usd >= at * note.limit_usd:
        workflow.logger.info("envelope %.0f%% spent: back to the cheapest model tier", 100 * note.spent_usd / note.limit_usd)
        st.carry.tier = 0


async def envelope_alert(st: AgentState, envelope: EnvelopeRef, pct: int, note: BudgetNote) -> None:
    await notify(
        st, "envelope_alert", f"{pct}", f"{envelope.agent}: {pct}% of the cost envelope spent ({envelope.key})",
        group=None, key=f"envelope/{envelope.key}/{pct}", recipients=[st.spec.owner.name], channels=st.owner_channels(),
        details={"envelope": envelope.key, "threshold": pct, "spent_usd": round(note.spent_usd, 6), "limit_usd": note.limit_usd},
    )  # fmt: skip


async def envelope_spent(st: AgentState, envelope: EnvelopeRef, note: BudgetNote) -> None:
    """The envelope has no room for the next call: stop, or wait for an operator, as the agent says."""
    spec = st.spec
    assert spec.envelope is not None
    await envelope_alert(st, envelope, 100, note)
    why = f"cost envelope spent: ${note.spent_usd:.4f} of ${note.limit_usd:.4f} this {spec.envelope.period}"
    if spec.envelope.on_exhausted == "stop":
        st.set_state(RunState.FAILED, "nothing")
        st.envelope_ended = True
        raise st.fail(why, E.BUDGET_EXCEEDED)
    st.budget_decision = None
    st.phase, st.waiting_on = RunState.AWAITING_BUDGET, "an operator: raise the envelope or stop the run"
    workflow.set_current_details(f"**awaiting budget** · {why} · `aifactory envelope raise {spec.name}` or `stop`")
    await workflow.wait_condition(lambda: st.budget_decision is not None or st.stop is not None)
    check_stop(st)
    decision = st.budget_decision
    assert decision is not None
    if decision.action == "stop":
        st.set_state(RunState.FAILED, "nothing")
        st.envelope_ended = True
        raise st.fail(f"{why}; stopped by {decision.by}" + (f": {decision.note}" if decision.note else ""), E.BUDGET_EXCEEDED)
    st.set_state(RunState.CALLING_MODEL, f"model {st.model().name}")


def take_budget_decision(st: AgentState, decision: BudgetDecision) -> StopAnswer:
    """An operator's answer to a run paused on its spent envelope: resume (after raising it) or stop."""
    state = st.phase.value
    if st.phase is RunState.AWAITING_BUDGET:
        st.budget_decision = decision
    return StopAnswer(acknowledged=st.budget_decision is decision, state=state)
