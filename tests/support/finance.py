"""Shared pieces of the finance family's tests: the samples, a document store, a tool context."""

from __future__ import annotations

import json
from pathlib import Path

from activities.tools.finance.declarations import Invoice
from activities.tools.finance.documents import DocumentStore
from contracts.tools import ToolContext
from tests.support.harness import REPO

SAMPLES = REPO / "activities/tools/finance/samples"
SCANS = ["invoice-nordlicht.png", "invoice-kessler.jpg", "invoice-ferrari-lowcontrast.png"]


def sample_invoices() -> dict[str, Invoice]:
    """The sample invoices as the agent should extract them, by file name."""
    return {name: Invoice.model_validate(v) for name, v in json.loads((SAMPLES / "invoices.json").read_text()).items()}


def store_with(tmp_path: Path, *names: str) -> tuple[DocumentStore, dict[str, str]]:
    """A fresh document store holding the named sample files; returns it and their references."""
    store = DocumentStore(tmp_path / "documents")
    return store, {name: store.put((SAMPLES / name).read_bytes(), name) for name in names}


def ctx(key: str | None = None, tenant: str = "acme") -> ToolContext:
    return ToolContext(run_id=f"agent/finance-reconciliation/{tenant}/r1", agent="finance-reconciliation", tenant=tenant, step=3, call_index=0, idempotency_key=key)
