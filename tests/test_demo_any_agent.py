"""`aifactory demo --agent NAME` runs any agent: a throwaway agent's samples go through `run_demo` on the
dev server with the scripted model, its output is printed field by field, and its approvals are given by
the first member of its bundle's approver group, not a constant desk lead."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from contracts.approval import ApprovalRequest
from policies.approvals import first_approver
from policies.loader import PolicyStore
from tests.support import orders_agent
from tests.support.demo import demo_on_cluster


def request(policy, group_tier: int = 0, requester: str = "demo", tenant: str = "demo") -> ApprovalRequest:
    now = datetime.now(timezone.utc)
    return ApprovalRequest(
        id="2.0", tool="create_ticket", arguments={}, rule_id="r", reason="why", approval=policy.bundle.default_approval,
        requester=requester, tenant=tenant, requested_at=now, deadline=now, tier=group_tier,
    )  # fmt: skip


def test_approvers_come_from_the_bundle_and_the_directory():
    store = PolicyStore()
    default, desk = store.get("default"), store.get("it-desk")
    assert [t.group for t in default.bundle.default_approval.chain] == ["approvers"]
    assert first_approver(request(default), default.directory) == "alex.morgan"
    assert first_approver(request(desk), desk.directory) == "maria.keller"
    assert first_approver(request(desk, requester="maria.keller"), desk.directory) == "tom.becker"  # not the requester
    assert first_approver(request(desk, requester="maria.keller", tenant="globex"), desk.directory) == "omar.haddad"
    assert first_approver(request(desk, group_tier=1), desk.directory) == "sara.lind"  # escalated


async def test_the_demo_runs_a_second_agent(env, tmp_path, monkeypatch, capsys):
    queue = f"tq-demo-orders-{uuid.uuid4().hex[:8]}"
    agents, policies = orders_agent.write_agent(tmp_path, queue)
    monkeypatch.setenv("AIFACTORY_POLICIES_DIR", str(policies))
    code = await demo_on_cluster(env, tmp_path / "home", agents, queue, orders_agent.NAME)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "approving as alex.morgan" in out and "needs approvers (rule orders-need-approval)" in out
    assert "monitors: create_ticket approved by alex.morgan" in out
    done = next(line for line in out.splitlines() if line.startswith("  done     monitors:"))
    assert "item=monitor quantity=2 department=Finance order_id=INC" in done, done
    assert "1 of 1 runs completed" in out and "--agent hw-orders" in out
