"""One place that decides whether a failed model call is retried.

Not workflow-safe. Temporal owns retries (the client has `max_retries=0`), so
every attempt is in history. The mapping:

    APIStatusError 408, 409, 429, 5xx  -> ApplicationError, retryable,
                                          next_retry_delay from Retry-After
    APIStatusError other 4xx           -> ApplicationError(type=ModelCallRejected, non_retryable)
    APIConnectionError / APITimeoutError -> ApplicationError, retryable
"""

from __future__ import annotations

import email.utils
import time
from datetime import timedelta

import openai
from temporalio.exceptions import ApplicationError

from contracts.errors import MODEL_CALL_REJECTED

RETRYABLE_STATUS = frozenset({408, 409, 429})
MAX_RETRY_AFTER = timedelta(minutes=10)


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def retry_after(headers) -> timedelta | None:
    """Parse `Retry-After` (seconds or HTTP date) or `retry-after-ms`; capped at ten minutes."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return min(timedelta(milliseconds=float(ms)), MAX_RETRY_AFTER)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return min(timedelta(seconds=max(seconds, 0.0)), MAX_RETRY_AFTER)


def to_application_error(exc: Exception, profile: str) -> ApplicationError:
    """Map an `openai` exception to the ApplicationError Temporal retries (or not)."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _short_detail(exc)
        if is_retryable_status(status):
            return ApplicationError(
                f"endpoint {profile!r} answered HTTP {status}: {detail}",
                type=f"ModelHTTP{status}",
                next_retry_delay=retry_after(exc.response.headers if exc.response is not None else None),
            )
        return ApplicationError(
            f"endpoint {profile!r} refused the call with HTTP {status}: {detail}",
            type=MODEL_CALL_REJECTED,
            non_retryable=True,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ApplicationError(f"endpoint {profile!r} timed out", type="ModelTimeout")
    if isinstance(exc, openai.APIConnectionError):
        return ApplicationError(f"endpoint {profile!r} unreachable: {exc}", type="ModelUnreachable")
    raise TypeError(f"not an openai error: {exc!r}")


def _short_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(exc.message)[:300]
