"""Admission: the worker settles what governs a run in the run's first workflow task (one local
activity: release, policy, switches, envelope), the system prompt reaches the model from the
worker's own registry and never enters history, and a bundle that cannot be loaded fails the run
with a typed error before any model call."""

from __future__ import annotations

import hashlib

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.client import RunFailed
from aifactory import PolicyFileError
from tests.support.failures import fails_with
from contracts.control import RunAdmitted
from contracts.model import ModelCallInput, system_prompt
from contracts.wire import Activity
from tests.support.harness import AGENTS, factory_with, replay

TICKET = {"ticket_text": "Outlook keeps asking for my password.", "requester_email": "jonas.berg@example.com"}
CREATE = {"requester_email": "jonas.berg@example.com", "category": "email", "priority": "P3", "summary": "Outlook password prompts"}
FINAL = {"category": "email", "priority": "P3", "ticket_id": "INC0000001", "summary": "Outlook password prompts"}
SCRIPT = [Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}), Reply.tool("create_ticket", CREATE), Reply.text(FINAL)]
PROMPT = (AGENTS / "it-triage" / "prompt.md").read_text(encoding="utf-8")


def markers(history) -> list[str]:
    return [e.marker_recorded_event_attributes.marker_name for e in history.events if e.HasField("marker_recorded_event_attributes")]


def admitted(history) -> RunAdmitted:
    for e in history.events:
        a = e.marker_recorded_event_attributes
        if e.HasField("marker_recorded_event_attributes") and a.marker_name == "core_local_activity":
            return pydantic_data_converter.payload_converter.from_payloads(a.details["result"].payloads, [RunAdmitted])[0]
    raise AssertionError("no admission in history")


def model_inputs(history) -> list[ModelCallInput]:
    out = []
    for e in history.events:
        a = e.activity_task_scheduled_event_attributes
        if e.HasField("activity_task_scheduled_event_attributes") and a.activity_type.name == Activity.CALL_MODEL:
            out.append(pydantic_data_converter.payload_converter.from_payloads(a.input.payloads, [ModelCallInput])[0])
    return out


async def test_the_worker_admits_a_run_from_its_own_release_and_sends_its_prompt(client, db_url):
    model = ScriptedModel(Turns(SCRIPT))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        result = await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    assert markers(history) == ["core_patch", "core_local_activity"]  # the protocol, then the admission
    answer = admitted(history)
    assert answer.refused is None and answer.release is not None and answer.release.spec.task_queue == f.task_queue
    assert answer.policy is not None and answer.policy.bundle.name == "it-desk"
    calls = model_inputs(history)
    assert calls[0].prompt is not None and calls[0].admission is None and all(c.prompt is None for c in calls[1:])
    # The model got the prompt from the worker; history holds its hash, never its text.
    assert model.requests[0].body["messages"][0] == {"role": "system", "content": system_prompt(PROMPT, answer.release.spec.output_schema)}
    assert PROMPT.strip()[:200] not in history.to_json()
    assert result.prompt_sha256 == hashlib.sha256(PROMPT.encode()).hexdigest() == answer.release.prompt_sha256
    assert result.policy_bundle == "it-desk@1.0.0" and result.policy_sha256 == answer.policy.bundle.sha256
    assert [t.decision.outcome.value for t in result.tool_calls] == ["allow", "allow"]


async def test_a_policy_bundle_that_cannot_be_loaded_fails_the_run_before_any_model_call(client, db_url):
    model = ScriptedModel(Turns(SCRIPT))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, policy="no-such-bundle")
        with fails_with(PolicyFileError) as failed:
            await run.result()
        await replay(run.handle)
    assert failed.value.type == "PolicyFileError"
    assert "policy 'no-such-bundle' could not be loaded" in str(failed.value) and "no-such-bundle.yaml" in str(failed.value)
    assert model.requests == []  # the endpoint was never called


async def test_a_policy_failure_names_the_bundle_file_not_the_workers_paths(client, db_url):
    async with factory_with(client, db_url, ScriptedModel(Turns(SCRIPT))) as f:
        run = await f.start(TICKET, policy="no-such-bundle")
        with pytest.raises(RunFailed) as failed:
            await run.result()
    message = str(failed.value)
    assert "bundles/no-such-bundle.yaml: file not found" in message
    assert str(AGENTS.parent) not in message and "/policies/" not in message
