"""A model call attempt that fails and is retried is expected: the worker logs it at DEBUG, with
no traceback on the console. The attempt that ends the retries is still a warning with its
traceback. (The demo printed a `ModelTimeout` traceback for every slow attempt of the local
model, each then retried successfully.)"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from activities.model.errors import will_retry
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory import ModelUnavailable
from tests.support.failures import fails_with
from contracts.errors import MODEL_UNAVAILABLE
from tests.support.harness import factory_with, replay, triage_release
from tests.test_model_failures import ANSWER, TICKET

FAILED = "Completing activity as failed"  # what the SDK logs for every failed activity attempt


def failed_attempts(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "temporalio.activity" and r.getMessage().startswith(FAILED)]


class SlowOnce:
    """Answers `reply`, the first request of each conversation only after `delay` seconds."""

    def __init__(self, reply: Reply, delay: float) -> None:
        self.reply, self.delay, self.seen = reply, delay, 0

    def __call__(self, body) -> Reply:
        self.seen += 1
        return dataclasses.replace(self.reply, delay=self.delay) if self.seen == 1 else self.reply


async def test_a_timed_out_attempt_that_is_retried_logs_no_traceback(client, db_url, caplog):
    caplog.set_level(logging.DEBUG, logger="temporalio.activity")
    model = ScriptedModel(SlowOnce(Reply.text(ANSWER), delay=3.0))
    settings = triage_release("any").spec.model.model_copy(update={"timeout_seconds": 1.0})
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, model=settings)
        result = await run.result()
        await replay(run.handle)

    assert result.output == ANSWER and len(model.requests) == 2
    (attempt,) = failed_attempts(caplog)
    assert attempt.temporal_activity["attempt"] == 1
    assert attempt.levelno == logging.DEBUG  # below the console's WARNING: no traceback printed
    error = attempt.exc_info[1]
    assert isinstance(error, ApplicationError) and error.type == "ModelTimeout"
    assert error.category is ApplicationErrorCategory.BENIGN and not error.non_retryable
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]


async def test_the_attempt_that_ends_the_retries_still_logs_its_traceback(client, db_url, caplog):
    caplog.set_level(logging.DEBUG, logger="temporalio.activity")
    model = ScriptedModel(Turns([Reply.error(503, "overloaded", retry_after=0.05, times=8), Reply.text(ANSWER)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        with fails_with(ModelUnavailable) as failed:
            await run.result()
        await replay(run.handle)

    assert failed.value.type == MODEL_UNAVAILABLE and len(model.requests) == 8  # MODEL_RETRY's maximum_attempts
    attempts = failed_attempts(caplog)
    assert [r.temporal_activity["attempt"] for r in attempts] == list(range(1, 9))
    assert [r.levelname for r in attempts] == ["DEBUG"] * 7 + ["WARNING"]
    last = attempts[-1].exc_info[1]
    assert isinstance(last, ApplicationError) and last.type == "ModelHTTP503"
    assert last.category is ApplicationErrorCategory.UNSPECIFIED


@pytest.mark.parametrize(
    ("attempt", "policy", "expected"),
    [
        (1, RetryPolicy(maximum_attempts=8), True),
        (7, RetryPolicy(maximum_attempts=8), True),
        (8, RetryPolicy(maximum_attempts=8), False),  # the last: its failure is the run's, logged in full
        (50, RetryPolicy(maximum_attempts=0), True),  # unlimited
        (1, None, False),  # the server sent no policy: nobody knows, so nothing is hidden
    ],
)
def test_will_retry_reads_the_attempt_against_its_retry_policy(attempt, policy, expected):
    info = dataclasses.replace(ActivityEnvironment.default_info(), attempt=attempt, retry_policy=policy)
    assert will_retry(info) is expected
