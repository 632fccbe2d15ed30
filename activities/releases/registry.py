"""The releases a worker runs: the trust boundary's source of what governs a run.

Not workflow-safe (reads the agents folder once, at worker start). A worker
resolves every run against its own registry, never against what the starter
sent: the agent's current admitted release, or a pinned version it holds. The
model activity takes the prompt text from here too, by the hash the run pinned,
so the prompt a run is recorded under is the prompt the model was sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from activities.releases.gate import check_agent
from activities.releases.loader import discover
from contracts import errors as E
from contracts.agent import AgentRelease, PromptRef
from policies.loader import PolicyStore

log = logging.getLogger("aifactory.releases")


@dataclass(frozen=True)
class ReleaseRefused(Exception):
    """A run asked for a release this worker does not run; `type` is the run's typed failure."""

    type: str
    message: str

    def __str__(self) -> str:
        return self.message


class ReleaseRegistry:
    """Admitted releases by agent and version, and which one is each agent's current release."""

    def __init__(self, releases: list[AgentRelease] = ()) -> None:  # type: ignore[assignment]
        self._releases: dict[tuple[str, str, str], AgentRelease] = {}
        self._current: dict[str, AgentRelease] = {}
        self._refused: dict[str, str] = {}
        for release in releases:
            self.add(release)

    @classmethod
    def from_folder(cls, agents_dir: Path, *, evaluation_gate: bool = True, policies: PolicyStore | None = None) -> "ReleaseRegistry":
        """Every agent under `agents_dir` that passes the admission gate; the others are refused by name."""
        registry = cls()
        for agent in discover(agents_dir):
            problems = check_agent(agent, evaluation_gate=evaluation_gate, policies=policies)
            if problems or agent.release is None:
                registry._refused[agent.name] = "; ".join(map(str, problems)) or "it cannot be loaded"
                log.warning("agent %s is not admitted on this worker: %s", agent.name, registry._refused[agent.name])
                continue
            registry.add(agent.release)
        return registry

    def add(self, release: AgentRelease, *, current: bool = True) -> AgentRelease:
        """Hold `release` (tests and `aifactory eval` add releases they build); `current` makes it the default."""
        spec = release.spec
        self._releases[(spec.name, spec.version, release.prompt_sha256)] = release
        self._refused.pop(spec.name, None)
        if current:
            self._current[spec.name] = release
        return release

    def agents(self) -> list[str]:
        return sorted(self._current)

    def releases(self) -> list[AgentRelease]:
        """Every release this registry holds (the current ones and the pinned versions it also runs)."""
        return list(self._releases.values())

    def current(self, agent: str) -> AgentRelease:
        return self.resolve(agent, None)

    def resolve(self, agent: str, version: str | None) -> AgentRelease:
        """The release a run of `agent` (optionally pinned to `version`) runs under, or `ReleaseRefused`."""
        if agent in self._refused and agent not in self._current:
            raise ReleaseRefused(E.AGENT_NOT_ADMITTED, f"agent {agent!r} is not admitted on this worker: it fails the admission gate (`aifactory check {agent}`)")
        held = [r for (name, _, _), r in self._releases.items() if name == agent]
        if not held:
            known = ", ".join(self.agents()) or "none"
            raise ReleaseRefused(E.RELEASE_UNKNOWN, f"this worker has no agent {agent!r} (it runs: {known})")
        if not version:
            return self._current[agent]
        found = [r for r in held if version in (r.spec.version, r.release_version)]
        if not found:
            versions = ", ".join(sorted(r.release_version for r in held))
            raise ReleaseRefused(E.RELEASE_UNKNOWN, f"this worker has no release {version!r} of agent {agent!r} (it has: {versions})")
        # A bare version held with two prompts: the current one if it is among them, else refuse the ambiguity.
        if len(found) > 1:
            current = self._current.get(agent)
            if current in found:
                return current
            raise ReleaseRefused(E.RELEASE_UNKNOWN, f"version {version!r} of agent {agent!r} names several releases: pin one of "
                                 + ", ".join(sorted(r.release_version for r in found)))  # fmt: skip
        return found[0]

    def prompt(self, ref: PromptRef) -> AgentRelease | None:
        """The release whose prompt `ref` names, with its text; None if this worker does not hold it."""
        return self._releases.get((ref.agent, ref.version, ref.prompt_sha256))
