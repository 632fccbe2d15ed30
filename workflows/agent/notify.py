"""Notifications of an agent run: to approver groups, and alerts to the agent's owner.

Workflow-safe: schedules the notification activity; a failed notification never holds up the run.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.notify import Notification
    from contracts.wire import Activity

from .patches import OWNER_ALERTS_PATCH
from .state import AgentState

#: Failures that are a breaker tripping: the run was stopped by a limit of its deployment standard.
BREAKER_TRIPS = (E.STEP_LIMIT_EXCEEDED, E.BUDGET_EXCEEDED, E.REPEATED_TOOL_CALL, E.CONTEXT_LIMIT_EXCEEDED, E.POLICY_DENIED)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=6)


async def notify(
    st: AgentState, kind: str, suffix: str, subject: str, *, group: str | None, details: dict, key: str | None = None,
    recipients: list[str] | None = None, channels: list[str] | None = None,
) -> None:  # fmt: skip
    """Send one notification (idempotent by its key); recipients default to `group`'s members."""
    info = workflow.info()
    directory = st.carry.policy.directory if st.carry.policy else None
    if recipients is None:
        recipients = directory.members(group) if (directory and group) else []
    if channels is None:  # an approver group's own Slack channel
        settings = directory.group(group) if (directory and group) else None
        channels = [settings.slack_channel] if settings and settings.slack_channel else []
    notification = Notification(
        key=key or f"{info.workflow_id}/{suffix}", kind=kind, run_id=info.workflow_id, agent=st.agent,
        tenant=st.tenant, group=group, recipients=recipients, subject=subject, details=details, channels=channels,
    )  # fmt: skip
    try:
        await workflow.execute_activity(
            Activity.SEND_NOTIFICATION,
            notification,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=NOTIFY_RETRY,
            summary=f"notify {kind}" + (f" {group}" if group else ""),
        )
    except ActivityError as err:
        # A notification must never hold up the approval clock or the run: the failure is logged
        # and the outbox row (if it was written) stays for operators.
        workflow.logger.error("notification %s/%s failed: %s", kind, suffix, err.cause or err)


async def alert_owner(st: AgentState, failure: ApplicationError) -> None:
    """Tell the owner when a breaker tripped or a kill switch stopped (or refused) this run."""
    spec = st.release.spec if st.release else None
    if spec is None or st.legacy or (failure.type not in BREAKER_TRIPS and failure.type != E.RUN_STOPPED):
        return
    switch_id = st.stop.switch_id if st.stop is not None else (st.switched.id if st.switched else None)
    if (failure.type == E.RUN_STOPPED and switch_id is None) or (failure.type == E.BUDGET_EXCEEDED and st.envelope_ended):
        return  # a person stopped this one run, or the envelope did (its owner had the envelope's alerts)
    if not workflow.patched(OWNER_ALERTS_PATCH):
        return
    if failure.type == E.RUN_STOPPED:  # one alert per switch and agent, however many runs it stops
        kind, key, subject = "kill_switch", f"kill-switch/{switch_id}/{spec.name}", f"{spec.name}: kill switch #{switch_id} is stopping its runs"
    else:
        kind, key, subject = "breaker_tripped", None, f"{spec.name}: circuit breaker tripped ({failure.type})"
    await notify(
        st, kind, "breaker", subject, group=None, key=key, recipients=[spec.owner.name], channels=st.owner_channels(),
        details={"error": failure.type, "reason": str(failure.message)[:500], "owner": spec.owner.name, "version": spec.version},
    )  # fmt: skip
