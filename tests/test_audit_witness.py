"""What an insider with write access to the audit store can do beyond editing a record, and how
`audit verify` still catches it: truncating a run's tail together with the anchors past it and
its head (the witness in Temporal saw the longer chain), deleting a whole run (witnessed, and
Temporal still knows it), editing a run's summary row (its records say otherwise). A run Temporal
has and the store lacks is reported too."""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlmodel import Session, select

from activities.audit.export import AuditExporter
from activities.audit.store import AuditRecordRow, AuditRun
from activities.audit.summary import summarise
from activities.audit.verify import verify
from activities.audit.witness import verify_against_temporal
from activities.db import engine_for
from activities.keys import KeyRing
from activities.model.scripted import ScriptedModel, Turns
from aifactory.cli import main
from tests.support.harness import factory_with, seed_db
from tests.test_agent_run import TICKET, happy_script
from tests.test_audit_tamper import sql

WITNESS_QUEUE = "audit-witness-tests"  # no worker needed: the signals in the witness's history are the record


@pytest_asyncio.fixture(scope="module")
async def finished_runs(env, tmp_path_factory):
    """Two finished runs: one to tamper with, one that no store will ever hold."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('witness') / 'factory.db'}"
    seed_db(db_url)
    async with factory_with(env.client, db_url, ScriptedModel(Turns(happy_script()))) as f:
        runs = [await f.start(TICKET) for _ in range(2)]
        for run in runs:
            await run.result()
    return [r.workflow_id for r in runs]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'audit.db'}"


async def exported(env, store_url: str, workflow_id: str) -> KeyRing:
    ring = KeyRing.generate("a1")  # a fresh audit key: a store (and a witness) of this test's own
    report = await AuditExporter(env.client, store_url, ring, witness_queue=WITNESS_QUEUE).export(workflow_id=workflow_id)
    assert report.records == 8 and report.witnessed == 1 and report.errors == []
    return ring


async def problems(env, store_url: str, ring: KeyRing, workflow_id: str) -> tuple[list[str], list[str]]:
    """(what the store alone says, what the witness and Temporal say)."""
    store = [str(p) for p in verify(store_url, ring).problems]
    outside = [str(p) for p in await verify_against_temporal(env.client, store_url, ring, workflow_id=workflow_id, grace=__import__("datetime").timedelta(0))]
    return store, outside


def rewrite_summary_as_the_records_say(url: str, run_pk: int) -> None:
    """What a careful insider does after cutting records: make the summary row agree again."""
    with Session(engine_for(url)) as s:
        run = s.get(AuditRun, run_pk)
        bodies = [json.loads(b) for b in s.exec(select(AuditRecordRow.body).where(AuditRecordRow.run_pk == run_pk).order_by(AuditRecordRow.seq))]
        for name, value in summarise(bodies).fields().items():
            setattr(run, name, value)
        s.add(run)
        s.commit()


async def test_an_untampered_store_verifies_against_the_witness_and_temporal(env, finished_runs, store_url):
    ring = await exported(env, store_url, finished_runs[0])
    assert await problems(env, store_url, ring, finished_runs[0]) == ([], [])


async def test_a_truncated_tail_with_its_anchors_and_head_is_caught_by_the_witness(env, finished_runs, store_url):
    wid = finished_runs[0]
    ring = await exported(env, store_url, wid)
    with Session(engine_for(store_url)) as s:
        run = s.exec(select(AuditRun)).one()
        keep = s.exec(select(AuditRecordRow).where(AuditRecordRow.run_pk == run.id, AuditRecordRow.seq == 5)).one()
    sql(store_url, "DELETE FROM audit_witnessed", "DELETE FROM audit_anchor WHERE seq > 5", "DELETE FROM audit_record WHERE seq > 5")
    sql(store_url, "UPDATE audit_run SET head_seq = 5, head_hash = :h", h=keep.hash)
    rewrite_summary_as_the_records_say(store_url, run.id)
    store, outside = await problems(env, store_url, ring, wid)
    assert store == []  # the store is consistent with itself...
    assert f"{wid}: record #6: missing: the witness saw the chain up to #8" in outside[0]  # ...not with the witness
    assert "the store ends at #5 (records #6..#8 gone)" in outside[0]
    assert any(p.startswith(f"{wid}: incomplete: the run closed") for p in outside)


async def test_a_deleted_run_is_caught_by_the_witness_and_by_temporal(env, finished_runs, store_url):
    wid = finished_runs[0]
    ring = await exported(env, store_url, wid)
    sql(store_url, "DELETE FROM audit_witnessed", "DELETE FROM audit_anchor", "DELETE FROM audit_record", "DELETE FROM audit_cursor", "DELETE FROM audit_run")
    store, outside = await problems(env, store_url, ring, wid)
    assert store == []
    assert any(p.startswith(f"{wid}: deleted: the witness saw its chain up to #8") for p in outside)
    assert any(p.startswith(f"{wid}: missing from the store: Temporal has this run (completed") for p in outside)


async def test_an_edited_summary_row_is_caught(env, finished_runs, store_url):
    wid = finished_runs[0]
    ring = await exported(env, store_url, wid)
    sql(store_url, "UPDATE audit_run SET tenant = 'globex', requester = 'nobody', policy_bundle = 'it-desk@9.9.9', agent_version = '9.9.9'")
    store, _ = await problems(env, store_url, ring, wid)
    assert len(store) == 1 and store[0].startswith(f"{wid}: the run's summary row was edited: ")
    for said in ("agent_version says '9.9.9'", "policy_bundle says 'it-desk@9.9.9'", "tenant says 'globex', its records 'acme'", "requester says 'nobody'"):
        assert said in store[0]


async def test_a_run_temporal_has_and_the_store_lacks_is_reported(env, finished_runs, store_url):
    ring = KeyRing.generate("a1")
    _, outside = await problems(env, store_url, ring, finished_runs[1])
    assert outside == [f"{finished_runs[1]}: missing from the store: Temporal has this run (completed, started " + outside[0].split("started ")[1]]


async def test_the_verify_command_reports_the_witnessed_truncation_and_exits_1(env, finished_runs, tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    ring = await exported(env, url, finished_runs[0])
    sql(url, "DELETE FROM audit_witnessed", "DELETE FROM audit_anchor WHERE seq > 7", "DELETE FROM audit_record WHERE seq > 7")
    with Session(engine_for(url)) as s:
        keep = s.exec(select(AuditRecordRow).where(AuditRecordRow.seq == 7)).one()
        run = s.exec(select(AuditRun)).one()
    sql(url, "UPDATE audit_run SET head_seq = 7, head_hash = :h", h=keep.hash)
    rewrite_summary_as_the_records_say(url, run.id)
    keyfile = tmp_path / "audit-keys.json"
    ring.save(keyfile)
    for key, value in {"AIFACTORY_DB_URL": url, "AIFACTORY_AUDIT_KEY_FILE": str(keyfile), "AIFACTORY_CODEC": "off",
                       "TEMPORAL_ADDRESS": env.client.service_client.config.target_host}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert await asyncio.to_thread(main, ["audit", "verify", "--run", finished_runs[0]]) == 1
    out = capsys.readouterr().out
    assert f"TAMPERED {finished_runs[0]}: record #8: missing: the witness saw the chain up to #8" in out
    assert await asyncio.to_thread(main, ["audit", "verify", "--store-only"]) == 0  # the store alone cannot tell


async def test_show_and_query_print_what_the_records_say_not_an_edited_summary_row(env, finished_runs, tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    ring = await exported(env, url, finished_runs[0])
    sql(url, "UPDATE audit_run SET tenant = 'globex', agent_version = '9.9.9'")
    keyfile = tmp_path / "audit-keys.json"
    ring.save(keyfile)
    monkeypatch.setenv("AIFACTORY_DB_URL", url)
    monkeypatch.setenv("AIFACTORY_AUDIT_KEY_FILE", str(keyfile))
    assert await asyncio.to_thread(main, ["audit", "show", finished_runs[0]]) == 1
    out = capsys.readouterr().out
    assert " · tenant acme · " in out and "9.9.9" not in out.splitlines()[0]
    assert "NOT VERIFIED:" in out and "the run's summary row was edited" in out
    assert await asyncio.to_thread(main, ["audit", "query", "--agent", "it-triage", "--tenant", "acme", "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert {r["tenant"] for r in rows} == {"acme"} and len(rows) == 2 and all(r["verified"] is False for r in rows)
    assert await asyncio.to_thread(main, ["audit", "query", "--agent", "it-triage", "--tenant", "globex", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
