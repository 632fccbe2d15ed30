"""One place that decides whether a failed model call is retried.

Not workflow-safe. Temporal owns retries (the client has `max_retries=0`), so
every attempt is in history. The mapping:

    APIStatusError 408, 409, 429, 5xx  -> ApplicationError, retryable,
                                          next_retry_delay from Retry-After
    APIStatusError other 4xx           -> ApplicationError(type=ModelCallRejected, non_retryable)
    APIConnectionError / APITimeoutError -> ApplicationError, retryable

A retryable failure on an attempt that Temporal will run again is expected, not
news: it is marked `ApplicationErrorCategory.BENIGN`, which the SDK logs at DEBUG
instead of as a warning with a traceback (and leaves out of its failure
metrics). The attempt that ends the retries is not marked, so a final failure
is still logged with its traceback.
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import timedelta, timezone

import openai
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from contracts.errors import MODEL_CALL_REJECTED

RETRYABLE_STATUS = frozenset({408, 409, 429})
MAX_RETRY_AFTER = timedelta(minutes=10)


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def retry_after(headers) -> timedelta | None:
    """Parse `Retry-After` (seconds or HTTP date) or `retry-after-ms`; capped at ten minutes.

    A value that is neither (garbage, `inf`, `nan`) gives None, so the retry
    policy's own interval applies; it never raises.
    """
    if headers is None:
        return None
    ms = _finite(headers.get("retry-after-ms"))
    if ms is not None:
        return _bounded(ms / 1000.0)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite(value)
    if seconds is None:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):  # Python >= 3.10 raises instead of returning None
            return None
        if parsed.tzinfo is None:  # "-0000" means UTC (RFC 5322), not the worker's local time
            parsed = parsed.replace(tzinfo=timezone.utc)
        seconds = parsed.timestamp() - time.time()
    return _bounded(seconds)


def _finite(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _bounded(seconds: float) -> timedelta:
    # Clamp before building the timedelta: a huge value would overflow it, a negative one is "now".
    return timedelta(seconds=min(max(seconds, 0.0), MAX_RETRY_AFTER.total_seconds()))


def will_retry(info: activity.Info) -> bool:
    """Whether Temporal runs this activity again when this attempt fails retryably.

    False on the last attempt its retry policy allows, and when the server did not send the
    policy (then nobody here knows, and a failure is better logged than hidden).
    """
    policy = info.retry_policy
    if policy is None:
        return False
    return policy.maximum_attempts == 0 or info.attempt < policy.maximum_attempts


def to_application_error(exc: Exception, profile: str, *, retried: bool = False) -> ApplicationError:
    """Map an `openai` exception to the ApplicationError Temporal retries (or not).

    `retried`: Temporal runs the call again after this attempt (`will_retry`); a transient
    failure is then BENIGN, logged at DEBUG without a traceback.
    """
    category = ApplicationErrorCategory.BENIGN if retried else ApplicationErrorCategory.UNSPECIFIED
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _short_detail(exc)
        if is_retryable_status(status):
            return ApplicationError(
                f"endpoint {profile!r} answered HTTP {status}: {detail}",
                type=f"ModelHTTP{status}",
                next_retry_delay=retry_after(exc.response.headers if exc.response is not None else None),
                category=category,
            )
        return ApplicationError(
            f"endpoint {profile!r} refused the call with HTTP {status}: {detail}",
            type=MODEL_CALL_REJECTED,
            non_retryable=True,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ApplicationError(f"endpoint {profile!r} timed out", type="ModelTimeout", category=category)
    if isinstance(exc, openai.APIConnectionError):
        return ApplicationError(f"endpoint {profile!r} unreachable: {exc}", type="ModelUnreachable", category=category)
    raise TypeError(f"not an openai error: {exc!r}")


def _short_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    text = str(exc.message)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            text = str(err["message"])
    return _redact_key(text, exc)[:300]


def _redact_key(text: str, exc: openai.APIError) -> str:
    """Remove the request's bearer key: some endpoints echo it in their 401 text, and this text goes to history."""
    auth = exc.request.headers.get("authorization", "") if exc.request is not None else ""
    key = auth.partition(" ")[2].strip()
    # Very short placeholder keys ("x") would mangle the message and protect nothing.
    return text.replace(key, "[redacted]") if len(key) >= 8 else text
