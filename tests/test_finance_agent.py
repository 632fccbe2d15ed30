"""The finance-reconciliation agent end to end on the scripted model: the demo on the dev server
prints its pairs and exceptions, its scripted evaluation gives the figures the README reports and
passes the gate against the accepted baseline, its bundle
sends postings to a finance controller, and `aifactory check` admits it.

The agent folder is copied to a temporary agents folder with a fresh task queue; its documents go
to a temporary document store through the finance family's seed, as `--model scripted` puts them."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from activities.model.endpoints import Endpoint, EndpointRegistry
from activities.releases.registry import ReleaseRegistry
from aifactory.client import FactoryClient
from aifactory.evalset import load_cases
from aifactory.evaluate import evaluate
from aifactory.scripted_agents import scripted_model, seed_agents
from contracts.policy import Autonomy, Outcome, ToolCallFacts
from contracts.tools import DataClass, SideEffect
from policies.engine import evaluate as decide
from policies.loader import PolicyStore, policies_dir
from tests.support.demo import demo_on_cluster
from tests.support.harness import AGENTS, people_signer, policies_with_keys
from workers.worker import WorkerParts, build_worker

NAME = "finance-reconciliation"
BASELINE = json.loads((AGENTS / NAME / "eval" / "baseline.json").read_text())
# The scripted stand-in's figures, as the README reports them (the accepted baseline is the local model's).
SCRIPTED = {
    "cases": 32, "accuracy": 0.9062, "extraction_precision": 0.9412, "extraction_recall": 0.9412, "extraction_total_accuracy": 0.9412,
    "extraction_iban_accuracy": 0.9412, "match_precision": 0.9474, "match_recall": 0.9474, "exception_precision": 0.9474,
    "exception_recall": 0.9474, "tool_call_accuracy": 1.0, "failed_runs": 0,
}  # fmt: skip
# The one OCR misreading the set holds: the low-contrast scan's `FI/2024/0419` read as `F1/2024/0419`.
MISSES = {"ferrari-exact-low-contrast", "exact-and-missing", "none-paid"}


def agent_copy(tmp_path, queue: str):
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS / NAME, agents / NAME)
    spec = agents / NAME / "agent.yaml"
    spec.write_text(spec.read_text() + f"task_queue: {queue}\n")
    return agents


@pytest.fixture
def documents(tmp_path, monkeypatch):
    folder = tmp_path / "documents"
    monkeypatch.setenv("AIFACTORY_DOCUMENTS", str(folder))  # where the seed stores and the worker's tools read
    return folder


def facts(total: str, lowest_score: float, autonomy: Autonomy = Autonomy.SUPERVISED) -> ToolCallFacts:
    return ToolCallFacts(
        agent=NAME, tenant="acme", autonomy=autonomy, tool="post_reconciliation", side_effect=SideEffect.WRITE,
        data_classes=(DataClass.FINANCIAL,), arguments={"matches": [], "statement": "doc:sha256:" + "0" * 64, "total": total, "lowest_score": lowest_score},
    )  # fmt: skip


def test_postings_go_to_a_finance_controller_above_the_threshold_or_for_a_fuzzy_pair():
    bundle = PolicyStore().get("finance").bundle
    assert [t.group for t in bundle.default_approval.chain] == ["finance-controllers"]
    assert decide(bundle, facts("12500.00", 1.0, Autonomy.ASSISTED)).rule_id == "large-postings"
    assert decide(bundle, facts("616.42", 0.6, Autonomy.ASSISTED)).rule_id == "fuzzy-matches"
    small_exact = decide(bundle, facts("616.42", 1.0, Autonomy.ASSISTED))
    assert small_exact.outcome is Outcome.ALLOW and small_exact.rule_id == "exact-postings"
    supervised = decide(bundle, facts("616.42", 1.0))  # as shipped: every posting waits for a controller
    assert supervised.outcome is Outcome.REQUIRE_APPROVAL and supervised.rule_id == "default:write-approval"


def test_check_admits_the_agent(capsys):
    from aifactory.cli import main

    assert main(["check"]) == 0
    assert f"ok: {NAME}" in capsys.readouterr().out


async def test_the_scripted_evaluation_gives_the_scripted_figures_and_passes_the_gate(client, db_url, tmp_path, documents):
    queue = f"tq-finance-{uuid.uuid4().hex[:8]}"
    agents = agent_copy(tmp_path, queue)
    assert seed_agents(agents, db_url) == len(json.loads((agents / NAME / "seed" / "finance.json").read_text()))
    cases = load_cases(agents / NAME)
    model = scripted_model(agents)
    with model.serve() as base_url:
        endpoints = EndpointRegistry(env={})
        endpoints.register(Endpoint("default", base_url))
        releases = ReleaseRegistry.from_folder(agents, evaluation_gate=False, policies=PolicyStore(policies_dir()))
        parts = WorkerParts(db_url=db_url, releases=releases, endpoints=endpoints, policies=policies_with_keys(policies_dir()))
        async with build_worker(client, queue, parts, max_cached_workflows=0):
            factory = FactoryClient(client, agents, releases=releases, signer=people_signer(), evaluation_gate=False)
            report = await evaluate(factory, NAME, cases, "scripted", concurrency=4, say=lambda m: None)
    summary = report.summary()
    assert {k: summary[k] for k in SCRIPTED} == SCRIPTED
    assert summary["match_precision"] >= 0.9 and summary["match_recall"] >= 0.9 and summary["tool_call_accuracy"] == 1.0
    assert {c.id for c in report.cases if not c.ok} == MISSES
    assert report.passed(cases, BASELINE)
    posted = [c for c in report.cases if "post_reconciliation:ok" in c.tool_calls and c.got["matched"]]
    assert posted and all(c.got["batch_id"].startswith("REC-") for c in posted)
    nothing = [c for c in report.cases if not c.got["matched"]]  # an empty posting writes no batch
    assert nothing and all(c.got["batch_id"] is None for c in nothing)
    for c in report.cases:  # the totals add up in every answer
        assert round(c.got["matched_total"] + c.got["unmatched_total"], 2) == round(c.got["invoice_total"], 2), c.id


async def test_the_demo_prints_pairs_and_exceptions(env, tmp_path, monkeypatch, capsys, documents):
    queue = f"tq-demo-finance-{uuid.uuid4().hex[:8]}"
    agents = agent_copy(tmp_path, queue)
    code = await demo_on_cluster(env, tmp_path / "home", agents, queue, NAME)  # the operator stores the documents first
    out = capsys.readouterr().out
    assert code == 0, out
    assert "needs finance-controllers (rule fuzzy-matches)" in out and "approving as claire.dubois" in out
    assert "april-batch: post_reconciliation approved by claire.dubois" in out
    assert "invoice_number=NL-2024-0412 transaction_reference=BK2404" in out  # a matched pair, on its own line
    assert "invoice_number=KL-56177 kind=ambiguous" in out  # an exception, on its own line
    done = next(line for line in out.splitlines() if line.startswith("  done     unpaid-and-unclear:"))
    assert "invoice_total=1351.73 matched_total=611.25 unmatched_total=740.48" in done, done
    assert "2 of 2 runs completed" in out


def test_the_seed_refuses_a_document_that_is_not_its_reference(tmp_path, documents):
    from activities.tools.finance.documents import seed_documents

    scan = tmp_path / "scan.png"
    scan.write_bytes(b"not the bytes the reference names")
    with pytest.raises(ValueError, match="hashes to doc:sha256:"):
        seed_documents("sqlite://", [{"document": "doc:sha256:" + "0" * 64, "file": str(scan)}])
    assert not documents.exists()  # nothing stored under a reference the agent does not use


def test_seed_files_are_named_inside_the_agent_folder(tmp_path):
    from aifactory.scripted_agents import seed_rows

    folder = tmp_path / "agents" / "a"
    (folder / "seed").mkdir(parents=True)
    (folder / "scan.png").write_bytes(b"x")
    (folder / "seed" / "finance.json").write_text(json.dumps([{"document": "d", "file": "file:scan.png"}]))
    assert seed_rows(folder) == {"finance": [{"document": "d", "file": str((folder / "scan.png").resolve())}]}
    (folder / "seed" / "finance.json").write_text(json.dumps([{"file": "file:../../outside.txt"}]))
    (tmp_path / "outside.txt").write_text("secret")
    with pytest.raises(ValueError, match="names no file inside the agent folder"):
        seed_rows(folder)
