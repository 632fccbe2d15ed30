"""Approvals of a tool call: park durably until a person decides, escalating tier by tier on timers.

Workflow-safe: deadlines are wall-clock SLAs computed here, or business-hours ones computed by a
local activity (recorded in history, since zone data differs between machines).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import CancelledError as ActivityCancelled

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.approval import ApprovalRequest, BusinessDeadlineInput, BusinessDeadlineResult, RequestStatus
    from contracts.policy import Clock, PolicyDecision, Tier
    from contracts.wire import Activity

from .listings import show_awaiting, summarize, unlist_awaiting
from .notify import notify
from .patches import BUSINESS_HOURS_PATCH
from .state import AgentState
from .stop import check_stop


async def await_approval(st: AgentState, tool: str, arguments: dict, decision: PolicyDecision, index: int) -> ApprovalRequest:
    """Park durably until a person decides, escalating tier by tier on timers; then the safe default."""
    assert decision.approval is not None
    now = workflow.now()
    deadline = await tier_deadline(st, decision.approval.chain[0], now)
    request = st.book.open(
        ApprovalRequest(
            id=f"{st.carry.step}.{index}", tool=tool, arguments=arguments, rule_id=decision.rule_id,
            reason=decision.reason, approval=decision.approval, requester=st.inp.requester if st.inp else "",
            tenant=st.tenant, requested_at=now, deadline=deadline,
        )
    )  # fmt: skip
    event, subject = "requested", f"Approval needed: {tool} for {st.spec.name}"
    while True:
        show_awaiting(st, request)
        await notify(
            st, f"approval_{event}", f"{request.id}/{event}", subject, group=request.group,
            details={"request": request.id, "tool": tool, "arguments": summarize(arguments, 200),
                     "rule": decision.rule_id, "reason": decision.reason,
                     "deadline": request.deadline.isoformat(), "tier": request.tier + 1},
        )  # fmt: skip
        if request.terminal:
            break
        try:
            remaining = max(request.deadline - workflow.now(), timedelta(milliseconds=1))
            await workflow.wait_condition(lambda: request.terminal or st.stop is not None, timeout=remaining)
            check_stop(st)
            break
        except asyncio.CancelledError:  # the run is cancelled while it waits: the listings must not say it waits
            if st.listed_awaiting and not st.legacy:
                unlist_awaiting(st)
            raise
        except asyncio.TimeoutError:
            now, nxt = workflow.now(), request.tier + 1
            deadline = await tier_deadline(st, request.approval.chain[nxt], now) if nxt < len(request.approval.chain) else None
            if request.terminal:  # decided while the next tier's deadline was being computed
                break
            if st.book.escalate(request.id, now, deadline):
                event = f"escalated_tier{request.tier + 1}"
                subject = f"Escalated ({request.tier + 1}/{len(request.approval.chain)}): {tool} for {st.spec.name}"
                continue
            await notify(
                st, "approval_expired", f"{request.id}/expired",
                f"No decision on {tool}: safe default {request.approval.safe_default.value} applied",
                group=request.group, details={"request": request.id, "reason": request.note},
            )  # fmt: skip
            break
    if request.status in (RequestStatus.APPROVED, RequestStatus.REJECTED):
        await notify(
            st, "approval_decided", f"{request.id}/decided", f"{tool} {request.status.value} by {request.decided_by}",
            group=request.group,
            details={"request": request.id, "verdict": request.status.value, "by": request.decided_by, "note": request.note or "",
                     "waited_s": round((request.decided_at - request.requested_at).total_seconds(), 3) if request.decided_at else None},
        )  # fmt: skip
    unlist_awaiting(st)
    return request


async def tier_deadline(st: AgentState, tier: Tier, now: datetime) -> datetime:
    """When `tier`, asked at `now`, escalates: wall-clock SLAs here; business-hours ones from the group's
    calendar, computed by a local activity so the deadline is in history and replays on any zone data."""
    calendar = st.carry.policy.directory.calendar(tier.group) if st.carry.policy else None
    wall = now + tier.sla
    # The patch check comes last: only a business-clock tier writes its marker, so histories of
    # wall-clock tiers (all recorded before this change) replay command for command.
    if tier.clock is not Clock.BUSINESS or calendar is None or not workflow.patched(BUSINESS_HOURS_PATCH):
        return wall
    try:
        result = await workflow.execute_local_activity(
            Activity.COMPUTE_BUSINESS_DEADLINE, BusinessDeadlineInput(calendar=calendar, start=now, sla=tier.sla),
            result_type=BusinessDeadlineResult, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=[E.UNKNOWN_TIME_ZONE]),
        )  # fmt: skip
    except (ActivityError, ApplicationError) as e:  # a local activity's failure arrives unwrapped
        cause = e.cause if isinstance(e, ActivityError) else e
        if isinstance(cause, ActivityCancelled):
            raise
        # Waiting for working hours this worker cannot compute must not strand the request: the
        # wall-clock SLA asks the next tier (or applies the safe default) sooner, never later.
        workflow.logger.warning("business-hours deadline for group %s not computed, using the wall clock: %s", tier.group, cause)
        return wall
    return result.deadline
