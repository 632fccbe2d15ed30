"""Where an operator's command cannot do what was asked, it says so in one sentence on stderr,
with the CLI's exit code, and no traceback. Each test runs the real `aifactory` command."""

from __future__ import annotations

import os
import uuid

from tests.support.cli import cli_env, one_sentence, run_cli
from tests.test_audit_query import store  # noqa: F401  (the fixture: an audit store filled by the export workflow)
from workers.devserver import free_port


async def test_status_of_an_unknown_run_names_it_and_what_to_check(env, tmp_path):
    address = env.client.service_client.config.target_host
    run = f"agent/it-triage/acme/no-such-run-{uuid.uuid4().hex[:6]}"
    p = run_cli("status", run, env=cli_env(address, tmp_path, AIFACTORY_CODEC="off"))
    assert p.returncode == 2 and p.stdout == ""
    line = one_sentence(p.stderr, f"aifactory status: no run {run} in namespace 'default' at {address}: check the workflow id")
    assert "aifactory approvals list" in line



def test_status_without_a_server_says_which_address_it_could_not_reach(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    p = run_cli("status", "agent/it-triage/acme/T-1", env=cli_env(address, tmp_path, AIFACTORY_CODEC="off"))
    assert p.returncode == 3 and p.stdout == ""
    one_sentence(p.stderr, f"aifactory status: cannot reach Temporal at {address} (Connection refused): is it running")

async def test_csv_into_a_pipe_its_reader_closed_stops_quietly(store, env, tmp_path):
    # `aifactory audit query --csv | head -1`, made certain: the reader is gone before the first row.
    db_url, _ = store
    from tests.test_audit_query import RING

    RING.save(tmp_path / "audit.json")  # an auditor's key: the rows are verified
    environ = cli_env(env.client.service_client.config.target_host, tmp_path, AIFACTORY_DB_URL=db_url, AIFACTORY_AUDIT_KEY_FILE=str(tmp_path / "audit.json"))
    rows = run_cli("audit", "query", "--agent", "it-triage", "--csv", env=environ)
    assert rows.returncode == 0 and len(rows.stdout.splitlines()) > 2  # a header and the store's tool calls
    read, write = os.pipe()
    os.close(read)
    try:
        p = run_cli("audit", "query", "--agent", "it-triage", "--csv", env=environ, stdout=write)
    finally:
        os.close(write)
    assert p.returncode == 141  # what a shell reports for any command stopped by a closed pipe
    assert p.stderr == ""
