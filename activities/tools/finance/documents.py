"""The document store: files kept by content, passed to tools by reference.

Not workflow-safe (file I/O). A workflow carries `doc:sha256:<hex>`, never the
bytes: a scan in history would be stored again with every event that repeats it,
and every replay would carry it. The store is a folder (content-addressed, so a
document put twice is stored once and a reference cannot point at altered
bytes); `open` checks the hash again on read.

Where the folder is: `AIFACTORY_DOCUMENTS`, else `AIFACTORY_HOME/documents`, else
`.aifactory/documents` under the working directory. Workers that share runs must
share the folder (a mounted volume), as they share the SQL store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from temporalio.exceptions import ApplicationError

from activities.tools.finance.declarations import DOCUMENT_NOT_FOUND

_REF = re.compile(r"^doc:sha256:([0-9a-f]{64})$")


class DocumentNotFound(LookupError):
    """The reference is malformed or names no stored document."""


@dataclass(frozen=True)
class StoredDocument:
    ref: str
    name: str
    data: bytes


class DocumentStore:
    """A content-addressed folder of documents."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls, env: dict[str, str] | None = None) -> "DocumentStore":
        """The store the worker's environment names (see the module docstring)."""
        env = dict(os.environ if env is None else env)
        if env.get("AIFACTORY_DOCUMENTS"):
            return cls(env["AIFACTORY_DOCUMENTS"])
        if env.get("AIFACTORY_HOME"):
            return cls(Path(env["AIFACTORY_HOME"]) / "documents")
        return cls(Path.cwd() / ".aifactory" / "documents")

    def put(self, data: bytes, name: str) -> str:
        """Store `data` (its file name kept for the media type) and return its reference."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(path)  # atomic: a reader never sees half a file
        meta = path.with_suffix(".json")
        if not meta.exists():
            meta.write_text(json.dumps({"name": Path(name).name, "size": len(data)}))
        return f"doc:sha256:{digest}"

    def open(self, ref: str) -> StoredDocument:
        """The document `ref` names.

        Raises:
            DocumentNotFound: the reference is malformed, absent, or its bytes no longer hash to it.
        """
        m = _REF.match(ref)
        if not m:
            raise DocumentNotFound(f"{ref!r} is not a document reference (expected doc:sha256:<64 hex digits>)")
        path = self._path(m.group(1))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DocumentNotFound(f"no document {ref} in the store at {self.root}") from None
        if hashlib.sha256(data).hexdigest() != m.group(1):
            raise DocumentNotFound(f"document {ref} in {self.root} was altered (its bytes no longer match the reference)")
        try:
            name = json.loads(path.with_suffix(".json").read_text())["name"]
        except (FileNotFoundError, ValueError, KeyError):
            name = ""
        return StoredDocument(ref=ref, name=name, data=data)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.bin"


def open_or_refuse(store: DocumentStore, ref: str) -> StoredDocument:
    """`store.open(ref)`, as the non-retryable `DocumentNotFound` a tool raises."""
    try:
        return store.open(ref)
    except DocumentNotFound as e:
        raise ApplicationError(str(e), type=DOCUMENT_NOT_FOUND, non_retryable=True) from None


def seed_documents(db_url: str, rows: list[dict]) -> None:
    """The family's seed: store sample documents, each row `{"document": "doc:sha256:...", "file": <path>}`.

    The reference is written in the agent's samples and cases, so a file whose bytes no longer hash
    to it is refused rather than stored under another reference. `db_url` is not used: documents
    live in the document store, not in SQL.

    Raises:
        ValueError: a row names no file, or a file that does not hash to its reference.
    """
    store = DocumentStore.default()
    for row in rows:
        path = Path(str(row.get("file", "")))
        if not row.get("file") or not path.is_file():
            raise ValueError(f"finance seed: {row!r} names no file to store")
        data = path.read_bytes()
        ref = f"doc:sha256:{hashlib.sha256(data).hexdigest()}"
        if ref != row.get("document"):
            raise ValueError(f"finance seed: {path} hashes to {ref}, not to the reference {row.get('document')!r} the agent uses")
        store.put(data, path.name)
