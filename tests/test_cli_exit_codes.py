"""A command that succeeded exits 0: the interpreter's shutdown does not abort it afterwards.

The SDK's default Temporal runtime outlived the command, and one of its threads could still be
handing the last RPC result to Python while the interpreter finalized: `Fatal Python error:
PyGILState_Release`, exit 134, after `approve` or `status` had printed their answer (about one
run in six on 2 cores). `aifactory` now gives each command a runtime of its own and ends it
before `main` returns (`workers.runtime`).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
import weakref

import pytest

import workers.runtime
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.cli import main
from tests.support.cli import cli_env, run_cli
from tests.support.harness import encrypted_client, factory_with, replay
from tests.test_approvals_devserver import parked

TICKET = {"ticket_text": "Core switch in building B is down, nobody has network.", "requester_email": "ana.silva@example.com"}
P1 = {"requester_email": "ana.silva@example.com", "category": "network", "priority": "P1", "summary": "Building B network outage"}
DONE = {"category": "network", "priority": "P1", "ticket_id": "INC0000001", "summary": "Building B network outage"}
TIMES = 20


def codec_env(ring: KeyRing) -> dict[str, str]:
    return {"AIFACTORY_CODEC_KEYS": ",".join(f"{kid}={base64.b64encode(key).decode()}" for kid, key in ring.keys.items())}


@pytest.mark.slow
async def test_approve_and_status_exit_0_every_time(env, db_url, tmp_path):
    ring = KeyRing.generate()
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    # Twenty runs at once: the worker keeps its workflow cache, as a production worker does (with none,
    # each run's admission, a local activity, is cancelled by every eviction and its task times out).
    async with factory_with(encrypted_client(env.client, ring), db_url, model, max_cached_workflows=100) as f:
        runs = [await f.start(TICKET, run_key=f"exit-{i}-{uuid.uuid4().hex[:6]}") for i in range(TIMES)]
        for run in runs:
            await parked(run)
        environ = cli_env(env.client.service_client.config.target_host, tmp_path / "home", AIFACTORY_DB_URL=db_url, **codec_env(ring))
        approved = [
            await asyncio.to_thread(run_cli, "approve", run.workflow_id, "--as", "maria.keller", "--note", "confirmed", env=environ)
            for run in runs
        ]
        results = [await run.result() for run in runs]
        status = [await asyncio.to_thread(run_cli, "status", run.workflow_id, env=environ) for run in runs]
        await replay(runs[0].handle, data_converter=encrypted_client(env.client, ring).data_converter)

    for run, p in zip(runs, approved):
        assert (p.returncode, p.stdout) == (0, f"{run.workflow_id} request 1.0: approved by maria.keller\n"), p.stderr
        assert "Fatal Python error" not in p.stderr and p.stderr == ""
    for run, p in zip(runs, status):
        assert p.returncode == 0 and p.stdout.startswith(f"{run.workflow_id}: COMPLETED · completed"), p.stderr
        assert p.stderr == ""
    assert all(r.approvals[0].decided_by == "maria.keller" for r in results)


async def test_a_command_ends_its_temporal_runtime_before_main_returns(env, db_url, tmp_path, monkeypatch):
    # What the 20 runs above catch by chance, checked every time: once `main` returns, nothing holds
    # the command's runtime, so its threads were joined before the interpreter could finalize.
    made: list[weakref.ref] = []

    class Watched(workers.runtime.Runtime):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(workers.runtime, "Runtime", Watched)
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    async with factory_with(env.client, db_url, model) as f:
        run = await f.start(TICKET)
        await parked(run)
        for key, value in cli_env(env.client.service_client.config.target_host, tmp_path / "home", AIFACTORY_CODEC="off").items():
            monkeypatch.setenv(key, value)
        code = await asyncio.to_thread(main, ["status", run.workflow_id])
        assert code == 0 and len(made) == 1
        assert made[0]() is None, "a client of the command still holds its runtime"
        missing = await asyncio.to_thread(main, ["status", f"agent/it-triage/acme/nope-{uuid.uuid4().hex[:6]}"])
        assert missing == 2 and len(made) == 2 and made[1]() is None  # a refusal lets go of it too
        await f.factory.decide(run.workflow_id, "maria.keller", "approve")
        await run.result()
