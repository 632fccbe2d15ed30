"""The IT service desk tools: a directory lookup (read) and ticket creation (write).

Not workflow-safe (SQL I/O through sqlmodel). `create_ticket` is idempotent on
the key the workflow derives from the run's business key and step: a retried or
duplicated call returns the ticket the first call created.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import engine_for
from activities.tools.it_desk.declarations import (
    CREATE_TICKET,
    LOOKUP_REQUESTER,
    CreateTicketArgs,
    LookupRequesterArgs,
    RequesterRecord,
    TicketRecord,
)
from contracts.errors import TOOL_FAILED
from contracts.tools import ToolContext


class DirectoryPerson(SQLModel, table=True):
    __tablename__ = "directory_person"
    email: str = Field(primary_key=True)
    name: str
    department: str
    location: str
    vip: bool = False


class Ticket(SQLModel, table=True):
    __tablename__ = "service_ticket"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, index=True)
    tenant: str = Field(index=True)
    run_id: str
    requester_email: str
    category: str
    priority: str
    summary: str
    status: str = "open"
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def ticket_id(self) -> str:
        return f"INC{self.id:07d}"


_PEOPLE = DirectoryPerson.__table__
_PERSON_BY_EMAIL = select(_PEOPLE).where(_PEOPLE.c.email == bindparam("email"))


class ItDeskActivities:
    """Tool activities bound to the database they work on."""

    def __init__(self, db_url: str) -> None:
        self._db_url = db_url

    @activity.defn(name=LOOKUP_REQUESTER.activity_name)
    async def lookup_requester(self, ctx: ToolContext, args: LookupRequesterArgs) -> RequesterRecord:
        return await asyncio.to_thread(self._lookup, args.email.lower())

    def _lookup(self, email: str) -> RequesterRecord:
        # A Core select built once: an ORM session per lookup cost several times the query itself.
        with engine_for(self._db_url).connect() as conn:
            p = conn.execute(_PERSON_BY_EMAIL, {"email": email}).first()
        if p is None:
            return RequesterRecord(found=False, email=email)
        return RequesterRecord(
            found=True, email=email, name=p.name, department=p.department, location=p.location, vip=p.vip
        )

    @activity.defn(name=CREATE_TICKET.activity_name)
    async def create_ticket(self, ctx: ToolContext, args: CreateTicketArgs) -> TicketRecord:
        if not ctx.idempotency_key:
            raise ApplicationError("create_ticket needs an idempotency key", type=TOOL_FAILED, non_retryable=True)
        return await asyncio.to_thread(self._create, ctx, args)

    def _create(self, ctx: ToolContext, args: CreateTicketArgs) -> TicketRecord:
        engine = engine_for(self._db_url)
        existing = self._by_key(engine, ctx.idempotency_key)
        if existing:
            return TicketRecord(ticket_id=existing.ticket_id, status=existing.status, created=False)
        ticket = Ticket(
            idempotency_key=ctx.idempotency_key,
            tenant=ctx.tenant,
            run_id=ctx.run_id,
            requester_email=args.requester_email.lower(),
            category=args.category.value,
            priority=args.priority.value,
            summary=args.summary,
        )
        try:
            with Session(engine) as s:
                s.add(ticket)
                s.commit()
                s.refresh(ticket)
                return TicketRecord(ticket_id=ticket.ticket_id, status=ticket.status, created=True)
        except IntegrityError:  # a concurrent duplicate won the race: one effect, same answer
            existing = self._by_key(engine, ctx.idempotency_key)
            assert existing is not None
            return TicketRecord(ticket_id=existing.ticket_id, status=existing.status, created=False)

    @staticmethod
    def _by_key(engine, key: str) -> Ticket | None:
        with Session(engine) as s:
            return s.exec(select(Ticket).where(Ticket.idempotency_key == key)).first()

    def activities(self) -> list:
        return [self.lookup_requester, self.create_ticket]


def seed_directory(db_url: str, people: list[dict]) -> int:
    """Insert or update directory entries (demo and tests). Returns how many were written."""
    with Session(engine_for(db_url)) as s:
        for p in people:
            s.merge(DirectoryPerson(**p))
        s.commit()
    return len(people)
