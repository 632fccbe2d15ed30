"""Do clients and workers encrypt with the same keys? A check value per key id, in the factory's store.

Not workflow-safe (SQL). A worker registers, for every key in its payload key
ring, an HMAC of a fixed string under that key (never the key). A client
compares its own ring with what the workers registered when it connects, so a
client with a different key under the same id, or an active key no worker holds,
is told so in one sentence at connect, instead of starting runs the workers
cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone

from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from activities.db import engine_for
from activities.keys import KeyRing, KeyRingError

CHECK_MESSAGE = b"aifactory codec key check v1"
FIX = "point AIFACTORY_CODEC_KEY_FILE (or AIFACTORY_CODEC_KEYS, or AIFACTORY_HOME) at the key ring the factory's workers use"


class CodecKeyCheck(SQLModel, table=True):
    __tablename__ = "codec_key_check"

    kid: str = Field(primary_key=True)
    check: str
    registered_at: datetime


def check_value(key: bytes) -> str:
    return hmac.new(key, CHECK_MESSAGE, hashlib.sha256).hexdigest()[:32]


def register_codec_keys(db_url: str, ring: KeyRing) -> None:
    """A worker's keys: registered if new; a key that differs from the registered one under its id is refused."""
    with Session(engine_for(db_url)) as s:
        known = {row.kid: row.check for row in s.exec(select(CodecKeyCheck))}
        for kid, key in ring.keys.items():
            value = check_value(key)
            if kid in known and not hmac.compare_digest(known[kid], value):
                raise KeyRingError(f"this worker's codec key {kid!r} is not the key registered under that id by the factory's other workers: {FIX}")
            if kid not in known:
                s.add(CodecKeyCheck(kid=kid, check=value, registered_at=datetime.now(timezone.utc)))
        try:
            s.commit()
        except IntegrityError:  # another worker registered the same ids at the same moment
            s.rollback()
            return register_codec_keys(db_url, ring)


def check_codec_keys(db_url: str, ring: KeyRing) -> None:
    """A client's keys against the workers': `KeyRingError` in one sentence if they cannot agree."""
    with Session(engine_for(db_url)) as s:
        known = {row.kid: row.check for row in s.exec(select(CodecKeyCheck))}
    if not known:  # no worker has registered yet: nothing to compare with
        return
    for kid, key in ring.keys.items():
        if kid in known and not hmac.compare_digest(known[kid], check_value(key)):
            raise KeyRingError(f"codec key {kid!r} of this client is not the key the factory's workers use under that id: {FIX}")
    if ring.active not in known:
        raise KeyRingError(
            f"this client encrypts with codec key {ring.active!r}, which no worker of this factory holds "
            f"(they hold {', '.join(sorted(known))}): {FIX}"
        )
