"""`extract_invoice`'s check of a model's reading against the OCR text it was read from: what the
text does not show is flagged and never passed on as certain, cross-checks flag rather than correct,
and a document without the fields a match needs is unreadable. Pure: no server, no OCR engine."""

from __future__ import annotations

from decimal import Decimal

from activities.tools.finance.declarations import ExtractInvoiceArgs, OcrLine, OcrResult
from activities.tools.finance.extraction import check

REF = "doc:sha256:" + "a" * 64
LINES = [
    ("NordlichtBuerobedarfGmbH", 0.97),
    ("Invoice number: NL-2024-0412", 0.99),
    ("Invoice date: 2024-04-02", 0.98),
    ("Due date: 2024-05-02", 0.62),
    ("Net amount EUR 518.00", 0.99),
    ("VAT 19% EUR 98.42", 0.99),
    ("Total·EUR.616.42", 0.95),
    ("IBAN: DE89 3704 0044 0532 0130 00", 0.96),
]


def ocr(lines=LINES) -> OcrResult:
    return OcrResult(document=REF, source="ocr", pages=1, lines=[OcrLine(text=t, confidence=c) for t, c in lines], mean_confidence=0.9)


def reading(**fields) -> ExtractInvoiceArgs:
    base = dict(
        document=REF, supplier="Nordlicht Buerobedarf GmbH", invoice_number="NL-2024-0412", issue_date="2024-04-02",
        due_date="2024-05-02", currency="EUR", net="518.00", tax="98.42", total="616.42", iban="DE89 3704 0044 0532 0130 00", po_number=None,
    )  # fmt: skip
    return ExtractInvoiceArgs(**{**base, **fields})


def test_a_reading_the_text_shows_passes_with_only_the_faint_line_flagged():
    got = check(reading(), ocr())
    assert got.unreadable is None and got.not_in_text == []
    inv = got.invoice
    assert (inv.supplier, inv.invoice_number, str(inv.issue_date), inv.total, inv.iban) == (
        "Nordlicht Buerobedarf GmbH", "NL-2024-0412", "2024-04-02", Decimal("616.42"), "DE89370400440532013000",
    )  # fmt: skip
    assert inv.low_confidence_fields == ["due_date"]  # read from a line the recogniser scored 0.62


def test_a_value_the_text_does_not_show_is_flagged_and_a_guessed_iban_dropped():
    got = check(reading(po_number="PO-7781", iban="GB82WEST12345698765432"), ocr())
    assert got.not_in_text == ["iban", "po_number"]
    assert got.invoice.iban is None  # a valid IBAN, but not this invoice's: money never goes to a guess
    assert {"iban", "po_number"} <= set(got.invoice.low_confidence_fields)


def test_cross_checks_flag_and_never_correct():
    lines = [*LINES[:6], ("Total EUR 661.42", 0.95), ("IBAN: DE88 3704 0044 0532 0130 00", 0.96)]
    got = check(reading(total="661.42", iban="DE88370400440532013000"), ocr(lines))
    assert got.invoice.total == Decimal("661.42")  # as printed, though net + VAT is 616.42
    assert got.invoice.iban is None  # check digits fail
    assert {"total", "iban"} <= set(got.invoice.low_confidence_fields)


def test_without_number_date_total_or_currency_the_document_is_unreadable():
    got = check(reading(invoice_number=None, issue_date="02/04/2024", currency=None), ocr())
    assert got.invoice is None
    assert got.unreadable == "no invoice_number, issue_date, currency could be read"
