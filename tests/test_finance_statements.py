"""Bank statements, CSV and camt.053 (.001.02 and later), into typed transactions; a malformed
line is named, and XML that declares a DTD or entities is refused rather than expanded."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.tools.finance.activities import FinanceActivities
from activities.tools.finance.declarations import Direction, ReadStatementArgs, StatementFormat
from activities.tools.finance.documents import DocumentStore
from activities.tools.finance.statements import StatementError, parse_amount, parse_statement
from tests.support.finance import SAMPLES, ctx

REF = "doc:sha256:" + "0" * 64
CAMT = (SAMPLES / "statement.camt053.xml").read_bytes()
CSV = (SAMPLES / "statement.csv").read_bytes()


def camt_v08() -> bytes:
    # From .001.08 on, a party's name sits in Pty: <Cdtr><Pty><Nm>...</Nm></Pty></Cdtr>.
    text = CAMT.decode().replace("camt.053.001.02", "camt.053.001.08")
    for side in ("Cdtr", "Dbtr"):
        text = text.replace(f"<{side}><Nm>", f"<{side}><Pty><Nm>").replace(f"</Nm></{side}>", f"</Nm></Pty></{side}>")
    return text.encode()


@pytest.mark.parametrize("data", [CAMT, camt_v08(), CSV], ids=["camt053.001.02", "camt053.001.08", "csv"])
def test_every_format_gives_the_same_transactions(data):
    statement = parse_statement(data, REF)
    txs = {t.transaction_id: t for t in statement.transactions}
    assert list(txs) == ["BK24031801", "BK24032502", "BK24032703", "BK24032804", "BK24032905"]
    first = txs["BK24031801"]
    assert first.booking_date == date(2024, 3, 18) and first.amount == Decimal("656.88") and first.currency == "EUR"
    assert first.direction is Direction.DEBIT and first.counterparty == "NORDLICHT BUEROBEDARF GMBH"
    assert first.counterparty_iban == "DE89370400440532013000" and "NL-2024-0117" in first.remittance
    credit = txs["BK24032804"]
    assert credit.direction is Direction.CREDIT and credit.counterparty == "Helvetia Retail SA"  # the debtor, for a credit
    assert txs["BK24032905"].currency == "CHF"


def test_the_camt_statement_names_its_account():
    statement = parse_statement(CAMT, REF)
    assert statement.format is StatementFormat.CAMT053 and statement.account_iban == "CH4431999123000889012"


def test_a_batch_entry_gives_one_transaction_per_detail():
    two = CAMT.decode().replace(
        "</TxDtls>\n        </NtryDtls>",
        "</TxDtls>\n          <TxDtls><AmtDtls><TxAmt><Amt Ccy=\"EUR\">1.00</Amt></TxAmt></AmtDtls>"
        "<RmtInf><Ustrd>second</Ustrd></RmtInf></TxDtls>\n        </NtryDtls>",
        1,
    )
    txs = parse_statement(two.encode(), REF).transactions
    assert [t.transaction_id for t in txs[:2]] == ["BK24031801/1", "BK24031801/2"]
    assert txs[1].amount == Decimal("1.00") and txs[1].remittance == "second"


def test_a_semicolon_csv_with_decimal_commas_and_signed_amounts():
    text = "Booking_Date;Amount;Currency;Counterparty;Remittance\n18.03.2024;-1.234,50;eur;Muster AG;RE 4711\n19.03.2024;20,00;EUR;X;\n"
    txs = parse_statement(text.encode(), REF).transactions
    assert [(t.transaction_id, t.amount, t.direction, t.currency) for t in txs] == [
        ("line-2", Decimal("1234.50"), Direction.DEBIT, "EUR"),
        ("line-3", Decimal("20.00"), Direction.CREDIT, "EUR"),
    ]


@pytest.mark.parametrize(
    "text, expected",
    [("1234.50", "1234.50"), ("-1,234.50", "-1234.50"), ("1.234,50", "1234.50"), ("1'234.50", "1234.50"), ("12,5", "12.5")],
)
def test_amounts_in_the_usual_spellings(text, expected):
    assert parse_amount(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("booking_date,amount,currency\n2024-03-01,10.00,EUR\n2024-03-02,ten,EUR\n", "line 3: amount 'ten' is not a number"),
        ("booking_date,amount,currency\n2024-03-01,10.00,EUR\n2024-13-45,1.00,EUR\n", "line 3: booking_date '2024-13-45' is not a date"),
        ("booking_date,amount,currency\n\n2024-03-01,10.00\n", "line 3: 2 fields, the header has 3"),
        ("booking_date,amount,currency\n2024-03-01,10.00,EURO\n", "line 2: currency 'EURO'"),
        ("date,amount\n2024-03-01,10.00\n", "line 1: the header lacks column(s) booking_date, currency"),
    ],
)
def test_a_malformed_csv_line_is_named(text, problem):
    with pytest.raises(StatementError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_statement(text.encode(), REF)


def test_a_malformed_camt_entry_is_named():
    bad = CAMT.decode().replace("<CdtDbtInd>DBIT</CdtDbtInd>", "<CdtDbtInd>XX</CdtDbtInd>", 1)
    with pytest.raises(StatementError, match=r"statement 1, entry 1 \(Ntry #1, AcctSvcrRef BK24031801\): CdtDbtInd 'XX'"):
        parse_statement(bad.encode(), REF)


def test_xml_that_is_not_well_formed_names_its_line():
    with pytest.raises(StatementError, match=r"line 4, column 4: not well-formed XML"):
        parse_statement(CAMT.replace(b"<BkToCstmrStmt>", b"<BkToCstmrStmt", 1), REF)


def test_a_dtd_is_refused_not_expanded():
    laughs = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><Document>&b;</Document>'
    with pytest.raises(StatementError, match="refused: the XML declares a DTD or entities"):
        parse_statement(laughs, REF)


def test_another_iso_message_is_not_taken_for_a_statement():
    pain = CAMT.replace(b"camt.053.001.02", b"camt.054.001.02")
    with pytest.raises(StatementError, match="is not a camt.053.001.02"):
        parse_statement(pain, REF)


async def test_the_tool_reports_a_malformed_statement_as_a_typed_non_retryable_error(tmp_path):
    store = DocumentStore(tmp_path)
    ref = store.put(b"booking_date,amount,currency\n2024-03-01,10.00,EUR\n2024-03-02,??,EUR\n", "bank.csv")
    tools = FinanceActivities("sqlite://", store=store)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(tools.read_statement, ctx(), ReadStatementArgs(document=ref))
    assert caught.value.type == "StatementMalformed" and caught.value.non_retryable
    assert caught.value.message == f"statement {ref}: line 3: amount '??' is not a number"


async def test_the_tool_reads_a_stored_statement(tmp_path):
    store = DocumentStore(tmp_path)
    ref = store.put(CAMT, "march.xml")
    statement = await ActivityEnvironment().run(FinanceActivities("sqlite://", store=store).read_statement, ctx(), ReadStatementArgs(document=ref))
    assert statement.document == ref and len(statement.transactions) == 5
