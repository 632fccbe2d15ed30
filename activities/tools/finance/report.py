"""The reconciliation report: a run's extractions, the matcher's pairs and the posting, as the
finance agent's answer (its output schema).

Workflow-safe: a pure function of its arguments. Bookkeeping, not judgement: every figure comes
from what the tools found, so the totals add up (`matched_total + unmatched_total = invoice_total`)
and every invoice that was not paired is an exception with its reason.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from activities.tools.finance.declarations import ExtractedInvoice, MatchResult, ReconciliationReport


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def compose(extracted: list[ExtractedInvoice], matching: MatchResult, batch_id: str | None) -> ReconciliationReport:
    """The report of one run: `extracted` in reading order, `matching` over its readable invoices,
    `batch_id` the posting of the pairs (None: nothing was posted)."""
    invoices = [(e.document, e.invoice) for e in extracted if e.invoice is not None]
    by_number = {inv.invoice_number: inv for _, inv in invoices}
    exceptions: list[dict[str, Any]] = []
    for e in extracted:
        if e.invoice is None:
            exceptions.append({"invoice_number": None, "document": e.document, "kind": "unreadable", "reason": e.unreadable or "not read"})
        elif e.invoice.low_confidence_fields:
            exceptions.append({"invoice_number": e.invoice.invoice_number, "document": e.document, "kind": "low_confidence",
                               "reason": f"not certain of: {', '.join(e.invoice.low_confidence_fields)}"})  # fmt: skip
    for a in matching.ambiguous:
        fits = ", ".join(f"{c.transaction_id} ({c.score})" for c in a.candidates)
        exceptions.append({"invoice_number": a.invoice_number, "kind": "ambiguous", "reason": f"payments that fit about equally: {fits}"})
    for number in matching.unmatched_invoices:
        exceptions.append({"invoice_number": number, "kind": "unmatched_invoice", "reason": "no payment on this statement fits it"})
    if matching.matches and batch_id is None:
        exceptions.append({"invoice_number": None, "kind": "not_posted", "reason": "the matched pairs were not posted (rejected, or the posting failed)"})
    matched = [
        {"invoice_number": m.invoice_number, "transaction_reference": m.transaction_id, "amount": _money(by_number[m.invoice_number].total),
         "currency": by_number[m.invoice_number].currency, "score": m.score, "reason": "; ".join(m.reasons)}
        for m in matching.matches
    ]  # fmt: skip
    paired = {m.invoice_number for m in matching.matches}
    invoice_total = sum((inv.total for _, inv in invoices), Decimal(0))
    matched_total = sum((inv.total for _, inv in invoices if inv.invoice_number in paired), Decimal(0))
    keep = ("supplier", "invoice_number", "due_date", "currency", "iban", "po_number", "low_confidence_fields")
    return ReconciliationReport(
        currency=(sorted({inv.currency for _, inv in invoices}) or ["EUR"])[0],
        invoices=[
            {"document": ref, **inv.model_dump(mode="json", include=set(keep)), "issue_date": inv.issue_date.isoformat(), "total": _money(inv.total)}
            for ref, inv in invoices
        ],
        matched=matched,
        exceptions=exceptions,
        unmatched_transactions=matching.unmatched_transactions,
        invoice_total=_money(invoice_total),
        matched_total=_money(matched_total),
        unmatched_total=_money(invoice_total - matched_total),
        batch_id=batch_id,
    )
