"""`compute_business_deadline`: the local activity that turns a business-hours SLA into a UTC deadline.

Not workflow-safe in spirit: `policies.hours` reads the machine's time-zone
database, which differs between machines and releases. Run as a local
activity, its answer is one marker event in history, so a replay on a worker
with other zone data waits on the same deadline the run first computed.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.approval import BusinessDeadlineInput, BusinessDeadlineResult
from contracts.errors import UNKNOWN_TIME_ZONE
from contracts.wire import Activity
from policies.hours import UnknownTimeZone, business_deadline


@activity.defn(name=Activity.COMPUTE_BUSINESS_DEADLINE)
async def compute_business_deadline(inp: BusinessDeadlineInput) -> BusinessDeadlineResult:
    try:
        return BusinessDeadlineResult(deadline=business_deadline(inp.calendar, inp.start, inp.sla))
    except UnknownTimeZone as e:  # the loader checked the zone on the worker that loaded the directory
        raise ApplicationError(str(e), type=UNKNOWN_TIME_ZONE, non_retryable=True) from None
