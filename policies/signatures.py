"""Is this decision signed by whom it says, for this run, now? A pure check, deterministic on replay.

Workflow-safe: no clock (the workflow passes `workflow.now()`), no I/O; the
Ed25519 verification is `cryptography`'s (a maintained library, no hand-written
crypto), which gives the same answer for the same bytes on every worker. The
workflow calls `refusal(...)` before a decision changes anything; a reason
means the decision does not count, and the reason is recorded.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.policy import Directory
from contracts.signing import Signature, signing_bytes

#: How far a signature's time may be from the run's clock (signing clocks drift; replays age).
FRESHNESS = timedelta(minutes=10)


def refusal(
    directory: Directory, kind: str, run_id: str, person: str, body: dict[str, Any], sig: Signature | None,
    now: datetime, seen_nonces: set[str] | list[str],
) -> str | None:
    """Why this decision may not count, or None when it carries valid proof of `person` (or when the
    directory explicitly does not require signatures and none was given)."""
    if sig is None:
        if directory.require_signatures:
            return "unsigned: decisions must be signed by the person who makes them (`aifactory keys init`, then `aifactory approve`)"
        return None
    signer = directory.person(sig.signer)
    if signer is None:
        return f"signed by {sig.signer!r}, who is not in the approver directory"
    key = next((k for k in signer.keys if k.id == sig.key_id), None)
    if key is None:
        return f"signed with key {sig.key_id!r}, which is not registered for {sig.signer}"
    if key.revoked_at is not None and (now >= key.revoked_at or sig.signed_at >= key.revoked_at):
        return f"signed with key {sig.key_id!r} of {sig.signer}, revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
    if key.valid_until is not None and (sig.signed_at > key.valid_until or now > key.valid_until):
        return f"signed with key {sig.key_id!r} of {sig.signer}, which expired at {key.valid_until:%Y-%m-%d %H:%M:%S} UTC"
    if key.valid_from is not None and sig.signed_at < key.valid_from:
        return f"signed with key {sig.key_id!r} of {sig.signer} before it was valid ({key.valid_from:%Y-%m-%d %H:%M:%S} UTC)"
    if sig.signer != person and person not in signer.acts_for and "*" not in signer.acts_for:
        return f"signed by {sig.signer}, who may not decide for {person}"
    if sig.run_id != run_id:
        return f"signed for another run ({sig.run_id})"
    if abs(now - sig.signed_at) > FRESHNESS:
        return f"signed at {sig.signed_at:%Y-%m-%d %H:%M:%S} UTC, more than {int(FRESHNESS.total_seconds() // 60)} minutes from now: sign it again"
    if sig.nonce in seen_nonces:
        return "a replay: this signed decision was already received"
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key, validate=True))
        public.verify(base64.b64decode(sig.value, validate=True), signing_bytes(kind, person, body, sig))
    except (InvalidSignature, ValueError, binascii.Error):
        return "the signature does not verify: the decision was altered after signing, or signed with another key"
    return None
