"""Messages a run takes: approvers' decisions and operators' orders, read here and proven, or refused.

Workflow-safe: messages arrive as raw payloads and are read by the workflow itself, so a bad one is
refused and recorded (ledger and outbox), never wedges a workflow task. From `SIGNED_DECISIONS_PATCH`
on, a decision counts only with valid proof of who made it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from contracts import errors as E
    from contracts import payloads
    from contracts import signing as S
    from contracts.approval import ApprovalDecision, DecisionAnswer, Refusal, Verdict
    from contracts.policy import Directory
    from contracts.wire import Activity
    from policies.signatures import refusal as signature_refusal

from .admission import POLICY_RETRY
from .notify import notify
from .patches import SIGNED_DECISIONS_PATCH
from .start import problems
from .state import MAX_NONCES_KEPT, AgentState

#: Refused messages (unreadable or unauthorised decisions) a run keeps in its ledger; the audit keeps them all.
MAX_REFUSALS_KEPT = 100


def read_one(st: AgentState, args: Sequence[RawValue], model: type[BaseModel], what: str) -> tuple[Any, str | None]:
    """The one argument of a message as `model`, or why it cannot be taken."""
    if len(args) != 1:
        return None, f"{what} takes one {model.__name__}, got {len(args)} values"
    return _open(st, args[0], model, what)


def _open(st: AgentState, raw: RawValue, model: type[BaseModel], what: str) -> tuple[Any, str | None]:
    """`raw` as `model`, or why it cannot be taken (undecodable, clear text, the wrong shape)."""
    payload = raw.payload
    if payloads.is_undecodable(payload):
        return None, f"{what} could not be decrypted ({payloads.reason(payload)})"
    if payloads.is_unsealed(payload):
        if _requires_sealed(st):
            return None, (f"{what} was sent in clear text, and this agent's runs take encrypted messages only: "
                          "send it with `aifactory`, the gateway, or a client that encodes through the codec endpoint")  # fmt: skip
        payload = payloads.unwrap(payload)
    try:
        return workflow.payload_converter().from_payload(payload, model), None
    except ValidationError as e:
        return None, f"{what} is not a {model.__name__}: {problems(e)}"
    except Exception as e:  # not JSON, an unknown encoding, ...
        return None, f"{what} is not a {model.__name__}: {type(e).__name__}: {e}"[:500]


def _requires_sealed(st: AgentState) -> bool:
    if st.legacy:
        return False
    return st.release is None or not st.release.spec.clear_payloads


async def read_order(
    st: AgentState, name: str, args: Sequence[RawValue], model: type[BaseModel], kind: str,
    body: Callable[[Any], dict], needs_reason: bool = False,
) -> Any:  # fmt: skip
    """An operator's order (stop, budget or tool decision), read and proven, or refused (on record)."""
    order, problem = read_one(st, args, model, f"update {name}")
    if problem is None and (not order.by.strip() or (needs_reason and not order.reason.strip())):
        problem = f"update {name}: the operator (by){' and a reason are' if needs_reason else ' is'} required"
    if problem is None:
        proof = await _proof_refused(st, kind, order.by.strip(), body(order), order.signature)
        problem = f"update {name}: {proof}" if proof else None
    if problem is not None:
        raise ApplicationError(problem, type=E.MESSAGE_REFUSED, non_retryable=True)
    return order


async def refuse_message(st: AgentState, problem: str, verdict: Verdict | None) -> None:
    """A decision the run cannot read: kept in the ledger and the outbox, like any refused decision."""
    workflow.logger.warning("refused a message: %s", problem)
    refusals = st.carry.ledger.refusals
    refusals.append(Refusal(request_id=None, person="(unreadable)", verdict=verdict or Verdict.APPROVE, reason=problem, at=workflow.now()))
    del refusals[:-MAX_REFUSALS_KEPT]
    await notify(
        st, "approval_refused", f"refusal/{workflow.uuid4()}", f"Refused a message: {problem}", group=None,
        details={"request": None, "person": None, "verdict": verdict.value if verdict else None, "reason": problem},
    )  # fmt: skip


async def decide(st: AgentState, decision: ApprovalDecision, verdict: Verdict) -> DecisionAnswer:
    """A person's decision on a request, taken into the approval book (or refused, on record)."""
    policy = st.carry.policy
    directory = policy.directory if policy else Directory()
    person = decision.approver.strip()
    problem = None
    if _checks_signatures():
        # The directory as it stands now (keys revoked since the run began count), and the proof first.
        directory = await _current_directory(st, directory)
        body = S.approval_body(decision.request_id, verdict.value, decision.note)
        problem = _signature_problem(st, directory, S.APPROVAL, person, body, decision.signature)
        if problem is None and decision.signature is not None and decision.request_id is None:
            problem = "a signed decision must name its request (request_id)"
    if problem is not None:
        answer = st.book.refuse(decision.request_id, person, verdict, problem, workflow.now())
    else:
        answer = st.book.decide(decision.request_id, person, verdict, decision.note, workflow.now(), directory)
    if not answer.accepted:
        workflow.logger.warning("refused %s by %s: %s", verdict.value, decision.approver, answer.reason)
        await notify(
            st, "approval_refused", f"refusal/{len(st.carry.ledger.refusals)}",
            f"Refused {verdict.value} by {decision.approver}: {answer.reason}", group=None,
            details={"request": answer.request_id, "person": decision.approver, "verdict": verdict.value, "reason": answer.reason},
        )  # fmt: skip
    return answer


# -- proof of who decided ----------------------------------------------------------------------


def _checks_signatures() -> bool:
    """Decisions arriving from here on need proof (decisions recorded before the patch replay without)."""
    return workflow.patched(SIGNED_DECISIONS_PATCH)


async def _current_directory(st: AgentState, pinned: Directory) -> Directory:
    policy = st.spec.policy if st.release is not None else None
    if policy is None:
        return pinned
    return await workflow.execute_local_activity(
        Activity.RESOLVE_DIRECTORY, policy, result_type=Directory, start_to_close_timeout=timedelta(seconds=10),
        retry_policy=POLICY_RETRY,
    )  # fmt: skip


def _signature_problem(st: AgentState, directory: Directory, kind: str, person: str, body: dict, sig) -> str | None:
    nonces = st.carry.nonces
    problem = signature_refusal(directory, kind, workflow.info().workflow_id, person, body, sig, workflow.now(), nonces)
    if problem is None and sig is not None:
        nonces.append(sig.nonce)
        del nonces[:-MAX_NONCES_KEPT]
    return problem


async def _proof_refused(st: AgentState, kind: str, person: str, body: dict, sig) -> str | None:
    """For an operator's order (stop, budget, tool): why its proof does not hold, if it does not."""
    if not _checks_signatures():
        return None
    policy = st.carry.policy
    directory = await _current_directory(st, policy.directory if policy else Directory())
    return _signature_problem(st, directory, kind, person, body, sig)
