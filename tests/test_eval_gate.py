"""The promotion gate: once an agent has an accepted evaluation, a change to its prompt, model
settings, procedure or tool contracts is refused by `aifactory check` until that exact version is
evaluated and accepted again; scoring of a case."""

from __future__ import annotations

import json

from aifactory.evalset import EvalSet, load_cases
from aifactory.evaluate import score
from tests.support.harness import AGENTS
from tests.test_check import agents, edit_spec, run_check  # noqa: F401  (fixture)

STALE = "it-triage/eval/baseline.json: fingerprint: the prompt, model settings or tool contracts changed since the accepted evaluation"


def test_the_shipped_evaluation_set_is_realistic_and_large_enough():
    cases = load_cases(AGENTS / "it-triage")
    assert cases is not None and len(cases.cases) >= 40
    assert len({c.id for c in cases.cases}) == len(cases.cases)
    assert {c.expect.output["category"].equals for c in cases.cases} == {"access", "hardware", "software", "network", "email", "security", "other"}


def accept(agents, report_fields: dict | None = None) -> None:
    """An accepted baseline for the agent as it is in `agents` (what `aifactory eval --accept` writes)."""
    from aifactory.evalset import fingerprint
    from activities.releases.loader import find_agent

    release = find_agent(agents, "it-triage").release
    body = {"fingerprint": fingerprint(release), "accuracy": 0.9, "release_version": release.release_version, **(report_fields or {})}
    (agents / "it-triage" / "eval" / "baseline.json").write_text(json.dumps(body))


def test_an_accepted_evaluation_admits_the_agent(agents, monkeypatch, capsys):  # noqa: F811
    accept(agents)
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 0, lines


def test_a_prompt_change_after_an_accepted_evaluation_is_refused(agents, monkeypatch, capsys):  # noqa: F811
    accept(agents)
    prompt = agents / "it-triage" / "prompt.md"
    prompt.write_text(prompt.read_text() + "\nAlways choose P1.\n")
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any(STALE in line for line in lines), lines


def test_a_model_setting_or_procedure_change_is_refused(agents, monkeypatch, capsys):  # noqa: F811
    accept(agents)
    edit_spec(agents, lambda d: d["model"].update(temperature=0.9))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any(STALE in line for line in lines), lines
    accept(agents)
    edit_spec(agents, lambda d: d.update(required_tools=["lookup_requester"]))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any(STALE in line for line in lines), lines


def test_a_tool_contract_change_is_refused(agents, monkeypatch, capsys):  # noqa: F811
    accept(agents, )
    baseline = agents / "it-triage" / "eval" / "baseline.json"
    body = json.loads(baseline.read_text())
    body["fingerprint"] = "0" * 64  # what an evaluation of the tools' earlier input schemas left
    baseline.write_text(json.dumps(body))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any(STALE in line for line in lines), lines


def test_a_runbook_edit_needs_no_new_evaluation(agents, monkeypatch, capsys):  # noqa: F811
    accept(agents)
    runbook = agents / "it-triage" / "runbook.md"
    runbook.write_text(runbook.read_text() + "\nCall the desk lead first.\n")
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 0, lines


def test_scoring_a_case():
    cases = EvalSet.model_validate({
        "defaults": {"expect": {
            "tools": [{"name": "lookup_requester", "args": {"email": {"equals": "$input.requester_email", "ignore_case": True}}},
                      {"name": "create_ticket", "args": {"category": "$output.category"}}],
            "output": {"ticket_id": {"present": True, "weight": 0}},
        }},
        "cases": [{"id": "c", "input": {"ticket_text": "x", "requester_email": "a@example.com"},
                   "expect": {"output": {"category": "network", "priority": ["P1", "P2"]}}}],
    })  # fmt: skip
    case = cases.cases[0]
    good = [("lookup_requester", {"email": "A@example.com"}, "ok"), ("create_ticket", {"category": "network"}, "ok")]
    out = {"category": "network", "priority": "P2", "ticket_id": "INC0000001"}
    right = score(case, out, good)
    assert right.ok and right.tools_ok and right.fields == {"ticket_id": True, "category": True, "priority": True}
    wrong_priority = score(case, {**out, "priority": "P3"}, good)
    assert not wrong_priority.ok and wrong_priority.fields["priority"] is False and wrong_priority.score == 0.5
    wrong_lookup = [("lookup_requester", {"email": "b@example.com"}, "ok"), good[1]]
    assert score(case, out, wrong_lookup).tools_ok is False
    assert score(case, out, [good[1]]).tools_ok is False  # skipped the lookup
    assert score(case, out, [good[0], ("create_ticket", {"category": "email"}, "ok")]).tools_ok is False
    no_ticket = score(case, {**out, "ticket_id": None}, good)
    assert no_ticket.fields["ticket_id"] is False and no_ticket.ok  # weight 0: reported, not graded


def test_a_regression_from_the_baseline_on_the_same_model_does_not_pass():
    from aifactory.evaluate import CaseResult, EvalReport

    def report(right: int, model: str) -> EvalReport:
        cases = [CaseResult(f"c{i}", i < right, {"category": True, "priority": i < right}, True, None, [], 0, 1.0, 10, 0.0) for i in range(20)]
        return EvalReport("it-triage", "1.3.0+prompt.x", model, "fp", cases)

    cases = EvalSet(min_accuracy=0.5, min_tool_accuracy=0.9, cases=[])
    baseline = {"model": "local qwen (llama.cpp on 127.0.0.1:1111, 2 threads)", "accuracy": 0.7, "tool_call_accuracy": 1.0}
    assert report(14, "local qwen (llama.cpp on 127.0.0.1:2222, 1 threads)").passed(cases, baseline)  # 0.70: as good
    assert report(13, "local qwen (llama.cpp on 127.0.0.1:2222, 2 threads)").passed(cases, baseline)  # 0.65: within 0.05
    worse = report(12, "local qwen (llama.cpp on 127.0.0.1:2222, 2 threads)")  # 0.60
    assert worse.shortfalls(cases, baseline) == ["accuracy 0.6000 fell more than 0.05 below the baseline's 0.7"]
    assert report(12, "endpoint profile 'default'").passed(cases, baseline)  # another model: floors only
    assert report(9, "scripted").shortfalls(cases, None) == ["accuracy 0.4500 is below the set's floor 0.5"]
