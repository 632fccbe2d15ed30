"""Who may decide an approval request, and how requests escalate: a pure state machine.

Workflow-safe: no I/O, no clock (the workflow passes `workflow.now()`). The
workflow drives it from signals, updates and timers; the property tests drive
it directly. Invariants: a request reaches exactly one terminal state; only an
authorized person's first decision counts; nothing counts after expiry.

A person may decide a request when they are in the directory, in the group of
the current tier or an earlier one, allowed to act for the run's tenant, and
not the run's requester.
"""

from __future__ import annotations

from datetime import datetime

from contracts.approval import (
    ApprovalLedger,
    ApprovalRequest,
    DecisionAnswer,
    Refusal,
    RequestStatus,
    Verdict,
)
from contracts.policy import Directory


class ApprovalBook:
    """Operates on a run's `ApprovalLedger` in place."""

    def __init__(self, ledger: ApprovalLedger) -> None:
        self.ledger = ledger

    @property
    def requests(self) -> list[ApprovalRequest]:
        return self.ledger.requests

    @property
    def refusals(self) -> list[Refusal]:
        return self.ledger.refusals

    def open(self, request: ApprovalRequest) -> ApprovalRequest:
        if any(r.id == request.id for r in self.requests):
            raise ValueError(f"approval request {request.id} exists already")
        self.requests.append(request)
        return request

    def get(self, request_id: str | None) -> ApprovalRequest | None:
        if request_id is None:
            pending = self.pending()
            return pending[0] if pending else (self.requests[-1] if self.requests else None)
        return next((r for r in self.requests if r.id == request_id), None)

    def pending(self) -> list[ApprovalRequest]:
        return [r for r in self.requests if r.status is RequestStatus.PENDING]

    def check(
        self, request_id: str | None, person: str, verdict: Verdict, note: str | None, now: datetime, directory: Directory
    ) -> DecisionAnswer:
        """Would this decision count? Pure: changes nothing."""
        req = self.get(request_id)

        def no(reason: str) -> DecisionAnswer:
            return DecisionAnswer(accepted=False, request_id=req.id if req else request_id, status=req.status if req else None, reason=reason)

        if req is None:
            return no("no approval request is open on this run" if request_id is None else f"no approval request {request_id!r} on this run")
        if verdict is Verdict.REJECT and not (note or "").strip():
            return no("a rejection needs a note saying why")
        if req.terminal:
            if req.status is RequestStatus.EXPIRED:
                return no(f"request {req.id} expired at {req.decided_at:%Y-%m-%d %H:%M:%S} UTC; the safe default applied")
            same = req.decided_by == person and (
                (verdict is Verdict.APPROVE) == (req.status is RequestStatus.APPROVED)
            )
            if same:
                return DecisionAnswer(accepted=True, request_id=req.id, status=req.status, reason="already decided by you; counted once", duplicate=True)
            return no(f"request {req.id} was already {req.status.value} by {req.decided_by}")
        if now >= req.deadline and req.tier == len(req.approval.chain) - 1:
            return no(f"request {req.id} expired at {req.deadline:%Y-%m-%d %H:%M:%S} UTC")
        p = directory.person(person)
        if p is None:
            return no(f"{person!r} is not in the approver directory")
        if person == req.requester:
            return no(f"{person} requested this run and may not decide its approvals")
        if "*" not in p.tenants and req.tenant not in p.tenants:
            return no(f"{person} may not decide for tenant {req.tenant!r}")
        allowed = {t.group for t in req.approval.chain[: req.tier + 1]}
        if not allowed & set(p.groups):
            return no(f"{person} is not in approver group {req.group!r}" + (f" (or {', '.join(sorted(allowed - {req.group}))})" if len(allowed) > 1 else ""))
        return DecisionAnswer(accepted=True, request_id=req.id, status=RequestStatus.PENDING, reason="ok")

    def refuse(self, request_id: str | None, person: str, verdict: Verdict, reason: str, now: datetime) -> DecisionAnswer:
        """Record a decision that does not count for a reason found before the book was asked (its proof)."""
        req = self.get(request_id)
        rid = req.id if req else request_id
        self.refusals.append(Refusal(request_id=rid, person=person, verdict=verdict, reason=reason, at=now))
        return DecisionAnswer(accepted=False, request_id=rid, status=req.status if req else None, reason=reason)

    def decide(
        self, request_id: str | None, person: str, verdict: Verdict, note: str | None, now: datetime, directory: Directory
    ) -> DecisionAnswer:
        """Apply a decision if it counts; record it as a refusal if it does not."""
        answer = self.check(request_id, person, verdict, note, now, directory)
        if not answer.accepted:
            self.refusals.append(Refusal(request_id=answer.request_id, person=person, verdict=verdict, reason=answer.reason, at=now))
            return answer
        if answer.duplicate:
            return answer
        req = self.get(answer.request_id)
        assert req is not None
        req.status = RequestStatus.APPROVED if verdict is Verdict.APPROVE else RequestStatus.REJECTED
        req.decided_by = person
        req.note = note
        req.decided_at = now
        return DecisionAnswer(accepted=True, request_id=req.id, status=req.status, reason=f"{req.status.value} by {person}")

    def escalate(self, request_id: str, now: datetime, deadline: datetime | None = None) -> bool:
        """The current tier's SLA expired: move to the next tier (True) or expire the request (False).

        `deadline` is the next tier's, when the caller computed it (a business-hours SLA); by default
        the next tier's SLA runs on the wall clock from `now`.
        """
        req = self.get(request_id)
        if req is None or req.terminal:
            return False
        if req.tier + 1 < len(req.approval.chain):
            req.tier += 1
            req.deadline = deadline if deadline is not None else now + req.approval.chain[req.tier].sla
            req.escalations.append(req.group)
            return True
        req.status = RequestStatus.EXPIRED
        req.decided_at = now
        req.decided_by = None
        req.note = f"no decision within the SLA of any tier; safe default: {req.approval.safe_default.value}"
        return False



def first_approver(request: ApprovalRequest, directory: Directory) -> str | None:
    """The first person in the directory who may decide `request` now: in its current group, allowed
    for its tenant, not its requester, and a person (services only act for people). None: nobody."""
    for p in directory.people:
        if p.acts_for or request.group not in p.groups or p.id == request.requester:
            continue
        if "*" in p.tenants or request.tenant in p.tenants:
            return p.id
    return None
