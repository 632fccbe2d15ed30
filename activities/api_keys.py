"""API keys of the HTTP gateway, kept hashed in the factory's SQL store.

Not workflow-safe (SQL). A key is shown once, at creation, as
`aif_<key id>_<secret>`; the store keeps its id, a name, its scope (tenants and
agents: `*` is all, none listed is none), the directory person a decision made
with it is attributed to, and the SHA-256 of the secret. The secret is 192
random bits, so a plain digest is enough (no salt or slow hash: nobody can guess
their way through that space); it is compared with `hmac.compare_digest`.
Revoking a key stamps it; nothing is deleted, so the table is the record of
every key ever issued.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlmodel import Field, Session, SQLModel, select

from activities.db import engine_for
from contracts.agent import AGENT_NAME
from contracts.run import TENANT

PREFIX = "aif"
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
TOKEN = re.compile(r"^aif_([0-9a-f]{12})_([0-9a-f]{48})$")
PERSON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
ALL = "*"


class ApiKeyError(ValueError):
    """A key request that cannot be carried out (bad scope, unknown key id); the message says why."""


class ApiKey(SQLModel, table=True):
    __tablename__ = "gateway_api_key"

    key_id: str = Field(primary_key=True)
    name: str
    secret_sha256: str
    tenants: str
    """Comma-separated tenant names, or `*`; empty: none."""
    agents: str
    """Comma-separated agent names, or `*`; empty: none."""
    person: str | None = None
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class ApiKeyInfo:
    """A key as the gateway and operators see it: everything but the secret and its digest."""

    key_id: str
    name: str
    tenants: tuple[str, ...]
    agents: tuple[str, ...]
    person: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=timezone.utc) if at is not None and at.tzinfo is None else at


def _info(row: ApiKey) -> ApiKeyInfo:
    split = lambda s: tuple(x for x in s.split(",") if x)  # noqa: E731
    return ApiKeyInfo(row.key_id, row.name, split(row.tenants), split(row.agents), row.person, _utc(row.created_at), _utc(row.revoked_at))  # type: ignore[arg-type]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _scope(values: list[str], pattern: re.Pattern[str], what: str) -> str:
    for value in values:
        if value != ALL and not pattern.fullmatch(value):
            raise ApiKeyError(f"{what} {value!r} is not a valid name (or {ALL!r} for all)")
    return ALL if ALL in values else ",".join(sorted(set(values)))


class ApiKeyStore:
    """The gateway's keys in the store at `db_url`."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def create(self, name: str, *, tenants: list[str], agents: list[str], person: str | None = None) -> tuple[ApiKeyInfo, str]:
        """A new key and its token (`aif_<key id>_<secret>`), which is not kept and cannot be shown again."""
        name = name.strip()
        if not name or len(name) > 100:
            raise ApiKeyError("a key needs a name of 1-100 characters (who or what uses it)")
        if person is not None and not PERSON.fullmatch(person):
            raise ApiKeyError(f"person {person!r} is not a person id from the approver directory")
        row = ApiKey(
            key_id=secrets.token_hex(6), name=name, secret_sha256="", tenants=_scope(tenants, TENANT, "tenant"),
            agents=_scope(agents, AGENT_NAME, "agent"), person=person, created_at=datetime.now(timezone.utc),
        )  # fmt: skip
        secret = secrets.token_hex(24)
        row.secret_sha256 = _digest(secret)
        with Session(engine_for(self.db_url)) as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            return _info(row), f"{PREFIX}_{row.key_id}_{secret}"

    def list(self) -> list[ApiKeyInfo]:
        """Every key ever issued, oldest first, revoked ones included."""
        with Session(engine_for(self.db_url)) as s:
            return [_info(r) for r in s.exec(select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id)).all()]

    def revoke(self, key_id: str) -> ApiKeyInfo:
        """Revoke a key (again is a no-op); `ApiKeyError` for an id that was never issued."""
        with Session(engine_for(self.db_url)) as s:
            row = s.get(ApiKey, key_id) if KEY_ID.fullmatch(key_id) else None
            if row is None:
                raise ApiKeyError(f"no API key {key_id!r} (`aifactory gateway keys list` shows them)")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(timezone.utc)
                s.add(row)
                s.commit()
                s.refresh(row)
            return _info(row)

    def verify(self, token: str) -> ApiKeyInfo | None:
        """The key `token` is, revoked or not, if its secret matches; None for anything else."""
        found = TOKEN.fullmatch(token)
        if found is None:
            return None
        key_id, secret = found.groups()
        with Session(engine_for(self.db_url)) as s:
            row = s.get(ApiKey, key_id)
            if row is None or not hmac.compare_digest(row.secret_sha256, _digest(secret)):
                return None
            return _info(row)


def looks_like_key(token: str) -> bool:
    """Whether a bearer token is meant as one of these keys (as opposed to a JWT)."""
    return token.startswith(PREFIX + "_")
