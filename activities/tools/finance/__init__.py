"""The finance tool family: invoice OCR, bank statements, matching and the reconciliation ledger.

Not workflow-safe as a package (OCR, files, SQL); `declarations` and `matching`
are. Documents are passed by reference to the document store (`documents`).
"""

from __future__ import annotations

from activities.tools.families import ToolFamily
from activities.tools.finance import declarations
from activities.tools.finance.activities import ExtractionRecord, FinanceActivities, OcrRecord, ReconciliationBatch, ReconciliationEntry
from activities.tools.finance.documents import seed_documents

FAMILY = ToolFamily(
    name=declarations.NAME,
    declarations=declarations,
    activities=lambda db_url: FinanceActivities(db_url).activities(),
    tables=(OcrRecord, ExtractionRecord, ReconciliationBatch, ReconciliationEntry),
    seed=seed_documents,
)
