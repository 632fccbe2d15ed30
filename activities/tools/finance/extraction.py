"""An invoice as a model read it, checked against the OCR text it was read from.

Workflow-safe: a pure function of its arguments. The model proposes the fields
(`ExtractInvoiceArgs`); this module decides what is passed on as certain:

- a value the OCR text does not contain is flagged (`not_in_text`), never trusted:
  a model that fills a field the scan does not show has guessed it;
- a value read from a line with OCR confidence below `LOW_CONFIDENCE` is flagged;
- `net + tax != total` flags `total` (reported, never corrected);
- an IBAN whose ISO 13616 check digits fail, or that the text does not show, is
  dropped (`iban` null) and flagged: money is never sent to a guessed account;
- without a supplier, an invoice number, a valid issue date, a currency or a
  total, the document is unreadable and gives no invoice to match;
- the supplier's name gets back the spaces OCR drops from large type.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from activities.tools.finance.declarations import CURRENCY_PATTERN, ExtractedInvoice, ExtractInvoiceArgs, Invoice, OcrResult

LOW_CONFIDENCE = 0.8
FIELDS = ("supplier", "invoice_number", "issue_date", "due_date", "currency", "net", "tax", "total", "iban", "po_number")


def company_name(text: str) -> str:
    """A name as printed: OCR drops the spaces of large type (`KesslerLogistikAG`), so a capital
    after a small letter starts a word again, except inside the legal form `GmbH`."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text.strip())
    return re.sub(r"\bGmb H\b", "GmbH", spaced)


def iban_valid(iban: str) -> bool:
    """ISO 13616 check digits: the rearranged IBAN, letters as numbers, is 1 modulo 97."""
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{8,30}", iban):
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def _compact(text: str) -> str:
    """Letters and digits only, upper case: OCR drops and adds spaces, dots and dashes."""
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def _forms(field: str, value: object) -> list[str]:
    """The compacted ways a value may be printed."""
    if isinstance(value, Decimal):
        return [_compact(f"{value:.2f}")]
    text = str(value)
    if field in ("issue_date", "due_date") and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        y, m, d = text.split("-")
        return [_compact(text), _compact(f"{d}.{m}.{y}"), _compact(f"{d}/{m}/{y}")]
    if field == "invoice_number":  # printed in capitals: a lower-case l on the scan is an I misread
        return [_compact(text), _compact(text.replace("I", "L"))]
    return [_compact(text)]


def _line_of(field: str, value: object, lines: list[tuple[str, float]]) -> float | None:
    """The confidence of the first OCR line that shows the value, or None if none does."""
    forms = [f for f in _forms(field, value) if f]
    for text, confidence in lines:
        compact = _compact(text.replace(",", "").replace("'", ""))
        if any(f in compact for f in forms):
            return confidence
    return None


def _iso_date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def check(args: ExtractInvoiceArgs, ocr: OcrResult) -> ExtractedInvoice:
    """The model's reading of one document, checked against that document's OCR lines."""
    lines = [(line.text, line.confidence) for line in ocr.lines]
    values = {f: getattr(args, f) for f in FIELDS}
    values = {f: (v.strip() if isinstance(v, str) else v) for f, v in values.items()}
    values = {f: v for f, v in values.items() if v not in (None, "")}
    if "iban" in values:
        values["iban"] = re.sub(r"\s", "", str(values["iban"])).upper()
    if "currency" in values:
        values["currency"] = str(values["currency"]).upper()
    low: set[str] = set()
    absent: list[str] = []
    for field, value in values.items():
        confidence = _line_of(field, value, lines)
        if confidence is None:
            absent.append(field)
        elif confidence < LOW_CONFIDENCE:
            low.add(field)
    low.update(absent)
    issue, due = _iso_date(values.get("issue_date")), _iso_date(values.get("due_date"))
    missing = [f for f in ("supplier", "invoice_number", "total") if f not in values]
    if issue is None:
        missing.append("issue_date")
    currency = values.get("currency", "")
    if not re.fullmatch(CURRENCY_PATTERN, currency):
        missing.append("currency")
    if missing:
        return ExtractedInvoice(document=args.document, invoice=None, unreadable=f"no {', '.join(missing)} could be read", not_in_text=absent)
    net, tax, total = values.get("net"), values.get("tax"), values["total"]
    if net is not None and tax is not None and net + tax != total:
        low.add("total")
    iban = values.get("iban")
    if iban is not None and ("iban" in absent or not iban_valid(iban)):
        iban = None  # a misread or misprinted IBAN is not passed on as one
        low.add("iban")
    if "due_date" in values and due is None:
        low.add("due_date")
    invoice = Invoice(
        supplier=company_name(values["supplier"]), invoice_number=values["invoice_number"], issue_date=issue, due_date=due,
        currency=currency, net=net, tax=tax, total=total, iban=iban, po_number=values.get("po_number"),
        low_confidence_fields=sorted(low),
    )  # fmt: skip
    return ExtractedInvoice(document=args.document, invoice=invoice, not_in_text=absent)
