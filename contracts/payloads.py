"""What the workers' payload codec hands on when it cannot, or should not, simply decrypt.

Workflow-safe. A worker with a key ring never fails a workflow task on a payload
it cannot open: it passes the payload on marked, and the workflow decides. A
run's own start input that is marked fails the run with a typed error; a signal
or update that is marked is refused, recorded, and the run carries on.

- `binary/undecodable`: encrypted, but not with a key this worker holds, or altered.
- `binary/unsealed`: sent in clear text to a worker that expects encryption; the
  original payload is wrapped inside, unchanged.
"""

from __future__ import annotations

from temporalio.api.common.v1 import Payload

UNDECODABLE = b"binary/undecodable"
UNSEALED = b"binary/unsealed"
REASON = "aifactory-reason"


def undecodable(reason: str) -> Payload:
    return Payload(metadata={"encoding": UNDECODABLE, REASON: reason.encode()})


def unsealed(payload: Payload) -> Payload:
    return Payload(metadata={"encoding": UNSEALED}, data=payload.SerializeToString())


def unwrap(payload: Payload) -> Payload:
    """The clear-text payload inside an `unsealed` one (any other payload is returned as is)."""
    if payload.metadata.get("encoding") != UNSEALED:
        return payload
    inner = Payload()
    inner.ParseFromString(payload.data)
    return inner


def reason(payload: Payload) -> str:
    return payload.metadata.get(REASON, b"").decode(errors="replace")


def is_undecodable(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == UNDECODABLE


def is_unsealed(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == UNSEALED
