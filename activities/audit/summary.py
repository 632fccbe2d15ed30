"""A run's summary row, derived from its chained records: what `audit_run` holds is a fold of them.

Not workflow-safe (pure, but reads record bodies as stored). The export writes
`audit_run` from `summarise(...)` of the run's whole chain, and `audit verify`
recomputes it, so an edited summary row (a tenant, a requester, a policy or a
version changed in place) is caught even though the row is not itself chained.
Records written before runs carried these fields are read from their chained
detail text.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from contracts.audit import CLOSING_KINDS, RecordKind

_STARTED = re.compile(r"^agent (?P<agent>\S+)(?: (?P<version>\S+\+prompt\.\S+))?.* · tenant (?P<tenant>\S+) · run key (?P<run_key>\S+)")
_CLOSED = {
    RecordKind.RUN_COMPLETED.value: "completed", RecordKind.RUN_FAILED.value: "failed", RecordKind.RUN_CANCELED.value: "canceled",
    RecordKind.RUN_TERMINATED.value: "terminated", RecordKind.RUN_TIMED_OUT.value: "timed_out",
}  # fmt: skip


@dataclass
class RunSummary:
    """The auditor-facing fields of `audit_run`, as the run's records say them."""

    agent: str = ""
    agent_version: str = ""
    prompt_sha256: str = ""
    policy_bundle: str | None = None
    policy_sha256: str | None = None
    tenant: str = ""
    run_key: str = ""
    requester: str = ""
    status: str = "running"
    outcome: str | None = None
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: int = 0
    denials: int = 0

    def fields(self) -> dict[str, Any]:
        return asdict(self)


#: The columns of `audit_run` that `summarise` derives (and `audit verify` recomputes).
SUMMARY_FIELDS = tuple(RunSummary.__dataclass_fields__)


def summarise(records: Iterable[dict[str, Any]]) -> RunSummary:
    """Fold a run's record bodies (as stored, in chain order) into its summary."""
    s = RunSummary()
    for r in records:
        kind = r.get("kind")
        if r.get("step") is not None:
            s.steps = max(s.steps, int(r["step"]))
        if kind == RecordKind.RUN_STARTED.value:
            m = _STARTED.match(r.get("detail") or "")
            s.agent = r.get("agent") or (m.group("agent") if m else s.agent)
            s.agent_version = r.get("version") or (m.group("version") if m and m.group("version") else s.agent_version)
            s.prompt_sha256 = r.get("prompt_sha256") or s.prompt_sha256
            s.tenant = r.get("tenant") or (m.group("tenant") if m else s.tenant)
            s.run_key = r.get("run_key") or (m.group("run_key") if m else s.run_key)
            s.requester = r.get("person") or ""
        elif kind == RecordKind.RUN_ADMITTED.value:
            s.agent = r.get("agent") or s.agent
            s.agent_version = r.get("version") or s.agent_version
            s.prompt_sha256 = s.prompt_sha256 or (r.get("prompt_sha256") or "")
            if r.get("policy"):
                s.policy_bundle, s.policy_sha256 = r["policy"], r.get("policy_sha256")
        elif kind == RecordKind.MODEL_CALL.value:
            s.input_tokens += r.get("input_tokens") or 0
            s.output_tokens += r.get("output_tokens") or 0
            s.cost_usd = round(s.cost_usd + (r.get("cost_usd") or 0.0), 10)
            if r.get("prompt_sha256"):  # what the model was actually sent wins over what was pinned
                s.prompt_sha256 = r["prompt_sha256"]
        elif kind == RecordKind.TOOL_CALL.value:
            s.tool_calls += 1
            s.denials += r.get("outcome") == "denied"
            if r.get("policy") and s.policy_bundle is None:
                s.policy_bundle, s.policy_sha256 = r["policy"], r.get("policy_sha256")
        elif kind in _CLOSED:
            s.status = _CLOSED[kind]
            s.outcome = None if kind == RecordKind.RUN_COMPLETED.value else r.get("outcome")
            if kind == RecordKind.RUN_COMPLETED.value and r.get("policy") and s.policy_bundle is None:
                s.policy_bundle, s.policy_sha256 = r["policy"], r.get("policy_sha256")
    return s


def disagreements(row: Any, summary: RunSummary) -> list[str]:
    """Fields where the stored summary row says something its records do not."""
    out = []
    for name, value in summary.fields().items():
        stored = getattr(row, name)
        if name == "cost_usd":
            if abs(float(stored or 0) - float(value)) > 1e-9:
                out.append(name)
        elif (stored or None) != (value or None):
            out.append(name)
    return out


def ends(records: list[dict[str, Any]]) -> bool:
    """Does the story end with a record that closes the run?"""
    return bool(records) and records[-1].get("kind") in {k.value for k in CLOSING_KINDS}
