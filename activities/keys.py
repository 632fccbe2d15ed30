"""Named AES-256 keys: the payload codec's key ring and the audit store's MAC keys.

Not workflow-safe (reads files and the environment). Keys live only in the
environment or a key file; the embedded default creates a key file under
`AIFACTORY_HOME/keys/` on first use. Against a configured cluster a missing
key is an error rather than a silently generated one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from contracts.errors import FactoryError


class KeyRingError(FactoryError):
    """The key ring is missing, malformed, or lacks the key a payload names."""


@dataclass(frozen=True)
class KeyRing:
    """Named AES-256 keys; `active` encrypts, every key decrypts."""

    active: str
    keys: Mapping[str, bytes] = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise KeyRingError(f"active key {self.active!r} is not in the key ring ({', '.join(self.keys) or 'empty'})")
        for kid, key in self.keys.items():
            if not kid or "=" in kid or "," in kid:
                raise KeyRingError(f"key id {kid!r}: must be non-empty and contain neither '=' nor ','")
            if len(key) != 32:
                raise KeyRingError(f"key {kid!r}: must be 32 bytes (AES-256), got {len(key)}")

    @classmethod
    def generate(cls, kid: str = "k1") -> "KeyRing":
        return cls(kid, {kid: AESGCM.generate_key(bit_length=256)})

    def rotated(self, kid: str) -> "KeyRing":
        """A ring with a new active key; the old keys stay for decryption."""
        if kid in self.keys:
            raise KeyRingError(f"key id {kid!r} is already in the ring")
        return KeyRing(kid, {**self.keys, kid: AESGCM.generate_key(bit_length=256)})

    def without(self, *kids: str) -> "KeyRing":
        return KeyRing(self.active, {k: v for k, v in self.keys.items() if k not in kids})

    @classmethod
    def parse_env(cls, value: str, var: str = "AIFACTORY_CODEC_KEYS") -> "KeyRing":
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            kid, sep, encoded = item.partition("=")
            if not sep:
                raise KeyRingError(f"{var}: {kid!r} is not of the form kid=<base64 key>")
            keys[kid.strip()] = _b64(encoded.strip(), f"{var}: key {kid.strip()!r}")
        if not keys:
            raise KeyRingError(f"{var} is set but holds no key")
        return cls(next(iter(keys)), keys)

    @classmethod
    def load(cls, path: Path) -> "KeyRing":
        try:
            data = json.loads(path.read_text())
            keys = {kid: _b64(v, f"{path}: key {kid!r}") for kid, v in data["keys"].items()}
            return cls(data["active"], keys)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise KeyRingError(f"{path}: not a key file ({{\"active\": kid, \"keys\": {{kid: base64}}}}): {e}") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"active": self.active, "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()}}, indent=2)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body + "\n")


def _b64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(f"{where}: not valid base64") from None


def key_ring_from_env(
    env: Mapping[str, str], home: Path | None, *, prefix: str, embedded: bool, require_home: Callable[[], Path] | None = None
) -> KeyRing:
    """The ring `<prefix>_KEYS` or `<prefix>_KEY_FILE` names, else the embedded default's key file
    in the factory home (`require_home` says why there is none, when there is none)."""
    if env.get(f"{prefix}_KEYS"):
        return KeyRing.parse_env(env[f"{prefix}_KEYS"], f"{prefix}_KEYS")
    if env.get(f"{prefix}_KEY_FILE"):
        return KeyRing.load(Path(env[f"{prefix}_KEY_FILE"]))
    name = prefix.removeprefix("AIFACTORY_").lower()
    if home is None:
        if require_home is not None:
            require_home()
        raise KeyRingError(f"no {name} keys: set {prefix}_KEY_FILE or {prefix}_KEYS")
    default = home / "keys" / f"{name}.json"
    if default.exists():
        return KeyRing.load(default)
    if not embedded:
        raise KeyRingError(f"no {name} keys: set {prefix}_KEY_FILE or {prefix}_KEYS")
    ring = KeyRing.generate()
    ring.save(default)
    return ring
