"""Operator queries cannot be injected: hostile tenant, agent, group and run strings given to
`kill`, `unkill`, `approvals list`, `audit export --run` and the client's own queries are each
refused in one sentence, act on no run, and write no switch."""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest

from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.switches import switch_history
from contracts.control import SwitchScope
from contracts.visibility import QueryValueRejected
from tests.support.cli import cli_env, one_sentence, run_cli
from tests.test_approvals_devserver import DONE, P1, TICKET, parked

HOSTILE = [
    'nobody" OR Tenant = "acme',
    'nobody") OR (Tenant = "acme',
    "nobody' OR Tenant = 'acme",
    'acme\\" OR 1=1',
    "acme OR AgentName = it-triage",
    "äcme",
    "acme\n",
    "*",
    "",
]


AUDIT_KEYS = "a1=" + base64.b64encode(bytes(32)).decode()


async def cli(env, db_url: str, home, *argv: str):
    environ = cli_env(
        env.client.service_client.config.target_host, home, AIFACTORY_DB_URL=db_url, AIFACTORY_CODEC="off", AIFACTORY_AUDIT_KEYS=AUDIT_KEYS
    )
    return await asyncio.to_thread(run_cli, *argv, env=environ)


async def test_hostile_strings_widen_nothing_and_are_refused_in_one_sentence(env, db_url, tmp_path):
    tenant = f"hq-{uuid.uuid4().hex[:6]}"
    from tests.support.harness import factory_with

    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    async with factory_with(env.client, db_url, model) as f:
        f.factory.db_url = db_url
        runs = [await f.start(TICKET, tenant=tenant, requester="tom.becker") for _ in range(2)]
        for run in runs:
            await parked(run)
        home = tmp_path / "home"
        for hostile in HOSTILE[:-1]:  # (an empty tenant is "no tenant": the CLI asks for exactly one scope)
            kill = await cli(env, db_url, home, "kill", "--tenant", hostile, "--reason", "test", "--as", "maria.keller")
            assert kill.returncode == 2 and "refused: expected a tenant" in one_sentence(kill.stderr, "aifactory kill: tenant ")
            unkill = await cli(env, db_url, home, "unkill", "--tenant", hostile, "--reason", "test", "--as", "maria.keller")
            assert unkill.returncode == 2 and "refused" in one_sentence(unkill.stderr, "aifactory unkill: tenant ")
            agent = await cli(env, db_url, home, "kill", hostile, "--reason", "test", "--as", "maria.keller")
            assert agent.returncode == 2 and "refused: expected an agent name" in one_sentence(agent.stderr, "aifactory kill: agent ")
            listing = await cli(env, db_url, home, "approvals", "list", "--group", hostile)
            assert listing.returncode == 2 and "refused" in one_sentence(listing.stderr, "aifactory approvals: approver group ")
            export = await cli(env, db_url, home, "audit", "export", "--run", hostile)
            assert export.returncode == 2 and "refused" in one_sentence(export.stderr, "aifactory audit: run id ")
        for hostile in HOSTILE:
            with pytest.raises(QueryValueRejected):
                await f.factory.kill(SwitchScope.TENANT, hostile, reason="test", by="maria.keller")
            with pytest.raises(QueryValueRejected):
                await f.factory.pending_approvals(group=hostile or "x y")
        # Nothing was stopped, no switch was written, and both runs still wait for their approval.
        assert switch_history(db_url) == []
        assert all([(await r.status()).state.value == "awaiting_approval" for r in runs])
        waiting = await f.factory.pending_approvals(group="it-desk-leads")
        assert {p.workflow_id for p in waiting} >= {r.workflow_id for r in runs}
