"""Render the finance family's sample documents: invoice scans, a PDF, a bank statement.

Run from the repository root: `python activities/tools/finance/samples/render.py`.
Writes, next to this file:

    invoice-*.png / .jpg    scans of three invoices, with noise and a slight rotation; one low-contrast
    invoice-*.pdf           an invoice as a PDF with a text layer (read without OCR)
    truth/<name>.txt        each document's text as rendered (the OCR's ground truth)
    invoices.json           the invoices as the agent should extract them (for matching tests)
    statement.camt053.xml   the bank statement that pays them, ISO 20022 camt.053.001.02
    statement.csv           the same statement as CSV

Deterministic (seeded noise, fixed dates), so a re-run rewrites the same files.
Needs only Pillow, which RapidOCR installs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
FONT_PATHS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf")

INVOICES = [
    {
        "file": "invoice-nordlicht.png",
        "supplier": "Nordlicht Buerobedarf GmbH",
        "address": "Hafenstrasse 12, 20457 Hamburg, Germany",
        "invoice_number": "NL-2024-0117",
        "issue_date": "2024-03-04",
        "due_date": "2024-04-03",
        "po_number": "PO-88123",
        "currency": "EUR",
        "items": [("Printer paper A4 80g", 40, "4.50", "180.00"), ("Toner cartridge TN-243", 6, "62.00", "372.00")],
        "net": "552.00",
        "tax_rate": "19%",
        "tax": "104.88",
        "total": "656.88",
        "iban": "DE89 3704 0044 0532 0130 00",
        "look": {"rotate": 0.8, "ink": 20, "paper": 250, "speckles": 2500, "blur": 0.0},
    },
    {
        "file": "invoice-kessler.jpg",
        "supplier": "Kessler Logistik AG",
        "address": "Industrieweg 7, 4052 Basel, Switzerland",
        "invoice_number": "KL-55890",
        "issue_date": "2024-03-11",
        "due_date": "2024-03-31",
        "po_number": "PO-88140",
        "currency": "EUR",
        "items": [("Pallet transport Basel-Lyon", 3, "410.00", "1230.00"), ("Insurance surcharge", 1, "45.00", "45.00")],
        "net": "1275.00",
        "tax_rate": "8.1%",
        "tax": "103.28",
        "total": "1378.28",
        "iban": "CH93 0076 2011 6238 5295 7",
        "look": {"rotate": -1.2, "ink": 30, "paper": 245, "speckles": 1500, "blur": 0.6},
    },
    {
        "file": "invoice-ferrari-lowcontrast.png",
        "supplier": "Ferrari Imballaggi S.r.l.",
        "address": "Via Emilia 221, 40133 Bologna, Italy",
        "invoice_number": "FI/2024/0342",
        "issue_date": "2024-03-15",
        "due_date": "2024-04-14",
        "po_number": "PO-88157",
        "currency": "EUR",
        "items": [("Corrugated boxes 40x30x20", 500, "0.84", "420.00"), ("Stretch film roll", 12, "9.50", "114.00")],
        "net": "534.00",
        "tax_rate": "22%",
        "tax": "117.48",
        "total": "651.48",
        "iban": "IT60 X054 2811 1010 0000 0123 456",
        "look": {"rotate": 0.5, "ink": 150, "paper": 215, "speckles": 1200, "blur": 0.0},
    },
]

PDF_INVOICE = {
    "file": "invoice-brightline.pdf",
    "supplier": "Brightline Software Ltd",
    "address": "14 Clerkenwell Road, London EC1M 5PA, United Kingdom",
    "invoice_number": "BL-9002",
    "issue_date": "2024-03-20",
    "due_date": "2024-04-19",
    "po_number": "PO-88160",
    "currency": "EUR",
    "items": [("Licence renewal, 25 seats", 25, "36.00", "900.00")],
    "net": "900.00",
    "tax_rate": "0%",
    "tax": "0.00",
    "total": "900.00",
    "iban": "GB29 NWBK 6016 1331 9268 19",
}


def lines_of(inv: dict) -> list[str]:
    """The invoice's text, line by line, as it is printed (the OCR's ground truth)."""
    out = [
        inv["supplier"],
        inv["address"],
        "INVOICE",
        f"Invoice no: {inv['invoice_number']}",
        f"Invoice date: {inv['issue_date']}",
        f"Due date: {inv['due_date']}",
        f"PO number: {inv['po_number']}",
        "Bill to: Acme Components AG, Bahnhofstrasse 1, 8001 Zurich",
        "Description",
        "Qty",
        "Unit price",
        "Amount",
    ]
    for desc, qty, unit, amount in inv["items"]:
        out += [desc, str(qty), unit, amount]
    out += [
        f"Net amount {inv['currency']} {inv['net']}",
        f"VAT {inv['tax_rate']} {inv['currency']} {inv['tax']}",
        f"Total {inv['currency']} {inv['total']}",
        f"IBAN {inv['iban']}",
        f"Please quote invoice number {inv['invoice_number']} with your payment.",
    ]
    return out


def font(size: int) -> ImageFont.FreeTypeFont:
    for path in FONT_PATHS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def render(inv: dict, seed: int) -> Image.Image:
    look = inv["look"]
    page = Image.new("L", (1000, 1300), look["paper"])
    d = ImageDraw.Draw(page)
    big, body = font(34), font(22)
    ink = look["ink"]
    y = 60
    d.text((70, y), inv["supplier"], fill=ink, font=big)
    d.text((70, y + 50), inv["address"], fill=ink, font=body)
    d.text((70, 200), "INVOICE", fill=ink, font=big)
    y = 270
    for label in ("Invoice no", "Invoice date", "Due date", "PO number"):
        key = {"Invoice no": "invoice_number", "Invoice date": "issue_date", "Due date": "due_date", "PO number": "po_number"}[label]
        d.text((70, y), f"{label}: {inv[key]}", fill=ink, font=body)
        y += 38
    d.text((70, y + 20), "Bill to: Acme Components AG, Bahnhofstrasse 1, 8001 Zurich", fill=ink, font=body)
    y += 110
    cols = (70, 520, 640, 820)
    for x, head in zip(cols, ("Description", "Qty", "Unit price", "Amount")):
        d.text((x, y), head, fill=ink, font=body)
    d.line((70, y + 34, 930, y + 34), fill=ink, width=2)
    y += 50
    for row in inv["items"]:
        for x, cell in zip(cols, row):
            d.text((x, y), str(cell), fill=ink, font=body)
        y += 40
    y += 40
    for text in (
        f"Net amount {inv['currency']} {inv['net']}",
        f"VAT {inv['tax_rate']} {inv['currency']} {inv['tax']}",
        f"Total {inv['currency']} {inv['total']}",
    ):
        d.text((520, y), text, fill=ink, font=body)
        y += 40
    y += 60
    d.text((70, y), f"IBAN {inv['iban']}", fill=ink, font=body)
    d.text((70, y + 45), f"Please quote invoice number {inv['invoice_number']} with your payment.", fill=ink, font=body)

    rng = random.Random(seed)
    for _ in range(look["speckles"]):  # dust and toner specks
        x, y0 = rng.randrange(1000), rng.randrange(1300)
        d.point((x, y0), fill=rng.choice((ink, min(255, look["paper"] + 5), 90)))
    if look["blur"]:
        page = page.filter(ImageFilter.GaussianBlur(look["blur"]))
    return page.rotate(look["rotate"], resample=Image.BICUBIC, expand=True, fillcolor=look["paper"])


def text_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with `lines` in its text layer (Helvetica), written by hand: no PDF library needed."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 11 Tf 14 TL 56 790 Td " + " ".join(f"({esc(line)}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def extracted(inv: dict) -> dict:
    """The `Invoice` the agent should extract from the document."""
    keys = ("supplier", "invoice_number", "issue_date", "due_date", "currency", "net", "tax", "total", "iban", "po_number")
    return {k: inv[k] for k in keys}


# The statement: invoice 1 paid exactly with its number, invoice 2 paid less a bank charge with
# its number (reference-only), invoice 3 paid exactly under a differently written name and no
# reference (fuzzy supplier); the PDF invoice is not paid; one unrelated credit and debit.
TRANSACTIONS = [
    # id, date, amount, direction, counterparty, iban, remittance
    ("BK24031801", "2024-03-18", "656.88", "DBIT", "NORDLICHT BUEROBEDARF GMBH", "DE89370400440532013000", "Invoice NL-2024-0117 PO-88123"),
    ("BK24032502", "2024-03-25", "1363.28", "DBIT", "Kessler Logistik", "CH9300762011623852957", "KL 55890 less charges"),
    ("BK24032703", "2024-03-27", "651.48", "DBIT", "Ferari Imballagi SRL", "", "Payment March"),
    ("BK24032804", "2024-03-28", "12500.00", "CRDT", "Helvetia Retail SA", "CH5604835012345678009", "Order 7781"),
    ("BK24032905", "2024-03-29", "89.90", "DBIT", "Swisscom AG", "", "Mobile subscription 03/2024"),
]
ACCOUNT = "CH4431999123000889012"


def camt053() -> str:
    entries = []
    for ref, day, amount, ind, name, iban, remit in TRANSACTIONS:
        side, acct = ("Cdtr", "CdtrAcct") if ind == "DBIT" else ("Dbtr", "DbtrAcct")
        acct_xml = f"<{acct}><Id><IBAN>{iban}</IBAN></Id></{acct}>" if iban else ""
        entries.append(
            f"""      <Ntry>
        <Amt Ccy="{'CHF' if ref == 'BK24032905' else 'EUR'}">{amount}</Amt>
        <CdtDbtInd>{ind}</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>{day}</Dt></BookgDt>
        <ValDt><Dt>{day}</Dt></ValDt>
        <AcctSvcrRef>{ref}</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls>
          <TxDtls>
            <Refs><EndToEndId>E2E-{ref}</EndToEndId></Refs>
            <RltdPties><{side}><Nm>{name}</Nm></{side}>{acct_xml}</RltdPties>
            <RmtInf><Ustrd>{remit}</Ustrd></RmtInf>
          </TxDtls>
        </NtryDtls>
      </Ntry>"""
        )
    body = "\n".join(entries)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>STMT-2024-03</MsgId><CreDtTm>2024-03-31T18:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-2024-03-1</Id>
      <CreDtTm>2024-03-31T18:00:00</CreDtTm>
      <Acct><Id><IBAN>{ACCOUNT}</IBAN></Id><Ccy>EUR</Ccy></Acct>
{body}
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""


def statement_csv() -> str:
    rows = ["transaction_id,booking_date,amount,currency,direction,counterparty,counterparty_iban,remittance"]
    for ref, day, amount, ind, name, iban, remit in TRANSACTIONS:
        currency = "CHF" if ref == "BK24032905" else "EUR"
        signed = amount if ind == "CRDT" else f"-{amount}"
        rows.append(f'{ref},{day},{signed},{currency},{"credit" if ind == "CRDT" else "debit"},"{name}",{iban},"{remit}"')
    return "\n".join(rows) + "\n"


def main() -> None:
    (HERE / "truth").mkdir(exist_ok=True)
    for seed, inv in enumerate(INVOICES, start=1):
        image = render(inv, seed)
        target = HERE / inv["file"]
        if target.suffix == ".jpg":
            image.save(target, quality=70)
        else:
            image.save(target, optimize=True)
        (HERE / "truth" / f"{target.stem}.txt").write_text("\n".join(lines_of(inv)) + "\n")
    pdf_lines = lines_of(PDF_INVOICE)
    (HERE / PDF_INVOICE["file"]).write_bytes(text_pdf(pdf_lines))
    (HERE / "truth" / f"{Path(PDF_INVOICE['file']).stem}.txt").write_text("\n".join(pdf_lines) + "\n")
    expected = {inv["file"]: extracted(inv) for inv in [*INVOICES, PDF_INVOICE]}
    (HERE / "invoices.json").write_text(json.dumps(expected, indent=2) + "\n")
    (HERE / "statement.camt053.xml").write_text(camt053())
    (HERE / "statement.csv").write_text(statement_csv())


if __name__ == "__main__":
    main()
