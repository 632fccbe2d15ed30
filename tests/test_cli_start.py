"""Any Temporal client can start a run with the thin JSON: here the `temporal` CLI from the venv,
encoding through the codec server's authenticated encode path, and reading the decoded result
through its decode path, as the README shows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from tests.support.harness import encrypted_client, factory_with, replay
from tests.test_agent_run import TICKET, happy_script
from workers.codec import EncryptionCodec, data_converter
from workers.codec_server import CodecServer, CodecServerConfig
from workers.devserver import temporal_cli
from contracts.wire import Workflow

RING = KeyRing.generate("k1")


async def temporal(env, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a thread: the test's worker runs on this event loop and must keep serving the run."""
    address = env.client.service_client.config.target_host
    command = [temporal_cli(), *args, "--address", address]
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)


async def test_the_temporal_cli_starts_a_run_with_the_thin_json_and_reads_its_result(env, db_url):
    sealed = encrypted_client(env.client, RING)
    config = CodecServerConfig(EncryptionCodec(RING), tokens=("ui-token",), encode_tokens=("starter-token",))
    async with factory_with(sealed, db_url, ScriptedModel(Turns(happy_script()))) as f:
        f.release()  # the test's worker holds it-triage on this queue under its own version
        version = f.release().spec.version
        run_key = uuid.uuid4().hex[:10]
        body = {"agent": "it-triage", "version": version, "tenant": "acme", "run_key": run_key, "input": TICKET}
        wid = f"agent/it-triage/acme/{run_key}"
        with CodecServer(config) as server:
            started = await temporal(
                env, "workflow", "start", "--type", Workflow.AGENT, "--task-queue", f.task_queue, "--workflow-id", wid,
                "--input", json.dumps(body), "--codec-endpoint", f"{server.url}/starter-token",
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
            result = await temporal(env, "workflow", "result", "--workflow-id", wid, "--codec-endpoint", f"{server.url}/ui-token", "-o", "json")
            assert result.returncode == 0, result.stderr
            # The decode token cannot encode: it could otherwise forge a start or a decision.
            forged = await temporal(
                env, "workflow", "start", "--type", Workflow.AGENT, "--task-queue", f.task_queue, "--workflow-id", wid + "-x",
                "--input", json.dumps(body), "--codec-endpoint", f"{server.url}/ui-token",
            )  # fmt: skip
        history = await sealed.get_workflow_handle(wid).fetch_history()
        exists = bool([w async for w in sealed.list_workflows(f'WorkflowId = "{wid}-x"')])
        await replay(sealed.get_workflow_handle(wid), data_converter(RING, worker=True))
    answer = json.loads(result.stdout)
    assert answer["status"] == "COMPLETED" and answer["result"]["output"]["ticket_id"] == "INC0000001"
    assert answer["result"]["agent_version"].startswith(version + "+prompt.")
    assert forged.returncode != 0 and not exists  # the codec server refused to encode: nothing started
    start = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert start.metadata["encoding"] == b"binary/encrypted" and b"ticket_text" not in start.data
