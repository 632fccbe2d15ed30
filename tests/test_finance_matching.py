"""Matching invoices to bank transactions: deterministic, scored, each match with its reasons;
ambiguous and unmatched items listed, never guessed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from temporalio.testing import ActivityEnvironment

from activities.tools.families import installed_families
from activities.tools.finance.activities import FinanceActivities
from activities.tools.finance.declarations import Direction, ExtractedInvoice, Invoice, MatchTransactionsArgs, Transaction
from activities.tools.finance.matching import match, name_similarity
from activities.tools.finance.statements import parse_statement
from contracts.catalog import CATALOG
from contracts.tools import DataClass, SideEffect
from tests.support.finance import SAMPLES, ctx, sample_invoices, store_with
from tests.support.harness import REPO
from tests.test_determinism import problems_in

STATEMENT = parse_statement((SAMPLES / "statement.camt053.xml").read_bytes(), "doc:sha256:" + "0" * 64).transactions


def invoice(number: str = "INV-1", total: str = "100.00", supplier: str = "Acme Tools GmbH", **kw) -> Invoice:
    return Invoice(supplier=supplier, invoice_number=number, issue_date=date(2024, 3, 1), currency="EUR", total=Decimal(total), **kw)


def tx(tid: str, amount: str = "100.00", counterparty: str = "Acme Tools GmbH", remittance: str = "", **kw) -> Transaction:
    fields = dict(booking_date=date(2024, 3, 10), currency="EUR", direction=Direction.DEBIT) | kw
    return Transaction(transaction_id=tid, amount=Decimal(amount), counterparty=counterparty, remittance=remittance, **fields)


def test_the_sample_statement_pays_three_of_the_four_sample_invoices():
    invoices = list(sample_invoices().values())
    result = match(invoices, STATEMENT)
    pairs = {m.invoice_number: m for m in result.matches}
    assert {k: m.transaction_id for k, m in pairs.items()} == {
        "NL-2024-0117": "BK24031801",  # exact: amount, number, name, IBAN
        "KL-55890": "BK24032502",  # reference only: paid less a bank charge
        "FI/2024/0342": "BK24032703",  # amount and a misspelt supplier name, no reference
    }
    assert pairs["NL-2024-0117"].score == 1.0
    assert result.unmatched_invoices == ["BL-9002"] and result.ambiguous == []
    assert result.unmatched_transactions == ["BK24032804", "BK24032905"]


def test_each_match_says_why():
    pairs = {m.invoice_number: m for m in match(list(sample_invoices().values()), STATEMENT).matches}
    exact, by_reference, fuzzy = pairs["NL-2024-0117"], pairs["KL-55890"], pairs["FI/2024/0342"]
    assert exact.reasons[:2] == ["amount 656.88 EUR equal", "reference 'NL-2024-0117' in remittance"] and "IBAN equal" in exact.reasons
    assert not any(r.startswith("amount") for r in by_reference.reasons)
    assert "reference 'KL-55890' in remittance" in by_reference.reasons  # 'KL 55890' in the bank's text
    assert any(r.startswith("supplier 'Ferrari Imballaggi S.r.l.' ~ 'Ferari Imballagi SRL'") for r in fuzzy.reasons)
    assert 0.5 <= fuzzy.score < exact.score and 0.5 <= by_reference.score < exact.score


def test_two_equally_good_payments_are_ambiguous_not_guessed():
    result = match([invoice()], [tx("T1"), tx("T2", booking_date=date(2024, 3, 12))])
    assert result.matches == [] and result.unmatched_invoices == []
    [amb] = result.ambiguous
    assert amb.invoice_number == "INV-1" and [c.transaction_id for c in amb.candidates] == ["T1", "T2"]
    assert result.unmatched_transactions == ["T1", "T2"]


def test_a_clearly_better_payment_wins_over_a_weaker_one():
    result = match([invoice()], [tx("T1", counterparty="Someone Else"), tx("T2", remittance="INV-1")])
    assert [(m.transaction_id) for m in result.matches] == ["T2"] and result.ambiguous == []


def test_nothing_matches_on_the_wrong_currency_direction_or_amount_alone():
    invoices = [invoice()]
    wrong = [
        tx("chf", currency="CHF"),
        tx("credit", direction=Direction.CREDIT),
        tx("other-amount", amount="99.99"),  # name alone is not enough
        tx("far", remittance="", counterparty="Unrelated", booking_date=date(2025, 1, 1)),  # amount and nothing else
    ]
    result = match(invoices, wrong)
    assert result.matches == [] and result.ambiguous == [] and result.unmatched_invoices == ["INV-1"]
    assert result.unmatched_transactions == ["chf", "credit", "other-amount", "far"]


def test_a_transaction_pays_one_invoice_only():
    two = [invoice("INV-1"), invoice("INV-2")]
    result = match(two, [tx("T1", remittance="INV-2")])
    assert [(m.invoice_number, m.transaction_id) for m in result.matches] == [("INV-2", "T1")]
    assert result.unmatched_invoices == ["INV-1"]


def test_the_result_does_not_depend_on_input_order():
    invoices = list(sample_invoices().values())
    forward = match(invoices, STATEMENT)
    backward = match(invoices[::-1], STATEMENT[::-1])
    assert sorted(m.model_dump_json() for m in forward.matches) == sorted(m.model_dump_json() for m in backward.matches)


def test_names_compare_without_case_punctuation_or_legal_form():
    assert name_similarity("Kessler Logistik AG", "KESSLER LOGISTIK") == 1.0
    assert name_similarity("Acme Tools GmbH", "Globex Corporation") < 0.6


async def test_the_tool_matches_the_runs_extractions_against_the_statement_by_reference(tmp_path):
    store, refs = store_with(tmp_path, "statement.camt053.xml")
    tools = FinanceActivities(f"sqlite:///{tmp_path}/f.db", store=store)
    invoices = list(sample_invoices().values())
    for n, inv in enumerate(invoices):  # as extract_invoice keeps them for the run
        tools._keep(ctx(), ExtractedInvoice(document="doc:sha256:" + f"{n:064x}", invoice=inv))
    tools._keep(ctx(tenant="other"), ExtractedInvoice(document="doc:sha256:" + "f" * 64, invoice=invoice("X-9", "1.00")))
    args = MatchTransactionsArgs(statement=refs["statement.camt053.xml"])
    result = await ActivityEnvironment().run(tools.match_transactions, ctx(), args)
    assert result == match(invoices, STATEMENT) and result.matches  # another tenant's extraction is not this run's


def test_the_matcher_is_workflow_safe():
    assert problems_in(REPO / "activities/tools/finance/matching.py") == []


def test_the_family_is_installed_with_namespaced_tools_and_declared_effects():
    family = {f.name: f for f in installed_families()}["finance"]
    assert {t.name: t.activity_name for t in family.tools} == {
        "ocr_document": "tool.finance.ocr_document",
        "extract_invoice": "tool.finance.extract_invoice",
        "read_statement": "tool.finance.read_statement",
        "match_transactions": "tool.finance.match_transactions",
        "post_reconciliation": "tool.finance.post_reconciliation",
        "report_reconciliation": "tool.finance.report_reconciliation",
    }
    effects = {name: CATALOG[name].meta.side_effect for name in ("ocr_document", "extract_invoice", "read_statement", "match_transactions", "report_reconciliation")}
    assert set(effects.values()) == {SideEffect.READ}
    post = CATALOG["post_reconciliation"].meta
    assert post.side_effect is SideEffect.WRITE and post.needs_idempotency_key and DataClass.FINANCIAL in post.data_classes
    names = [a.__temporal_activity_definition.name for a in family.activities("sqlite://")]
    assert names == [t.activity_name for t in family.tools]
