"""The conversation store: each run's messages, kept outside workflow history.

Not workflow-safe (SQL I/O). The model activity receives only the messages new
since its last call and the count the store must already hold (`base_seq`); it
writes them and the model's reply at fixed positions, so a retried attempt
rewrites the same rows instead of appending twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, TypeVar

from sqlalchemy import Connection, bindparam, delete, insert
from sqlmodel import Field, Session, SQLModel, col, select

from activities.db import engine_for
from contracts.model import ChatMessage

T = TypeVar("T")


class TranscriptMessage(SQLModel, table=True):
    __tablename__ = "transcript_message"
    transcript_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    message: str


_TABLE = TranscriptMessage.__table__
_DROP_FROM = delete(_TABLE).where(_TABLE.c.transcript_id == bindparam("tid"), _TABLE.c.seq >= bindparam("seq"))
_INSERT = insert(_TABLE)


class TranscriptGap(LookupError):
    """The store holds fewer messages than the workflow expects."""


class TranscriptStore:
    """SQL-backed, with a small in-process cache so a run's turns on one worker skip the read."""

    def __init__(self, db_url: str, cache_size: int = 2048) -> None:
        self._db_url = db_url
        self._cache: OrderedDict[str, list[ChatMessage]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def cached_prefix(self, transcript_id: str, base_seq: int) -> list[ChatMessage] | None:
        """The first `base_seq` messages if this process holds them, without touching the store."""
        if base_seq == 0:
            return []
        with self._lock:
            cached = self._cache.get(transcript_id)
            if cached is not None and len(cached) >= base_seq:
                return list(cached[:base_seq])
        return None

    def prefix(self, transcript_id: str, base_seq: int) -> list[ChatMessage]:
        """The first `base_seq` messages, from the cache or the store; `TranscriptGap` if fewer are stored."""
        return self._prefix(transcript_id, base_seq)

    @property
    def db_url(self) -> str:
        return self._db_url

    def write(
        self, transcript_id: str, base_seq: int, messages: list[ChatMessage], also: Callable[[Connection], T] | None = None
    ) -> T | None:
        """Store `messages` at positions `base_seq...` in one transaction (later positions are dropped).

        `also` runs in the same transaction, on the same connection; its result is returned."""
        prefix = self._prefix(transcript_id, base_seq)
        result = self._write(transcript_id, base_seq, messages, also)
        self._remember(transcript_id, prefix + list(messages))
        return result

    def load(self, transcript_id: str) -> list[ChatMessage]:
        with Session(engine_for(self._db_url)) as s:
            rows = s.exec(
                select(TranscriptMessage)
                .where(TranscriptMessage.transcript_id == transcript_id)
                .order_by(col(TranscriptMessage.seq))
            ).all()
        return [ChatMessage.model_validate_json(r.message) for r in rows]

    def _prefix(self, transcript_id: str, base_seq: int) -> list[ChatMessage]:
        if base_seq == 0:
            return []
        with self._lock:
            cached = self._cache.get(transcript_id)
            if cached is not None and len(cached) >= base_seq:
                return list(cached[:base_seq])
        stored = self.load(transcript_id)
        if len(stored) < base_seq:
            raise TranscriptGap(
                f"transcript {transcript_id} holds {len(stored)} messages, the run expects {base_seq}"
            )
        return stored[:base_seq]

    def _write(self, transcript_id: str, base_seq: int, messages: list[ChatMessage], also: Callable[[Connection], T] | None) -> T | None:
        # SQLAlchemy Core in one transaction, with statements built once: this runs on every model
        # call, and an ORM session per message cost several times more CPU than the statements themselves.
        with engine_for(self._db_url).begin() as conn:
            conn.execute(_DROP_FROM, {"tid": transcript_id, "seq": base_seq})
            if messages:
                conn.execute(
                    _INSERT,
                    [
                        {"transcript_id": transcript_id, "seq": base_seq + i, "message": m.model_dump_json(exclude_defaults=True)}
                        for i, m in enumerate(messages)
                    ],
                )
            return also(conn) if also is not None else None

    def _remember(self, transcript_id: str, full: list[ChatMessage]) -> None:
        with self._lock:
            self._cache[transcript_id] = full
            self._cache.move_to_end(transcript_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
