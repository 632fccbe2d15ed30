"""Tool families: how the factory finds the tools it can run.

Not workflow-safe (imports implementations and reads installed package
metadata). A tool family is one package exporting one `ToolFamily`: its
workflow-safe declarations module (importing it declares the tools in
`contracts.catalog`), a factory for its activities, its tables and its seed
data. The factory finds families in two places and nowhere else:

- built in: every package under `activities/tools/` that exports `FAMILY`
  (known without package metadata, so an editable install that predates a
  family still finds it);
- installed: the `aifactory.tool_families` entry-point group, for a family a
  company ships as its own package::

      [project.entry-points."aifactory.tool_families"]
      billing = "acme_billing_tools:FAMILY"

No shared module imports a family by name.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from contracts.catalog import CATALOG, FAMILY_NAME, ToolDefinition

log = logging.getLogger("aifactory.tools")

#: The entry-point group third-party families register under.
ENTRY_POINT_GROUP = "aifactory.tool_families"


@dataclass(frozen=True)
class ToolFamily:
    """One package of tools: what a worker needs to declare, run and store them."""

    name: str
    """Family name, the middle of its activity names (`tool.<name>.<tool>`); lowercase, digits, `_`."""
    declarations: ModuleType
    """The workflow-safe module that declares the family's tools (`contracts.catalog.declare`).
    Workers share it with the workflow sandbox instead of re-importing it per run."""
    activities: Callable[[str], list[Any]]
    """Builds the family's activities for a worker, given the worker's database URL."""
    tables: Sequence[type] = ()
    """SQLModel table classes the family stores its data in; created with the factory's tables."""
    seed: Callable[..., Any] | None = None
    """Loads demo or reference data into the family's tables (`seed(db_url, rows)`), if it has any."""
    passthrough: tuple[str, ...] = field(default=())
    """Further workflow-safe modules its declarations use, shared with the sandbox as well."""

    def __post_init__(self) -> None:
        if not FAMILY_NAME.match(self.name):
            raise ValueError(f"tool family {self.name!r}: the name must be lowercase letters, digits and _")

    @property
    def tools(self) -> list[ToolDefinition]:
        """The tools this family declared."""
        return [d for d in CATALOG.values() if d.family == self.name]

    @property
    def sandbox_modules(self) -> tuple[str, ...]:
        """Modules the workflow sandbox passes through for this family."""
        return (self.declarations.__name__, *self.passthrough)


def installed_families() -> list[ToolFamily]:
    """Every built-in and installed family, loaded (so their tools are in the catalog), by name.

    Raises:
        ValueError: two different families share a name, or an entry point is not a `ToolFamily`.
    """
    found: dict[str, ToolFamily] = {}
    for origin, family in [*_built_in(), *_from_entry_points()]:
        if not isinstance(family, ToolFamily):
            raise ValueError(f"{origin} is not a ToolFamily (got {type(family).__name__})")
        known = found.get(family.name)
        if known is not None and known is not family:
            raise ValueError(f"two tool families are named {family.name!r} ({origin} is the second)")
        found[family.name] = family
    return sorted(found.values(), key=lambda f: f.name)


def _built_in() -> list[tuple[str, Any]]:
    import activities.tools as package

    out = []
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.ispkg:
            module = importlib.import_module(info.name)
            if hasattr(module, "FAMILY"):
                out.append((f"{info.name}:FAMILY", module.FAMILY))
    return out


def _from_entry_points() -> list[tuple[str, Any]]:
    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        out.append((f"entry point {ep.name} = {ep.value}", ep.load()))
    return out
