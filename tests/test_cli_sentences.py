"""Where an operator's command cannot do what was asked, it says so in one sentence on stderr,
with the CLI's exit code, and no traceback. Each test runs the real `aifactory` command."""

from __future__ import annotations

import uuid

from tests.support.cli import cli_env, one_sentence, run_cli


async def test_status_of_an_unknown_run_names_it_and_what_to_check(env, tmp_path):
    address = env.client.service_client.config.target_host
    run = f"agent/it-triage/acme/no-such-run-{uuid.uuid4().hex[:6]}"
    p = run_cli("status", run, env=cli_env(address, tmp_path, AIFACTORY_CODEC="off"))
    assert p.returncode == 2 and p.stdout == ""
    line = one_sentence(p.stderr, f"aifactory status: no run {run} in namespace 'default' at {address}: check the workflow id")
    assert "aifactory approvals list" in line
