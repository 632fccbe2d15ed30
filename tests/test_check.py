"""The admission gate refuses an agent that misses any part of the deployment standard."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aifactory.cli import main
from tests.support.harness import AGENTS, REPO


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    shutil.copytree(AGENTS / "it-triage", tmp_path / "it-triage")
    return tmp_path


def edit_spec(agents: Path, change) -> None:
    path = agents / "it-triage" / "agent.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def run_check(agents: Path, monkeypatch, capsys) -> tuple[int, list[str]]:
    monkeypatch.setenv("AIFACTORY_AGENTS_DIR", str(agents))
    code = main(["check"])
    out = capsys.readouterr()
    return code, [line for line in (out.out + out.err).splitlines() if line]


def test_shipped_agents_pass(capsys, monkeypatch):
    code, lines = run_check(AGENTS, monkeypatch, capsys)
    shipped = sorted(p.name for p in AGENTS.iterdir() if (p / "agent.yaml").exists())
    assert code == 0 and lines == [f"ok: {name}" for name in shipped] and "it-triage" in shipped


def test_missing_owner_is_refused_with_file_and_field(agents, monkeypatch, capsys):
    edit_spec(agents, lambda d: d.pop("owner"))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1
    assert any(line.endswith("it-triage/agent.yaml: owner: required, but missing") for line in lines), lines


def test_owner_must_be_a_named_person_with_contact(agents, monkeypatch, capsys):
    edit_spec(agents, lambda d: d.update(owner={"name": "it-team", "contact": "somewhere"}))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1
    assert any("owner.name: must be a named person" in line for line in lines), lines
    assert any("owner.contact: must be an email address" in line for line in lines), lines


def test_missing_runbook_file_is_refused(agents, monkeypatch, capsys):
    (agents / "it-triage" / "runbook.md").unlink()
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1
    assert any("agent.yaml: runbook: file 'runbook.md' must exist" in line for line in lines), lines


def test_missing_runbook_field_is_refused(agents, monkeypatch, capsys):
    edit_spec(agents, lambda d: d.pop("runbook"))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any(line.endswith("agent.yaml: runbook: required, but missing") for line in lines)


def test_every_gap_gets_its_own_line(agents, monkeypatch, capsys):
    def break_many(d):
        d.pop("slo")
        d.pop("escalation_contact")
        d["version"] = "one"
        d["step_limit"] = 0
        d["surprise"] = True

    edit_spec(agents, break_many)
    code, lines = run_check(agents, monkeypatch, capsys)
    fields = [line.split(": ")[1] for line in lines if "agent.yaml" in line]
    assert code == 1 and sorted(fields) == ["escalation_contact", "slo", "step_limit", "surprise", "version"]


def test_unknown_tool_bad_rollback_and_bad_sample(agents, monkeypatch, capsys):
    edit_spec(agents, lambda d: d.update(tools=["lookup_requester", "wire_money"], rollback_to="2.0.0"))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1
    assert any("tools: 'wire_money' is not in the tool catalog" in line for line in lines)
    assert any("rollback_to: must be a version earlier than 1.3.0" in line for line in lines)


def test_sample_inputs_must_fit_the_input_schema(agents, monkeypatch, capsys):
    (agents / "it-triage" / "samples" / "broken.json").write_text('{"ticket_text": "hello there"}')
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any("samples/broken.json: (input): field 'requester_email' is required" in line for line in lines)


def test_missing_prompt_is_refused(agents, monkeypatch, capsys):
    (agents / "it-triage" / "prompt.md").write_text("  \n")
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any("prompt.md: (file): missing or empty" in line for line in lines)


def test_prompt_change_changes_the_release_version(agents, monkeypatch, capsys):
    monkeypatch.setenv("AIFACTORY_AGENTS_DIR", str(agents))
    main(["agents", "show", "it-triage", "--json"])
    before = capsys.readouterr().out
    (agents / "it-triage" / "prompt.md").write_text("You classify IT tickets. Be brief.\n")
    main(["agents", "show", "it-triage", "--json"])
    after = capsys.readouterr().out
    version = lambda text: __import__("json").loads(text)["release_version"]  # noqa: E731
    assert version(before).startswith("1.3.0+prompt.") and version(before) != version(after)


def test_console_script_is_installed():
    out = subprocess.run([str(Path(sys.executable).parent / "aifactory"), "agents", "list"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "it-triage" in out.stdout and "Maria Keller" in out.stdout


def test_an_agent_without_a_cost_envelope_is_refused(agents, monkeypatch, capsys):
    edit_spec(agents, lambda d: d.pop("envelope"))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any("agent.yaml: envelope: a cost envelope is required" in line for line in lines)


def test_clear_payloads_are_refused_for_an_agent_whose_tools_touch_personal_data(agents, monkeypatch, capsys):
    edit_spec(agents, lambda d: d.update(clear_payloads=True))
    code, lines = run_check(agents, monkeypatch, capsys)
    assert code == 1 and any("agent.yaml: clear_payloads: not allowed: the agent's tools touch pii data" in line for line in lines)
