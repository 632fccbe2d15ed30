"""The auditor's questions, through `aifactory audit query|show`, over a store filled by the
export schedule's own workflow; and the retention job deletes only what is past retention,
logging each run."""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlmodel import Session, select

from activities.audit.activity import AuditActivities
from activities.audit.query import enforce_retention
from activities.audit.store import AuditJob
from activities.audit.verify import verify
from activities.db import engine_for
from activities.keys import KeyRing
from activities.model.scripted import ScriptedModel, Turns
from aifactory.cli import main
from contracts.audit import AuditPassInput, AuditPassResult
from tests.support.harness import factory_with, write_policy
from tests.test_approvals_devserver import parked
from tests.test_audit_reconcile import INPUTS, RULES, SCRIPTS
from workflows.audit_export import AuditExportWorkflow

RING = KeyRing.generate("a1")


@pytest_asyncio.fixture(scope="module")
async def store(env, tmp_path_factory):
    """Three runs (a routine ticket, a P1 approved by a desk lead, a denied hardware ticket), exported
    by `AuditExportWorkflow` as the schedule would run it."""
    from tests.support.harness import seed_db

    tmp = tmp_path_factory.mktemp("query")
    db_url = f"sqlite:///{tmp / 'factory.db'}"
    seed_db(db_url)
    root = write_policy(tmp / "pol", "recon", RULES, [("it-desk-leads", 120)])
    model = ScriptedModel(Turns([], by_first_user={json.dumps(INPUTS[k], sort_keys=True): SCRIPTS[k] for k in ("happy-2", "approved", "refused")}))
    async with factory_with(env.client, db_url, model, policy_root=root, audit=AuditActivities(db_url, RING)) as f:
        ids = {}
        for name in ("happy-2", "approved", "refused"):
            run = await f.start(INPUTS[name], policy="recon", requester="jonas.berg", run_key=f"{name}-{uuid.uuid4().hex[:6]}")
            ids[name] = run.workflow_id
            if name == "approved":
                await parked(run)
                await f.factory.decide(run.workflow_id, "tom.becker", "approve", note="on-call paged")
            await run.result()
        result = await env.client.execute_workflow(
            AuditExportWorkflow.run, AuditPassInput(), id=f"audit-pass-{uuid.uuid4().hex[:6]}", task_queue=f.task_queue,
            result_type=AuditPassResult,
        )  # fmt: skip
    # Runs of other tests (encrypted under their own keys) are reported as errors and skipped; ours export.
    assert [e for e in result.errors if any(e.startswith(f"{i}/") for i in ids.values())] == [] and result.records > 0
    return db_url, ids


@pytest.fixture
def cli(store, tmp_path, monkeypatch, capsys):
    db_url, _ = store
    keyfile = tmp_path / "audit.json"
    RING.save(keyfile)
    monkeypatch.setenv("AIFACTORY_DB_URL", db_url)
    monkeypatch.setenv("AIFACTORY_AUDIT_KEY_FILE", str(keyfile))

    def run(*argv: str) -> str:
        assert main(list(argv)) == 0
        return capsys.readouterr().out

    return run


def mine(rows: list[dict], ids: dict) -> list[dict]:
    """The export pass reads the whole namespace, which other tests share: keep this module's runs."""
    return [r for r in rows if r["run"] in ids.values()]


def test_who_approved_the_p1_ticket_under_which_versions(cli, store):
    _, ids = store
    today = datetime.now(timezone.utc).date().isoformat()
    rows = json.loads(cli("audit", "query", "--agent", "it-triage", "--on", today, "--tool", "create_ticket", "--approver", "tom.becker", "--json"))
    assert all(r["approved_by"] == "tom.becker" and r["tool"] == "create_ticket" for r in rows)
    (row,) = mine(rows, ids)
    assert row["run"] == ids["approved"] and row["arguments"]["priority"] == "P1" and row["outcome"] == "ok"
    assert (row["decision"], row["approved_by"], row["rule"], row["policy"]) == ("approval", "tom.becker", "p1-needs-a-lead", "recon@1.0.0")
    assert row["agent_version"].startswith("1.3.0-t.") and "+prompt." in row["agent_version"] and len(row["prompt_sha256"]) == 64 and len(row["policy_sha256"]) == 64


