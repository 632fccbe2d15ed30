"""`aifactory_agent_info`: who answers for each agent release a worker serves, for alert routing.

Not workflow-safe (prometheus-client). One series per release the worker's registry holds, value 1,
in the info-gauge style: alert rules join it on `agent` to carry the owner to Alertmanager
(deploy/prometheus/aifactory-alerts.yml). It is read from the registry at scrape time, so a release
the worker no longer serves leaves the exposition at the next scrape: no series lingers, and nothing
has to be cleared by hand when the registry changes.

Labels come from the agent spec only: name, release version, owner, the owner's contact, the
escalation contact and the task queue. Contacts are addresses, never credentials; a contact written
as a URL loses its user info, query and fragment before it becomes a label (that is where tokens
ride), since a label is visible to everyone who can read Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.core import GaugeMetricFamily

from activities.releases.registry import ReleaseRegistry
from contracts.agent import AgentRelease

NAME = "aifactory_agent_info"
LABELS = ("agent", "version", "owner", "owner_contact", "escalation_contact", "task_queue")


def public_contact(contact: str) -> str:
    """`contact` as it may appear in a label: an email or a channel as is, a URL without the parts
    that carry credentials (`https://user:pw@host/x?token=...#f` becomes `https://host/x`)."""
    if not contact.startswith(("http://", "https://")):
        return contact
    parts = urlsplit(contact)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def info_labels(release: AgentRelease) -> tuple[str, ...]:
    """The label values of `release`'s series, in the order of `LABELS`."""
    spec = release.spec
    return (
        spec.name, release.release_version, spec.owner.name, public_contact(spec.owner.contact),
        public_contact(spec.escalation_contact), spec.task_queue,
    )  # fmt: skip


class AgentInfoCollector:
    """Exposes `aifactory_agent_info` for the releases `registry` holds when Prometheus scrapes."""

    def __init__(self, registry: ReleaseRegistry | None = None) -> None:
        self.registry = registry

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(NAME, "Agent releases this worker serves (1), with who answers for each.", labels=list(LABELS))

    def describe(self):
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        releases = self.registry.releases() if self.registry is not None else []
        for labels in sorted({info_labels(r) for r in releases}):
            family.add_metric(list(labels), 1.0)
        yield family
