"""The factory's SQL store: one engine per URL, SQLite embedded, PostgreSQL in production.

Not workflow-safe (I/O). The URL is one setting (`AIFACTORY_DB_URL`); tables are
declared with sqlmodel next to the code that owns them and created here; tool
families bring theirs (`ToolFamily.tables`).
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """A shared engine for `url`, with the tables created on first use."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _make_engine(url)
            _import_tables()
            SQLModel.metadata.create_all(engine)
            _engines[url] = engine
        return engine


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL: readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _import_tables() -> None:
    # Table modules register themselves on SQLModel.metadata when imported.
    import activities.api_keys  # noqa: F401
    import activities.audit.store  # noqa: F401
    import activities.budget  # noqa: F401
    import activities.codec_keys  # noqa: F401
    import activities.model.transcripts  # noqa: F401
    import activities.notify  # noqa: F401
    import activities.slack  # noqa: F401
    import activities.switches  # noqa: F401
    from activities.tools.families import installed_families

    installed_families()  # each family's tables are declared with its activities


def create_tables(url: str, tables) -> None:
    """Create `tables` (SQLModel table classes) in the store at `url` where they are missing."""
    if tables:
        SQLModel.metadata.create_all(engine_for(url), tables=[t.__table__ for t in tables])


def dispose_all() -> None:
    """Close every engine (tests and shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
