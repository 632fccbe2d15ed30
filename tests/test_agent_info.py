"""`aifactory_agent_info`, read from a worker's metrics endpoint over HTTP: every release the worker
serves, with who answers for it, and nothing for a release it no longer serves."""

from __future__ import annotations

import urllib.request
import uuid

from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families

from activities.releases.registry import ReleaseRegistry
from contracts.agent import Owner
from tests.support.harness import AGENTS, shipped_triage
from workers.agent_info import public_contact
from workers.devserver import free_port
from workers.metrics import FactoryMetrics
from workers.worker import WorkerParts, build_worker


def agent_info(port: int, agent: str = "it-triage") -> list[dict[str, str]]:
    """The `aifactory_agent_info` series of one agent (the folder ships others beside it)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sorted(
        (dict(s.labels) | {"value": str(s.value)} for f in text_string_to_metric_families(text) for s in f.samples
         if s.name == "aifactory_agent_info" and s.labels.get("agent") == agent),
        key=lambda labels: labels["version"],
    )  # fmt: skip


def test_a_worker_exposes_its_releases_with_their_owners(client, db_url):
    # Built the way `aifactory worker` builds it (aifactory/stack.py): metrics, the agents folder, a worker.
    metrics = FactoryMetrics()
    releases = ReleaseRegistry.from_folder(AGENTS)
    build_worker(client, f"tq-{uuid.uuid4().hex[:10]}", WorkerParts(db_url=db_url, releases=releases, metrics=metrics))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    try:
        spec = shipped_triage().spec
        assert agent_info(port) == [{
            "agent": "it-triage", "version": shipped_triage().release_version, "owner": "Maria Keller",
            "owner_contact": "maria.keller@example.com", "escalation_contact": spec.escalation_contact,
            "task_queue": spec.task_queue, "value": "1.0",
        }]  # fmt: skip

        # A second version served at once (a pinned older release, here with another owner): one series each.
        older = shipped_triage().model_copy(update={"spec": spec.model_copy(update={"version": "1.2.0", "owner": Owner(name="Tom Becker", contact="#it-desk")})})
        releases.add(older, current=False)
        assert [(s["version"], s["owner"], s["owner_contact"]) for s in agent_info(port)] == [
            (older.release_version, "Tom Becker", "#it-desk"), (shipped_triage().release_version, "Maria Keller", "maria.keller@example.com"),
        ]  # fmt: skip

        # The process builds its worker again on a registry without them: their series go at once.
        build_worker(client, f"tq-{uuid.uuid4().hex[:10]}", WorkerParts(db_url=db_url, releases=ReleaseRegistry(), metrics=metrics))
        assert agent_info(port) == []
    finally:
        server.shutdown()


def test_a_contact_url_loses_what_carries_credentials():
    assert public_contact("maria.keller@example.com") == "maria.keller@example.com"
    assert public_contact("#it-desk") == "#it-desk"
    assert public_contact("https://bot:s3cret@chat.example.com:8443/rooms/it?token=abc#x") == "https://chat.example.com:8443/rooms/it"
