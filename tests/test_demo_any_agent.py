"""`aifactory demo --agent NAME` runs any agent: a throwaway agent's samples go through `run_demo` on the
dev server with the scripted model, its output is printed field by field, and its approvals are given by
the first member of its bundle's approver group, not a constant desk lead."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from activities.keys import KeyRing
from aifactory.demo import run_demo
from aifactory.stack import seed_reference_data
from contracts.approval import ApprovalRequest
from policies.approvals import first_approver
from policies.loader import PolicyStore
from tests.support import orders_agent
from workers.schedules import AUDIT_SCHEDULE_ID
from workers.settings import Settings


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
    home = tmp_path / "home"
    KeyRing.generate().save(home / "keys" / "codec.json")
    KeyRing.generate().save(home / "keys" / "audit.json")
    settings = Settings.from_env({
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host, "AIFACTORY_HOME": str(home),
        "AIFACTORY_AGENTS_DIR": str(agents), "AIFACTORY_TASK_QUEUE": queue,
    })  # fmt: skip
    monkeypatch.setenv("AIFACTORY_POLICIES_DIR", str(policies))
    # On a cluster (this shared dev server) the demo writes no sample data to the store: load the
    # agent's seed as an operator would, through its tool families.
    assert seed_reference_data(settings) > 0
    try:
        code = await run_demo(settings, model="scripted", agent=orders_agent.NAME)
    finally:  # the demo's worker made the export schedule on the shared dev server, for its own queue
        await env.client.get_schedule_handle(AUDIT_SCHEDULE_ID).delete()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "approving as alex.morgan" in out and "needs approvers (rule orders-need-approval)" in out
    assert "monitors: create_ticket approved by alex.morgan" in out
    done = next(line for line in out.splitlines() if line.startswith("  done     monitors:"))
    assert "item=monitor quantity=2 department=Finance order_id=INC" in done, done
    assert "1 of 1 runs completed" in out and "--agent hw-orders" in out
