"""Check the audit store's chains and anchors, naming the first bad record of each run.

Not workflow-safe (SQL). For every run, in `seq` order, a record is bad when:
its number is not the next one (a deleted or inserted row), its `prev_hash` is
not the previous record's hash (rows swapped or spliced), its MAC does not
verify under the audit key (an edit, or a hash recomputed without the key),
or a query column disagrees with the signed body (an edit of a copy). Then
every anchor must verify and name a record that is present with that hash:
a chain that stops short of its last anchor lost its tail. The run's summary
row must be what its records say. A run the exporter could not read at all is
reported as a gap. What an insider can do to the store and its own anchors
together (truncate a tail with its anchors, delete a run) is checked against
Temporal in `activities.audit.witness`.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from activities.audit.chain import GENESIS, anchor_mac, link, run_ref, utc
from activities.audit.store import COPIED, AuditAnchor, AuditRecordRow, AuditRun
from activities.audit.summary import disagreements, summarise
from activities.db import engine_for
from activities.keys import KeyRing


@dataclass
class Problem:
    workflow_id: str
    seq: int
    what: str

    def __str__(self) -> str:
        if self.seq == 0:  # about the run as a whole
            return f"{self.workflow_id}: {self.what}"
        return f"{self.workflow_id}: record #{self.seq}: {self.what}"


@dataclass
class VerifyReport:
    runs: int = 0
    records: int = 0
    anchors: int = 0
    problems: list[Problem] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    """Runs the exporter could not read: nothing to verify, and nothing an auditor can rely on."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.gaps


def verify(db_url: str, ring: KeyRing, *, workflow_id: str | None = None) -> VerifyReport:
    report = VerifyReport()
    with Session(engine_for(db_url)) as s:
        query = select(AuditRun).order_by(col(AuditRun.id))
        if workflow_id:
            query = query.where(AuditRun.workflow_id == workflow_id)
        for run in s.exec(query):
            report.runs += 1
            rows = list(s.exec(select(AuditRecordRow).where(AuditRecordRow.run_pk == run.id).order_by(col(AuditRecordRow.seq), col(AuditRecordRow.id))))
            anchors = list(s.exec(select(AuditAnchor).where(AuditAnchor.run_pk == run.id).order_by(col(AuditAnchor.seq))))
            report.records += len(rows)
            report.anchors += len(anchors)
            if run.status == "unreadable":  # the exporter could not read its history: a gap, not a chain
                report.gaps.append(f"{run.workflow_id}: its history could not be read ({run.outcome}); none of its story is in the store")
                continue
            problem = check_run(run, rows, anchors, ring) or check_summary(run, rows)
            if problem:
                report.problems.append(problem)
    return report


def check_summary(run: AuditRun, rows: list[AuditRecordRow]) -> Problem | None:
    """The run's summary row against what its (verified) records say."""
    summary = summarise(json.loads(r.body) for r in rows)
    edited = disagreements(run, summary)
    if not edited:
        return None
    said = "; ".join(f"{name} says {getattr(run, name)!r}, its records {getattr(summary, name)!r}" for name in edited)
    return Problem(run.workflow_id, 0, f"the run's summary row was edited: {said}")


def check_run(run: AuditRun, rows: list[AuditRecordRow], anchors: list[AuditAnchor], ring: KeyRing) -> Problem | None:
    ref = run_ref(run.workflow_id, run.first_execution)
    bad = lambda seq, what: Problem(run.workflow_id, seq, what)  # noqa: E731
    prev, expected = GENESIS, 1
    for row in rows:
        if row.seq < expected:
            return bad(row.seq, f"a second record #{row.seq} (inserted)")
        if row.seq > expected:
            gap = f"#{expected}" if row.seq == expected + 1 else f"#{expected}..#{row.seq - 1}"
            return bad(expected, f"missing: the chain jumps from #{expected - 1} to #{row.seq} (deleted {gap})")
        if row.key_id not in ring.keys:
            return bad(row.seq, f"signed with audit key {row.key_id!r}, which is not in the key ring")
        if not hmac.compare_digest(row.hash, link(ring, row.key_id, ref, row.seq, row.prev_hash, row.body)):
            return bad(row.seq, "its hash does not verify: the record was altered or replaced (or its hash recomputed without the audit key)")
        if row.prev_hash != prev:
            return bad(row.seq, "does not link to the record before it (records moved, swapped or inserted)")
        mismatch = _copies_disagree(row)
        if mismatch:
            return bad(row.seq, f"column {mismatch} disagrees with the signed record (edited)")
        prev, expected = row.hash, expected + 1
    by_seq = {row.seq: row for row in rows}
    for anchor in anchors:
        if anchor.key_id not in ring.keys or not hmac.compare_digest(
            anchor.mac, anchor_mac(ring, anchor.key_id, ref, anchor.seq, anchor.head_hash, anchor.job_id, anchor.at)
        ):
            return bad(anchor.seq, f"the anchor of export {anchor.job_id} does not verify (altered)")
        row = by_seq.get(anchor.seq)
        if row is None:
            return bad(expected, f"missing: export {anchor.job_id} anchored the chain at #{anchor.seq}, it ends at #{expected - 1} (tail truncated)")
        if row.hash != anchor.head_hash:
            return bad(anchor.seq, f"differs from what export {anchor.job_id} anchored")
    if run.head_seq != expected - 1:
        return bad(expected, f"missing: the run's head is #{run.head_seq}, the chain ends at #{expected - 1}")
    return None


def _copies_disagree(row: AuditRecordRow) -> str | None:
    body = json.loads(row.body)
    if abs((utc(row.at) - datetime.fromisoformat(body["at"])).total_seconds()) > 0.001:  # queries filter on it
        return "at"
    for name in COPIED:
        stored = getattr(row, name)
        signed = body.get(name)
        if name == "cost_usd" and stored is not None and signed is not None:
            if abs(float(stored) - float(signed)) > 1e-9:
                return name
        elif stored != signed:
            return name
    return None
