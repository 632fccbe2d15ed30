"""Evaluation is generic: cases name expected output fields and tool calls as data, for any agent.
it-triage's figures on the scripted model are what they were before the cases became data, and a
second agent written in a temporary folder evaluates through the same path."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from pydantic import ValidationError

from activities.model.endpoints import Endpoint, EndpointRegistry
from activities.releases.registry import ReleaseRegistry
from aifactory.client import FactoryClient
from aifactory.evalset import EvalSet, FieldCheck, load_cases
from aifactory.evaluate import evaluate, score
from aifactory.scripted_agents import scripted_model, seed_agents
from policies.loader import PolicyStore
from tests.support import orders_agent
from tests.support.harness import AGENTS, factory_with, people_signer, policies_with_keys, triage_release
from workers.worker import WorkerParts, build_worker

# it-triage on the scripted model, measured before the cases became data (scorer of commit aef1f6a).
TRIAGE_FIGURES = {
    "cases": 44, "accuracy": 0.5227, "category_accuracy": 0.7955, "priority_accuracy": 0.6136,
    "tool_call_accuracy": 1.0, "tickets_as_expected": 1.0, "failed_runs": 0, "policy_denials": 0,
}  # fmt: skip
TRIAGE_MISSES = {
    "printer-jam", "headset-request", "install-visio", "licence-expired", "erp-client-error", "update-request",
    "no-network-single", "shared-calendar", "distribution-list", "emails-not-arriving", "out-of-office",
    "phishing-link-clicked", "phishing-report", "malware-popup", "suspicious-login", "lost-badge", "desk-move",
    "training-question", "vpn-no-access-rights", "injection-attempt", "german-request",
}  # fmt: skip


def test_comparisons():
    refs = {"input": {"email": "A@Example.com"}, "output": {"item": "monitor"}}
    assert FieldCheck.model_validate("P1").matches("P1", refs) and not FieldCheck.model_validate("P1").matches("p1", refs)
    assert FieldCheck.model_validate(["P1", "P2"]).matches("P2", refs)
    assert FieldCheck(equals="$input.email", ignore_case=True).matches("a@example.com", refs)
    assert FieldCheck(near=2.0, tolerance=0.25).matches(2.2, refs) and not FieldCheck(near=2.0).matches(2.2, refs)
    assert not FieldCheck(near=1).matches(True, refs)  # a boolean is not a number here
    assert FieldCheck(contains="$output.item").matches("order 2 x Monitor", refs)
    assert FieldCheck(present=True).matches("INC0000001", refs) and FieldCheck(present=False).matches(None, refs)
    assert not FieldCheck.model_validate(1).matches("1", refs)  # exact: a string is not the number


def test_a_case_in_the_old_form_is_refused_with_one_sentence():
    old = {"cases": [{"id": "c", "input": {}, "expect": {"category": "access", "priority": ["P2"]}}]}
    with pytest.raises(ValidationError, match="expected output fields go under expect.output"):
        EvalSet.model_validate(old)
    with pytest.raises(ValidationError, match="give exactly one comparison"):
        FieldCheck.model_validate({"equals": 1, "near": 1})


def test_the_committed_baseline_scores_the_same_under_the_generic_scorer():
    """The accepted baseline (local model) recorded category/priority/ticket verdicts per case: the
    generic scorer reaches the same ones from the outputs it recorded."""
    cases = {c.id: c for c in load_cases(AGENTS / "it-triage").cases}
    baseline = json.loads((AGENTS / "it-triage" / "eval" / "baseline.json").read_text())
    for was in baseline["per_case"]:
        now = score(cases[was["id"]], was["got"], []).fields
        assert (now["category"], now["priority"], now["ticket_id"]) == (was["category_ok"], was["priority_ok"], was["ticket_ok"]), was["id"]
        assert (now["category"] and now["priority"]) == was["ok"]


async def test_it_triage_figures_are_unchanged_on_the_scripted_model(client, db_url):
    cases = load_cases(AGENTS / "it-triage")
    async with factory_with(client, db_url, scripted_model(AGENTS)) as f:
        f.releases.add(triage_release(f.task_queue), current=True)
        report = await evaluate(f.factory, "it-triage", cases, "scripted", concurrency=8, say=lambda m: None)
    summary = report.summary()
    assert {k: summary[k] for k in TRIAGE_FIGURES} == TRIAGE_FIGURES
    assert {c.id for c in report.cases if not c.ok} == TRIAGE_MISSES
    assert report.passed(EvalSet(min_accuracy=0.5, cases=[]))


@contextlib.asynccontextmanager
async def agents_on_a_worker(client, db_url, agents_dir, policy_root, task_queue):
    """A worker for every agent of `agents_dir`, with their scripted rules as the model."""
    model = scripted_model(agents_dir)
    with model.serve() as base_url:
        endpoints = EndpointRegistry(env={})
        endpoints.register(Endpoint("default", base_url))
        releases = ReleaseRegistry.from_folder(agents_dir, evaluation_gate=False, policies=PolicyStore(policy_root))
        parts = WorkerParts(db_url=db_url, releases=releases, endpoints=endpoints, policies=policies_with_keys(policy_root))
        async with build_worker(client, task_queue, parts, max_cached_workflows=0):
            yield FactoryClient(client, agents_dir, releases=releases, signer=people_signer(), evaluation_gate=False)


async def test_a_second_agent_evaluates_through_the_same_path(client, db_url, tmp_path):
    queue = f"tq-orders-{uuid.uuid4().hex[:8]}"
    agents, policies = orders_agent.write_agent(tmp_path, queue)
    assert seed_agents(agents, db_url) > 0
    cases = load_cases(agents / orders_agent.NAME)
    async with agents_on_a_worker(client, db_url, agents, policies, queue) as factory:
        report = await evaluate(factory, orders_agent.NAME, cases, "scripted", concurrency=3, say=lambda m: None)
    summary = report.summary()
    assert {c.id: (c.ok, c.score, c.tools_ok, c.error) for c in report.cases} == {
        "two-monitors": (True, 1.0, True, None),
        "a-headset": (True, 1.0, True, None),
        "three-keyboards": (False, 0.25, True, None),  # quantity (weight 3 of 4) wrong
    }
    assert summary["accuracy"] == 0.6667 and summary["score"] == 0.75 and summary["tool_call_accuracy"] == 1.0
    assert summary["item_accuracy"] == 1.0 and summary["quantity_accuracy"] == 0.6667
    assert summary["department_accuracy"] == 1.0  # judged only where a case expects it
    assert summary["orders_opened"] == 1.0 and summary["policy_denials"] == 0
    assert "category_accuracy" not in summary
    assert [c.tool_calls for c in report.cases] == [["lookup_requester:ok", "create_ticket:ok"]] * 3
    assert report.passed(cases)