def test_filters_by_decision_day_and_tenant(cli, store):
    _, ids = store
    denied = json.loads(cli("audit", "query", "--agent", "it-triage", "--decision", "deny", "--json"))
    assert {r["decision"] for r in denied} == {"deny"}
    assert [(r["run"], r["tool"], r["rule"], r["outcome"]) for r in mine(denied, ids)] == [(ids["refused"], "create_ticket", "no-hardware", "denied")]
    allowed = json.loads(cli("audit", "query", "--agent", "it-triage", "--decision", "allow", "--json"))
    assert {r["run"] for r in mine(allowed, ids)} == {ids["happy-2"]}
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    assert json.loads(cli("audit", "query", "--agent", "it-triage", "--on", yesterday, "--json")) == []
    assert mine(json.loads(cli("audit", "query", "--agent", "it-triage", "--tenant", "globex", "--json")), ids) == []
    assert mine(json.loads(cli("audit", "query", "--agent", "it-triage", "--tenant", "acme", "--json")), ids) != []
    every = mine(list(csv.DictReader(io.StringIO(cli("audit", "query", "--agent", "it-triage", "--csv")))), ids)
    assert len(every) == 5 and {r["tool"] for r in every} == {"create_ticket", "delete_user"}
    table = cli("audit", "query", "--agent", "it-triage", "--approver", "tom.becker")
    assert ids["approved"] in table and "tool call(s)" in table


def test_show_tells_one_runs_story_in_order(cli, store):
    _, ids = store
    out = cli("audit", "show", ids["approved"])
    lines = out.splitlines()
    assert lines[0].startswith(f"run {ids['approved']} · agent it-triage 1.3.0-t.") and "+prompt." in lines[0]
    kinds = [line.split()[2] for line in lines[3:]]
    assert kinds == ["run_started", "run_admitted", "step", "approval_requested", "approval_attempt", "approval_decided", "step", "step", "run_completed"]
    assert "approved by tom.becker" in out and "policy recon@1.0.0" in out


def test_bad_query_input_gets_a_clear_error(cli, capsys):
    assert main(["audit", "query", "--agent", "it-triage", "--on", "21/11/2026"]) == 2
    assert "is not a date (YYYY-MM-DD)" in capsys.readouterr().err
    assert main(["audit", "query", "--on", "2026-11-21"]) == 2
    assert "needs --agent" in capsys.readouterr().err


def test_retention_deletes_only_runs_past_it_and_logs_them(store, tmp_path, caplog):
    import sqlite3

    db_url, ids = store
    copy = tmp_path / "copy.db"
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    url = f"sqlite:///{copy}"
    old = datetime.now(timezone.utc) - timedelta(days=400)
    with Session(engine_for(url)) as s:
        s.execute(text("UPDATE audit_run SET closed_at = :t WHERE workflow_id = :w"), {"t": old, "w": ids["refused"]})
        s.commit()
    with caplog.at_level(logging.INFO, logger="aifactory.audit"):
        deleted = enforce_retention(url, 365)
    assert deleted == [ids["refused"]]
    assert any(ids["refused"] in r.getMessage() and "older than 365 days" in r.getMessage() for r in caplog.records)
    report = verify(url, RING)
    assert report.ok
    with Session(engine_for(url)) as s:
        jobs = s.exec(select(AuditJob).where(AuditJob.kind == "retention").order_by(AuditJob.id)).all()
    assert len(jobs) == 2  # the schedule's pass (nothing to delete) and this one
    job = jobs[-1]
    assert json.loads(job.detail)["deleted"] == [ids["refused"]]
    assert enforce_retention(url, 365) == []
