"""The README's FactoryClient snippet, run as a business system would: a script in a folder outside
the project. With the documented environment it completes; without it, it fails at once with one
sentence naming the missing setting (it never makes a new, empty factory where it runs)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid

from activities.keys import KeyRing
from activities.model.endpoints import Endpoint, EndpointRegistry
from activities.releases.registry import ReleaseRegistry
from aifactory.scripted_triage import triage_model
from tests.support.harness import AGENTS, REPO, encrypted_client, seed_db
from workers.worker import WorkerParts, build_worker


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    snippet = next(b for b in blocks if "FactoryClient.connect()" in b)
    return snippet.replace('run_key="T-1001"', f'run_key="T-{uuid.uuid4().hex[:8]}"')  # a fresh run each time


async def run_script(folder, env: dict[str, str]) -> tuple[int, str, str]:
    script = folder / "business_system.py"
    script.write_text(readme_snippet())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=folder, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIFACTORY_", "TEMPORAL_"))}
    return {**env, **extra}


async def test_outside_a_project_without_settings_it_fails_at_once_naming_them(tmp_path):
    outside = tmp_path / "crm-integration"
    outside.mkdir()
    code, _, err = await run_script(outside, clean_env())
    assert code != 0
    assert err.strip().splitlines()[-1].startswith("workers.settings.FactoryHomeNotFound: no factory home here: set AIFACTORY_HOME")
    assert not (outside / ".aifactory").exists()  # no new, empty factory where it ran


async def test_with_the_documented_environment_it_completes_from_outside_the_project(env, tmp_path):
    home = tmp_path / "project" / ".aifactory"
    ring = KeyRing.generate("k1")
    ring.save(home / "keys" / "codec.json")
    db_url = f"sqlite:///{home / 'factory.db'}"
    seed_db(db_url)
    model = triage_model()
    with model.serve() as base_url:
        endpoints = EndpointRegistry(env={})
        endpoints.register(Endpoint("default", base_url, model_override=model.model_name))
        parts = WorkerParts(db_url=db_url, releases=ReleaseRegistry.from_folder(AGENTS), endpoints=endpoints)
        async with build_worker(encrypted_client(env.client, ring), "aifactory-agents", parts, max_cached_workflows=0):
            outside = tmp_path / "crm-integration"
            outside.mkdir()
            address = env.client.service_client.config.target_host
            code, out, err = await run_script(outside, clean_env(AIFACTORY_HOME=str(home), TEMPORAL_ADDRESS=address))
    assert code == 0, err
    assert "'category': 'network'" in out and "'ticket_id': 'INC" in out
