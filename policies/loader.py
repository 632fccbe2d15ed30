"""Load policy bundles and the approver directory from `policies/`; workflows never import this.

Not workflow-safe (reads files). A bundle is validated on load, every predicate
compiled, and its content hashed; a bad file is refused with the file, rule and
field named. `PolicyStore` re-reads a file when it changes and keeps serving
the last good version when the new one is bad.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from contracts.policy import Clock, Directory, PolicyBundle, PolicySet
from policies.hours import UnknownTimeZone, zone
from policies.predicates import PredicateError, compile_predicate

log = logging.getLogger("aifactory.policy")
POLICIES_DIR = Path(__file__).resolve().parent


def policies_dir() -> Path:
    """`AIFACTORY_POLICIES_DIR`, or the `policies/` folder shipped with the code."""
    return Path(os.environ.get("AIFACTORY_POLICIES_DIR") or POLICIES_DIR)


class PolicyFileError(ValueError):
    """A bundle or directory file was refused; the message names file, rule and field."""


def _describe_loc(data: Any, loc: tuple) -> str:
    """`rule 'p1' (rules[2]) field match.when`, or `field default_approval.chain`."""
    loc = tuple(loc)
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules") if isinstance(data, dict) else None
        rule = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        rule_id = rule.get("id", "?") if isinstance(rule, dict) else "?"
        rest = ".".join(map(str, loc[2:])) or "(rule)"
        return f"rule {rule_id!r} (rules[{loc[1]}]) field {rest}"
    return "field " + (".".join(map(str, loc)) or "(root)")


def _read_yaml(path: Path) -> tuple[Any, str]:
    if not path.is_file():
        raise PolicyFileError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        return yaml.safe_load(raw), hashlib.sha256(raw).hexdigest()
    except yaml.YAMLError as e:
        raise PolicyFileError(f"{path}: not valid YAML: {e}") from None


def load_bundle(path: Path) -> PolicyBundle:
    data, digest = _read_yaml(path)
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}: must be a mapping with name, version, default_approval and rules")
    try:
        bundle = PolicyBundle.model_validate({**data, "sha256": digest})
    except ValidationError as e:
        err = e.errors()[0]
        where = _describe_loc(data, tuple(err["loc"]))
        raise PolicyFileError(f"{path}: {where}: {err['msg'].removeprefix('Value error, ')}") from None
    for i, rule in enumerate(bundle.rules):
        if rule.match.when is not None:
            try:
                compile_predicate(rule.match.when)
            except PredicateError as e:
                raise PolicyFileError(f"{path}: rule {rule.id!r} (rules[{i}]) field match.when: {e}") from None
    return bundle


def load_directory(path: Path, overlay: Path | None = None) -> Directory:
    """The approver directory; `overlay` (an embedded factory's own key file) adds signing keys to its people."""
    data, digest = _read_yaml(path)
    data = dict(data or {})
    if overlay is not None and overlay.is_file():
        extra, extra_digest = _read_yaml(overlay)
        data["people"] = _with_keys(data.get("people") or [], (extra or {}).get("people") or [], overlay)
        digest = hashlib.sha256((digest + extra_digest).encode()).hexdigest()
    try:
        directory = Directory.model_validate({**data, "sha256": digest})
    except ValidationError as e:
        err = e.errors()[0]
        where = _describe_directory_loc(data, tuple(err["loc"]))
        raise PolicyFileError(f"{path}: {where}: {err['msg'].removeprefix('Value error, ')}") from None
    for i, group in enumerate(directory.groups):
        if group.calendar is not None:
            try:
                zone(group.calendar.time_zone)
            except UnknownTimeZone as e:
                raise PolicyFileError(f"{path}: group {group.id!r} (groups[{i}]) field calendar.time_zone: {e}") from None
    return directory


def _describe_directory_loc(data: Any, loc: tuple) -> str:
    """`group 'it-desk-leads' (groups[0]) field calendar.end`, or the plain location elsewhere."""
    if len(loc) >= 2 and loc[0] == "groups" and isinstance(loc[1], int):
        groups = data.get("groups") if isinstance(data, dict) else None
        group = groups[loc[1]] if isinstance(groups, list) and loc[1] < len(groups) else None
        group_id = group.get("id", "?") if isinstance(group, dict) else "?"
        return f"group {group_id!r} (groups[{loc[1]}]) field {'.'.join(map(str, loc[2:])) or '(group)'}"
    return ".".join(map(str, loc))


def _with_keys(people: list[dict], extra: list[dict], overlay: Path) -> list[dict]:
    """People with the keys `extra` lists for them (by id) added; an overlay adds keys, never people."""
    by_id = {p.get("id"): {**p, "keys": list(p.get("keys") or [])} for p in people if isinstance(p, dict)}
    for entry in extra:
        person = by_id.get(entry.get("id")) if isinstance(entry, dict) else None
        if person is None:
            raise PolicyFileError(f"{overlay}: {entry!r}: keys for a person who is not in the directory")
        known = {k.get("id"): i for i, k in enumerate(person["keys"])}
        for key in entry.get("keys") or []:
            if key.get("id") in known:
                person["keys"][known[key["id"]]] = key  # a revocation updates the entry
            else:
                person["keys"].append(key)
    return list(by_id.values())


def check_groups(bundle: PolicyBundle, directory: Directory, path: Path) -> None:
    """Every approver group a bundle names must have members in the directory, and a calendar where a
    tier counts business time."""
    chains = [("default_approval", bundle.default_approval)] + [
        (f"rule {r.id!r} field approval", r.approval) for r in bundle.rules if r.approval
    ]
    for where, spec in chains:
        for n, tier in enumerate(spec.chain):
            if not directory.members(tier.group):
                raise PolicyFileError(f"{path}: {where}: approver group {tier.group!r} has no members in the directory")
            if tier.clock is Clock.BUSINESS and directory.calendar(tier.group) is None:
                raise PolicyFileError(
                    f"{path}: bundle {bundle.name!r}: {where}.chain[{n}]: tier with clock business, but approver group"
                    f" {tier.group!r} has no calendar in the directory (add it under groups: with a calendar)"
                )


class PolicyStore:
    """Serves bundles by name; re-reads changed files and keeps the last good version of each."""

    def __init__(self, root: Path | None = None, overlay: Path | None = None) -> None:
        self.root = root or policies_dir()
        self.overlay = overlay
        """An embedded factory's own signing keys for the directory's people (`aifactory keys init`)."""
        self._good: dict[str, tuple[tuple, PolicySet]] = {}
        self._lock = threading.Lock()

    def _stamp(self, name: str) -> tuple:
        files = (self.root / "bundles" / f"{name}.yaml", self.root / "directory.yaml", *((self.overlay,) if self.overlay else ()))
        return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)

    def get(self, name: str) -> PolicySet:
        with self._lock:
            stamp = self._stamp(name)
            cached = self._good.get(name)
            if cached and cached[0] == stamp:
                return cached[1]
            path = self.root / "bundles" / f"{name}.yaml"
            try:
                bundle = load_bundle(path)
                directory = load_directory(self.root / "directory.yaml", self.overlay)
                check_groups(bundle, directory, path)
            except PolicyFileError as e:
                if cached:
                    log.error("policy bundle %r refused, keeping the last good version %s: %s", name, cached[1].bundle.sha256[:12], e)
                    return cached[1]
                raise
            policy = PolicySet(bundle=bundle, directory=directory)
            self._good[name] = (stamp, policy)
            return policy
