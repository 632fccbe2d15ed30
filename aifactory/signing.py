"""Personal signing keys, and signing decisions with them (`aifactory keys`, the CLI, FactoryClient).

Not workflow-safe (reads key files). A key pair is made on the person's own
machine (`aifactory keys init --as maria.keller`): the private key stays in
their config folder (`AIFACTORY_CONFIG_DIR`, else `$XDG_CONFIG_HOME/aifactory`,
else `~/.config/aifactory`, file mode 600) and the public half goes into the
approver directory, with an id and a validity. A service that decides for
people (the HTTP gateway, the Slack endpoint) holds a key of its own and signs
as itself, naming its evidence; the directory says whom it may act for.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.signing import Signature, signing_bytes, unsigned
from aifactory.errors import FactoryError


class SigningKeyError(FactoryError):
    """A key file that cannot be read or made; the message says which and why."""


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("AIFACTORY_CONFIG_DIR"):
        return Path(env["AIFACTORY_CONFIG_DIR"])
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "aifactory"


@dataclass(frozen=True)
class PersonalKey:
    person: str
    key_id: str
    private: Ed25519PrivateKey

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()

    def directory_entry(self, valid_days: int | None = 365, now: datetime | None = None) -> dict[str, Any]:
        """The entry to add under the person's `keys:` in the approver directory (no `valid_until` when `valid_days` is None)."""
        now = now or datetime.now(timezone.utc)
        entry = {"id": self.key_id, "public_key": self.public_b64, "valid_from": now.replace(microsecond=0).isoformat()}
        if valid_days is not None:
            entry["valid_until"] = (now + timedelta(days=valid_days)).replace(microsecond=0).isoformat()
        return entry


def generate(person: str, key_id: str | None = None) -> PersonalKey:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
    return PersonalKey(person, key_id or f"{person}-{stamp}-{secrets.token_hex(2)}", Ed25519PrivateKey.generate())


def save(key: PersonalKey, folder: Path) -> Path:
    """Write the private key to `folder/<person>.json`, readable by its owner only."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key.person}.json"
    raw = key.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    body = json.dumps({"person": key.person, "key_id": key.key_id, "private_key": base64.b64encode(raw).decode()}, indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body + "\n")
    return path


def load(path: Path) -> PersonalKey:
    try:
        data = json.loads(path.read_text())
        raw = base64.b64decode(data["private_key"], validate=True)
        return PersonalKey(data["person"], data["key_id"], Ed25519PrivateKey.from_private_bytes(raw))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SigningKeyError(f"{path}: not a signing key file ({type(e).__name__}: {e})") from None


def signing_folders(settings) -> list[Path]:
    """Where a command finds its user's keys: their config folder, and (embedded factory only) the
    keys the demo made in the factory home for the people it plays."""
    folders = [config_dir() / "keys"]
    if settings.embedded and settings.home_dir is not None:
        folders.append(settings.home_dir / "keys" / "people")
    return folders


class Signer:
    """Signs decisions with the keys it holds: a person's own, or a service's for the people it acts for."""

    def __init__(self, keys: Iterable[PersonalKey] = (), *, service: str | None = None) -> None:
        self.keys = {k.person: k for k in keys}
        self.service = service
        """The id of a service key among `keys` that signs for people without a key of their own here."""

    @classmethod
    def from_folders(cls, *folders: Path, service: str | None = None) -> "Signer":
        keys = [load(p) for folder in folders if folder.is_dir() for p in sorted(folder.glob("*.json"))]
        return cls(keys, service=service)

    def sign(
        self, kind: str, run_id: str, person: str, body: dict[str, Any], *, evidence: str | None = None, now: datetime | None = None
    ) -> Signature | None:
        """A signature of `person`'s decision, or None when this signer holds no key that may make it."""
        key = self.keys.get(person)
        if key is None and self.service is not None:
            key = self.keys.get(self.service)
        if key is None:
            return None
        claims = unsigned(key.person, key.key_id, run_id, now or datetime.now(timezone.utc), secrets.token_hex(16),
                          evidence if key.person != person else None)  # fmt: skip
        value = base64.b64encode(key.private.sign(signing_bytes(kind, person, body, claims))).decode()
        return claims.model_copy(update={"value": value})
