"""Generate the finance-reconciliation agent's documents, evaluation cases, samples and seed.

Run from the repository root: `python agents/finance-reconciliation/eval/generate.py`.
Writes, in the agent folder:

    documents/inv-*.png|jpg|pdf   invoice scans (rotated, speckled, blurred, low-contrast) and one PDF
    documents/stmt-*.csv|xml      one bank statement per case (CSV, some camt.053)
    eval/cases.yaml               the cases, with the ground truth of every invoice and pair
    samples/*.json                the demo's inputs
    seed/finance.json             every document, for the finance family's seed (the document store)

Inputs name documents by reference (`doc:sha256:<hex>` of the file), as a business system would
after storing them; the seed stores them under those references. Deterministic: a re-run writes
the same bytes. Each case's expected pairs are written from its design (how the statement pays
each invoice) and checked against the family's matcher on the true invoices, so a case that
contradicts the matcher's documented rules is caught here, not in the evaluation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import yaml
from PIL import Image

AGENT = Path(__file__).resolve().parents[1]
ROOT = AGENT.parents[1]
sys.path.insert(0, str(ROOT))

from activities.tools.finance.declarations import Invoice, Transaction  # noqa: E402
from activities.tools.finance.extraction import iban_valid  # noqa: E402
from activities.tools.finance.matching import match  # noqa: E402

_spec = importlib.util.spec_from_file_location("finance_render", ROOT / "activities/tools/finance/samples/render.py")
render_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_mod)

DOCS = AGENT / "documents"
SCALE = 0.7  # smaller files; OCR still reads 16 px text

SUPPLIERS = {
    "nordlicht": ("Nordlicht Buerobedarf GmbH", "Hafenstrasse 12, 20457 Hamburg, Germany", "DE89 3704 0044 0532 0130 00", "NORDLICHT BUEROBEDARF", "Nordlict Burobedarf"),
    "kessler": ("Kessler Logistik AG", "Industrieweg 7, 4052 Basel, Switzerland", "CH93 0076 2011 6238 5295 7", "KESSLER LOGISTIK AG", "Kesler Logistik"),
    "ferrari": ("Ferrari Imballaggi S.r.l.", "Via Emilia 221, 40133 Bologna, Italy", "IT60 X054 2811 1010 0000 0123 456", "FERRARI IMBALLAGGI SRL", "Ferari Imballagi SRL"),
    "vandijk": ("Van Dijk Verpakkingen B.V.", "Waalhaven 88, 3089 Rotterdam, Netherlands", "NL91 ABNA 0417 1643 00", "VAN DIJK VERPAKKINGEN BV", "V. Dyk Verpakking"),
    "lumen": ("Lumen Facility Services SAS", "12 Rue de la Part-Dieu, 69003 Lyon, France", "FR14 2004 1010 0505 0001 3M02 606", "LUMEN FACILITY SERVICES", "Lumen Facilty Serv."),
    "svensson": ("Svensson Industriverktyg AB", "Lindholmspiren 5, 41756 Goteborg, Sweden", "SE45 5000 0000 0583 9825 7466", "SVENSSON INDUSTRIVERKTYG AB", "Svenson Industriverktyg"),
    "hofmann": ("Hofmann Elektrotechnik GmbH", "Pragstrasse 140, 70376 Stuttgart, Germany", "DE44 5001 0517 5407 3249 31", "HOFMANN ELEKTROTECHNIK GMBH", "Hoffmann Elektrotech"),
    "brightline": ("Brightline Software Ltd", "14 Clerkenwell Road, London EC1M 5PA, United Kingdom", "GB29 NWBK 6016 1331 9268 19", "BRIGHTLINE SOFTWARE LTD", "Brightline Softw."),
}

LOOKS = {
    "clean": {"rotate": 0.3, "ink": 20, "paper": 250, "speckles": 300, "blur": 0.0},
    "rotated": {"rotate": 1.8, "ink": 25, "paper": 248, "speckles": 500, "blur": 0.0},
    "rotated-left": {"rotate": -2.2, "ink": 30, "paper": 245, "speckles": 500, "blur": 0.3},
    "noisy": {"rotate": 0.6, "ink": 30, "paper": 240, "speckles": 2500, "blur": 0.0},
    "low-contrast": {"rotate": 0.5, "ink": 140, "paper": 212, "speckles": 600, "blur": 0.0},
    "blurred": {"rotate": -0.8, "ink": 35, "paper": 245, "speckles": 400, "blur": 0.9},
}

# file stem, supplier, invoice number, issue date, PO, items (desc, qty, unit), VAT rate %, look, format, quirk
INVOICES = [
    ("inv-nordlicht-0412", "nordlicht", "NL-2024-0412", "2024-04-02", "PO-88310", [("Printer paper A4 80g", 60, "4.50"), ("Toner cartridge TN-243", 4, "62.00")], "19", "clean", "png", None),
    ("inv-kessler-56120", "kessler", "KL-56120", "2024-04-03", "PO-88322", [("Pallet transport Basel-Lyon", 2, "410.00")], "8.1", "rotated", "jpg", None),
    ("inv-ferrari-0419", "ferrari", "FI/2024/0419", "2024-04-04", "PO-88327", [("Corrugated boxes 40x30x20", 800, "0.84")], "22", "low-contrast", "png", None),
    ("inv-vandijk-118", "vandijk", "VDV-2024-118", "2024-04-05", "PO-88331", [("Stretch film roll", 40, "9.50"), ("Pallet wrap machine service", 1, "180.00")], "21", "noisy", "jpg", None),
    ("inv-lumen-482", "lumen", "LFS-000482", "2024-04-08", "PO-88340", [("Office cleaning April", 1, "1450.00")], "20", "blurred", "jpg", None),
    ("inv-svensson-77", "svensson", "SIV-24-0077", "2024-04-09", "PO-88344", [("Torque wrench set", 3, "212.00"), ("Calibration", 3, "35.00")], "25", "rotated-left", "png", None),
    ("inv-hofmann-3310", "hofmann", "HE-24-3310", "2024-04-10", "PO-88350", [("Cable tray 3 m", 25, "18.40"), ("Installation hours", 6, "68.00")], "19", "clean", "jpg", None),
    ("inv-brightline-9107", "brightline", "BL-9107", "2024-04-11", "PO-88355", [("Licence renewal, 40 seats", 40, "36.00")], "0", None, "pdf", None),
    ("inv-nordlicht-0455", "nordlicht", "NL-2024-0455", "2024-04-15", "PO-88362", [("Binders A4", 120, "2.35")], "19", "noisy", "jpg", None),
    ("inv-kessler-56177", "kessler", "KL-56177", "2024-04-16", "PO-88367", [("Express courier Basel-Milan", 1, "640.00"), ("Insurance surcharge", 1, "45.00")], "8.1", "low-contrast", "png", None),
    ("inv-ferrari-0433", "ferrari", "FI/2024/0433", "2024-04-17", "PO-88371", [("Foam inserts", 300, "1.15")], "22", "rotated", "png", None),
    ("inv-hofmann-3342", "hofmann", "HE-24-3342", "2024-04-18", "PO-88374", [("Switch cabinet", 1, "2380.00")], "19", "clean", "png", "bad-iban"),
    ("inv-lumen-497", "lumen", "LFS-000497", "2024-04-19", "PO-88380", [("Window cleaning", 1, "390.00")], "20", "rotated-left", "jpg", "total-typo"),
    ("inv-svensson-81", "svensson", "SIV-24-0081", "2024-04-22", "PO-88386", [("Drill bits HSS set", 10, "48.90")], "25", "blurred", "png", None),
]

# case id, [(invoice stem, how the statement pays it)], statement format, note
#   exact       amount equal, invoice number in the remittance, name and IBAN equal
#   ref-only    paid less a bank charge of 15.00, invoice number in the remittance
#   amount-name amount equal, the supplier's name misspelled, no reference, no IBAN (a fuzzy match)
#   ambiguous   two payments of the amount to the supplier, no reference (a person chooses)
#   missing     not paid on this statement
CASES = [
    ("nordlicht-exact", [("inv-nordlicht-0412", "exact")], "csv"),
    ("kessler-exact-rotated", [("inv-kessler-56120", "exact")], "csv"),
    ("ferrari-exact-low-contrast", [("inv-ferrari-0419", "exact")], "camt053"),
    ("vandijk-exact-noisy", [("inv-vandijk-118", "exact")], "csv"),
    ("lumen-exact-blurred", [("inv-lumen-482", "exact")], "csv"),
    ("svensson-exact-rotated", [("inv-svensson-77", "exact")], "camt053"),
    ("hofmann-exact", [("inv-hofmann-3310", "exact")], "csv"),
    ("brightline-pdf-exact", [("inv-brightline-9107", "exact")], "csv"),
    ("nordlicht-ref-only-charges", [("inv-nordlicht-0455", "ref-only")], "csv"),
    ("kessler-ref-only-low-contrast", [("inv-kessler-56177", "ref-only")], "csv"),
    ("ferrari-fuzzy-name", [("inv-ferrari-0433", "amount-name")], "csv"),
    ("hofmann-bad-iban-exact", [("inv-hofmann-3342", "exact")], "csv"),
    ("lumen-total-typo-exact", [("inv-lumen-497", "exact")], "csv"),
    ("svensson-fuzzy-blurred", [("inv-svensson-81", "amount-name")], "csv"),
    ("vandijk-missing", [("inv-vandijk-118", "missing")], "csv"),
    ("kessler-ambiguous", [("inv-kessler-56120", "ambiguous")], "csv"),
    ("lumen-ambiguous", [("inv-lumen-482", "ambiguous")], "camt053"),
    ("brightline-missing", [("inv-brightline-9107", "missing")], "csv"),
    ("two-exact", [("inv-nordlicht-0412", "exact"), ("inv-hofmann-3310", "exact")], "csv"),
    ("exact-and-ref-only", [("inv-kessler-56120", "exact"), ("inv-nordlicht-0455", "ref-only")], "csv"),
    ("exact-and-missing", [("inv-ferrari-0419", "exact"), ("inv-svensson-81", "missing")], "csv"),
    ("exact-and-fuzzy", [("inv-vandijk-118", "exact"), ("inv-ferrari-0433", "amount-name")], "camt053"),
    ("fuzzy-and-ambiguous", [("inv-svensson-81", "amount-name"), ("inv-kessler-56177", "ambiguous")], "csv"),
    ("three-mixed", [("inv-nordlicht-0412", "exact"), ("inv-kessler-56177", "ref-only"), ("inv-ferrari-0433", "amount-name")], "csv"),
    ("three-with-missing", [("inv-lumen-482", "exact"), ("inv-hofmann-3310", "missing"), ("inv-brightline-9107", "exact")], "csv"),
    ("three-with-ambiguous", [("inv-svensson-77", "exact"), ("inv-vandijk-118", "ambiguous"), ("inv-nordlicht-0455", "ref-only")], "camt053"),
    ("bad-iban-and-typo", [("inv-hofmann-3342", "exact"), ("inv-lumen-497", "ref-only")], "csv"),
    ("none-paid", [("inv-kessler-56120", "missing"), ("inv-ferrari-0419", "missing")], "csv"),
    ("two-ambiguous", [("inv-nordlicht-0412", "ambiguous"), ("inv-svensson-77", "ambiguous")], "csv"),
    ("pdf-and-scans", [("inv-brightline-9107", "ref-only"), ("inv-vandijk-118", "exact"), ("inv-hofmann-3342", "amount-name")], "csv"),
    ("four-invoices", [("inv-nordlicht-0455", "exact"), ("inv-kessler-56120", "ref-only"), ("inv-lumen-482", "missing"), ("inv-svensson-81", "exact")], "csv"),
    ("typo-fuzzy", [("inv-lumen-497", "amount-name")], "csv"),
]
SAMPLES = {"april-batch": "three-mixed", "unpaid-and-unclear": "fuzzy-and-ambiguous"}

NOISE = [  # unrelated lines on every statement: a customer's payment in, a phone bill, a salary run
    ("credit", "12500.00", "Helvetia Retail SA", "CH5604835012345678009", "Order 7781"),
    ("debit", "89.90", "Swisscom AG", "", "Mobile subscription 04/2024"),
    ("debit", "48210.35", "Acme Payroll", "", "Salaries April 2024"),
]
CHARGE = Decimal("15.00")


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


def compact(iban: str) -> str:
    return iban.replace(" ", "").upper()




def invoice_data(row: tuple) -> dict:
    stem, key, number, issued, po, items, rate, look, fmt, quirk = row
    name, address, iban, _, _ = SUPPLIERS[key]
    assert iban_valid(iban), iban
    lines = [(d, q, u, money(Decimal(u) * q)) for d, q, u in items]
    net = sum(Decimal(a) for *_, a in lines)
    tax = (net * Decimal(rate) / 100).quantize(Decimal("0.01"))
    total = net + tax
    printed_iban = iban
    if quirk == "bad-iban":  # a misprinted check digit: the extractor must not pass it on as the IBAN
        printed_iban = iban[:-1] + str((int(iban[-1]) + 1) % 10)
        assert not iban_valid(printed_iban)
    if quirk == "total-typo":  # the printed total is not net + VAT: flagged, matched on what is printed
        total += Decimal("10.00")
    due = (date.fromisoformat(issued) + timedelta(days=30)).isoformat()
    return {
        "stem": stem, "file": f"{stem}.{fmt}", "supplier": name, "address": address, "invoice_number": number,
        "issue_date": issued, "due_date": due, "po_number": po, "currency": "EUR", "items": lines,
        "net": money(net), "tax_rate": f"{rate}%", "tax": money(tax), "total": money(total), "iban": printed_iban,
        "true_iban": iban, "look": LOOKS.get(look or "clean"), "fmt": fmt, "quirk": quirk, "key": key,
    }  # fmt: skip


def write_invoice(inv: dict, seed: int) -> bytes:
    if inv["fmt"] == "pdf":
        data = render_mod.text_pdf(render_mod.lines_of(inv))
    else:
        image = render_mod.render(inv, seed)
        image = image.resize((int(image.width * SCALE), int(image.height * SCALE)), Image.LANCZOS)
        out = io.BytesIO()
        if inv["fmt"] == "jpg":
            image.save(out, "JPEG", quality=60)
        else:
            image.save(out, "PNG", optimize=True)
        data = out.getvalue()
    (DOCS / inv["file"]).write_bytes(data)
    return data


def truth(inv: dict) -> dict:
    """The invoice as a careful extractor reports it: a misprinted IBAN is not passed on, a total
    that is not net + VAT is flagged."""
    low = ["iban"] if inv["quirk"] == "bad-iban" else ["total"] if inv["quirk"] == "total-typo" else []
    return {
        "supplier": inv["supplier"], "invoice_number": inv["invoice_number"], "issue_date": inv["issue_date"],
        "due_date": inv["due_date"], "currency": inv["currency"], "total": float(inv["total"]),
        "iban": None if inv["quirk"] == "bad-iban" else compact(inv["iban"]), "low_confidence_fields": low,
    }  # fmt: skip


def transactions(case_id: str, plan: list[tuple[dict, str]]) -> list[dict]:
    txs: list[dict] = []
    base = sum(ord(c) for c in case_id) % 90

    def add(inv: dict, amount: Decimal, name: str, iban: str, remittance: str, days: int) -> None:
        booked = date.fromisoformat(inv["issue_date"]) + timedelta(days=days)
        txs.append({"transaction_id": f"BK{booked:%y%m%d}{base + len(txs):03d}", "booking_date": booked.isoformat(),
                    "amount": money(amount), "currency": "EUR", "direction": "debit", "counterparty": name,
                    "counterparty_iban": iban, "remittance": remittance})  # fmt: skip

    for inv, how in plan:
        _, _, _, upper, misspelt = SUPPLIERS[inv["key"]]
        total = Decimal(inv["total"])
        if how == "exact":
            add(inv, total, upper, compact(inv["true_iban"]), f"Invoice {inv['invoice_number']} {inv['po_number']}", 12)
        elif how == "ref-only":
            add(inv, total - CHARGE, upper.split()[0].title(), compact(inv["true_iban"]), f"{inv['invoice_number']} less charges", 14)
        elif how == "amount-name":
            add(inv, total, misspelt, "", "Payment April", 18)
        elif how == "ambiguous":
            add(inv, total, misspelt, "", "Payment April", 9)
            add(inv, total, misspelt, "", "Payment April", 11)
    for i, (direction, amount, name, iban, remittance) in enumerate(NOISE):
        txs.append({"transaction_id": f"BK2404{base + 40 + i:03d}N", "booking_date": f"2024-04-2{i + 5}", "amount": amount,
                    "currency": "EUR", "direction": direction, "counterparty": name, "counterparty_iban": iban, "remittance": remittance})  # fmt: skip
    return txs


def statement_file(case_id: str, txs: list[dict], fmt: str) -> tuple[str, bytes]:
    if fmt == "csv":
        rows = ["transaction_id,booking_date,amount,currency,direction,counterparty,counterparty_iban,remittance"]
        for t in txs:
            signed = t["amount"] if t["direction"] == "credit" else f"-{t['amount']}"
            rows.append(f'{t["transaction_id"]},{t["booking_date"]},{signed},{t["currency"]},{t["direction"]},"{t["counterparty"]}",{t["counterparty_iban"]},"{t["remittance"]}"')
        return f"stmt-{case_id}.csv", ("\n".join(rows) + "\n").encode()
    render_mod.TRANSACTIONS = [
        (t["transaction_id"], t["booking_date"], t["amount"], "DBIT" if t["direction"] == "debit" else "CRDT", t["counterparty"], t["counterparty_iban"], t["remittance"])
        for t in txs
    ]  # fmt: skip
    return f"stmt-{case_id}.camt053.xml", render_mod.camt053().encode()


def ref(data: bytes) -> str:
    return f"doc:sha256:{hashlib.sha256(data).hexdigest()}"


def expected(case_id: str, plan: list[tuple[dict, str]], txs: list[dict]) -> dict:
    by_how: dict[str, list[dict]] = {}
    for inv, how in plan:
        by_how.setdefault(how, []).append(inv)
    tx_of = {}
    for inv, how in plan:
        if how in ("exact", "ref-only", "amount-name"):
            tx_of[inv["invoice_number"]] = next(t["transaction_id"] for t in txs if inv["invoice_number"] in t["remittance"]
                                                or (how == "amount-name" and t["amount"] == inv["total"] and t["counterparty_iban"] == "" and t["direction"] == "debit"))  # fmt: skip
    # The family's matcher on the true invoices must agree with the design.
    result = match([Invoice.model_validate({**truth(inv), "po_number": inv["po_number"]}) for inv, _ in plan],
                   [Transaction.model_validate(t) for t in txs])  # fmt: skip
    got = {m.invoice_number: m.transaction_id for m in result.matches}
    assert got == tx_of, (case_id, got, tx_of)
    assert sorted(a.invoice_number for a in result.ambiguous) == sorted(i["invoice_number"] for i in by_how.get("ambiguous", [])), case_id
    assert sorted(result.unmatched_invoices) == sorted(i["invoice_number"] for i in by_how.get("missing", [])), case_id
    exceptions = [{"invoice_number": inv["invoice_number"], "kind": "ambiguous"} for inv in by_how.get("ambiguous", [])]
    exceptions += [{"invoice_number": inv["invoice_number"], "kind": "unmatched_invoice"} for inv in by_how.get("missing", [])]
    exceptions += [{"invoice_number": inv["invoice_number"], "kind": "low_confidence"} for inv, _ in plan if inv["quirk"]]
    invoice_total = sum(Decimal(inv["total"]) for inv, _ in plan)
    matched_total = sum(Decimal(inv["total"]) for inv, _ in plan if inv["invoice_number"] in tx_of)
    near = lambda v: {"near": float(v), "tolerance": 0.005}  # noqa: E731
    return {
        "invoices": {"set_of": [truth(inv) for inv, _ in plan], "keys": ["invoice_number"],
                     "compare": ["supplier", "issue_date", "due_date", "currency", "total", "iban"], "metric": "extraction"},
        "matched": {"set_of": [{"invoice_number": n, "transaction_reference": t} for n, t in tx_of.items()],
                    "keys": ["invoice_number", "transaction_reference"], "metric": "match"},
        "exceptions": {"set_of": exceptions, "keys": ["invoice_number", "kind"], "metric": "exception"},
        "invoice_total": near(invoice_total), "matched_total": near(matched_total),
        "unmatched_total": near(invoice_total - matched_total),
        "batch_id": {"present": bool(tx_of), "weight": 0, "metric": "posted_as_expected"},
    }  # fmt: skip


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    for old in DOCS.iterdir():
        old.unlink()
    invoices = {row[0]: invoice_data(row) for row in INVOICES}
    seed: list[dict] = []
    refs: dict[str, str] = {}
    for n, inv in enumerate(invoices.values(), start=1):
        refs[inv["stem"]] = ref(write_invoice(inv, seed=100 + n))
        seed.append({"document": refs[inv["stem"]], "file": f"file:documents/{inv['file']}"})
    cases = []
    inputs = {}
    for case_id, plan_rows, fmt in CASES:
        plan = [(invoices[stem], how) for stem, how in plan_rows]
        txs = transactions(case_id, plan)
        name, data = statement_file(case_id, txs, fmt)
        (DOCS / name).write_bytes(data)
        statement = ref(data)
        seed.append({"document": statement, "file": f"file:documents/{name}"})
        case_input = {"invoices": [refs[inv["stem"]] for inv, _ in plan], "statement": statement}
        inputs[case_id] = case_input
        out = expected(case_id, plan, txs)
        # The agent's procedure: each invoice read and extracted in turn, the matcher run over the
        # statement, the posting made (an empty one when nothing matched), the report that is the answer.
        tools = [{"name": t, "args": {"document": r}} for r in case_input["invoices"] for t in ("ocr_document", "extract_invoice")]
        tools += [{"name": "match_transactions", "args": {"statement": statement}}]
        tools.append({"name": "post_reconciliation", "args": {"statement": statement}})
        tools.append({"name": "report_reconciliation", "args": {"statement": statement}})
        note = "; ".join(f"{inv['file']} ({inv['look'] and next(k for k, v in LOOKS.items() if v is inv['look'])}, {inv['quirk'] or 'as printed'}): {how}" for inv, how in plan)
        cases.append((f"{note}; statement {name}", {"id": case_id, "input": case_input, "expect": {"output": out, "tools": tools}}))
    header = (
        "# Generated by eval/generate.py: edit the script, not this file.\n"
        "# Each case: invoice scans (and one PDF) by reference, a statement by reference, the true invoices,\n"
        "# the true pairs, the exceptions, the totals, and the tool calls a correct run makes. The seed\n"
        "# (seed/finance.json) stores the documents under these references.\n"
    )
    floors = {"min_accuracy": 0.5, "min_tool_accuracy": 0.9, "max_regression": 0.05}
    text = header + yaml.safe_dump(floors, sort_keys=False) + "cases:\n"
    for note, case in cases:
        text += f"# {note}\n" + yaml.safe_dump([case], sort_keys=False, width=160, default_flow_style=None)
    (AGENT / "eval" / "cases.yaml").write_text(text)
    (AGENT / "seed" / "finance.json").write_text(json.dumps(seed, indent=1) + "\n")
    for sample, case_id in SAMPLES.items():
        (AGENT / "samples" / f"{sample}.json").write_text(json.dumps(inputs[case_id], indent=2) + "\n")


if __name__ == "__main__":
    main()
