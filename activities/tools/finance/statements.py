"""Bank statements into typed transactions: CSV and ISO 20022 camt.053 (versions .001.02 and later).

Not workflow-safe (called by the `read_statement` activity on stored bytes).
XML goes through defusedxml with DTDs refused outright: a statement has no
business declaring entities, and one that does (billion laughs, external
entities) is refused rather than expanded.

CSV: a header row, then one transaction per line; `,` or `;` separated (sniffed
from the header). Columns, by header name, case-insensitive:

    booking_date (YYYY-MM-DD or DD.MM.YYYY)   required
    amount (signed unless `direction` is given; `1234.50`, `1.234,50`)   required
    currency (ISO 4217)   required
    direction (credit/debit or CRDT/DBIT), counterparty, counterparty_iban, remittance, transaction_id

A line that does not parse fails the whole statement (`StatementMalformed`, with
its line number): a reconciliation that silently skips a payment is worse than
one that stops.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from xml.etree.ElementTree import Element, ParseError

from temporalio.exceptions import ApplicationError

from activities.tools.finance.declarations import STATEMENT_MALFORMED, Direction, Statement, StatementFormat, Transaction

CAMT053 = re.compile(r"^\{urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.(\d{2})\}Document$")
REQUIRED_COLUMNS = ("booking_date", "amount", "currency")


class StatementError(ValueError):
    """The statement does not parse; the message names the line or entry."""


def malformed(ref: str, problem: str) -> ApplicationError:
    return ApplicationError(f"statement {ref}: {problem}", type=STATEMENT_MALFORMED, non_retryable=True)


def parse_statement(data: bytes, ref: str, fmt: StatementFormat = StatementFormat.AUTO) -> Statement:
    """Parse a stored statement; raises `StatementError` naming what is wrong and where."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise StatementError(f"not UTF-8 text (byte {e.start})") from None
    if fmt is StatementFormat.AUTO:
        fmt = StatementFormat.CAMT053 if text.lstrip().startswith("<") else StatementFormat.CSV
    if fmt is StatementFormat.CAMT053:
        iban, txs = parse_camt053(data)
    else:
        iban, txs = "", parse_csv(text)
    return Statement(document=ref, format=fmt, account_iban=iban, transactions=txs)


# ---- CSV ----------------------------------------------------------------------------------------


def parse_csv(text: str) -> list[Transaction]:
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise StatementError("line 1: expected a header row (booking_date, amount, currency, ...)")
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(rows)]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise StatementError(f"line 1: the header lacks column(s) {', '.join(missing)}")
    out: list[Transaction] = []
    for row in rows:
        number = rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise StatementError(f"line {number}: {len(row)} fields, the header has {len(header)}")
        try:
            out.append(_csv_transaction(dict(zip(header, (c.strip() for c in row))), number))
        except (ValueError, InvalidOperation) as e:
            raise StatementError(f"line {number}: {e}") from None
    return out


def _csv_transaction(row: dict[str, str], number: int) -> Transaction:
    amount = parse_amount(row["amount"])
    direction = row.get("direction", "").lower()
    if direction in ("credit", "crdt", "cr", "c"):
        dir_ = Direction.CREDIT
    elif direction in ("debit", "dbit", "dr", "d"):
        dir_ = Direction.DEBIT
    elif not direction:
        dir_ = Direction.DEBIT if amount < 0 else Direction.CREDIT
    else:
        raise ValueError(f"direction {row['direction']!r} is neither credit nor debit")
    currency = row["currency"].upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValueError(f"currency {row['currency']!r} is not a three-letter ISO 4217 code")
    return Transaction(
        transaction_id=row.get("transaction_id") or f"line-{number}",
        booking_date=parse_date(row["booking_date"]),
        amount=abs(amount),
        currency=currency,
        direction=dir_,
        counterparty=row.get("counterparty", ""),
        counterparty_iban=row.get("counterparty_iban", "").replace(" ", "").upper(),
        remittance=row.get("remittance", ""),
    )


def parse_amount(text: str) -> Decimal:
    """`1234.50`, `-1,234.50`, `1.234,50` or `1234,50` as a Decimal; ValueError names the text."""
    t = text.replace(" ", "").replace("\u00a0", "").replace("'", "")
    if "," in t and "." in t:
        t = t.replace(".", "").replace(",", ".") if t.rfind(",") > t.rfind(".") else t.replace(",", "")
    elif "," in t:
        t = t.replace(",", ".")
    if not re.fullmatch(r"[+-]?\d+(\.\d{1,4})?", t):
        raise ValueError(f"amount {text!r} is not a number")
    return Decimal(t)


def parse_date(text: str) -> date:
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise ValueError(f"booking_date {text!r} is not a date (YYYY-MM-DD or DD.MM.YYYY)")


# ---- camt.053 -----------------------------------------------------------------------------------


