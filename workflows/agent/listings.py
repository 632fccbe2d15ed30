"""What an agent run's search attributes and current details say about it.

Workflow-safe: search attribute upserts only, in the order the run has always made them.
"""

from __future__ import annotations

import json
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts import search
    from contracts.approval import ApprovalRequest
    from contracts.run import RunState

from .state import AgentState


def summarize(data: Any, limit: int = 80) -> str:
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label_run(st: AgentState) -> None:
    """Set the run's search attributes from its release (a starter's own labels are corrected)."""
    release = st.release
    assert release is not None
    wanted = {
        search.AGENT_NAME: release.spec.name,
        search.AGENT_VERSION: release.release_version,
        search.AGENT_OWNER: release.spec.owner.name,
        search.TENANT: st.tenant,
    }
    present = workflow.info().typed_search_attributes
    updates = [key.value_set(v) for key, v in wanted.items() if present.get(key) != v]
    if not st.legacy and (present.get(search.AWAITING_APPROVAL) or present.get(search.APPROVAL_GROUP)):
        updates += [search.AWAITING_APPROVAL.value_set(False), search.APPROVAL_GROUP.value_unset()]
    if updates:
        workflow.upsert_search_attributes(updates)


def unlist_awaiting(st: AgentState) -> None:
    st.listed_awaiting = False
    workflow.upsert_search_attributes([search.AWAITING_APPROVAL.value_set(False), search.APPROVAL_GROUP.value_unset()])


def show_awaiting(st: AgentState, request: ApprovalRequest) -> None:
    st.listed_awaiting = True
    workflow.upsert_search_attributes([search.AWAITING_APPROVAL.value_set(True), search.APPROVAL_GROUP.value_set(request.group)])
    st.phase = RunState.AWAITING_APPROVAL
    st.waiting_on = f"approval {request.id} from {request.group}"
    workflow.set_current_details(
        f"**awaiting approval** from **{request.group}** (tier {request.tier + 1}/{len(request.approval.chain)})"
        f" · tool `{request.tool}` {summarize(request.arguments)} · rule {request.rule_id}: {request.reason}"
        f" · deadline {request.deadline:%Y-%m-%d %H:%M:%S} UTC · request {request.id}"
    )


def set_awaiting_operator(awaiting: bool) -> None:
    workflow.upsert_search_attributes([search.AWAITING_OPERATOR.value_set(awaiting)])
