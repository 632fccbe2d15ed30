"""The envelope ledger: atomic, exact reserve-and-settle in the factory's SQL store.

Not workflow-safe (I/O). Before a model call the model activity holds the most
the call can cost (its prompt at the agent's context ceiling plus `max_tokens`
of output, at the model's price); after it, the call settles what it cost.

Holds come out of a *lease*: room this worker process reserved in the ledger
at once, with one conditional transaction that grants it only if spent +
reserved + it stays within the envelope, so concurrent runs on any number of
workers cannot overspend. While the lease has room, a hold is a few
operations in memory. A lease grows when a call needs more than is free in it,
by at most `LEASE_HOLDS` holds and at most `LEASE_SHARE` of the envelope's free
room, so a worker never sits on much of a nearly spent envelope.

Settling is exact and durable before the activity returns: one transaction
books the cost as spent and takes it out of the lease (and of what is
reserved); the model activity runs it in the same transaction as the call's
transcript. Alerts at 50/80/100% come from the spend before and after each
settlement, so exactly one settlement crosses each threshold. A worker
returns its leases when it stops (`close`); a dead worker's lease expires and
the next growth anywhere releases it (its unsettled calls spent nothing on
record, as with any call whose worker died before it settled).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from activities.db import engine_for
from contracts.budget import ALERT_THRESHOLDS, BudgetNote, EnvelopeRef

#: A lease not renewed within this long is released (its worker must have died).
RESERVATION_TTL = timedelta(minutes=30)
#: A lease is renewed in the store when it was last written longer ago than this.
RENEW_AFTER = 60.0
#: A lease last renewed longer ago than this is treated as lost and replaced by a new one.
STALE_AFTER = RESERVATION_TTL.total_seconds() / 2
#: A lease grows by at most this many holds of the call that asks...
LEASE_HOLDS = 16
#: ...and by at most this share of the envelope's free room.
LEASE_SHARE = 0.25
#: Slack on money comparisons (floats).
EPSILON = 1e-12


class EnvelopeLedger(SQLModel, table=True):
    __tablename__ = "envelope_ledger"
    key: str = Field(primary_key=True)
    agent: str = Field(index=True)
    tenant: str = Field(index=True)
    limit_usd: float
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    """Room held by leases (the sum of their amounts)."""
    exhausted_at: datetime | None = None
    """Set when a reservation was refused; new runs are refused until the envelope is raised."""
    raised_by: str | None = None
    updated_at: datetime


class EnvelopeReservation(SQLModel, table=True):
    """A worker's lease on an envelope: room reserved in the ledger, handed out to calls in memory."""

    __tablename__ = "envelope_reservation"
    id: str = Field(primary_key=True)
    """The lease: worker process and envelope."""
    key: str = Field(index=True)
    amount_usd: float
    """Room the lease holds: grown by each grant, less each settled cost."""
    expires_at: datetime = Field(index=True)


# Statements on the tables themselves (SQLAlchemy Core): settling runs on every model call, and
# ORM-enabled statements cost several times more CPU than the SQL they send; the settlement's
# two are built once, with parameters.
_LEDGER = EnvelopeLedger.__table__
_LEASE = EnvelopeReservation.__table__
_SPEND = (
    update(_LEDGER).where(_LEDGER.c.key == bindparam("envelope"))
    .values(spent_usd=_LEDGER.c.spent_usd + bindparam("cost"), reserved_usd=_LEDGER.c.reserved_usd - bindparam("held"), updated_at=bindparam("now"))
    .returning(_LEDGER.c.spent_usd, _LEDGER.c.limit_usd)
)  # fmt: skip
_SHRINK = (
    update(_LEASE).where(_LEASE.c.id == bindparam("lease"))
    .values(amount_usd=_LEASE.c.amount_usd - bindparam("cost"), expires_at=bindparam("expires"))
    .returning(_LEASE.c.id)
)  # fmt: skip


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _round(x: float) -> float:
    return round(x, 10)


