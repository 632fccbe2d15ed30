"""The shipped Prometheus files pass Prometheus's own checker, and the alerts reach the agent's owner.

`promtool` (Debian's `prometheus` package; `bash deploy/local.sh test` installs it where missing)
checks the rules and the example configuration, and runs the rule unit tests in
tests/prometheus/, which feed the rules series that include `aifactory_agent_info` and expect the
owner's labels on what fires. amtool is not in that package, so the example Alertmanager
configuration is checked here only for what routing by owner needs.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from activities.releases.loader import discover
from tests.support.harness import AGENTS, REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
RULE_TESTS = REPO / "tests" / "prometheus" / "aifactory-alerts.test.yml"
INSTALL = (
    "promtool is not installed: it comes with Debian's `prometheus` package "
    "(`sudo apt-get install -y --no-install-recommends prometheus`; `bash deploy/local.sh test` does this), "
    "or from the release tarball at https://prometheus.io/download/"
)


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail(INSTALL, pytrace=False)
    done = subprocess.run([tool, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed (exit {done.returncode}):\n{output}"
    return output


def test_the_shipped_rules_pass_promtool_check():
    out = promtool("check", "rules", str(PROMETHEUS / "aifactory-alerts.yml"))
    assert "SUCCESS" in out


def test_the_example_prometheus_config_and_the_rules_it_loads_pass_promtool_check():
    out = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "SUCCESS: 1 rule files found" in out


def test_alerts_about_an_agent_carry_its_owner():
    out = promtool("test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in out


def test_every_rule_about_an_agent_joins_the_owner():
    rules = [r for g in yaml.safe_load((PROMETHEUS / "aifactory-alerts.yml").read_text())["groups"] for r in g["rules"]]
    platform = {"WorkerBacklog", "AuditExportFailing"}  # about queues' capacity and the audit trail, not one agent
    for rule in rules:
        if rule["alert"] in platform:
            continue
        assert "aifactory_agent_info" in rule["expr"] and "owner_contact" in rule["expr"], f"{rule['alert']} does not carry the owner"


def test_the_example_alertmanager_config_routes_every_shipped_agents_owner():
    config = yaml.safe_load((PROMETHEUS / "alertmanager.yml").read_text())
    receivers = {r["name"] for r in config["receivers"]}
    route = config["route"]
    assert route["receiver"] in receivers, "the default receiver must exist"

    def routes(r):
        for child in r.get("routes", []):
            yield child
            yield from routes(child)

    assert all(child["receiver"] in receivers for child in routes(route))
    routed = {m for child in route["routes"] for m in child["matchers"]}
    owners = {agent.release.spec.owner.name for agent in discover(AGENTS) if agent.release is not None}
    assert owners and all(f'owner="{owner}"' in routed for owner in owners), f"owners without a route: {owners}"
