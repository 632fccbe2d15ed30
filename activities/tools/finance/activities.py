"""The finance tools' activities and the reconciliation ledger they post to.

Not workflow-safe (files, SQL, OCR). `ocr_document` and `read_statement` read
stored documents by reference (documents are content-addressed, so an OCR result
is kept per document and read once); `extract_invoice` checks the model's reading
of a document against its OCR text (`extraction`) and keeps it for the run, so
`match_transactions` takes the run's invoices and the statement by reference
instead of as arguments a model would retype; `match_transactions` runs the pure
matcher (`matching`); `post_reconciliation` writes the ledger, one batch per
idempotency key: a retried or repeated call returns the batch the first call posted.

The batch key is derived from the arguments (the statement and the sorted
pairs), not only from the call: the model that proposes the same posting twice
in one run, on two steps, still posts once. The workflow's per-call key is kept
beside it for the audit trail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from datetime import datetime, timezone

from sqlalchemy import UniqueConstraint
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import engine_for
from activities.tools.finance import extraction, matching, report
from activities.tools.finance.declarations import (
    EXTRACT_INVOICE,
    MATCH_TRANSACTIONS,
    OCR_DOCUMENT,
    POST_RECONCILIATION,
    READ_STATEMENT,
    REPORT_RECONCILIATION,
    ExtractedInvoice,
    ExtractInvoiceArgs,
    Invoice,
    LedgerEntry,
    MatchResult,
    MatchTransactionsArgs,
    OcrDocumentArgs,
    OcrResult,
    PostReconciliationArgs,
    ReadStatementArgs,
    ReconciliationRecord,
    ReconciliationReport,
    ReportReconciliationArgs,
    Statement,
    StatementFormat,
)
from activities.tools.finance.documents import DocumentStore, open_or_refuse
from activities.tools.finance.ocr import DEFAULT_MAX_PAGES, read_document
from activities.tools.finance.statements import StatementError, malformed, parse_statement
from contracts.errors import TOOL_FAILED
from contracts.tools import ToolContext

log = logging.getLogger(__name__)


class OcrRecord(SQLModel, table=True):
    """A document's OCR result, kept by its content reference: the same bytes read the same."""

    __tablename__ = "finance_ocr"
    document: str = Field(primary_key=True)
    result: str
    """The `OcrResult` as JSON."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class ExtractionRecord(SQLModel, table=True):
    """An invoice a run extracted from one document (the last reading wins)."""

    __tablename__ = "finance_extraction"
    __table_args__ = (UniqueConstraint("tenant", "run_id", "document"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    run_id: str = Field(index=True)
    document: str
    result: str
    """The `ExtractedInvoice` as JSON."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class ReconciliationEntry(SQLModel, table=True):
    """One invoice paired with one bank transaction, as posted."""

    __tablename__ = "finance_reconciliation"
    id: int | None = Field(default=None, primary_key=True)
    batch_key: str = Field(index=True)
    """sha256 of the batch's arguments: the idempotency key."""
    call_key: str
    """The workflow's idempotency key of the call that posted it."""
    tenant: str = Field(index=True)
    run_id: str
    statement: str
    invoice_number: str
    transaction_id: str
    score: float
    reasons: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class ReconciliationBatch(SQLModel, table=True):
    """One posting: its entries share its key; the unique key makes the write happen once."""

    __tablename__ = "finance_reconciliation_batch"
    batch_key: str = Field(primary_key=True)
    tenant: str
    run_id: str
    entries: int
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


def batch_key(tenant: str, args: PostReconciliationArgs) -> str:
    """The idempotency key of a posting: the same tenant, statement and pairs give the same key."""
    return pairs_key(tenant, args.statement, args.matches)


