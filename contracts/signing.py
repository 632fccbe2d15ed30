"""Signed decisions: proof of who approved, rejected, stopped, resumed or gave up.

Workflow-safe (models and the canonical bytes only; verification is in
`policies.signatures`). A person signs a decision with their Ed25519 key
(`aifactory keys init`), and the run checks the signature against the public
keys in the approver directory before the decision changes anything. What is
signed binds the decision to one run (and one request), a time and a nonce, so
a decision cannot be altered, moved to another run or request, or replayed.
A service (the Slack endpoint, the HTTP gateway) signs with its own key for a
person the directory lets it act for, and names its evidence.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field


class Signature(BaseModel):
    """An Ed25519 signature over a decision's canonical form, and what it claims."""

    signer: str
    """Directory id of whoever signed: the deciding person, or a service acting for them."""
    key_id: str
    """Which of the signer's keys (the directory lists each with its validity)."""
    run_id: str
    """The run the decision is for (a signature for another run is refused)."""
    signed_at: datetime
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    """Random, once per decision: a decision sent again is refused as a replay."""
    evidence: str | None = None
    """For a service signing for a person: what it relied on (`slack:U024BE7LH`, `gateway key k-7`)."""
    value: str
    """The signature, base64."""


def signing_bytes(kind: str, person: str, body: dict[str, Any], sig: Signature) -> bytes:
    """The exact bytes signed and verified: the decision and everything the signature claims."""
    message = {
        "kind": kind,
        "person": person,
        "body": body,
        "signer": sig.signer,
        "key_id": sig.key_id,
        "run_id": sig.run_id,
        "signed_at": sig.signed_at.astimezone(timezone.utc).isoformat(),
        "nonce": sig.nonce,
        "evidence": sig.evidence,
    }
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def unsigned(signer: str, key_id: str, run_id: str, signed_at: datetime, nonce: str, evidence: str | None = None) -> Signature:
    """A signature's claims before its value is computed (the value is added by the signer)."""
    return Signature(signer=signer, key_id=key_id, run_id=run_id, signed_at=signed_at, nonce=nonce, evidence=evidence, value="")


#: What each kind of decision signs, besides the person: the fields that change its effect.
APPROVAL = "approval"
STOP = "stop"
BUDGET = "budget"
TOOL = "tool"
SWITCH_SET = "switch-set"
SWITCH_LIFT = "switch-lift"


def approval_body(request_id: str | None, verdict: str, note: str | None) -> dict[str, Any]:
    return {"request_id": request_id, "verdict": verdict, "note": note or ""}


def stop_body(reason: str, switch_id: int | None) -> dict[str, Any]:
    return {"reason": reason, "switch_id": switch_id}


def budget_body(action: str, note: str) -> dict[str, Any]:
    return {"action": action, "note": note or ""}


def tool_body(action: str, reason: str) -> dict[str, Any]:
    return {"action": action, "reason": reason or ""}


def switch_body(scope: str, target: str, reason: str) -> dict[str, Any]:
    return {"scope": scope, "target": target, "reason": reason}
