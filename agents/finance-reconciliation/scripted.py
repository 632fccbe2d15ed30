"""finance-reconciliation's scripted rules: the offline stand-in for a language model.

Found by convention (`agents/<name>/scripted.py`, see `aifactory.scripted_agents`). `respond` reads
the conversation (the run input, the calls made so far and their results) and proposes the next
call or the final answer, so `--model scripted` runs the real tools: OCR, the statement parser, the
matcher, the ledger and the report. Its reading of an invoice is an honest rule-based reader of the
OCR lines (regular expressions for the labelled fields), not a copy of the ground truth: what OCR
misreads, it gets wrong; `extract_invoice` checks it as it checks a model's.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from activities.model.scripted import Reply
from activities.tools.finance.extraction import company_name

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


def _amount(text: str) -> Decimal | None:
    try:
        return Decimal(re.sub(r"[,' ]", "", text))
    except InvalidOperation:
        return None






def read_fields(ocr: dict[str, Any]) -> dict[str, Any]:
    """The fields the rules find in an OCR result, as printed (amounts as text); the checks
    against the text (confidence, net + VAT = total, IBAN check digits) are `extract_invoice`'s."""
    lines = [str(line["text"]).strip() for line in ocr.get("lines", [])]
    found: dict[str, Any] = {}
    supplier = next((t for t in lines if re.search(r"[A-Za-z]{2}", t) and t.upper() != "INVOICE"), None)
    if supplier:
        found["supplier"] = company_name(supplier)
    for name, pattern in FIELDS.items():
        for text in lines:
            m = pattern.search(text)
            if not m or name in found:
                continue
            if name in ("net", "tax", "total"):
                value = _amount(m.group(2))
                if value is None:
                    continue
                found[name] = f"{value:.2f}"
                found.setdefault("currency", m.group(1).upper())
            elif name == "iban":
                found[name] = re.sub(r"\s", "", m.group(1)).upper()
            elif name == "invoice_number":
                found[name] = m.group(1).replace("l", "I").upper()  # printed in capitals: a lowercase l is an I misread
            else:
                found[name] = m.group(1)
    return found




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
    found = read_fields(ocr)
    fields = ("supplier", "invoice_number", "issue_date", "due_date", "currency", "net", "tax", "total", "iban", "po_number")
    return {"document": ref, **{f: found.get(f) for f in fields}}


def respond(body: dict[str, Any]) -> Reply:
    messages = body["messages"]
    request = json.loads(next(m["content"] for m in messages if m["role"] == "user"))
    calls = _conversation(messages)
    ocr = {args.get("document"): result for name, args, result in calls if name == "ocr_document"}
    read = {args.get("document") for name, args, _ in calls if name == "extract_invoice"}
    for ref in dict.fromkeys(request["invoices"]):  # each invoice read, then extracted, in turn
        if ref not in ocr:
            return Reply.tool("ocr_document", {"document": ref})
        if ref not in read:  # an unreadable scan too: the tool records why, for the report
            return Reply.tool("extract_invoice", reading(ref, ocr[ref] if ocr[ref] and "error" not in ocr[ref] else {}))
    done = {name: result for name, _, result in calls}
    statement = request["statement"]
    if "match_transactions" not in done:
        return Reply.tool("match_transactions", {"statement": statement})
    if "post_reconciliation" not in done:
        matching = done["match_transactions"] or {}
        matches = matching.get("matches", []) if "error" not in matching else []
        total = sum(Decimal(str(m["amount"])) for m in matches)
        return Reply.tool("post_reconciliation", {
            "matches": matches, "statement": statement, "total": f"{total:.2f}",
            "lowest_score": min((m["score"] for m in matches), default=1.0),
        })  # fmt: skip
    if "report_reconciliation" not in done:
        return Reply.tool("report_reconciliation", {"statement": statement})
    return Reply.text(done["report_reconciliation"])  # reached only where the report is not the answer
