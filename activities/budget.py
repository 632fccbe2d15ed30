"""The envelope ledger: atomic reserve-and-settle in the factory's SQL store.

Not workflow-safe (I/O). Before a model call the model activity reserves the
most the call can cost (its prompt at the agent's context ceiling plus
`max_tokens` of output, at the model's price); the reservation is granted only
if spent + reserved + it stays within the envelope, in one conditional UPDATE,
so concurrent runs on any number of workers cannot overspend. After the call it
settles the actual cost and releases the rest. A reservation whose call never
settled (a worker died mid-call) expires and is released by the next reservation.
Alerts at 50/80/100% are computed from the settled spend before and after each
settlement, so exactly one settlement crosses each threshold.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from activities.db import engine_for
from contracts.budget import ALERT_THRESHOLDS, BudgetNote, EnvelopeRef

#: A reservation not settled within this long is released (its call must have died with its worker).
RESERVATION_TTL = timedelta(minutes=30)


class EnvelopeLedger(SQLModel, table=True):
    __tablename__ = "envelope_ledger"
    key: str = Field(primary_key=True)
    agent: str = Field(index=True)
    tenant: str = Field(index=True)
    limit_usd: float
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    exhausted_at: datetime | None = None
    """Set when a reservation was refused; new runs are refused until the envelope is raised."""
    raised_by: str | None = None
    updated_at: datetime


class EnvelopeReservation(SQLModel, table=True):
    __tablename__ = "envelope_reservation"
    id: str = Field(primary_key=True)
    """run id, step and attempt of the model call."""
    key: str = Field(index=True)
    amount_usd: float
    expires_at: datetime = Field(index=True)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _round(x: float) -> float:
    return round(x, 10)


class BudgetLedger:
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._known: set[str] = set()
        self._swept: dict[str, float] = {}

    def _ensure(self, ref: EnvelopeRef) -> None:
        """Create the period's ledger row once (per process); another worker may have made it."""
        if ref.key in self._known:
            return
        with Session(engine_for(self.db_url)) as s:
            if s.get(EnvelopeLedger, ref.key) is None:
                try:
                    s.add(EnvelopeLedger(key=ref.key, agent=ref.agent, tenant=ref.tenant, limit_usd=ref.limit_usd, updated_at=_now()))
                    s.commit()
                except IntegrityError:
                    s.rollback()
        self._known.add(ref.key)

    def reserve(self, ref: EnvelopeRef, reservation: str, amount: float) -> BudgetNote:
        """Hold `amount` for one call, atomically, if the envelope has room for it (one transaction)."""
        self._ensure(ref)
        with Session(engine_for(self.db_url)) as s:
            self._release_expired(s, ref.key)
            row = s.exec(
                update(EnvelopeLedger)
                .where(EnvelopeLedger.key == ref.key)
                .where(EnvelopeLedger.spent_usd + EnvelopeLedger.reserved_usd + amount <= EnvelopeLedger.limit_usd + 1e-12)
                .values(reserved_usd=EnvelopeLedger.reserved_usd + amount, updated_at=_now())
                .returning(EnvelopeLedger.spent_usd, EnvelopeLedger.limit_usd)
            ).first()
            if row is None:
                s.exec(update(EnvelopeLedger).where(EnvelopeLedger.key == ref.key, EnvelopeLedger.exhausted_at == None).values(exhausted_at=_now()))  # noqa: E711
                ledger = s.get(EnvelopeLedger, ref.key)
                s.commit()
                assert ledger is not None
                return BudgetNote(granted=False, spent_usd=ledger.spent_usd, limit_usd=ledger.limit_usd)
            s.merge(EnvelopeReservation(id=reservation, key=ref.key, amount_usd=amount, expires_at=_now() + RESERVATION_TTL))
            s.commit()
            return BudgetNote(granted=True, spent_usd=row[0], limit_usd=row[1])

    def settle(self, ref: EnvelopeRef, reservation: str, cost: float) -> BudgetNote:
        """Book the call's actual cost and release its hold (one transaction); say which thresholds it crossed.

        Settling twice books nothing twice: the hold is deleted by the first settlement, and a
        second one (a retried activity that already settled) finds no hold and changes nothing.
        """
        with Session(engine_for(self.db_url)) as s:
            held = s.exec(
                delete(EnvelopeReservation).where(EnvelopeReservation.id == reservation).returning(EnvelopeReservation.amount_usd)
            ).first()
            if held is None:
                ledger = s.get(EnvelopeLedger, ref.key)
                s.rollback()
                return BudgetNote(granted=True, spent_usd=ledger.spent_usd if ledger else 0.0, limit_usd=ledger.limit_usd if ledger else ref.limit_usd)
            after, limit = s.exec(
                update(EnvelopeLedger)
                .where(EnvelopeLedger.key == ref.key)
                .values(spent_usd=EnvelopeLedger.spent_usd + cost, reserved_usd=EnvelopeLedger.reserved_usd - held[0], updated_at=_now())
                .returning(EnvelopeLedger.spent_usd, EnvelopeLedger.limit_usd)
            ).one()
            s.commit()
        before = after - cost
        crossed = [p for p in ALERT_THRESHOLDS if before < limit * p / 100 <= after]
        return BudgetNote(granted=True, spent_usd=_round(after), limit_usd=limit, crossed=crossed)

    def _release_expired(self, s: Session, key: str) -> None:
        """Release holds whose call never settled (checked at most once a minute per envelope)."""
        now = time.monotonic()
        if now - self._swept.get(key, -1e9) < 60:
            return
        self._swept[key] = now
        stale = s.exec(
            delete(EnvelopeReservation)
            .where(EnvelopeReservation.key == key, EnvelopeReservation.expires_at < _now())
            .returning(EnvelopeReservation.amount_usd)
        ).all()
        if stale:
            s.exec(update(EnvelopeLedger).where(EnvelopeLedger.key == key).values(reserved_usd=EnvelopeLedger.reserved_usd - sum(r[0] for r in stale)))

    # -- operators ------------------------------------------------------------------------

    def exhausted(self, key: str) -> EnvelopeLedger | None:
        with Session(engine_for(self.db_url)) as s:
            row = s.get(EnvelopeLedger, key)
            return row if row is not None and row.exhausted_at is not None else None

    def raise_limit(self, key: str, limit_usd: float, by: str) -> EnvelopeLedger:
        with Session(engine_for(self.db_url)) as s:
            row = s.get(EnvelopeLedger, key)
            if row is None:
                raise KeyError(f"no envelope {key!r} in the ledger")
            if limit_usd <= row.spent_usd:
                raise ValueError(f"the new envelope ${limit_usd:.4f} must be above what is spent (${row.spent_usd:.4f})")
            row.limit_usd, row.exhausted_at, row.raised_by, row.updated_at = limit_usd, None, by, _now()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def rows(self, agent: str | None = None) -> list[EnvelopeLedger]:
        with Session(engine_for(self.db_url)) as s:
            q = select(EnvelopeLedger).order_by(EnvelopeLedger.key)
            if agent:
                q = q.where(EnvelopeLedger.agent == agent)
            return list(s.exec(q).all())
