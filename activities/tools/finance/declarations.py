"""Declarations of the finance tools: invoice OCR, bank statements, matching, the ledger.

Workflow-safe: models and metadata only (no I/O); the implementations are in
`activities.tools.finance.activities`. Documents cross the Temporal boundary by
reference (`doc:sha256:<hex>`, see `activities.tools.finance.documents`), never
as bytes, so history holds a 71-character reference instead of a scan.

Amounts are `Decimal` (money is never a float); pydantic writes them to JSON as
strings, so they round-trip through history exactly.

The failures the tools raise are `ApplicationError`s whose `type` is one of the
names below (wire API: add, never rename). All are non-retryable, because a
second attempt reads the same bytes::

    DocumentNotFound      the reference names no stored document
    DocumentUnreadable    not a PNG/JPEG/PDF we can decode, or a PDF with no text and no image
    DocumentTooLong       a PDF above the worker's page limit (the message gives both numbers)
    StatementMalformed    a statement line or entry that does not parse (the message names it)
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from contracts.catalog import declare
from contracts.tools import DataClass, SideEffect, ToolMeta

NAME = "finance"
"""The family name: the middle of its activity names (`tool.finance.<tool>`)."""

DOCUMENT_NOT_FOUND = "DocumentNotFound"
DOCUMENT_UNREADABLE = "DocumentUnreadable"
DOCUMENT_TOO_LONG = "DocumentTooLong"
STATEMENT_MALFORMED = "StatementMalformed"

#: A stored document's reference: the sha256 of its bytes.
DOCUMENT_REF_PATTERN = r"^doc:sha256:[0-9a-f]{64}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"


class Direction(StrEnum):
    CREDIT = "credit"
    """Money in."""
    DEBIT = "debit"
    """Money out (a supplier paid)."""


class StatementFormat(StrEnum):
    AUTO = "auto"
    CSV = "csv"
    CAMT053 = "camt053"


# ---- ocr_document ---------------------------------------------------------------------------


class OcrDocumentArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    document: str = Field(pattern=DOCUMENT_REF_PATTERN)
    """Reference of the stored scan or PDF (`doc:sha256:...`)."""


class OcrLine(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    text: str
    confidence: float = Field(ge=0, le=1)
    """The recogniser's score for the line (1.0 for text read from a PDF's text layer)."""
    page: int = 1


class OcrResult(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    document: str
    source: str
    """`ocr` (recognised from pixels) or `pdf_text` (read from the PDF's text layer)."""
    pages: int
    lines: list[OcrLine]
    mean_confidence: float = Field(ge=0, le=1)


# ---- read_statement -------------------------------------------------------------------------


class ReadStatementArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    document: str = Field(pattern=DOCUMENT_REF_PATTERN)
    """Reference of the stored statement file (`doc:sha256:...`): camt.053 XML if it starts with
    `<`, else CSV. The format is read from the file, not asked for (measured: the local model
    named camt053 for a CSV statement when it could)."""


class Transaction(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    transaction_id: str
    """The bank's reference (camt `AcctSvcrRef`/`EndToEndId`), or `line-<n>` for CSV without one."""
    booking_date: date
    amount: Decimal = Field(ge=0)
    """Always positive; `direction` says which way it went."""
    currency: str = Field(pattern=CURRENCY_PATTERN)
    direction: Direction
    counterparty: str = ""
    counterparty_iban: str = ""
    remittance: str = ""
    """Remittance information: free text and structured creditor reference, joined by spaces."""


class Statement(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    document: str
    format: StatementFormat
    account_iban: str = ""
    transactions: list[Transaction]


# ---- extract_invoice ------------------------------------------------------------------------


class ExtractInvoiceArgs(BaseModel):
    """An invoice as the model reads it from a document's OCR text: each field copied as printed,
    or null when the text does not show it (never guessed). Every field is required, null allowed:
    a grammar-constrained model then writes each one instead of stopping early (measured: with
    optional fields the local model skipped currency, amounts and IBAN)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    document: str = Field(pattern=DOCUMENT_REF_PATTERN)
    """Reference of the invoice document whose OCR text this is read from."""
    supplier: str | None
    """The issuing company, as printed (usually the first line)."""
    invoice_number: str | None
    issue_date: str | None
    """`YYYY-MM-DD`."""
    due_date: str | None
    """`YYYY-MM-DD`."""
    currency: str | None
    """ISO 4217 code, e.g. `EUR`."""
    net: Decimal | None
    tax: Decimal | None
    """VAT or tax amount."""
    total: Decimal | None
    iban: str | None
    """The supplier's IBAN as printed."""
    po_number: str | None


class ExtractedInvoice(BaseModel):
    """What `extract_invoice` made of the model's reading, after checking it against the OCR text."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    document: str
    invoice: Invoice | None
    """The typed invoice, its doubtful fields in `low_confidence_fields`; null when unreadable."""
    unreadable: str | None = None
    """Why the document gives no invoice to match (no number, date, total or supplier)."""
    not_in_text: list[str] = []
    """Fields whose value the OCR text does not contain: flagged, never passed on as certain."""


# ---- match_transactions ---------------------------------------------------------------------


class Invoice(BaseModel):
    """An invoice as the agent extracted it from OCR text."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    supplier: str = Field(min_length=1)
    invoice_number: str = Field(min_length=1)
    issue_date: date
    due_date: date | None = None
    currency: str = Field(pattern=CURRENCY_PATTERN)
    net: Decimal | None = None
    tax: Decimal | None = None
    total: Decimal
    iban: str | None = None
    """The supplier's IBAN as printed (spaces allowed)."""
    po_number: str | None = None
    low_confidence_fields: list[str] = []
    """Fields the extractor was unsure of (from low OCR confidence or a failed cross-check)."""


class MatchTransactionsArgs(BaseModel):
    """By reference only: the statement, and the invoices `extract_invoice` read in this run. A model
    that may pass invoices retypes them, and gets them wrong (measured: the local model invented two)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    statement: str = Field(pattern=DOCUMENT_REF_PATTERN)
    """Reference of the bank statement whose transactions to match."""
    date_window_days: int = Field(default=45, ge=0, le=365)
    """How far a booking may lie before the issue date or after the due date (or issue date)."""


class Match(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    invoice_number: str
    transaction_id: str
    score: float = Field(ge=0, le=1)
    reasons: list[str]
    """Why they match, one clause per signal (`amount 1234.50 EUR equal`, ...)."""
    amount: Decimal | None
    """The invoice's total, which the pair settles (required, as every field a model copies into
    `post_reconciliation`: a grammar-constrained model skips optional ones)."""
    currency: str | None = Field(pattern=CURRENCY_PATTERN)


class Candidate(BaseModel):
    transaction_id: str
    score: float
    reasons: list[str]


class AmbiguousInvoice(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    invoice_number: str
    candidates: list[Candidate]
    """Transactions that match about equally well, best first: a person chooses."""


class MatchResult(BaseModel):
    matches: list[Match]
    ambiguous: list[AmbiguousInvoice]
    unmatched_invoices: list[str]
    unmatched_transactions: list[str]


# ---- post_reconciliation --------------------------------------------------------------------


class PostReconciliationArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    matches: list[Match] = Field(max_length=500)
    """Matched pairs to post (from `match_transactions`). None: nothing is posted (total 0)."""
    statement: str = Field(pattern=DOCUMENT_REF_PATTERN)
    """The statement the transactions came from."""
    total: Decimal = Field(ge=0)
    """The sum of the pairs' amounts. The policy gate reads it (approval above an amount), and the
    tool refuses a total that is not that sum, so the gate judges the batch that is posted."""
    lowest_score: float = Field(ge=0, le=1)
    """The lowest score among the pairs (below 0.8, a pair lacks an equal amount or a reference:
    a fuzzy match). The gate reads it; the tool refuses one that is not the pairs' lowest."""


class LedgerEntry(BaseModel):
    entry_id: str
    invoice_number: str
    transaction_id: str


class ReconciliationRecord(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    batch_id: str | None
    """The ledger batch; null when there was nothing to post."""
    entries: list[LedgerEntry]
    created: bool
    """False when an earlier call with the same idempotency key already posted this batch."""


# ---- report_reconciliation ------------------------------------------------------------------


class ReportReconciliationArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    statement: str = Field(pattern=DOCUMENT_REF_PATTERN)
    """The statement this run reconciled."""


class ReconciliationReport(BaseModel):
    """The finance agent's answer: the run's invoices, pairs, exceptions and totals (its output schema)."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    currency: str
    invoices: list[dict]
    matched: list[dict]
    exceptions: list[dict]
    unmatched_transactions: list[str]
    invoice_total: float
    matched_total: float
    unmatched_total: float
    batch_id: str | None
    """The ledger batch this run posted, or null."""


OCR_DOCUMENT = declare(
    ToolMeta(
        name="ocr_document",
        description="Read the text of a stored invoice scan (PNG/JPEG) or PDF, with a confidence per line.",
        side_effect=SideEffect.READ,
        data_classes=(DataClass.FINANCIAL, DataClass.PII),
        start_to_close=timedelta(seconds=120),
        max_attempts=3,
    ),
    OcrDocumentArgs,
    OcrResult,
    family=NAME,
)

READ_STATEMENT = declare(
    ToolMeta(
        name="read_statement",
        description="Parse a stored bank statement (CSV or ISO 20022 camt.053 XML) into transactions.",
        side_effect=SideEffect.READ,
        data_classes=(DataClass.FINANCIAL, DataClass.PII),
        start_to_close=timedelta(seconds=30),
        max_attempts=3,
    ),
    ReadStatementArgs,
    Statement,
    family=NAME,
)

EXTRACT_INVOICE = declare(
    ToolMeta(
        name="extract_invoice",
        description=(
            "Record the invoice you read in one document's OCR text (fields as printed, null when not shown). "
            "Returns it checked against the text: doubtful fields flagged, or why it is unreadable."
        ),
        side_effect=SideEffect.READ,
        data_classes=(DataClass.FINANCIAL, DataClass.PII),
        start_to_close=timedelta(seconds=120),
        max_attempts=3,
    ),
    ExtractInvoiceArgs,
    ExtractedInvoice,
    family=NAME,
)

MATCH_TRANSACTIONS = declare(
    ToolMeta(
        name="match_transactions",
        description=(
            "Match invoices to bank transactions by amount, currency, date, invoice number or reference, "
            "and supplier name; returns scored matches with reasons, ambiguous and unmatched items."
        ),
        side_effect=SideEffect.READ,
        data_classes=(DataClass.FINANCIAL,),
        start_to_close=timedelta(seconds=30),
        max_attempts=3,
    ),
    MatchTransactionsArgs,
    MatchResult,
    family=NAME,
)

POST_RECONCILIATION = declare(
    ToolMeta(
        name="post_reconciliation",
        description=(
            "Post the matched invoice/transaction pairs to the reconciliation ledger, once per batch "
            "(no matches: an empty list, total 0, lowest_score 1; nothing is written)."
        ),
        side_effect=SideEffect.WRITE,
        data_classes=(DataClass.FINANCIAL,),
        start_to_close=timedelta(seconds=15),
    ),
    PostReconciliationArgs,
    ReconciliationRecord,
    family=NAME,
)

REPORT_RECONCILIATION = declare(
    ToolMeta(
        name="report_reconciliation",
        description=(
            "Report this run's reconciliation of the statement: the invoices extracted, the pairs, "
            "the exceptions with reasons, totals that add up, and the batch posted. Its result is the answer."
        ),
        side_effect=SideEffect.READ,
        data_classes=(DataClass.FINANCIAL, DataClass.PII),
        start_to_close=timedelta(seconds=30),
        max_attempts=3,
    ),
    ReportReconciliationArgs,
    ReconciliationReport,
    family=NAME,
)
