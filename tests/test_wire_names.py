"""Wire names have one home (`contracts.wire`): what the workers register is what the face sends,
and runs are selected by the agent they run, not by a workflow type."""

from __future__ import annotations

import temporalio.activity
import temporalio.workflow

from aifactory.client import running_runs_query
from aifactory.gateway.runs import approvals_query
from contracts.wire import AGENT_SIGNALS, AGENT_UPDATES, Activity, Query, Signal, Update, Workflow
from workflows import agent
from workflows.agent import AgentWorkflow
from workflows.audit_export import AuditExportWorkflow
from workflows.audit_witness import AuditWitnessWorkflow


def test_shipped_names_never_change():
    # These strings are in histories, schedules and other languages' starters: a rename breaks them.
    assert [w.value for w in Workflow] == ["AgentWorkflow", "AuditExportWorkflow", "AuditWitnessWorkflow"]
    assert {s.value for s in Signal} == {"approve", "reject", "witness"}
    assert {u.value for u in Update} == {"decide_approval", "stop", "budget_decision", "resolve_tool"}
    assert {q.value for q in Query} == {"status", "approvals", "entries"}
    assert {a.value for a in Activity} >= {"admit_run", "call_model", "resolve_policy", "check_kill_switch", "send_notification"}


def test_the_workflows_register_the_names_of_contracts_wire():
    defs = {cls: temporalio.workflow._Definition.from_class(cls) for cls in (AgentWorkflow, AuditExportWorkflow, AuditWitnessWorkflow)}
    assert [d.name for d in defs.values()] == [Workflow.AGENT, Workflow.AUDIT_EXPORT, Workflow.AUDIT_WITNESS]
    assert set(defs[AgentWorkflow].queries) == {Query.STATUS, Query.APPROVALS}
    assert set(defs[AuditWitnessWorkflow].signals) == {Signal.WITNESS} and set(defs[AuditWitnessWorkflow].queries) == {Query.ENTRIES}
    assert agent.SIGNALS == AGENT_SIGNALS and agent.UPDATES == AGENT_UPDATES


def test_every_platform_activity_is_registered_under_its_wire_name():
    from activities.admission import Admissions
    from activities.audit.activity import AuditActivities
    from activities.hours import compute_business_deadline
    from activities.model.activity import ModelActivities
    from activities.notify import NotifyActivities
    from activities.policy import PolicyActivities
    from activities.switches import SwitchActivities

    methods = [
        Admissions.admit_run_activity, AuditActivities.export_audit, AuditActivities.enforce_audit_retention,
        compute_business_deadline, ModelActivities.call_model, NotifyActivities.send_notification,
        PolicyActivities.resolve_policy, PolicyActivities.resolve_directory, SwitchActivities.check_kill_switch,
    ]  # fmt: skip
    names = {temporalio.activity._Definition.must_from_callable(m).name for m in methods}
    assert names == set(Activity)


def test_runs_are_selected_by_agent_name_not_by_workflow_type():
    for query in (running_runs_query(agent="it-triage", tenant="acme"), approvals_query(["acme"], None, None)):
        assert "WorkflowType" not in query and "AgentName" in query
    # Every agent run: labelled ones of any workflow type, and an agent workflow a raw start left unlabelled.
    assert running_runs_query() == '((AgentName IS NOT NULL OR WorkflowType = "AgentWorkflow")) AND ExecutionStatus = "Running"'
    assert running_runs_query(agent="it-triage") == 'AgentName = "it-triage" AND ExecutionStatus = "Running"'
