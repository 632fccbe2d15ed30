"""finance-reconciliation's scripted rules: the offline stand-in for a language model.

Found by convention (`agents/<name>/scripted.py`, see `aifactory.scripted_agents`). `respond` reads
the conversation (the run input, the calls made so far and their results) and proposes the next
call or the final answer, so `--model scripted` runs the real tools: OCR, the statement parser, the
matcher and the ledger. The invoice extraction is an honest rule-based reader of the OCR lines
(regular expressions for the labelled fields, a cross-check of net + VAT = total, the IBAN's
check digits), not a copy of the ground truth: what OCR misreads, it gets wrong.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from activities.model.scripted import Reply
from activities.tools.finance.extraction import company_name, iban_valid

LOW_CONFIDENCE = 0.8
_AMOUNT = r"([0-9][0-9,' ]*\.[0-9]{2})"
FIELDS = {
    "invoice_number": re.compile(r"invoice\s*(?:number|nr|no)\.?\s*:?\s*([A-Z0-9][A-Z0-9/\-]{2,})", re.I),
    "issue_date": re.compile(r"invoice\s*date\s*:?\s*([0-9]{4}-[0-9]{2}-[0-9]{2})", re.I),
    "due_date": re.compile(r"due\s*date\s*:?\s*([0-9]{4}-[0-9]{2}-[0-9]{2})", re.I),
    "po_number": re.compile(r"PO\s*number\s*:?\s*(PO-?[0-9]+)", re.I),
    # OCR turns spaces into dots or middle dots now and then: `Total·EUR.819.84`
    "net": re.compile(r"net\W*amount\W*([A-Z]{3})\W*" + _AMOUNT, re.I),
    "tax": re.compile(r"(?:VAT|tax).*?([A-Z]{3})\W*" + _AMOUNT + r"\W*$", re.I),
    "total": re.compile(r"^\W*total\W*(?:due\W*)?([A-Z]{3})\W*" + _AMOUNT, re.I),
    "iban": re.compile(r"IBAN\s*:?\s*([A-Z]{2}[0-9]{2}[A-Z0-9 ]{8,34})", re.I),
}
REQUIRED = ("invoice_number", "issue_date", "total")


def _amount(text: str) -> Decimal | None:
    try:
        return Decimal(re.sub(r"[,' ]", "", text))
    except InvalidOperation:
        return None






def extract(ocr: dict[str, Any], checked: bool = True) -> tuple[dict[str, Any] | None, list[str], str]:
    """The invoice in an OCR result: (the fields, the low-confidence ones, why not when unreadable).
    `checked=False`: the fields as read, before the cross-checks (which `extract_invoice` makes)."""
    lines = [(str(line["text"]).strip(), float(line.get("confidence", 1.0))) for line in ocr.get("lines", [])]
    found: dict[str, Any] = {}
    low: list[str] = []
    supplier = next(((t, c) for t, c in lines if re.search(r"[A-Za-z]{2}", t) and t.upper() != "INVOICE"), None)
    if supplier:
        found["supplier"] = company_name(supplier[0])
        if supplier[1] < LOW_CONFIDENCE:
            low.append("supplier")
    for name, pattern in FIELDS.items():
        for text, confidence in lines:
            m = pattern.search(text)
            if not m or name in found:
                continue
            if name in ("net", "tax", "total"):
                value = _amount(m.group(2))
                if value is None:
                    continue
                found[name] = value
                found.setdefault("currency", m.group(1).upper())
            elif name == "iban":
                found[name] = re.sub(r"\s", "", m.group(1)).upper()
            elif name == "invoice_number":
                found[name] = m.group(1).replace("l", "I").upper()  # printed in capitals: a lowercase l is an I misread
            else:
                found[name] = m.group(1)
            if confidence < LOW_CONFIDENCE:
                low.append(name)
    if not checked:
        return {k: _text(v) if isinstance(v, Decimal) else v for k, v in found.items()}, low, ""
    missing = [f for f in REQUIRED if f not in found]
    if missing or "supplier" not in found:
        return None, low, f"no {', '.join(missing or ['supplier'])} could be read"
    if "net" in found and "tax" in found and found["net"] + found["tax"] != found["total"]:
        low.append("total")  # printed, but not net + VAT: reported, never corrected
    if "iban" in found and not iban_valid(found["iban"]):
        found["iban"] = None  # a misread or misprinted IBAN is not passed on as one
        low.append("iban")
    found.setdefault("currency", "EUR")
    invoice = {
        "supplier": found["supplier"], "invoice_number": found["invoice_number"], "issue_date": found["issue_date"],
        "due_date": found.get("due_date"), "currency": found["currency"], "net": _text(found.get("net")),
        "tax": _text(found.get("tax")), "total": _text(found["total"]), "iban": found.get("iban"),
        "po_number": found.get("po_number"), "low_confidence_fields": sorted(set(low)),
    }  # fmt: skip
    return invoice, sorted(set(low)), ""


def _text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _conversation(messages: list[dict]) -> list[tuple[str, dict, Any]]:
    """(tool, arguments, result) for every call made so far, in order."""
    results = {m.get("tool_call_id"): m.get("content") for m in messages if m.get("role") == "tool"}
    calls = []
    for m in messages:
        for c in m.get("tool_calls") or [] if m.get("role") == "assistant" else []:
            raw = results.get(c["id"])
            calls.append((c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"), json.loads(raw) if raw else None))
    return calls


def reading(ref: str, ocr: dict[str, Any]) -> dict[str, Any]:
    """The `extract_invoice` arguments the rules read in one document's OCR result (fields as
    printed, null where a rule finds none): the tool then checks them against the text."""
    invoice, _, _ = extract(ocr, checked=False)
    fields = ("supplier", "invoice_number", "issue_date", "due_date", "currency", "net", "tax", "total", "iban", "po_number")
    return {"document": ref, **{f: (invoice or {}).get(f) for f in fields}}


def respond(body: dict[str, Any]) -> Reply:
    messages = body["messages"]
    request = json.loads(next(m["content"] for m in messages if m["role"] == "user"))
    calls = _conversation(messages)
    ocr = {args.get("document"): result for name, args, result in calls if name == "ocr_document"}
    read = {args.get("document"): result for name, args, result in calls if name == "extract_invoice"}
    for ref in dict.fromkeys(request["invoices"]):  # each invoice read, then extracted, in turn
        if ref not in ocr:
            return Reply.tool("ocr_document", {"document": ref})
        if ref not in read and ocr[ref] and "error" not in ocr[ref]:
            return Reply.tool("extract_invoice", reading(ref, ocr[ref]))
    statement = next((result for name, _, result in calls if name == "read_statement"), None)
    if statement is None:
        return Reply.tool("read_statement", {"document": request["statement"]})
    matching = next((result for name, _, result in calls if name == "match_transactions"), None)
    if matching is None:
        return Reply.tool("match_transactions", {"statement": request["statement"]})
    matching = matching if "error" not in matching else {"matches": [], "ambiguous": [], "unmatched_invoices": [], "unmatched_transactions": []}
    matches = matching.get("matches", [])
    posting = next((result for name, _, result in calls if name == "post_reconciliation"), None)
    if posting is None:
        total = sum(Decimal(str(m["amount"])) for m in matches)
        return Reply.tool("post_reconciliation", {
            "matches": matches, "statement": request["statement"], "total": f"{total:.2f}",
            "lowest_score": min((m["score"] for m in matches), default=1.0),
        })  # fmt: skip
    invoices, exceptions = [], []
    for ref in request["invoices"]:
        result = read.get(ref) or ocr.get(ref) or {}
        if "error" in result or not result.get("invoice"):
            why = f"OCR failed: {result['error']}" if "error" in result else result.get("unreadable") or "not read"
            exceptions.append({"invoice_number": None, "document": ref, "kind": "unreadable", "reason": why})
            continue
        invoice = result["invoice"]
        invoices.append((ref, invoice))
        if invoice["low_confidence_fields"]:
            exceptions.append({"invoice_number": invoice["invoice_number"], "document": ref, "kind": "low_confidence",
                               "reason": f"not certain of: {', '.join(invoice['low_confidence_fields'])}"})  # fmt: skip
    return Reply.text(answer(invoices, exceptions, matching, posting))


def answer(invoices: list[tuple[str, dict]], exceptions: list[dict], matching: dict, posting: dict) -> dict:
    by_number = {inv["invoice_number"]: inv for _, inv in invoices}
    matched = [
        {"invoice_number": m["invoice_number"], "transaction_reference": m["transaction_id"], "amount": float(m["amount"]),
         "currency": m.get("currency") or by_number[m["invoice_number"]]["currency"], "score": m["score"], "reason": "; ".join(m["reasons"])}
        for m in matching.get("matches", [])
    ]  # fmt: skip
    for a in matching.get("ambiguous", []):
        refs = ", ".join(f"{c['transaction_id']} ({c['score']})" for c in a["candidates"])
        exceptions.append({"invoice_number": a["invoice_number"], "kind": "ambiguous", "reason": f"payments that fit about equally: {refs}"})
    for number in matching.get("unmatched_invoices", []):
        exceptions.append({"invoice_number": number, "kind": "unmatched_invoice", "reason": "no payment on this statement fits it"})
    posted = "error" not in posting and posting.get("batch_id") is not None
    if matched and not posted:
        why = posting.get("reason") or posting.get("error") or "not posted"
        exceptions.append({"invoice_number": None, "kind": "not_posted", "reason": f"the matched pairs were not posted: {why}"[:300]})
    invoice_total = sum(Decimal(str(inv["total"])) for _, inv in invoices)
    matched_total = sum(Decimal(str(inv["total"])) for _, inv in invoices if inv["invoice_number"] in {m["invoice_number"] for m in matched})
    currencies = sorted({inv["currency"] for _, inv in invoices}) or ["EUR"]
    keep = ("supplier", "invoice_number", "issue_date", "due_date", "currency", "iban", "po_number", "low_confidence_fields")
    return {
        "currency": currencies[0],
        "invoices": [{"document": ref, **{k: inv.get(k) for k in keep}, "total": float(inv["total"])} for ref, inv in invoices],
        "matched": matched,
        "exceptions": exceptions,
        "unmatched_transactions": matching.get("unmatched_transactions", []),
        "invoice_total": float(invoice_total), "matched_total": float(matched_total),
        "unmatched_total": float(invoice_total - matched_total),
        "batch_id": posting.get("batch_id") if posted else None,
    }  # fmt: skip
