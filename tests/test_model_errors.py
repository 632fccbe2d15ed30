"""activities/model/errors.py: which failed model calls Temporal retries, and after how long.

The exceptions come from the real `openai` client talking HTTP to the scripted
model, so the mapping is tested on what production code actually receives.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from datetime import timedelta

import openai
import pytest

from activities.model.errors import MAX_RETRY_AFTER, is_retryable_status, retry_after, to_application_error
from activities.model.scripted import Reply, ScriptedModel
from contracts.errors import MODEL_CALL_REJECTED

KEY = "sk-unit-secret-0123456789abcdef"


class Endpoint:
    """One scripted endpoint for the module; each test asks its own question and gets its own reply."""

    def __init__(self) -> None:
        self.base_url = ""
        self.replies: dict[str, Reply] = {}
        self.model = ScriptedModel(lambda body: self.replies[body["messages"][-1]["content"]])

    async def error_for(self, reply: Reply, timeout: float | None = None) -> openai.OpenAIError:
        """The exception the real client raises when the endpoint answers with `reply`."""
        question = f"question {uuid.uuid4().hex}"
        self.replies[question] = reply
        async with openai.AsyncOpenAI(base_url=self.base_url, api_key=KEY, max_retries=0) as client:
            with pytest.raises(openai.OpenAIError) as caught:
                await client.chat.completions.create(
                    model="scripted", messages=[{"role": "user", "content": question}], timeout=timeout
                )
        # max_retries=0: the client itself never retries, Temporal does. (A request cut by the
        # client's own timeout may not have reached the server's handler yet, hence "at most".)
        seen = sum(r.body["messages"][-1]["content"] == question for r in self.model.requests)
        assert seen == 1 if timeout is None else seen <= 1
        return caught.value


@pytest.fixture(scope="module")
def endpoint():
    scripted = Endpoint()
    with scripted.model.serve() as base_url:
        scripted.base_url = base_url
        yield scripted


# -- is_retryable_status ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(status):
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 422])
def test_other_client_errors_are_not(status):
    assert not is_retryable_status(status)


# -- retry_after ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", timedelta(seconds=3)), ("0", timedelta(0)), ("0.2", timedelta(milliseconds=200)), (" 7 ", timedelta(seconds=7))],
)
def test_retry_after_in_seconds(value, expected):
    assert retry_after({"retry-after": value}) == expected


def test_retry_after_as_http_date_in_the_future():
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    delay = retry_after({"retry-after": when})
    # The header has one-second resolution and the clock moves on while we parse it.
    assert timedelta(seconds=100) <= delay <= timedelta(seconds=120)


def test_retry_after_as_http_date_in_the_past_means_now():
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == timedelta(0)


@pytest.fixture
def worker_far_from_utc(monkeypatch):
    monkeypatch.setenv("TZ", "XYZ+05")  # POSIX zone five hours west of UTC; needs no tz database
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_retry_after_date_without_zone_is_utc_not_local_time(worker_far_from_utc):
    when = email.utils.formatdate(time.time() + 120)  # "... -0000": UTC per RFC 5322
    assert when.endswith("-0000")
    assert timedelta(seconds=100) <= retry_after({"retry-after": when}) <= timedelta(seconds=120)


def test_retry_after_ms_is_read_and_wins_over_seconds():
    assert retry_after({"retry-after-ms": "1500"}) == timedelta(milliseconds=1500)
    assert retry_after({"retry-after-ms": "250", "retry-after": "30"}) == timedelta(milliseconds=250)


def test_garbage_retry_after_ms_falls_back_to_retry_after():
    assert retry_after({"retry-after-ms": "soon", "retry-after": "2"}) == timedelta(seconds=2)
    assert retry_after({"retry-after-ms": "inf", "retry-after": "2"}) == timedelta(seconds=2)


@pytest.mark.parametrize("value", ["soon", "", "-", "inf", "nan", "1,5", "Thursday at noon", "Wed, 99 Foo 2015"])
def test_garbage_retry_after_gives_none(value):
    assert retry_after({"retry-after": value}) is None
    assert retry_after({"retry-after-ms": value}) is None


def test_missing_headers_give_none():
    assert retry_after(None) is None
    assert retry_after({}) is None
    assert retry_after({"content-type": "application/json"}) is None


def test_negative_values_mean_now():
    assert retry_after({"retry-after": "-5"}) == timedelta(0)
    assert retry_after({"retry-after-ms": "-500"}) == timedelta(0)


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "3600"},
        {"retry-after": "1e300"},
        {"retry-after-ms": "86400000"},
        {"retry-after": email.utils.formatdate(time.time() + 86400, usegmt=True)},
    ],
)
def test_retry_after_is_capped_at_ten_minutes(headers):
    assert MAX_RETRY_AFTER == timedelta(minutes=10)
    assert retry_after(headers) == MAX_RETRY_AFTER


# -- to_application_error on exceptions the real client built --------------------------------


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (422, openai.UnprocessableEntityError),
    ],
)
async def test_client_errors_are_rejected_without_retry(endpoint, status, exc_type):
    exc = await endpoint.error_for(Reply.error(status, "model 'gpt-9' does not exist", retry_after=5))
    assert type(exc) is exc_type

    err = to_application_error(exc, "default")

    assert err.type == MODEL_CALL_REJECTED
    assert err.non_retryable
    assert err.next_retry_delay is None  # Retry-After means nothing on a call that is never retried
    assert err.message == f"endpoint 'default' refused the call with HTTP {status}: model 'gpt-9' does not exist"
    assert KEY not in str(err)


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (408, openai.APIStatusError),
        (409, openai.ConflictError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
async def test_transient_errors_are_retryable(endpoint, status, exc_type):
    exc = await endpoint.error_for(Reply.error(status, "try again"))
    assert isinstance(exc, exc_type) and exc.status_code == status

    err = to_application_error(exc, "local_llm")

    assert err.type == f"ModelHTTP{status}"
    assert not err.non_retryable
    assert err.next_retry_delay is None  # no Retry-After: the retry policy's interval applies
    assert err.message == f"endpoint 'local_llm' answered HTTP {status}: try again"
    assert KEY not in str(err)


async def test_rate_limit_honours_retry_after(endpoint):
    exc = await endpoint.error_for(Reply.error(429, "Rate limit reached for requests", retry_after=3))
    assert isinstance(exc, openai.RateLimitError)

    err = to_application_error(exc, "default")

    assert err.type == "ModelHTTP429" and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=3)


async def test_server_error_honours_fractional_retry_after(endpoint):
    err = to_application_error(await endpoint.error_for(Reply.error(503, "overloaded", retry_after=0.25)), "default")
    assert err.type == "ModelHTTP503"
    assert err.next_retry_delay == timedelta(milliseconds=250)


async def test_key_echoed_by_the_endpoint_is_redacted(endpoint):
    # Some OpenAI-compatible servers repeat the presented key in their 401 text; that text goes to history.
    exc = await endpoint.error_for(Reply.error(401, f"Incorrect API key provided: {KEY}. Check your key."))
    assert KEY in str(exc.body)  # the endpoint really did echo it

    err = to_application_error(exc, "default")

    assert err.type == MODEL_CALL_REJECTED and err.non_retryable
    assert KEY not in err.message and KEY[:12] not in err.message
    assert err.message.endswith("Incorrect API key provided: [redacted]. Check your key.")


async def test_long_detail_is_cut_short(endpoint):
    err = to_application_error(await endpoint.error_for(Reply.error(400, "x" * 5000)), "default")
    assert err.message.count("x") == 300


async def test_timeout_is_retryable(endpoint):
    exc = await endpoint.error_for(Reply.text("too late", delay=3.0), timeout=0.3)
    assert isinstance(exc, openai.APITimeoutError)

    err = to_application_error(exc, "default")

    assert err.type == "ModelTimeout" and not err.non_retryable
    assert err.message == "endpoint 'default' timed out"


async def test_unreachable_endpoint_is_retryable():
    with ScriptedModel(lambda body: Reply.text("unused")).serve() as base_url:
        pass  # the server is gone now: nothing listens on its port
    async with openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0) as client:
        with pytest.raises(openai.APIConnectionError) as caught:
            await client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "Is the VPN down?"}])

    err = to_application_error(caught.value, "default")

    assert err.type == "ModelUnreachable" and not err.non_retryable
    assert err.message.startswith("endpoint 'default' unreachable")
    assert KEY not in str(err)


def test_anything_else_is_a_programming_error():
    with pytest.raises(TypeError, match="not an openai error"):
        to_application_error(ValueError("boom"), "default")
