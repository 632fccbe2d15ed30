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
from datetime import datetime, timezone

from sqlmodel import Field, Session, SQLModel, or_, select
from temporalio import activity

from activities.db import engine_for
from contracts.control import KillSwitchState, SwitchQuery, SwitchScope


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


class SwitchError(ValueError):
    """A switch request that cannot be carried out; the message says why."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _on(s: Session, scope: SwitchScope, target: str) -> list[KillSwitch]:
    """The switches on for exactly this scope and target (`all` has no target)."""
    target = "" if scope is SwitchScope.ALL else target
    return list(s.exec(select(KillSwitch).where(KillSwitch.scope == scope.value, KillSwitch.target == target, KillSwitch.lifted_at == None)).all())  # noqa: E711


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


def lift_switch(db_url: str, scope: SwitchScope, target: str, *, reason: str, by: str) -> list[KillSwitchState]:
    """Lift the switch on this scope and target; returns what was lifted (nothing if none was on)."""
    with Session(engine_for(db_url)) as s:
        rows = _on(s, scope, target)
        lifted = [r.state() for r in rows]
        for r in rows:
            r.lifted_by, r.lifted_at, r.lift_reason = by.strip(), _now(), reason.strip() or None
            s.add(r)
        s.commit()
        return lifted


def active_switch(db_url: str, agent: str, tenant: str) -> KillSwitchState | None:
    """The switch that stops runs of `agent` for `tenant`, if one is on (the oldest)."""
    with Session(engine_for(db_url)) as s:
        row = s.exec(
            select(KillSwitch)
            .where(KillSwitch.lifted_at == None)  # noqa: E711
            .where(
                or_(
                    KillSwitch.scope == SwitchScope.ALL.value,
                    (KillSwitch.scope == SwitchScope.AGENT.value) & (KillSwitch.target == agent),
                    (KillSwitch.scope == SwitchScope.TENANT.value) & (KillSwitch.target == tenant),
                )
            )
            .order_by(KillSwitch.id)
        ).first()
        return row.state() if row else None


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

    @activity.defn(name="check_kill_switch")
    async def check_kill_switch(self, query: SwitchQuery) -> KillSwitchState | None:
        return await asyncio.to_thread(active_switch, self.db_url, query.agent, query.tenant)
