"""Deterministic matching of invoices to bank transactions.

Workflow-safe: a pure function of its arguments (no I/O, clock or randomness);
the `match_transactions` activity calls it, and a workflow may too.

Each invoice is scored against each debit transaction in its currency:

    amount equal (to the cent)                 0.45
    invoice number or PO number in remittance  0.35   (compared without spaces, `-`, `/`, case)
    supplier name ~ counterparty (difflib)     up to 0.15, from a ratio of 0.6 upward
    supplier IBAN equals counterparty IBAN     0.15
    booking date inside the window             0.05

capped at 1.0. A pair needs the amount or the reference to count at all, and a
score of at least `MIN_SCORE`. An invoice whose best two candidates are within
`AMBIGUITY_MARGIN` is ambiguous (a person chooses); otherwise pairs are taken
best first, each invoice and each transaction at most once.
"""

from __future__ import annotations

import re
from datetime import timedelta
from difflib import SequenceMatcher

from activities.tools.finance.declarations import (
    AmbiguousInvoice,
    Candidate,
    Direction,
    Invoice,
    Match,
    MatchResult,
    Transaction,
)

MIN_SCORE = 0.5
AMBIGUITY_MARGIN = 0.1
NAME_FLOOR = 0.6
_LEGAL_FORMS = re.compile(r"\b(gmbh|ag|sa|sas|sarl|bv|nv|ltd|limited|llc|inc|plc|srl|spa|kg|co|oy|ab|as)\b\.?")


def _compact(text: str) -> str:
    return re.sub(r"[\s\-/_.]", "", text).upper()


def _name(text: str) -> str:
    text = _LEGAL_FORMS.sub(" ", text.lower().replace("&", " and "))
    return " ".join(re.sub(r"[^\w ]", " ", text).split())


def name_similarity(a: str, b: str) -> float:
    """How alike two company names are, 0..1, ignoring case, punctuation and legal forms."""
    a, b = _name(a), _name(b)
    if not a or not b:
        return 0.0
    return SequenceMatcher(None, a, b).ratio()


def score(invoice: Invoice, tx: Transaction, window_days: int) -> tuple[float, list[str]]:
    """The score of one pair and the reason for each signal that counted (0 and none if it cannot match)."""
    if tx.direction is not Direction.DEBIT or tx.currency != invoice.currency:
        return 0.0, []
    reasons: list[str] = []
    total = 0.0
    amount_equal = tx.amount == invoice.total
    if amount_equal:
        total += 0.45
        reasons.append(f"amount {invoice.total} {invoice.currency} equal")
    remittance = _compact(tx.remittance)
    reference = next(
        (r for r in (invoice.invoice_number, invoice.po_number) if r and len(_compact(r)) >= 3 and _compact(r) in remittance),
        None,
    )
    if reference:
        total += 0.35
        reasons.append(f"reference {reference!r} in remittance")
    if not amount_equal and not reference:
        return 0.0, []
    similarity = name_similarity(invoice.supplier, tx.counterparty)
    if similarity >= NAME_FLOOR:
        total += 0.15 * (similarity - NAME_FLOOR) / (1 - NAME_FLOOR)
        reasons.append(f"supplier {invoice.supplier!r} ~ {tx.counterparty!r} ({similarity:.2f})")
    if invoice.iban and tx.counterparty_iban and _compact(invoice.iban) == _compact(tx.counterparty_iban):
        total += 0.15
        reasons.append("IBAN equal")
    earliest = invoice.issue_date - timedelta(days=window_days)
    latest = (invoice.due_date or invoice.issue_date) + timedelta(days=window_days)
    if earliest <= tx.booking_date <= latest:
        total += 0.05
        reasons.append(f"booked {tx.booking_date} within {earliest}..{latest}")
    return round(min(total, 1.0), 4), reasons


def match(invoices: list[Invoice], transactions: list[Transaction], window_days: int = 45) -> MatchResult:
    """Pair invoices with transactions; every invoice and transaction ends up in exactly one list.

    Deterministic: ties are broken by input order, never by hash order.
    """
    candidates: dict[int, list[tuple[float, int, list[str]]]] = {}
    for i, inv in enumerate(invoices):
        scored = [(s, t, r) for t, tx in enumerate(transactions) for s, r in [score(inv, tx, window_days)] if s >= MIN_SCORE]
        candidates[i] = sorted(scored, key=lambda c: (-c[0], c[1]))

    ambiguous: list[AmbiguousInvoice] = []
    held: set[int] = set()
    for i, cands in candidates.items():
        if len(cands) >= 2 and cands[0][0] - cands[1][0] < AMBIGUITY_MARGIN:
            close = [c for c in cands if cands[0][0] - c[0] < AMBIGUITY_MARGIN]
            ambiguous.append(
                AmbiguousInvoice(
                    invoice_number=invoices[i].invoice_number,
                    candidates=[Candidate(transaction_id=transactions[t].transaction_id, score=s, reasons=r) for s, t, r in close],
                )
            )
            held.add(i)

    # Best pair first, so a strong match is never displaced by a weaker one that came earlier.
    pairs = sorted(((s, i, t, r) for i, cands in candidates.items() if i not in held for s, t, r in cands), key=lambda p: (-p[0], p[1], p[2]))
    taken_inv: set[int] = set()
    taken_tx: set[int] = set()
    matches: list[tuple[int, Match]] = []
    for s, i, t, r in pairs:
        if i in taken_inv or t in taken_tx:
            continue
        taken_inv.add(i)
        taken_tx.add(t)
        matches.append((i, Match(
            invoice_number=invoices[i].invoice_number, transaction_id=transactions[t].transaction_id, score=s, reasons=r,
            amount=invoices[i].total, currency=invoices[i].currency,
        )))  # fmt: skip
    return MatchResult(
        matches=[m for _, m in sorted(matches, key=lambda im: im[0])],
        ambiguous=ambiguous,
        unmatched_invoices=[inv.invoice_number for i, inv in enumerate(invoices) if i not in taken_inv and i not in held],
        unmatched_transactions=[tx.transaction_id for t, tx in enumerate(transactions) if t not in taken_tx],
    )
