"""post_reconciliation writes the ledger once per batch, on SQLite and on PostgreSQL: a retried, a
repeated or a concurrent call returns the batch the first call posted."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.db import engine_for
from activities.tools.finance.activities import FinanceActivities, ReconciliationBatch, ReconciliationEntry
from activities.tools.finance.declarations import Match, PostReconciliationArgs
from tests.support.finance import ctx

STATEMENT = "doc:sha256:" + "5" * 64
MATCHES = [
    Match(invoice_number="NL-2024-0117", transaction_id="BK24031801", score=1.0, reasons=["amount 656.88 EUR equal"], amount="656.88", currency="EUR"),
    Match(invoice_number="KL-55890", transaction_id="BK24032502", score=0.55, reasons=["reference 'KL-55890' in remittance"], amount="1378.28", currency="EUR"),
]
FIGURES = {"total": "2035.16", "lowest_score": 0.55}
ARGS = PostReconciliationArgs(matches=MATCHES, statement=STATEMENT, **FIGURES)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request, db_url):
    return db_url if request.param == "sqlite" else request.getfixturevalue("pg_url")


def entries(db: str) -> list[ReconciliationEntry]:
    with Session(engine_for(db)) as s:
        return list(s.exec(select(ReconciliationEntry).order_by(ReconciliationEntry.id)).all())


async def test_a_batch_is_posted_once_per_key(any_db):
    tools = FinanceActivities(any_db)
    env = ActivityEnvironment()
    first = await env.run(tools.post_reconciliation, ctx("k-1"), ARGS)
    retried = await env.run(tools.post_reconciliation, ctx("k-1"), ARGS)
    assert first.created and not retried.created
    assert first.model_copy(update={"created": False}) == retried
    assert [(e.invoice_number, e.transaction_id) for e in first.entries] == [("NL-2024-0117", "BK24031801"), ("KL-55890", "BK24032502")]
    rows = entries(any_db)
    assert len(rows) == 2 and {r.call_key for r in rows} == {"k-1"} and rows[0].reasons == "amount 656.88 EUR equal"


async def test_the_same_pairs_proposed_again_in_another_call_post_nothing_new(any_db):
    # The key comes from the arguments: the model proposing the same posting on a later step
    # (a new call key) still posts once; the order it lists the pairs in does not matter.
    tools = FinanceActivities(any_db)
    env = ActivityEnvironment()
    first = await env.run(tools.post_reconciliation, ctx("k-1"), ARGS)
    again = await env.run(tools.post_reconciliation, ctx("k-2"), PostReconciliationArgs(matches=MATCHES[::-1], statement=STATEMENT, **FIGURES))
    other_tenant = await env.run(tools.post_reconciliation, ctx("k-3", tenant="globex"), ARGS)
    assert not again.created and again.batch_id == first.batch_id
    assert other_tenant.created and other_tenant.batch_id != first.batch_id
    assert len(entries(any_db)) == 4


async def test_concurrent_duplicates_post_one_batch(any_db):
    tools = FinanceActivities(any_db)
    env = ActivityEnvironment()
    results = await asyncio.gather(*(env.run(tools.post_reconciliation, ctx("same"), ARGS) for _ in range(6)))
    assert len({r.batch_id for r in results}) == 1 and sum(r.created for r in results) == 1
    assert len(entries(any_db)) == 2
    with Session(engine_for(any_db)) as s:
        assert len(s.exec(select(ReconciliationBatch)).all()) == 1


async def test_a_post_without_an_idempotency_key_is_refused(any_db):
    with pytest.raises(ApplicationError, match="idempotency key") as caught:
        await ActivityEnvironment().run(FinanceActivities(any_db).post_reconciliation, ctx(None), ARGS)
    assert caught.value.non_retryable and entries(any_db) == []


async def test_a_transaction_listed_twice_in_one_batch_is_refused_and_nothing_is_written(any_db):
    twice = PostReconciliationArgs(matches=[MATCHES[0], MATCHES[1].model_copy(update={"transaction_id": "BK24031801"})], statement=STATEMENT, **FIGURES)
    with pytest.raises(ApplicationError, match="each transaction may be posted once per batch; BK24031801") as caught:
        await ActivityEnvironment().run(FinanceActivities(any_db).post_reconciliation, ctx("k-1"), twice)
    assert caught.value.non_retryable and entries(any_db) == []


@pytest.mark.parametrize(
    ("figures", "says"),
    [({"total": "2035.00", "lowest_score": 0.55}, "total: 2035.00 is not the sum"), ({"total": "2035.16", "lowest_score": 0.9}, "lowest_score: 0.9 is not")],
)
async def test_a_total_or_lowest_score_that_is_not_the_batchs_own_is_refused(any_db, figures, says):
    # The policy gate decides on these two figures, so the ledger takes only the batch they describe.
    with pytest.raises(ApplicationError, match=says) as caught:
        await ActivityEnvironment().run(FinanceActivities(any_db).post_reconciliation, ctx("k-1"), PostReconciliationArgs(matches=MATCHES, statement=STATEMENT, **figures))
    assert caught.value.non_retryable and entries(any_db) == []
