"""Who is calling the gateway: what they may reach, and as whom they decide.

Not workflow-safe (no I/O either). A caller comes from an API key or from an
OIDC token; both give the same thing: tenants and agents in scope (`*` is all,
none listed is none) and, optionally, the directory person a decision is made as.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = "*"


@dataclass(frozen=True)
class Caller:
    name: str
    """Who it is in the gateway's words: `key <id> (<name>)` or `token of <subject>`."""
    tenants: frozenset[str]
    agents: frozenset[str]
    person: str | None = None
    """The approver-directory person decisions are made as; None: this caller cannot decide."""
    requester: str = ""
    """Who a run it starts is requested by, when it names nobody (a system's key: the key)."""

    def may_tenant(self, tenant: str) -> bool:
        return ALL in self.tenants or tenant in self.tenants

    def may_agent(self, agent: str) -> bool:
        return ALL in self.agents or agent in self.agents

    def scope_terms(self) -> tuple[list[str] | None, list[str] | None]:
        """The tenants and agents to select runs by (None: all of them)."""
        pick = lambda names: None if ALL in names else sorted(names)  # noqa: E731
        return pick(self.tenants), pick(self.agents)
