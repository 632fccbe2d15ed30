"""The gateway's API keys and its command: keys are kept hashed and scoped (SQLite and
PostgreSQL), `aifactory gateway keys` creates, lists and revokes them, and `aifactory gateway`
serves the gateway as its own process against a dev server, encrypting what it starts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import signal
import subprocess
import uuid

import httpx
import pytest
from openapi_spec_validator import validate
from sqlmodel import Session
from temporalio.service import RPCError

from activities.api_keys import ApiKey, ApiKeyError, ApiKeyStore
from activities.db import engine_for
from activities.keys import KeyRing
from tests.support.cli import AIFACTORY, cli_env, one_sentence, run_cli
from tests.support.harness import REPO
from tests.test_cli_exit_codes import codec_env
from workers.devserver import free_port

GOOD = {"ticket_text": "Printer on floor 2 jams on every page.", "requester_email": "jonas.berg@example.com"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request, db_url):
    return db_url if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_keys_are_kept_hashed_and_scoped(any_db):
    store = ApiKeyStore(any_db)
    info, token = store.create("erp", tenants=["globex", "acme", "acme"], agents=["it-triage"], person="maria.keller")
    everything, _ = store.create("operators", tenants=["acme", "*"], agents=["*"])
    assert re.fullmatch(r"aif_[0-9a-f]{12}_[0-9a-f]{48}", token) and token.split("_")[1] == info.key_id
    secret = token.split("_", 2)[2]
    with Session(engine_for(any_db)) as s:
        row = s.get(ApiKey, info.key_id)
        stored = json.dumps(row.model_dump(), default=str)
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest() and secret not in stored
    assert (info.tenants, info.agents, info.person, info.revoked_at) == (("acme", "globex"), ("it-triage",), "maria.keller", None)
    assert (everything.tenants, everything.agents) == (("*",), ("*",))
    assert store.verify(token) == info
    assert store.verify(token[:-1] + ("1" if token[-1] == "0" else "0")) is None  # one character off
    assert store.verify(f"aif_{'0' * 12}_{secret}") is None and store.verify("Bearer nonsense") is None
    revoked = store.revoke(info.key_id)
    assert revoked.revoked_at is not None and store.verify(token).revoked_at == revoked.revoked_at
    assert store.revoke(info.key_id).revoked_at == revoked.revoked_at  # revoking again changes nothing
    assert [k.key_id for k in store.list()] == [info.key_id, everything.key_id]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"tenants": ['nobody" OR Tenant = "acme']}, "tenant 'nobody\" OR Tenant = \"acme' is not a valid name"),
        ({"tenants": ["acme\n"]}, "tenant 'acme\\n' is not a valid name"),  # `$` alone would let the newline through
        ({"agents": ["It Triage"]}, "agent 'It Triage' is not a valid name"),
        ({"name": "  "}, "a key needs a name"),
        ({"person": "maria keller"}, "is not a person id"),
    ],
)
def test_a_key_with_a_bad_scope_is_refused(db_url, change, says):
    with pytest.raises(ApiKeyError, match=re.escape(says)):
        ApiKeyStore(db_url).create(**{"name": "erp", "tenants": ["acme"], "agents": ["it-triage"], **change})
    with pytest.raises(ApiKeyError, match="no API key 'feedfeedfeed'"):
        ApiKeyStore(db_url).revoke("feedfeedfeed")
    assert ApiKeyStore(db_url).list() == []


async def test_the_keys_command_creates_lists_and_revokes(env, tmp_path):
    environ = cli_env(env.client.service_client.config.target_host, tmp_path / "home")
    cli = lambda *argv: asyncio.to_thread(run_cli, "gateway", "keys", *argv, env=environ)  # noqa: E731
    # The first command makes the store; the rest run side by side (each command is a whole interpreter).
    created = await cli("create", "--name", "erp", "--tenant", "acme", "--tenant", "globex", "--agent", "it-triage", "--person", "maria.keller")
    as_json, unknown, hostile, no_agent = await asyncio.gather(
        cli("create", "--name", "portal", "--tenant", "*", "--agent", "*", "--json"),
        cli("revoke", "feedfeedfeed"),
        cli("create", "--name", "x", "--tenant", 'nobody" OR Tenant = "acme', "--agent", "it-triage"),
        cli("create", "--name", "x", "--tenant", "acme"),
    )
    listed = await cli("list")
    token = created.stdout.strip()
    key_id = token.split("_")[1]
    revoked = await cli("revoke", key_id)
    listed_json = await cli("list", "--json")

    assert created.returncode == 0 and re.fullmatch(r"aif_[0-9a-f]{12}_[0-9a-f]{48}", token), created.stderr
    assert f"API key {key_id} (erp)" in created.stderr and "decides as maria.keller" in created.stderr and "shown this once" in created.stderr
    portal = json.loads(as_json.stdout)
    assert portal["tenants"] == ["*"] and portal["token"].startswith(f"aif_{portal['key_id']}_")
    assert listed.returncode == 0 and key_id in listed.stdout and "acme,globex" in listed.stdout and "maria.keller" in listed.stdout
    assert token.split("_")[2] not in listed.stdout + listed_json.stdout and portal["token"] not in listed_json.stdout
    assert revoked.returncode == 0 and revoked.stdout.startswith(f"revoked API key {key_id} (erp) at ")
    assert [k["revoked_at"] is not None for k in json.loads(listed_json.stdout)] == [True, False]
    assert unknown.returncode == 2 and one_sentence(unknown.stderr, "aifactory gateway: no API key 'feedfeedfeed'")
    assert hostile.returncode == 2 and one_sentence(hostile.stderr, "aifactory gateway: tenant 'nobody")
    assert no_agent.returncode == 2 and "--agent" in no_agent.stderr  # no key that covers nothing


async def test_aifactory_gateway_serves_the_environments_factory(env, db_url, tmp_path):
    ring = KeyRing.generate()
    environ = cli_env(env.client.service_client.config.target_host, tmp_path / "home", AIFACTORY_DB_URL=db_url, **codec_env(ring))
    created = await asyncio.to_thread(run_cli, "gateway", "keys", "create", "--name", "erp", "--tenant", "acme", "--agent", "it-triage", env=environ)
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    port = free_port()
    log = (tmp_path / "gateway.log").open("w+")
    proc = subprocess.Popen([AIFACTORY, "gateway", "--port", str(port)], env=environ, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    wid = f"agent/it-triage/acme/{uuid.uuid4().hex[:10]}"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(1200):
                assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            document = (await http.get("/openapi.json")).json()
            anonymous = await http.post("/v1/agents/it-triage/runs", json={"tenant": "acme", "input": GOOD})
            bad = await http.post("/v1/agents/it-triage/runs", json={"tenant": "acme", "run_key": "k", "input": {"ticket_text": "jams"}}, headers=headers)
            started = await http.post("/v1/agents/it-triage/runs", json={"tenant": "acme", "input": GOOD}, headers={**headers, "Idempotency-Key": wid.rsplit("/", 1)[1]})
            history = await env.client.get_workflow_handle(wid).fetch_history()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        with contextlib.suppress(RPCError):
            await env.client.get_workflow_handle(wid).terminate(reason="test over: no worker serves the default queue here")
    output = (tmp_path / "gateway.log").read_text()
    assert proc.returncode == 0, output
    assert f"gateway on http://127.0.0.1:{port} (OpenAPI at /openapi.json)" in output and "Traceback" not in output
    validate(document)
    assert anonymous.status_code == 401
    assert bad.status_code == 400 and bad.json()["type"] == "RunInputRejected"  # the agents folder of the environment
    assert started.status_code == 201 and started.json()["run_id"] == wid, started.text
    start = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert start.metadata["encoding"] == b"binary/encrypted" and b"ticket_text" not in start.data  # the workers' key ring
