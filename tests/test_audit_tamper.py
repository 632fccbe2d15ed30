"""`audit verify` catches each way of tampering with a run's records and names the first bad one,
on SQLite and on PostgreSQL: an edited row, a deleted row, two swapped rows, a truncated tail,
an inserted row, and a row replaced with a recomputed hash."""

from __future__ import annotations

import hashlib
import json

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlmodel import Session

from activities.audit.export import AuditExporter
from activities.audit.verify import verify
from activities.db import engine_for
from activities.keys import KeyRing
from activities.model.scripted import ScriptedModel, Turns
from aifactory.cli import main
from tests.support.harness import factory_with
from tests.test_agent_run import TICKET, happy_script

RING = KeyRing.generate("a1")


@pytest_asyncio.fixture(scope="module")
async def exported_run(env, tmp_path_factory):
    """One finished run (8 records: started, admitted, 3 model calls, 2 tool calls, completed)."""
    from tests.support.harness import seed_db

    db_url = f"sqlite:///{tmp_path_factory.mktemp('tamper') / 'factory.db'}"
    seed_db(db_url)
    async with factory_with(env.client, db_url, ScriptedModel(Turns(happy_script()))) as f:
        run = await f.start(TICKET)
        await run.result()
    return run.workflow_id


def sql(url: str, *statements: str, **params) -> None:
    with Session(engine_for(url)) as s:
        for statement in statements:
            s.execute(text(statement), params)
        s.commit()


def row(url: str, seq: int) -> dict:
    with Session(engine_for(url)) as s:
        return dict(s.execute(text(f"SELECT * FROM audit_record WHERE seq = {seq}")).mappings().one())


def edit(url):
    body = json.loads(row(url, 6)["body"])
    body["arguments"]["priority"] = "P4"
    sql(url, "UPDATE audit_record SET body = :b WHERE seq = 6", b=json.dumps(body, sort_keys=True, separators=(",", ":")))


def edit_copy(url):
    sql(url, "UPDATE audit_record SET outcome = 'denied' WHERE seq = 6")


def delete(url):
    sql(url, "DELETE FROM audit_record WHERE seq = 4")


def swap(url):
    sql(url, "UPDATE audit_record SET seq = -1 WHERE seq = 4", "UPDATE audit_record SET seq = 4 WHERE seq = 5",
        "UPDATE audit_record SET seq = 5 WHERE seq = -1")  # fmt: skip


def truncate(url):
    sql(url, "DELETE FROM audit_record WHERE seq >= 7")


def insert(url):
    victim = row(url, 5)
    body = victim["body"].replace('"step":2', '"step":2,"note":"approved by cfo"')
    sql(url, "UPDATE audit_record SET seq = seq + 1000 WHERE seq >= 5", "UPDATE audit_record SET seq = seq - 999 WHERE seq >= 1000")
    sql(
        url,
        "INSERT INTO audit_record (run_pk, seq, kind, at, execution, event_id, step, model, input_tokens, output_tokens,"
        " cost_usd, body, key_id, prev_hash, hash) SELECT run_pk, 5, kind, at, execution, event_id, step, model, input_tokens,"
        " output_tokens, cost_usd, :body, key_id, prev_hash, :hash FROM audit_record WHERE seq = 6",
        body=body, hash=hashlib.sha256(body.encode()).hexdigest(),
    )  # fmt: skip


def replace_recomputed(url):
    victim = row(url, 6)
    body = json.loads(victim["body"])
    body["result"]["ticket_id"] = "INC9999999"
    new = json.dumps(body, sort_keys=True, separators=(",", ":"))
    forged = hashlib.sha256(f"{victim['prev_hash']}{new}".encode()).hexdigest()
    sql(url, "UPDATE audit_record SET body = :b, hash = :h WHERE seq = 6", b=new, h=forged)
    sql(url, "UPDATE audit_record SET prev_hash = :h WHERE seq = 7", h=forged)  # and re-link the next record


CASES = {
    "edited row": (edit, 6, "does not verify"),
    "edited query column": (edit_copy, 6, "column outcome disagrees"),
    "deleted row": (delete, 4, "missing: the chain jumps from #3 to #5"),
    "swapped rows": (swap, 4, "does not verify"),
    "truncated tail": (truncate, 7, "tail truncated"),
    "inserted row": (insert, 5, "does not verify"),
    "replaced row, hash recomputed": (replace_recomputed, 6, "does not verify"),
}


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.mark.parametrize("case", list(CASES))
async def test_tampering_is_detected_at_the_right_record(case, exported_run, store_url, env):
    tamper, seq, what = CASES[case]
    report = await AuditExporter(env.client, store_url, RING).export(workflow_id=exported_run)
    assert report.records == 8
    assert verify(store_url, RING).ok
    tamper(store_url)
    result = verify(store_url, RING)
    assert len(result.problems) == 1, result.problems
    problem = result.problems[0]
    assert (problem.workflow_id, problem.seq) == (exported_run, seq), str(problem)
    assert what in problem.what, str(problem)


@pytest_asyncio.fixture
async def sqlite_store(exported_run, tmp_path, env):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    await AuditExporter(env.client, url, RING).export(workflow_id=exported_run)
    return url


def test_verify_command_names_the_first_bad_record(exported_run, sqlite_store, tmp_path, monkeypatch, capsys):
    url = sqlite_store
    keyfile = tmp_path / "audit-keys.json"
    RING.save(keyfile)
    monkeypatch.setenv("AIFACTORY_DB_URL", url)
    monkeypatch.setenv("AIFACTORY_AUDIT_KEY_FILE", str(keyfile))
    assert main(["audit", "verify", "--store-only"]) == 0
    assert "verify: 1 runs, 8 records, 1 anchors: ok" in capsys.readouterr().out
    delete(url)
    assert main(["audit", "verify", "--store-only"]) == 1
    out = capsys.readouterr().out
    assert f"TAMPERED {exported_run}: record #4: missing" in out
    other = tmp_path / "other-keys.json"
    KeyRing.generate("a1").save(other)  # same key id, different key: nothing verifies
    monkeypatch.setenv("AIFACTORY_AUDIT_KEY_FILE", str(other))
    assert main(["audit", "verify", "--store-only"]) == 1
    assert "record #1: its hash does not verify" in capsys.readouterr().out
