"""Text from invoice scans and PDFs: RapidOCR on ONNX Runtime for pixels, pypdf for text layers.

Not workflow-safe (CPU-bound inference, model files). RapidOCR ships its
detection, orientation and recognition models in its wheel, so this works on a
machine with no network. The engine is loaded once per worker process and
used from one thread at a time (ONNX Runtime sessions are not cheap to build,
and the worker has few cores to share).

Failures are non-retryable `ApplicationError`s (the same bytes fail the same
way): `DocumentUnreadable` (not a PNG, JPEG or PDF we can decode, or a PDF with
neither text nor images), `DocumentTooLong` (more pages than the worker allows).
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache

from temporalio.exceptions import ApplicationError

from activities.tools.finance.declarations import DOCUMENT_TOO_LONG, DOCUMENT_UNREADABLE, OcrLine, OcrResult
from activities.tools.finance.documents import StoredDocument

DEFAULT_MAX_PAGES = 20
"""PDF page limit when the worker sets none: an invoice is a page or two; fifty pages is a mistake."""

_ocr_lock = threading.Lock()


def unreadable(message: str) -> ApplicationError:
    return ApplicationError(message, type=DOCUMENT_UNREADABLE, non_retryable=True)


def kind_of(data: bytes) -> str:
    """`png`, `jpeg`, `pdf` or `unknown`, by the file's magic bytes (never by its name)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.lstrip()[:5] == b"%PDF-":
        return "pdf"
    return "unknown"


def read_document(doc: StoredDocument, max_pages: int = DEFAULT_MAX_PAGES) -> OcrResult:
    """The text lines of a stored scan or PDF, with a confidence per line."""
    if not doc.data:
        raise unreadable(f"document {doc.ref} ({doc.name or 'unnamed'}) is empty (0 bytes)")
    kind = kind_of(doc.data)
    if kind in ("png", "jpeg"):
        lines = recognise(doc.data, f"{doc.ref} ({kind})")
        return _result(doc.ref, "ocr", 1, lines)
    if kind == "pdf":
        return _read_pdf(doc, max_pages)
    raise unreadable(f"document {doc.ref} ({doc.name or 'unnamed'}) is not a PNG, JPEG or PDF (it starts with {doc.data[:8]!r})")


def recognise(data: bytes, what: str, page: int = 1) -> list[OcrLine]:
    """OCR one image; lines top to bottom as the detector orders them."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decode now: a truncated or corrupt file fails here, not inside the recogniser
            pixels = np.asarray(im.convert("RGB"))[:, :, ::-1].copy()  # RapidOCR takes BGR, as OpenCV does
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise unreadable(f"image {what} cannot be decoded: {e}") from None
    with _ocr_lock:
        found, _ = _engine()(pixels)
    return [OcrLine(text=text, confidence=round(float(conf), 4), page=page) for _box, text, conf in (found or [])]


@lru_cache(maxsize=1)
def _engine():
    from rapidocr_onnxruntime import RapidOCR

    # Two threads per session: the worker shares its cores with the rest of the process.
    return RapidOCR(intra_op_num_threads=2, inter_op_num_threads=1)


def _read_pdf(doc: StoredDocument, max_pages: int) -> OcrResult:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(doc.data))
        pages = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError) as e:
        raise unreadable(f"PDF {doc.ref} cannot be parsed: {e}") from None
    if pages == 0:
        raise unreadable(f"PDF {doc.ref} has no pages")
    if pages > max_pages:
        raise ApplicationError(
            f"PDF {doc.ref} has {pages} pages; this worker reads at most {max_pages} "
            "(an invoice is a page or two: split the file, or raise AIFACTORY_OCR_MAX_PAGES)",
            type=DOCUMENT_TOO_LONG,
            non_retryable=True,
        )
    lines: list[OcrLine] = []
    source = "pdf_text"
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except (PyPdfError, ValueError, KeyError, TypeError) as e:
            raise unreadable(f"PDF {doc.ref} page {number} cannot be read: {e}") from None
        page_lines = [OcrLine(text=t.strip(), confidence=1.0, page=number) for t in text.splitlines() if t.strip()]
        if not page_lines:  # a scanned page: recognise the images on it
            for image in page.images:
                page_lines += recognise(image.data, f"{doc.ref} page {number}", page=number)
                source = "ocr"
        lines += page_lines
    if not lines:
        raise unreadable(f"PDF {doc.ref} has {pages} page(s) but no text layer and no images to recognise")
    return _result(doc.ref, source, pages, lines)


def _result(ref: str, source: str, pages: int, lines: list[OcrLine]) -> OcrResult:
    mean = sum(line.confidence for line in lines) / len(lines) if lines else 0.0
    return OcrResult(document=ref, source=source, pages=pages, lines=lines, mean_confidence=round(mean, 4))