@dataclass
class _Lease:
    """This process's view of one lease: what it holds in the store and which calls hold part of it."""

    id: str
    granted: float = 0.0
    holds: dict[str, float] = field(default_factory=dict)
    renewed: float = -math.inf
    """Monotonic time of the last write to the lease's row."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def free(self) -> float:
        return self.granted - sum(self.holds.values())

    def take(self, reservation: str, amount: float) -> bool:
        if time.monotonic() - self.renewed >= RENEW_AFTER or self.free + EPSILON < amount:
            return False
        self.holds[reservation] = amount
        return True


@dataclass
class Settled:
    """A settlement made in the store, for `BudgetLedger.settled` to apply in memory."""

    lease: _Lease
    reservation: str
    cost: float
    backed: bool
    note: BudgetNote


class BudgetLedger:
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._known: set[str] = set()
        self._swept: dict[str, float] = {}
        self._leases: dict[str, _Lease] = {}
        self._held: dict[str, _Lease] = {}
        """reservation -> the lease its hold came from."""
        self._retired: dict[str, str] = {}
        """envelope key -> a replaced, idle lease to return at the next growth."""
        self._process = uuid.uuid4().hex[:12]

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

    def _lease(self, key: str) -> _Lease:
        lease = self._leases.get(key)
        if lease is None or (lease.granted and time.monotonic() - lease.renewed > STALE_AFTER):
            # Unused this long, the lease may have expired in the store: calls still holding part of it
            # settle against it, new holds come from a new lease, and an idle one is returned at its growth.
            if lease is not None and not lease.holds:
                self._retired[key] = lease.id
            lease = self._leases[key] = _Lease(id=f"{key}|{self._process}|{uuid.uuid4().hex[:8]}")
        return lease

    async def reserve(self, ref: EnvelopeRef, reservation: str, amount: float) -> BudgetNote:
        """Hold `amount` for one call if the envelope has room for it: from this worker's lease,
        growing the lease (one transaction) when it has too little free. A refusal carries what the
        ledger holds; a grant carries no figures (its settlement does)."""
        lease = self._lease(ref.key)
        if not lease.take(reservation, amount):
            async with lease.lock:  # one growth at a time per lease; the others then find room
                if not lease.take(reservation, amount):
                    need = max(amount - max(lease.free, 0.0), 0.0)
                    retire = self._retired.pop(ref.key, None)
                    note, chunk = await asyncio.to_thread(self._grow, ref, lease.id, need, amount, retire)
                    if not note.granted:
                        return note
                    lease.granted += chunk
                    lease.renewed = time.monotonic()
                    lease.holds[reservation] = amount
        self._held[reservation] = lease
        return BudgetNote(granted=True, spent_usd=0.0, limit_usd=ref.limit_usd)

    def release(self, reservation: str) -> None:
        """Give a hold back to its lease: the call reached no endpoint and spent nothing."""
        lease = self._held.pop(reservation, None)
        if lease is not None:
            lease.holds.pop(reservation, None)

    async def settle(self, ref: EnvelopeRef, reservation: str, cost: float) -> BudgetNote:
        """Book the call's actual cost in its own transaction (see `settle_in` to share one)."""

        def run() -> Settled:
            with engine_for(self.db_url).begin() as conn:
                return self.settle_in(conn, ref, reservation, cost)

        return self.settled(await asyncio.to_thread(run))

    def settle_in(self, conn: Connection, ref: EnvelopeRef, reservation: str, cost: float) -> Settled:
        """Book the call's cost as spent and take it out of its lease, inside the caller's transaction.

        Call `settled` with the result once the transaction has committed."""
        lease = self._held.get(reservation) or _Lease(id="")
        # The ledger row first, as everywhere (one lock order, no deadlocks): the cost moves from reserved to spent...
        now = _now()
        after, limit = conn.execute(_SPEND, {"envelope": ref.key, "cost": cost, "held": cost, "now": now}).one()
        # ...and out of the lease, unless the lease expired (its worker looked dead): its room is released already.
        backed = lease.id != "" and conn.execute(_SHRINK, {"lease": lease.id, "cost": cost, "expires": now + RESERVATION_TTL}).first() is not None
        if not backed:
            conn.execute(update(_LEDGER).where(_LEDGER.c.key == ref.key).values(reserved_usd=_LEDGER.c.reserved_usd + cost))
        before = after - cost
        crossed = [p for p in ALERT_THRESHOLDS if before < limit * p / 100 <= after]
        note = BudgetNote(granted=True, spent_usd=_round(after), limit_usd=limit, crossed=crossed)
        return Settled(lease, reservation, cost, backed, note)

    def settled(self, s: Settled) -> BudgetNote:
        """Apply a committed settlement in memory: the hold ends, the lease shrinks by the cost."""
        self._held.pop(s.reservation, None)
        s.lease.holds.pop(s.reservation, None)
        if s.backed:
            s.lease.granted -= s.cost
            s.lease.renewed = time.monotonic()
        return s.note

    def _grow(self, ref: EnvelopeRef, lease_id: str, need: float, amount: float, retire: str | None = None) -> tuple[BudgetNote, float]:
        """Reserve `need` or more for the lease and renew it (one transaction), or refuse: (note, room granted).

        `need` 0 only renews; `retire` is an idle lease of this process to return in the same transaction."""
        self._ensure(ref)
        now = _now()
        with engine_for(self.db_url).begin() as conn:
            # The ledger row first (SQLite's write lock, PostgreSQL's row lock) until commit.
            spent, reserved, limit = conn.execute(
                update(_LEDGER).where(_LEDGER.c.key == ref.key).values(updated_at=now)
                .returning(_LEDGER.c.spent_usd, _LEDGER.c.reserved_usd, _LEDGER.c.limit_usd)
            ).one()  # fmt: skip
            reserved -= self._release_expired(conn, ref.key)
            if retire is not None:
                reserved -= self._release(conn, retire)
            room = limit - spent - reserved
            if need > 0 and room + EPSILON < need:
                conn.execute(update(_LEDGER).where(_LEDGER.c.key == ref.key, _LEDGER.c.exhausted_at.is_(None)).values(exhausted_at=now))
                return BudgetNote(granted=False, spent_usd=spent, limit_usd=limit), 0.0
            chunk = min(max(need, min(LEASE_HOLDS * amount, LEASE_SHARE * room)), max(room, need)) if need > 0 else 0.0
            conn.execute(update(_LEDGER).where(_LEDGER.c.key == ref.key).values(reserved_usd=_LEDGER.c.reserved_usd + chunk))
            expires = now + RESERVATION_TTL
            grown = conn.execute(
                update(_LEASE).where(_LEASE.c.id == lease_id)
                .values(amount_usd=_LEASE.c.amount_usd + chunk, expires_at=expires)
            ).rowcount  # fmt: skip
            if not grown:
                conn.execute(insert(_LEASE).values(id=lease_id, key=ref.key, amount_usd=chunk, expires_at=expires))
            return BudgetNote(granted=True, spent_usd=spent, limit_usd=limit), chunk

    def _release_expired(self, conn: Connection, key: str) -> float:
        """Release leases whose worker stopped renewing them (checked at most once a minute per envelope)."""
        now = time.monotonic()
        if now - self._swept.get(key, -1e9) < 60:
            return 0.0
        self._swept[key] = now
        stale = conn.execute(
            delete(_LEASE)
            .where(_LEASE.c.key == key, _LEASE.c.expires_at < _now())
            .returning(_LEASE.c.amount_usd)
        ).all()
        released = sum(r[0] for r in stale)
        if stale:
            conn.execute(update(_LEDGER).where(_LEDGER.c.key == key).values(reserved_usd=_LEDGER.c.reserved_usd - released))
        return released

    def close(self) -> None:
        """Return this worker's leases to their envelopes (at shutdown, once its calls have settled)."""
        held = [(key, lease.id) for key, lease in self._leases.items()] + list(self._retired.items())
        self._leases, self._retired = {}, {}
        if held:
            with engine_for(self.db_url).begin() as conn:
                for key in sorted({key for key, _ in held}):  # ledger rows first, as everywhere
                    conn.execute(update(_LEDGER).where(_LEDGER.c.key == key).values(updated_at=_now()))
                for _, lease_id in held:
                    self._release(conn, lease_id)

    @staticmethod
    def _release(conn: Connection, lease_id: str) -> float:
        """Delete a lease and take its room out of what its envelope has reserved; returns that room."""
        row = conn.execute(
            delete(_LEASE).where(_LEASE.c.id == lease_id)
            .returning(_LEASE.c.key, _LEASE.c.amount_usd)
        ).first()  # fmt: skip
        if row is None:
            return 0.0
        conn.execute(update(_LEDGER).where(_LEDGER.c.key == row[0]).values(reserved_usd=_LEDGER.c.reserved_usd - row[1]))
        return row[1]

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