def pairs_key(tenant: str, statement: str, matches: list) -> str:
    pairs = sorted((m.invoice_number, m.transaction_id) for m in matches)
    canonical = json.dumps([tenant, statement, pairs], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _refuse_undeclared_figures(args: PostReconciliationArgs) -> None:
    """The policy gate judged `total` and `lowest_score`: post only if they are the batch's own."""
    missing = [m.invoice_number for m in args.matches if m.amount is None]
    if not args.matches:
        if args.total == 0:
            return
        problem = f"total: {args.total} with no pairs to post (an empty posting has total 0)"
    elif missing:
        problem = f"matches: every pair needs its amount (as match_transactions returns it); {', '.join(missing)} has none"
    elif sum(m.amount for m in args.matches if m.amount is not None) != args.total:
        problem = f"total: {args.total} is not the sum of the pairs' amounts ({sum(m.amount for m in args.matches if m.amount is not None)})"
    elif round(min(m.score for m in args.matches), 4) != round(args.lowest_score, 4):
        problem = f"lowest_score: {args.lowest_score} is not the pairs' lowest score ({min(m.score for m in args.matches)})"
    else:
        return
    raise ApplicationError(problem, type=TOOL_FAILED, non_retryable=True)


def _readable(readings: list[ExtractedInvoice]) -> list[Invoice]:
    return [e.invoice for e in readings if e.invoice is not None]


class FinanceActivities:
    """Finance tool activities bound to a SQL store and a document store."""

    def __init__(self, db_url: str, store: DocumentStore | None = None, max_pdf_pages: int | None = None) -> None:
        self._db_url = db_url
        self.store = store or DocumentStore.default()
        self.max_pdf_pages = max_pdf_pages or int(os.environ.get("AIFACTORY_OCR_MAX_PAGES", DEFAULT_MAX_PAGES))

    @activity.defn(name=OCR_DOCUMENT.activity_name)
    async def ocr_document(self, ctx: ToolContext, args: OcrDocumentArgs) -> OcrResult:
        return await asyncio.to_thread(self._ocr, args.document)

    def _ocr(self, ref: str) -> OcrResult:
        # The kept result is a saving, not a source of truth: a store that cannot keep it costs a
        # second recognition, never the call.
        try:
            with Session(engine_for(self._db_url)) as s:
                kept = s.get(OcrRecord, ref)
            if kept is not None:
                return OcrResult.model_validate_json(kept.result)
        except SQLAlchemyError as e:
            log.warning("OCR results are not kept (%s): reading %s again", type(e).__name__, ref)
        result = read_document(open_or_refuse(self.store, ref), self.max_pdf_pages)
        try:
            with Session(engine_for(self._db_url)) as s:
                s.add(OcrRecord(document=ref, result=result.model_dump_json()))
                s.commit()
        except SQLAlchemyError:  # kept concurrently by another call (the same bytes read the same), or not keepable
            pass
        return result

    @activity.defn(name=EXTRACT_INVOICE.activity_name)
    async def extract_invoice(self, ctx: ToolContext, args: ExtractInvoiceArgs) -> ExtractedInvoice:
        return await asyncio.to_thread(self._extract, ctx, args)

    def _extract(self, ctx: ToolContext, args: ExtractInvoiceArgs) -> ExtractedInvoice:
        try:
            result = extraction.check(args, self._ocr(args.document))
        except ApplicationError as e:  # unreadable: kept for the report, then refused as OCR refused it
            self._keep(ctx, ExtractedInvoice(document=args.document, invoice=None, unreadable=f"OCR failed: {e.message}"))
            raise
        self._keep(ctx, result)
        return result

    def _keep(self, ctx: ToolContext, result: ExtractedInvoice) -> None:
        """Keep a run's reading of a document (a second reading of it replaces the first)."""
        with Session(engine_for(self._db_url)) as s:
            row = s.exec(
                select(ExtractionRecord).where(
                    ExtractionRecord.tenant == ctx.tenant, ExtractionRecord.run_id == ctx.run_id, ExtractionRecord.document == result.document
                )
            ).first()
            row = row or ExtractionRecord(tenant=ctx.tenant, run_id=ctx.run_id, document=result.document, result="")
            row.result = result.model_dump_json()
            s.add(row)
            s.commit()

    def _readings(self, ctx: ToolContext) -> list[ExtractedInvoice]:
        """What this run extracted, document by document, in the order it read them."""
        with Session(engine_for(self._db_url)) as s:
            rows = s.exec(
                select(ExtractionRecord).where(ExtractionRecord.tenant == ctx.tenant, ExtractionRecord.run_id == ctx.run_id).order_by(ExtractionRecord.id)
            ).all()
        return [ExtractedInvoice.model_validate_json(r.result) for r in rows]

    def _extracted(self, ctx: ToolContext) -> list[Invoice]:
        """The invoices this run extracted (unreadable documents left out)."""
        return _readable(self._readings(ctx))

    @activity.defn(name=REPORT_RECONCILIATION.activity_name)
    async def report_reconciliation(self, ctx: ToolContext, args: ReportReconciliationArgs) -> ReconciliationReport:
        return await asyncio.to_thread(self._report, ctx, args)

    def _report(self, ctx: ToolContext, args: ReportReconciliationArgs) -> ReconciliationReport:
        readings = self._readings(ctx)
        transactions = self._read_statement(ReadStatementArgs(document=args.statement)).transactions
        pairs = matching.match(_readable(readings), transactions)  # no invoices: every transaction unmatched
        # The batch that posts exactly these pairs (by its key: posted once, by whichever run came first).
        posted = self._batch(engine_for(self._db_url), pairs_key(ctx.tenant, args.statement, pairs.matches)) if pairs.matches else None
        return report.compose(readings, pairs, posted.batch_id if posted else None)

    @activity.defn(name=READ_STATEMENT.activity_name)
    async def read_statement(self, ctx: ToolContext, args: ReadStatementArgs) -> Statement:
        return await asyncio.to_thread(self._read_statement, args)

    def _read_statement(self, args: ReadStatementArgs) -> Statement:
        doc = open_or_refuse(self.store, args.document)
        try:
            return parse_statement(doc.data, doc.ref, StatementFormat.AUTO)
        except StatementError as e:
            raise malformed(doc.ref, str(e)) from None

    @activity.defn(name=MATCH_TRANSACTIONS.activity_name)
    async def match_transactions(self, ctx: ToolContext, args: MatchTransactionsArgs) -> MatchResult:
        # Off the event loop: 500 invoices against 5000 transactions is seconds of difflib.
        return await asyncio.to_thread(self._match, ctx, args)

    def _match(self, ctx: ToolContext, args: MatchTransactionsArgs) -> MatchResult:
        invoices = self._extracted(ctx)
        if not invoices:
            raise ApplicationError("this run extracted no readable invoice: call extract_invoice first", type=TOOL_FAILED, non_retryable=True)
        transactions = self._read_statement(ReadStatementArgs(document=args.statement)).transactions
        return matching.match(invoices, transactions, args.date_window_days)

    @activity.defn(name=POST_RECONCILIATION.activity_name)
    async def post_reconciliation(self, ctx: ToolContext, args: PostReconciliationArgs) -> ReconciliationRecord:
        if not ctx.idempotency_key:
            raise ApplicationError("post_reconciliation needs an idempotency key", type=TOOL_FAILED, non_retryable=True)
        pairs = [(m.invoice_number, m.transaction_id) for m in args.matches]
        for label, values in (("invoice", [p[0] for p in pairs]), ("transaction", [p[1] for p in pairs])):
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise ApplicationError(
                    f"matches: each {label} may be posted once per batch; {', '.join(twice)} appear(s) twice",
                    type=TOOL_FAILED,
                    non_retryable=True,
                )
        _refuse_undeclared_figures(args)
        if not args.matches:  # nothing matched: nothing is written
            return ReconciliationRecord(batch_id=None, entries=[], created=False)
        return await asyncio.to_thread(self._post, ctx, args)

    def _post(self, ctx: ToolContext, args: PostReconciliationArgs) -> ReconciliationRecord:
        engine = engine_for(self._db_url)
        key = batch_key(ctx.tenant, args)
        existing = self._batch(engine, key)
        if existing is not None:
            return existing
        try:
            # One transaction: the batch row and its entries are written together or not at all.
            with Session(engine) as s:
                s.add(ReconciliationBatch(batch_key=key, tenant=ctx.tenant, run_id=ctx.run_id, entries=len(args.matches)))
                s.flush()  # the batch's unique key is taken first, so a concurrent duplicate fails here
                for m in args.matches:
                    s.add(
                        ReconciliationEntry(
                            batch_key=key,
                            call_key=ctx.idempotency_key or "",
                            tenant=ctx.tenant,
                            run_id=ctx.run_id,
                            statement=args.statement,
                            invoice_number=m.invoice_number,
                            transaction_id=m.transaction_id,
                            score=m.score,
                            reasons="; ".join(m.reasons),
                        )
                    )
                s.commit()
        except IntegrityError:  # a concurrent duplicate won the race: one effect, same answer
            existing = self._batch(engine, key)
            assert existing is not None
            return existing
        record = self._batch(engine, key)
        assert record is not None
        return record.model_copy(update={"created": True})

    @staticmethod
    def _batch(engine, key: str) -> ReconciliationRecord | None:
        with Session(engine) as s:
            if s.get(ReconciliationBatch, key) is None:
                return None
            rows = s.exec(select(ReconciliationEntry).where(ReconciliationEntry.batch_key == key).order_by(ReconciliationEntry.id)).all()
        return ReconciliationRecord(
            batch_id=f"REC-{key[:12]}",
            entries=[LedgerEntry(entry_id=f"REC-{key[:12]}-{i}", invoice_number=r.invoice_number, transaction_id=r.transaction_id) for i, r in enumerate(rows, 1)],
            created=False,
        )

    def activities(self) -> list:
        return [self.ocr_document, self.read_statement, self.extract_invoice, self.match_transactions, self.post_reconciliation, self.report_reconciliation]
