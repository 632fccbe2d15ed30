"""State that never lies: a second `dev` on the same home says who holds it (exit 2, one sentence),
and a run the audit exporter cannot read is recorded once as a gap, which `audit verify` reports,
instead of a traceback on every pass."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

from activities.audit.export import AuditExporter
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.cli import main
from aifactory.stack_lock import home_lock
from tests.support.harness import REPO, encrypted_client, factory_with
from tests.test_agent_run import TICKET, happy_script


def test_a_second_dev_on_the_same_home_says_it_is_running(tmp_path):
    home = tmp_path / ".aifactory"
    with home_lock(home):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIFACTORY_", "TEMPORAL_"))}
        proc = subprocess.run(
            [sys.executable, "-m", "aifactory.cli", "dev", "--model", "scripted"], cwd=REPO, capture_output=True, text=True,
            timeout=60, env={**env, "AIFACTORY_HOME": str(home)},
        )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0] == (
        f"aifactory dev: the factory in {home} is already running (pid {os.getpid()}): use that one, "
        "stop it first (Ctrl-C where it runs), or set AIFACTORY_HOME to another folder"
    )


async def test_a_run_the_exporter_cannot_read_is_one_gap_not_a_traceback_per_pass(client, db_url, tmp_path, monkeypatch, caplog, capsys):
    workers_ring, exporters_ring = KeyRing.generate("k1"), KeyRing.generate("k1")  # same id, another key
    async with factory_with(encrypted_client(client, workers_ring), db_url, ScriptedModel(Turns(happy_script()))) as f:
        run = await f.start(TICKET)
        await run.result()
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    audit_ring = KeyRing.generate("a1")
    exporter = AuditExporter(encrypted_client(client, exporters_ring), store, audit_ring)
    with caplog.at_level(logging.INFO, logger="aifactory.audit"):
        first = await exporter.export(workflow_id=run.workflow_id)
        second = await exporter.export()  # the schedule's next pass: nothing more to say about it
    assert first.gaps and first.gaps[0].startswith(f"{run.workflow_id}: its start input cannot be read")
    # (the dev server is shared with other tests, whose runs that exporter cannot read either)
    assert [g for g in second.gaps if g.startswith(run.workflow_id)] == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and run.workflow_id in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is None  # one line, once
    keyfile = tmp_path / "audit-keys.json"
    audit_ring.save(keyfile)
    monkeypatch.setenv("AIFACTORY_DB_URL", store)
    monkeypatch.setenv("AIFACTORY_AUDIT_KEY_FILE", str(keyfile))
    assert await asyncio.to_thread(main, ["audit", "verify", "--store-only"]) == 1
    out = capsys.readouterr().out
    # (the scheduled pass also took other tests' runs from the shared dev server: they verify, or are gaps too)
    assert f"GAP {run.workflow_id}: its history could not be read" in out and "gap(s)" in out.splitlines()[-1]
    assert "TAMPERED" not in out


def test_the_dev_server_of_another_factory_is_recognised(tmp_path):
    # `dev` and `demo` share a dev server on 127.0.0.1:7233 only with the factory home that owns it:
    # they tell which home that is from the server's own command line.
    from workers.devserver import DevServer, dev_server_state, free_port

    port = free_port()
    server = DevServer(tmp_path / "other" / ".aifactory", port=port, ui_port=free_port())
    server.start()
    try:
        assert dev_server_state(port) == tmp_path / "other" / ".aifactory" / "temporal.db"
        assert dev_server_state(free_port()) is None
    finally:
        server.stop()
