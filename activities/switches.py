"""Kill switches, kept in the factory's SQL store so they survive restarts.

Not workflow-safe (I/O). A switch covers one agent, one tenant or everything.
Setting and lifting are rows with who, when and why; nothing is deleted, so the
table is the record of every switch ever thrown. A run's first model call
reads it before the call is made (`activities.admission`; runs recorded before
that asked the `check_kill_switch` local activity); `aifactory kill` stops runs
in flight.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Callable

from sqlmodel import Field, Session, SQLModel, or_, select
from temporalio import activity

from activities.db import engine_for
from contracts.errors import FactoryError
from contracts.control import KillSwitchState, SwitchQuery, SwitchScope
from contracts.policy import Directory
from contracts.signing import SWITCH_LIFT, Signature, switch_body
from contracts.wire import Activity
from policies.signatures import refusal

log = logging.getLogger("aifactory.switches")


class KillSwitch(SQLModel, table=True):
    __tablename__ = "kill_switch"

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(index=True)
    target: str = Field(default="", index=True)
    reason: str
    set_by: str
    set_at: datetime
    lifted_by: str | None = None
    lifted_at: datetime | None = None
    lift_reason: str | None = None

    def state(self) -> KillSwitchState:
        assert self.id is not None
        return KillSwitchState(
            id=self.id, scope=SwitchScope(self.scope), target=self.target, reason=self.reason, set_by=self.set_by,
            set_at=self.set_at.replace(tzinfo=timezone.utc) if self.set_at.tzinfo is None else self.set_at,
        )  # fmt: skip


class SwitchLiftProof(SQLModel, table=True):
    """Who lifted a switch, with their signature: a lift without valid proof does not count."""

    __tablename__ = "kill_switch_lift_proof"

    switch_id: int = Field(primary_key=True, foreign_key="kill_switch.id")
    signature: str
    """The `Signature` as JSON, over `switch_body(scope, target, reason)` for run id `switch/<id>`."""


class SwitchError(FactoryError, ValueError):
    """A switch request that cannot be carried out; the message says why."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _on(s: Session, scope: SwitchScope, target: str) -> list[KillSwitch]:
    """The switches on for exactly this scope and target (`all` has no target)."""
    target = "" if scope is SwitchScope.ALL else target
    return list(s.exec(select(KillSwitch).where(KillSwitch.scope == scope.value, KillSwitch.target == target, KillSwitch.lifted_at == None)).all())  # noqa: E711


def _lifted(s: Session, scope: SwitchScope, target: str) -> list[KillSwitch]:
    target = "" if scope is SwitchScope.ALL else target
    return list(s.exec(select(KillSwitch).where(KillSwitch.scope == scope.value, KillSwitch.target == target, KillSwitch.lifted_at != None)))  # noqa: E711


def set_switch(db_url: str, scope: SwitchScope, target: str, *, reason: str, by: str) -> KillSwitchState:
    """Turn a switch on (or return the one already on for the same scope and target)."""
    if not reason.strip() or not by.strip():
        raise SwitchError("a kill switch needs a reason and the person who sets it (--reason, --as)")
    target = "" if scope is SwitchScope.ALL else target
    with Session(engine_for(db_url)) as s:
        on = next(iter(_on(s, scope, target)), None)
        if on is not None:
            return on.state()
        row = KillSwitch(scope=scope.value, target=target, reason=reason.strip(), set_by=by.strip(), set_at=_now())
        s.add(row)
        s.commit()
        s.refresh(row)
        return row.state()


def lift_switch(
    db_url: str, scope: SwitchScope, target: str, *, reason: str, by: str, sign: Callable[[int], Signature | None] | None = None
) -> list[KillSwitchState]:
    """Lift the switch on this scope and target; returns what was lifted (nothing if none was on).

    `sign(switch_id)` gives the lifter's signature over the lift (`contracts.signing.SWITCH_LIFT`);
    a worker honours a lift only with valid proof when its directory requires signatures."""
    with Session(engine_for(db_url)) as s:
        # The switches on, and those "lifted" with no proof of who did (a lift written by hand): a signed
        # lift now makes them lifted for good.
        unproven = [r for r in _lifted(s, scope, target) if s.get(SwitchLiftProof, r.id) is None] if sign is not None else []
        rows = _on(s, scope, target) + unproven
        lifted = [r.state() for r in rows]
        for r in rows:
            r.lifted_by, r.lifted_at, r.lift_reason = by.strip(), _now(), reason.strip() or None
            s.add(r)
            proof = sign(r.id) if sign is not None and r.id is not None else None
            if proof is not None:
                s.merge(SwitchLiftProof(switch_id=r.id, signature=proof.model_dump_json()))
        s.commit()
        return lifted


def lift_refusal(row: KillSwitch, proof: SwitchLiftProof | None, directory: Directory) -> str | None:
    """Why a lift does not count (no proof, or proof that does not hold), or None when it does."""
    sig = Signature.model_validate_json(proof.signature) if proof is not None else None
    lifted_at = row.lifted_at.replace(tzinfo=timezone.utc) if row.lifted_at and row.lifted_at.tzinfo is None else row.lifted_at
    body = switch_body(row.scope, row.target, row.lift_reason or "")
    return refusal(directory, SWITCH_LIFT, f"switch/{row.id}", row.lifted_by or "", body, sig, lifted_at or _now(), [])


def active_switch(db_url: str, agent: str, tenant: str, directory: Directory | None = None) -> KillSwitchState | None:
    """The switch that stops runs of `agent` for `tenant`, if one is on (the oldest).

    Given the approver directory (a worker admitting a run), a switch whose lift carries no valid
    proof of who lifted it is still on: a lift written into the store by hand does not count."""
    with Session(engine_for(db_url)) as s:
        scope = or_(
            KillSwitch.scope == SwitchScope.ALL.value,
            (KillSwitch.scope == SwitchScope.AGENT.value) & (KillSwitch.target == agent),
            (KillSwitch.scope == SwitchScope.TENANT.value) & (KillSwitch.target == tenant),
        )
        row = s.exec(select(KillSwitch).where(KillSwitch.lifted_at == None).where(scope).order_by(KillSwitch.id)).first()  # noqa: E711
        if row is not None:
            return row.state()
        if directory is None or not directory.require_signatures:
            return None
        for lifted in s.exec(select(KillSwitch).where(KillSwitch.lifted_at != None).where(scope).order_by(KillSwitch.id)):  # noqa: E711
            problem = lift_refusal(lifted, s.get(SwitchLiftProof, lifted.id), directory)
            if problem is not None:
                log.warning("kill switch #%s counts as on: its lift by %s does not hold (%s)", lifted.id, lifted.lifted_by, problem)
                return lifted.state()
        return None


def switch_history(db_url: str, *, on_only: bool = False) -> list[KillSwitch]:
    """Every switch ever set, oldest first (`on_only`: those not lifted)."""
    with Session(engine_for(db_url)) as s:
        q = select(KillSwitch).order_by(KillSwitch.id)
        if on_only:
            q = q.where(KillSwitch.lifted_at == None)  # noqa: E711
        return list(s.exec(q).all())


class SwitchActivities:
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    @activity.defn(name=Activity.CHECK_KILL_SWITCH)
    async def check_kill_switch(self, query: SwitchQuery) -> KillSwitchState | None:
        return await asyncio.to_thread(active_switch, self.db_url, query.agent, query.tenant)
