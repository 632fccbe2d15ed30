"""The Grafana dashboard and the Prometheus alert rules in deploy/ only name metrics a worker
actually exports: the factory's (prometheus-client) and the Temporal SDK's (its runtime)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from temporalio.client import Client

from activities.model.scripted import Reply, ScriptedModel, Turns
from tests.support.harness import REPO, factory_with
from workers.devserver import free_port
from workers.metrics import FactoryMetrics
from workers.settings import sdk_metrics_runtime

DASHBOARD = REPO / "deploy" / "grafana" / "aifactory-dashboard.json"
ALERTS = REPO / "deploy" / "prometheus" / "aifactory-alerts.yml"
METRIC = re.compile(r"\b((?:aifactory|temporal)_[a-z0-9_]+)\b")
TICKET = {"ticket_text": "My laptop screen is flickering badly.", "requester_email": "ana.silva@example.com"}
ARGS = {"requester_email": "ana.silva@example.com", "category": "hardware", "priority": "P3", "summary": "Screen flickers"}
FINAL = {"category": "hardware", "priority": "P3", "ticket_id": "INC0000001", "summary": "Screen flickers"}


def names(text: str) -> set[str]:
    """Series names served, and those a declared family will serve once it has a sample."""
    out = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out |= {name.removesuffix("_total") + s for s in suffixes.get(kind, [""])}
    return out


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


async def exported_names(env, db_url) -> set[str]:
    """Run a workload on a worker with both metric endpoints and read what they serve."""
    address = f"127.0.0.1:{free_port()}"
    client = await Client.connect(
        env.client.service_client.config.target_host, data_converter=env.client.data_converter, runtime=sdk_metrics_runtime(address)
    )
    metrics = FactoryMetrics(CollectorRegistry())
    metrics.watch_switches(db_url)
    model = ScriptedModel(Turns([Reply.tool("create_ticket", ARGS), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model, metrics=metrics) as f:
        run = await f.start(TICKET)
        await run.result()
        sdk = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    return names(generate_latest(metrics.registry).decode()) | names(sdk)


def test_dashboard_is_valid_grafana_json():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 30 and dashboard["title"] and dashboard["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "stat", "table", "bargauge", "gauge"} and panel["gridPos"]["w"] > 0
        assert panel["datasource"]["uid"] == "${datasource}" and panel.get("targets")
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in dashboard["templating"]["list"])


async def test_every_query_names_a_metric_the_worker_exports(env, db_url):
    exported = await exported_names(env, db_url)
    assert "aifactory_tokens_total" in exported and any(n.startswith("temporal_") for n in exported)
    dashboard = json.loads(DASHBOARD.read_text())
    rules = yaml.safe_load(ALERTS.read_text())
    queries = panel_queries(dashboard) + [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    assert len(queries) >= 12
    missing = [(title, name) for title, expr in queries for name in METRIC.findall(expr) if name not in exported]
    assert missing == [], f"queries name metrics no worker exports: {missing}"
    for title, expr in queries:
        assert METRIC.search(expr), f"{title}: names no metric"
        # Labels stay bounded: no query groups by a run id, workflow id or argument.
        assert not re.search(r"by \([^)]*(workflow_id|run_id|run_key)", expr), title
