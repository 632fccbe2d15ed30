"""Every wire type has its exception class of the same name, and the CLI catches one base class.

Fast: no server. The runs that end with each type are in the workflow tests (test_run_failures.py
and the tests named there); this is the mapping they rely on.
"""

from __future__ import annotations

import argparse

import pytest

import aifactory
from activities.keys import KeyRingError
from activities.releases.loader import AgentNotFound
from activities.switches import SwitchError
from aifactory import cli
from aifactory.errors import BY_TYPE, run_failed
from contracts import errors as E
from contracts.run import RunFailure, Usage
from contracts.visibility import QueryValueRejected
from tests.support.cli import cli_env, one_sentence, run_cli
from workers.settings import FactoryHomeNotFound

REFUSALS = {E.APPROVAL_REFUSED, E.MESSAGE_REFUSED}
"""Types a message to a run is refused with; no run ends with them."""


def test_every_wire_type_has_its_class_of_the_same_name_exported_from_the_package():
    assert set(BY_TYPE) == set(E.WIRE_TYPES)
    for type_, cls in BY_TYPE.items():
        assert cls.__name__ == type_
        assert getattr(aifactory, type_) is cls and type_ in aifactory.__all__
        assert issubclass(cls, aifactory.FactoryError)
        assert issubclass(cls, aifactory.RunFailed) == (type_ not in REFUSALS)


@pytest.mark.parametrize("type_", sorted(E.WIRE_TYPES - REFUSALS))
def test_a_run_failure_type_raises_its_subclass_with_type_and_details(type_):
    details = RunFailure(step=3, usage=Usage())
    e = run_failed("agent/it-triage/acme/T-1", type_, "what the run said", details)
    assert type(e) is BY_TYPE[type_] and isinstance(e, aifactory.RunFailed) and isinstance(e, RuntimeError)
    assert (e.type, e.details, e.workflow_id, e.message) == (type_, details, "agent/it-triage/acme/T-1", "what the run said")
    assert str(e) == f"run agent/it-triage/acme/T-1 failed ({type_}): what the run said"


@pytest.mark.parametrize("type_", ["SomethingNewer", None, *sorted(REFUSALS)])
def test_a_type_the_client_does_not_know_is_a_plain_run_failed(type_):
    e = run_failed("agent/it-triage/acme/T-1", type_, "said")
    assert type(e) is aifactory.RunFailed and e.type == type_
    assert str(e) == f"run agent/it-triage/acme/T-1 failed ({type_ or 'error'}): said"


def test_the_old_bases_stay_second_so_old_except_clauses_still_catch():
    assert issubclass(aifactory.RunInputRejected, ValueError) and issubclass(aifactory.AgentNotAdmitted, ValueError)
    assert issubclass(aifactory.RunRefused, PermissionError) and issubclass(aifactory.ApprovalRefused, PermissionError)
    assert issubclass(aifactory.StepLimitExceeded, RuntimeError)
    from aifactory.client import AgentNotAdmitted, ApprovalRefused, RunFailed, RunInputRejected, RunRefused

    assert (AgentNotAdmitted, ApprovalRefused, RunFailed, RunInputRejected, RunRefused) == (
        aifactory.AgentNotAdmitted, aifactory.ApprovalRefused, aifactory.RunFailed, aifactory.RunInputRejected, aifactory.RunRefused,
    )  # fmt: skip
    # The client's own gate refuses before any run: no run id in the sentence.
    before = aifactory.AgentNotAdmitted("agent 'x' is not admitted: no owner")
    assert str(before) == "agent 'x' is not admitted: no owner" and before.workflow_id is None and before.type == E.AGENT_NOT_ADMITTED


class Newcomer(aifactory.FactoryError):
    """A refusal the CLI has never heard of: catching the base class is enough."""


@pytest.mark.parametrize(
    "error",
    [
        Newcomer("a newcomer refuses"),
        QueryValueRejected("agent 'Bad' refused: expected an agent name"),  # contracts
        SwitchError("no switch is on for agent it-triage"),  # activities
        KeyRingError("the key ring has no key k9"),
        AgentNotFound("no agent 'nope' in agents/"),
        FactoryHomeNotFound("no factory home"),  # workers
        aifactory.RunRefused("run of it-triage for tenant acme refused: kill switch #3"),  # the face
        aifactory.RunInputRejected("it-triage", ["ticket_text: field required"]),
        aifactory.AgentNotAdmitted("agent 'it-triage' is not admitted: no runbook"),
        cli.CliError("reject needs --note saying why"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_cli_answers_every_factory_error_with_one_sentence_and_exit_2(error, monkeypatch, tmp_path, capsys):
    def handler(args, settings):
        raise error

    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "cmd_status", handler)
    assert cli._run(argparse.Namespace(command="status")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    one_sentence(captured.err, f"aifactory status: {error}")


def test_a_real_command_refused_prints_one_sentence_and_exits_2(tmp_path):
    missing = tmp_path / "no-such-input.json"
    p = run_cli("run", "it-triage", "--tenant", "acme", "--input", f"@{missing}", env=cli_env("127.0.0.1:1", tmp_path))
    assert p.returncode == 2 and p.stdout == ""
    one_sentence(p.stderr, f"aifactory run: --input: file {missing} does not exist")
