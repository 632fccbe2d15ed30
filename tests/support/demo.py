"""`aifactory demo` run for real in a test: on the shared dev server, with the scripted model."""

from __future__ import annotations

from pathlib import Path

from activities.keys import KeyRing
from aifactory.demo import run_demo
from aifactory.stack import seed_reference_data
from workers.schedules import AUDIT_SCHEDULE_ID
from workers.settings import Settings


async def demo_on_cluster(env, home: Path, agents: Path, queue: str, agent: str) -> int:
    """Run the demo of `agent` (from the `agents` folder) on `queue`; returns its exit code.

    On a cluster (the shared dev server) the demo writes no sample data to the store: the agent's
    seed is loaded first, as an operator would, through its tool families."""
    KeyRing.generate().save(home / "keys" / "codec.json")
    KeyRing.generate().save(home / "keys" / "audit.json")
    settings = Settings.from_env({
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host, "AIFACTORY_HOME": str(home),
        "AIFACTORY_AGENTS_DIR": str(agents), "AIFACTORY_TASK_QUEUE": queue,
    })  # fmt: skip
    assert seed_reference_data(settings) > 0
    try:
        return await run_demo(settings, model="scripted", agent=agent)
    finally:  # the demo's worker made the export schedule on the shared dev server, for its own queue
        await env.client.get_schedule_handle(AUDIT_SCHEDULE_ID).delete()
