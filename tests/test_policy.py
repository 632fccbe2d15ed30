"""The policy engine and its loader: pure decisions, clear refusals of bad bundles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from contracts.policy import ToolCallFacts
from policies.engine import evaluate
from policies.loader import PolicyFileError, PolicyStore, load_bundle
from policies.predicates import PredicateError, compile_predicate, evaluate_predicate
from tests.support.harness import REPO, write_policy


@pytest.mark.parametrize(
    ("expr", "args", "expected"),
    [
        ("amount > 10000", {"amount": 12000}, True),
        ("amount > 10000", {"amount": 500}, False),
        ("country not in ['KP', 'IR']", {"country": "DE"}, True),
        ("country not in ['KP', 'IR']", {"country": "IR"}, False),
        ("priority == 'P1' or category == 'security'", {"priority": "P3", "category": "security"}, True),
        ("not (amount <= 10)", {"amount": 11}, True),
        ("payee.country == 'US'", {"payee": {"country": "US"}}, True),
        ("amount > 10000", {}, False),  # a missing field never matches
        ("amount > 10000", {"amount": "lots"}, False),  # nor does a mismatched type
        ("vip == true", {"vip": True}, True),
    ],
)
def test_predicates(expr, args, expected):
    assert evaluate_predicate(expr, args) is expected


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("__import__('os').system('x')", "Call is not allowed"),
        ("amount.__class__", None),
        ("[x for x in y]", "ListComp is not allowed"),
        ("amount + 1 > 2", "BinOp is not allowed"),
        ("amount >", "not a valid expression"),
        ("lambda: 1", "Lambda is not allowed"),
        ("amount is None", "only ==, !=, <, <=, >, >=, in and not in"),
    ],
)
def test_predicates_cannot_run_code(expr, complaint):
    if complaint is None:  # attribute access is data lookup only: dunder names are just missing fields
        assert evaluate_predicate(expr, {"amount": 5}) is False
        return
    with pytest.raises(PredicateError, match=complaint):
        compile_predicate(expr)


def facts(**kw) -> ToolCallFacts:
    base = dict(agent="it-triage", tenant="acme", autonomy="assisted", tool="create_ticket", side_effect="write", data_classes=("pii",), arguments={"priority": "P3", "category": "network"})
    return ToolCallFacts(**{**base, **kw})


@pytest.fixture
def it_desk():
    return PolicyStore(REPO / "policies").get("it-desk").bundle


def test_reference_bundle_decisions(it_desk):
    assert evaluate(it_desk, facts()).rule_id == "triage-opens-routine-tickets"
    p1 = evaluate(it_desk, facts(arguments={"priority": "P1", "category": "network"}))
    assert p1.outcome == "require_approval" and p1.rule_id == "p1-needs-a-lead"
    assert [t.group for t in p1.approval.chain] == ["it-desk-leads", "it-managers"]
    assert evaluate(it_desk, facts(tool="lookup_requester", side_effect="read")).outcome == "allow"
    assert evaluate(it_desk, facts(arguments={"priority": "P3", "category": "security"})).outcome == "require_approval"


def test_supervised_agents_keep_the_human_step(it_desk):
    d = evaluate(it_desk, facts(autonomy="supervised"))
    assert d.outcome == "require_approval" and d.rule_id == "default:write-approval"


def test_a_rule_lowers_approval_only_for_the_agents_it_names(it_desk):
    d = evaluate(it_desk, facts(agent="hr-helper"))
    assert d.outcome == "deny" and d.rule_id == "default:deny"


def test_what_no_rule_allows_is_denied(it_desk):
    d = evaluate(it_desk, facts(tool="wire_money", side_effect="external"))
    assert (d.outcome, d.rule_id) == ("deny", "default:deny")
    assert d.bundle == "it-desk@1.0.0" and d.bundle_sha256 == it_desk.sha256 and len(d.bundle_sha256) == 64


def test_deny_wins_over_allow(tmp_path):
    root = write_policy(tmp_path, "t", [
        {"id": "allow-all", "match": {"tools": ["create_ticket"], "agents": ["it-triage"]}, "decision": "allow", "reason": "pilot"},
        {"id": "no-security", "match": {"when": "category == 'security'"}, "decision": "deny", "reason": "humans only"},
    ], [("it-desk-leads", 60)])  # fmt: skip
    bundle = PolicyStore(root).get("t").bundle
    assert evaluate(bundle, facts(arguments={"category": "security", "priority": "P4"})).rule_id == "no-security"
    assert evaluate(bundle, facts()).outcome == "allow"


def bad_bundle(tmp_path: Path, text: str) -> Path:
    shutil.copytree(REPO / "policies" / "bundles", tmp_path / "bundles")
    shutil.copy(REPO / "policies" / "directory.yaml", tmp_path / "directory.yaml")
    (tmp_path / "bundles" / "it-desk.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda t: t.replace("decision: require_approval\n    reason: P1", "decision: maybe\n    reason: P1"), "rule 'p1-needs-a-lead' (rules[2]) field decision"),
        (lambda t: t.replace("priority == 'P1'", "priority ==="), "rule 'p1-needs-a-lead' (rules[2]) field match.when: not a valid expression"),
        (lambda t: t.replace("priority == 'P1'", "open('/etc/passwd')"), "rule 'p1-needs-a-lead' (rules[2]) field match.when: Call is not allowed"),
        (lambda t: t.replace("id: security-tickets-need-a-lead", "id: p1-needs-a-lead"), "rule id 'p1-needs-a-lead' is used twice"),
        (lambda t: t.replace("group: it-managers", "group: nobody-home"), "approver group 'nobody-home' has no members"),
        (lambda t: t.replace("    reason: read-only directory lookup\n", ""), "rule 'directory-lookups' (rules[0]) field reason"),
        (lambda t: t + "\n  - [not, a, mapping\n", "not valid YAML"),
    ],
)
def test_bad_bundle_is_refused_naming_file_rule_and_field(tmp_path, mutate, named):
    text = (REPO / "policies" / "bundles" / "it-desk.yaml").read_text()
    root = bad_bundle(tmp_path, mutate(text))
    with pytest.raises(PolicyFileError) as refused:
        PolicyStore(root).get("it-desk")
    assert "it-desk.yaml" in str(refused.value) and named in str(refused.value)


def test_a_running_worker_keeps_its_last_good_bundle(tmp_path, caplog):
    root = bad_bundle(tmp_path, (REPO / "policies" / "bundles" / "it-desk.yaml").read_text())
    store = PolicyStore(root)
    good = store.get("it-desk")
    path = root / "bundles" / "it-desk.yaml"
    path.write_text(path.read_text().replace("decision: allow", "decision: yes-please"))
    import os

    os.utime(path, ns=(1, 1))  # a different mtime, as an edit makes
    assert store.get("it-desk") is good
    assert "keeping the last good version" in caplog.text
    path.write_text(path.read_text().replace("decision: yes-please", "decision: allow").replace("version: 1.0.0", "version: 1.0.1"))
    os.utime(path, ns=(2, 2))
    assert store.get("it-desk").bundle.version == "1.0.1"


def test_shipped_bundles_load():
    for path in sorted((REPO / "policies" / "bundles").glob("*.yaml")):
        assert load_bundle(path).sha256
