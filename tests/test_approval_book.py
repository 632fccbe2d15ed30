"""Property tests of the approval state machine over sequences of decisions, duplicates,
timeouts and restarts: no request is acted on without an accepted approval by an
authorized person, and none reaches two terminal states."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.approval import ApprovalLedger, ApprovalRequest, RequestStatus, Verdict
from contracts.policy import ApprovalSpec, Tier
from policies.approvals import ApprovalBook
from policies.loader import PolicyStore
from tests.support.harness import REPO

DIRECTORY = PolicyStore(REPO / "policies").get("it-desk").directory
SPEC = ApprovalSpec(chain=[Tier(group="it-desk-leads", sla=timedelta(minutes=15)), Tier(group="it-managers", sla=timedelta(minutes=30))])
PEOPLE = ["maria.keller", "tom.becker", "sara.lind", "omar.haddad", "mallory"]
REQUESTER = "tom.becker"  # a desk lead: authorized for any run but his own
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)

action = st.one_of(
    st.tuples(st.just("decide"), st.sampled_from(PEOPLE), st.sampled_from(list(Verdict)), st.sampled_from([None, "ok, confirmed"])),
    st.tuples(st.just("duplicate")),
    st.tuples(st.just("timeout")),
    st.tuples(st.just("restart")),
    st.tuples(st.just("wait"), st.integers(min_value=1, max_value=50)),
)


def authorized(person: str, tier: int, tenant: str = "acme") -> bool:
    p = DIRECTORY.person(person)
    if p is None or person == REQUESTER:
        return False
    groups = {t.group for t in SPEC.chain[: tier + 1]}
    return bool(groups & set(p.groups)) and ("*" in p.tenants or tenant in p.tenants)


@settings(max_examples=400, deadline=None)
@given(st.lists(action, max_size=25))
def test_no_action_without_an_accepted_authorized_approval(actions):
    ledger = ApprovalLedger()
    book = ApprovalBook(ledger)
    now = T0
    book.open(ApprovalRequest(id="2.0", tool="create_ticket", arguments={}, rule_id="r", reason="why", approval=SPEC, requester=REQUESTER, tenant="acme", requested_at=now, deadline=now + SPEC.chain[0].sla))
    terminal_states: list[RequestStatus] = []
    last = None
    for act in actions:
        req = book.get("2.0")
        before = req.status
        if act[0] == "decide":
            _, person, verdict, note = act
            tier = req.tier
            answer = book.decide("2.0", person, verdict, note, now, DIRECTORY)
            last = (person, verdict, note)
            if answer.accepted and not answer.duplicate:
                assert before is RequestStatus.PENDING
                assert authorized(person, tier), f"{person} decided at tier {tier}"
                assert verdict is Verdict.APPROVE or note, "a rejection carries a note"
        elif act[0] == "duplicate" and last is not None:
            answer = book.decide("2.0", *last[:2], last[2], now, DIRECTORY)
            assert not (answer.accepted and not answer.duplicate and before is not RequestStatus.PENDING)
        elif act[0] == "timeout":
            if not req.terminal:
                now = req.deadline
                book.escalate("2.0", now)
        elif act[0] == "wait":
            now += timedelta(minutes=act[1])
        elif act[0] == "restart":  # a worker restart rebuilds state from history: same data, new objects
            ledger = ApprovalLedger.model_validate_json(ledger.model_dump_json())
            book = ApprovalBook(ledger)
        req = book.get("2.0")
        if req.terminal and (not terminal_states or terminal_states[-1] is not req.status):
            terminal_states.append(req.status)
        if before.value != "pending":
            assert req.status is before, "a terminal state never changes"
    assert len(terminal_states) <= 1
    final = book.get("2.0")
    if final.status is RequestStatus.APPROVED:
        assert final.decided_by and authorized(final.decided_by, len(SPEC.chain) - 1)
    if final.status is RequestStatus.EXPIRED:
        assert final.decided_by is None
    for refusal in ledger.refusals:
        assert refusal.reason


def test_escalation_moves_one_tier_per_timeout_then_expires():
    book = ApprovalBook(ApprovalLedger())
    book.open(ApprovalRequest(id="1.0", tool="t", arguments={}, rule_id="r", reason="why", approval=SPEC, requester="x", tenant="acme", requested_at=T0, deadline=T0 + SPEC.chain[0].sla))
    assert book.escalate("1.0", T0 + timedelta(minutes=15)) is True
    req = book.get("1.0")
    assert (req.tier, req.group, req.deadline) == (1, "it-managers", T0 + timedelta(minutes=45))
    assert book.escalate("1.0", T0 + timedelta(minutes=45)) is False
    assert req.status is RequestStatus.EXPIRED and req.escalations == ["it-managers"]
    late = book.decide("1.0", "maria.keller", Verdict.APPROVE, None, T0 + timedelta(minutes=46), DIRECTORY)
    assert not late.accepted and "expired" in late.reason
