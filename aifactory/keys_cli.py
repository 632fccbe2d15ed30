"""`aifactory keys`: a person's signing key for decisions.

Not workflow-safe.

    aifactory keys init --as PERSON [--days 365] [--force]   make a key pair; print the directory entry
    aifactory keys show --as PERSON                          print the entry of the key you hold
    aifactory keys revoke --as PERSON [--key KID]            revoke a key (nothing it signs counts from now)

The private key stays in your config folder (`AIFACTORY_CONFIG_DIR`, else
`~/.config/aifactory`); the public half goes into the approver directory
(`policies/directory.yaml`, under the person's `keys:`), which is how a run
checks that a decision is yours. On an embedded factory (no TEMPORAL_ADDRESS)
the entry is also registered in the factory home (`.aifactory/keys/directory.yaml`),
so it works at once; on a cluster, add the printed entry to the directory the
workers are deployed with.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

import yaml

from aifactory.signing import PersonalKey, SigningKeyError, config_dir, generate, load, save
from workers.settings import Settings
from aifactory.errors import FactoryError


class KeysCliError(FactoryError):
    """A clear one-line refusal."""


def directory_overlay(home: Path) -> Path:
    """The embedded factory's own additions to the directory: the keys registered here."""
    return home / "keys" / "directory.yaml"


def register(overlay: Path, person: str, entry: dict) -> None:
    """Add (or update, by id) `entry` under `person` in the overlay file."""
    data = yaml.safe_load(overlay.read_text()) if overlay.is_file() else None
    data = data or {"people": []}
    people = data.setdefault("people", [])
    who = next((p for p in people if p.get("id") == person), None)
    if who is None:
        who = {"id": person, "keys": []}
        people.append(who)
    keys = who.setdefault("keys", [])
    keys[:] = [k for k in keys if k.get("id") != entry["id"]] + [entry]
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.write_text("# Signing keys registered in this embedded factory (`aifactory keys init`).\n" + yaml.safe_dump(data, sort_keys=False))


def key_path(person: str) -> Path:
    return config_dir() / "keys" / f"{person}.json"


def entry_text(person: str, entry: dict) -> str:
    return (f"# add under person {person!r} in the approver directory (policies/directory.yaml):\n"
            + yaml.safe_dump({"keys": [entry]}, sort_keys=False))  # fmt: skip


def init_key(settings: Settings, person: str, days: int, force: bool = False, folder: Path | None = None) -> tuple[PersonalKey, dict]:
    path = (folder or config_dir() / "keys") / f"{person}.json"
    if path.exists() and not force:
        raise KeysCliError(f"{path} exists: you have a key already (`aifactory keys show --as {person}`); --force makes a new one")
    key = generate(person)
    save(key, path.parent)
    entry = key.directory_entry(days)
    if (settings.embedded or folder is not None) and settings.home_dir is not None:
        register(directory_overlay(settings.home_dir), person, entry)
    return key, entry


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    person = (args.person or "").strip()
    if not person:
        raise KeysCliError("--as PERSON is required")
    if args.action == "init":
        key, entry = init_key(settings, person, args.days, args.force)
        print(f"private key: {key_path(person)} (stays here; mode 600)")
        print(entry_text(person, entry), end="")
        if settings.embedded and settings.home_dir is not None:
            print(f"registered in this embedded factory: {directory_overlay(settings.home_dir)}")
        return 0
    try:
        key = load(key_path(person))
    except SigningKeyError as e:
        raise KeysCliError(f"no key of yours here ({e}); make one with `aifactory keys init --as {person}`") from None
    if args.action == "show":
        print(f"{key.key_id}: {key.public_b64} ({key_path(person)})")
        return 0
    kid = args.key or key.key_id
    revoked = {"id": kid, "public_key": key.public_b64 if kid == key.key_id else "", "revoked_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat()}
    if settings.embedded and settings.home_dir is not None and kid == key.key_id:
        entry = {**key.directory_entry(0), **revoked}
        entry.pop("valid_until", None)
        register(directory_overlay(settings.home_dir), person, entry)
        print(f"revoked {kid} in this embedded factory: decisions it signs no longer count")
    else:
        print(f"set `revoked_at: {revoked['revoked_at']}` on key {kid!r} of {person!r} in the approver directory the workers use")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("keys", help="your signing key for decisions: init, show, revoke")
    k.add_argument("action", choices=["init", "show", "revoke"])
    k.add_argument("--as", dest="person", required=True, help="your person id in the approver directory")
    k.add_argument("--days", type=int, default=365, help="init: how long the key is valid (default 365)")
    k.add_argument("--key", help="revoke: the key id (default: the one you hold)")
    k.add_argument("--force", action="store_true", help="init: make a new key even if you have one")
