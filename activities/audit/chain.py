"""The hash chain over a run's audit records, keyed so that a hash cannot be recomputed.

Not workflow-safe. A plain SHA-256 chain only proves that rows agree with each
other: whoever can edit a row can recompute its hash and every hash after it.
Each link is therefore an HMAC-SHA256 under the audit key (`AIFACTORY_AUDIT_KEYS`
or `AIFACTORY_AUDIT_KEY_FILE`, held by the exporter, not by the database), so an
edited or replaced row fails at that row even if its hash was "recomputed".
Key ids are stored per row: a rotated key still verifies the rows it signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

from activities.keys import KeyRing
from contracts.audit import AuditRecord

GENESIS = "0" * 64


def canonical(record: AuditRecord) -> str:
    """The record as the JSON the chain signs: sorted keys, no whitespace, UTC times."""
    data = record.model_dump(mode="json", exclude_none=True)
    data["at"] = record.at.astimezone(timezone.utc).isoformat()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def link(ring: KeyRing, key_id: str, run: str, seq: int, prev_hash: str, body: str) -> str:
    message = f"{run}\n{seq}\n{prev_hash}\n".encode() + body.encode()
    return hmac.new(ring.keys[key_id], message, hashlib.sha256).hexdigest()


def utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; every stored time is UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def anchor_mac(ring: KeyRing, key_id: str, run: str, seq: int, head_hash: str, job_id: int, at: datetime) -> str:
    message = f"anchor\n{run}\n{seq}\n{head_hash}\n{job_id}\n{utc(at).isoformat()}".encode()
    return hmac.new(ring.keys[key_id], message, hashlib.sha256).hexdigest()


def witness_mac(
    ring: KeyRing, key_id: str, run: str, seq: int, head_hash: str, closed: bool, job_id: int, at: datetime, retired: bool = False
) -> str:
    message = f"witness\n{run}\n{seq}\n{head_hash}\n{int(closed)}\n{int(retired)}\n{job_id}\n{utc(at).isoformat()}".encode()
    return hmac.new(ring.keys[key_id], message, hashlib.sha256).hexdigest()


def witness_scope(ring: KeyRing, key_id: str) -> str:
    """Which witness workflows belong to the store this key signs: derived from the key, so whoever
    can edit the store cannot point its verification at another witness."""
    return hmac.new(ring.keys[key_id], b"witness scope", hashlib.sha256).hexdigest()[:16]


def run_ref(workflow_id: str, first_execution: str) -> str:
    return f"{workflow_id}#{first_execution}"
