"""Workflow-safe code stays deterministic: a static check over every module that runs inside
workflows. Production workers run the workflow unsandboxed for throughput, so this check, the
sandboxed test runs and the replay of committed histories are what keep it honest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.harness import REPO

WORKFLOW_SAFE = sorted(
    [*REPO.glob("contracts/*.py"), *REPO.glob("workflows/**/*.py"), *REPO.glob("policies/*.py"),
     *REPO.glob("activities/tools/*/declarations.py"), *REPO.glob("activities/tools/*_tools.py")]
)  # fmt: skip
NOT_WORKFLOW_SAFE = {
    REPO / "policies/loader.py",  # reads files; workflows never import it
    REPO / "policies/hours.py",  # reads the time-zone database, which differs between machines
}

FORBIDDEN_IMPORTS = {
    "openai", "httpx", "sqlmodel", "sqlalchemy", "prometheus_client", "requests", "socket", "subprocess",
    "threading", "random", "secrets", "os", "time", "yaml", "activities.db", "activities.model", "policies.loader",
    "zoneinfo", "policies.hours",
}  # fmt: skip
FORBIDDEN_CALLS = {
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"), ("time", "time"),
    ("time", "sleep"), ("time", "monotonic"), ("uuid", "uuid4"), ("uuid", "uuid1"), ("asyncio", "sleep"),
    ("asyncio", "wait"), ("asyncio", "as_completed"), ("random", "random"),
}  # fmt: skip
FORBIDDEN_NAMES = {"open", "input", "print", "breakpoint"}


def problems_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IMPORTS):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {name}")
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in FORBIDDEN_CALLS:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: calls {f.value.id}.{f.attr}")
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_NAMES:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: calls {f.id}()")
        if isinstance(node, ast.keyword) and node.arg == "default_factory":
            src = ast.unparse(node.value)
            if "now" in src or "uuid" in src or "random" in src:
                found.append(f"{path.relative_to(REPO)}:{node.value.lineno}: default_factory={src}")
    return found


@pytest.mark.parametrize("path", [p for p in WORKFLOW_SAFE if p not in NOT_WORKFLOW_SAFE], ids=lambda p: str(p.relative_to(REPO)))
def test_workflow_safe_module_has_no_nondeterminism(path):
    assert problems_in(path) == []


def test_the_check_catches_what_it_should():
    probe = REPO / "_probe_bad.py"
    probe.write_text(
        "import random\nfrom datetime import datetime\nimport httpx\n"
        "from pydantic import Field\nx = datetime.now()\nopen('f')\nclass M:\n    t: str = Field(default_factory=lambda: datetime.now())\n"
    )
    try:
        found = problems_in(probe)
    finally:
        probe.unlink()
    assert [f.split(": ", 1)[1] for f in found] == [
        "imports random", "imports httpx", "calls datetime.now", "calls open()",
        "default_factory=lambda: datetime.now()", "calls datetime.now",
    ]  # fmt: skip


def test_docstrings_say_workflow_safe():
    for path in WORKFLOW_SAFE:
        if path in NOT_WORKFLOW_SAFE or path.name == "__init__.py" and not path.read_text().strip():
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "workflow-safe" in doc.lower() or "workflow code" in doc.lower(), f"{path}: say whether it is workflow-safe"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, absolute or relative (resolved against its package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            # `from .. import activities` names the module in its aliases.
            modules = [node.module] if node.module else [a.name for a in node.names]
            found += [(node.lineno, f"{base}.{m}".strip(".")) for m in modules]
    return found


@pytest.mark.parametrize("path", sorted(REPO.glob("workflows/**/*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_workflows_import_nothing_from_activities(path):
    # Layering: workflows sit below activities. The tool catalog they read is `contracts.catalog`;
    # activity references are scheduled by name, so no workflow module needs the activities package.
    upward = [f"{path.relative_to(REPO)}:{line}: imports {name}" for line, name in imported_modules(path)
              if name == "activities" or name.startswith(("activities.", "workers", "aifactory"))]  # fmt: skip
    assert upward == []


def test_the_layering_check_sees_relative_and_nested_imports():
    probe = REPO / "workflows" / "_probe_upward.py"
    probe.write_text(
        "def f():\n    from activities.tools.catalog import CATALOG\nfrom . import agent\nfrom .. import activities\n"
        "from .agent import AgentWorkflow\n"
    )
    try:
        found = {name for _, name in imported_modules(probe)}
    finally:
        probe.unlink()
    assert found == {"activities.tools.catalog", "workflows.agent", "activities"}