def parse_camt053(data: bytes) -> tuple[str, list[Transaction]]:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise StatementError(f"refused: the XML declares a DTD or entities ({type(e).__name__})") from None
    except ParseError as e:
        line, column = e.position
        raise StatementError(f"line {line}, column {column}: not well-formed XML") from None
    m = CAMT053.match(root.tag)
    if not m or int(m.group(1)) < 2:
        raise StatementError(f"root element {root.tag!r} is not a camt.053.001.02 (or later) Document")
    ns = {"c": root.tag[1:].split("}")[0]}
    iban = root.findtext("c:BkToCstmrStmt/c:Stmt/c:Acct/c:Id/c:IBAN", "", ns)
    out: list[Transaction] = []
    for s, stmt in enumerate(root.findall("c:BkToCstmrStmt/c:Stmt", ns), start=1):
        for n, entry in enumerate(stmt.findall("c:Ntry", ns), start=1):
            where = f"statement {s}, entry {n} (Ntry #{n}{_ref_hint(entry, ns)})"
            try:
                out += _entry(entry, ns, f"s{s}-e{n}")
            except (ValueError, InvalidOperation) as e:
                raise StatementError(f"{where}: {e}") from None
    return iban, out


def _ref_hint(entry: Element, ns: dict[str, str]) -> str:
    ref = entry.findtext("c:AcctSvcrRef", "", ns)
    return f", AcctSvcrRef {ref}" if ref else ""


def _entry(entry: Element, ns: dict[str, str], fallback_id: str) -> list[Transaction]:
    amt = entry.find("c:Amt", ns)
    if amt is None or not (amt.text or "").strip():
        raise ValueError("no Amt")
    indicator = entry.findtext("c:CdtDbtInd", "", ns)
    if indicator not in ("CRDT", "DBIT"):
        raise ValueError(f"CdtDbtInd {indicator!r} is neither CRDT nor DBIT")
    direction = Direction.CREDIT if indicator == "CRDT" else Direction.DEBIT
    booked = entry.findtext("c:BookgDt/c:Dt", "", ns) or entry.findtext("c:BookgDt/c:DtTm", "", ns)[:10]
    if not booked:
        raise ValueError("no BookgDt")
    booking_date = parse_date(booked)
    entry_ref = entry.findtext("c:AcctSvcrRef", "", ns)
    details = entry.findall("c:NtryDtls/c:TxDtls", ns) or [None]
    out = []
    for k, tx in enumerate(details, start=1):
        own_amt = None if tx is None else _first(tx, ns, "c:AmtDtls/c:TxAmt/c:Amt", "c:Amt")
        use = own_amt if (own_amt is not None and len(details) > 1) else amt
        currency = use.get("Ccy", "")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError(f"Amt has no valid Ccy attribute ({currency!r})")
        value = Decimal(use.text.strip())
        party, iban, remittance, e2e = ("", "", "", "") if tx is None else _details(tx, ns, direction)
        tx_id = entry_ref or e2e or fallback_id
        if len(details) > 1:
            tx_id = f"{tx_id}/{k}"
        out.append(
            Transaction(
                transaction_id=tx_id,
                booking_date=booking_date,
                amount=abs(value),
                currency=currency,
                direction=direction,
                counterparty=party,
                counterparty_iban=iban,
                remittance=remittance or entry.findtext("c:AddtlNtryInf", "", ns),
            )
        )
    return out


def _first(parent: Element, ns: dict[str, str], *paths: str) -> Element | None:
    # Not `find(a) or find(b)`: an Element without children is falsy, so `or` would skip a found leaf.
    for path in paths:
        found = parent.find(path, ns)
        if found is not None:
            return found
    return None


def _details(tx: Element, ns: dict[str, str], direction: Direction) -> tuple[str, str, str, str]:
    # The counterparty of a debit is the creditor, of a credit the debtor. From .001.08 on, the
    # party's name sits one level deeper (Cdtr/Pty/Nm); both forms are read.
    side = "Cdtr" if direction is Direction.DEBIT else "Dbtr"
    party = tx.findtext(f"c:RltdPties/c:{side}/c:Nm", "", ns) or tx.findtext(f"c:RltdPties/c:{side}/c:Pty/c:Nm", "", ns)
    iban = tx.findtext(f"c:RltdPties/c:{side}Acct/c:Id/c:IBAN", "", ns)
    parts = [u.text.strip() for u in tx.findall("c:RmtInf/c:Ustrd", ns) if u.text and u.text.strip()]
    parts += [r.text.strip() for r in tx.findall("c:RmtInf/c:Strd/c:CdtrRefInf/c:Ref", ns) if r.text and r.text.strip()]
    parts += [r.text.strip() for r in tx.findall("c:RmtInf/c:Strd/c:RfrdDocInf/c:Nb", ns) if r.text and r.text.strip()]
    e2e = tx.findtext("c:Refs/c:EndToEndId", "", ns)
    if e2e == "NOTPROVIDED":
        e2e = ""
    return party.strip(), iban.replace(" ", "").upper(), " ".join(parts), e2e
