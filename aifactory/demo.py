"""`aifactory demo`: the reference agent on its sample inputs, end to end.

Not workflow-safe. Starts (or reuses) the embedded dev server, a worker and the
model, runs every sample of the agent, prints a line per run and its result,
and the link to the runs in the Temporal UI.
"""

from __future__ import annotations

import asyncio
import time

from activities.model.endpoints import EndpointRegistry
from aifactory.client import FactoryClient, RunFailed
from aifactory.keys_cli import init_key
from aifactory.signing import Signer
from activities.releases.loader import find_agent
from aifactory.stack import SCRIPTED_NOTE, factory_stack, model_choice
from workers.local_model import MODEL_NAME
from workers.settings import Settings


async def run_demo(settings: Settings, *, model: str = "auto", agent: str = "it-triage") -> int:
    chosen = model_choice(model, EndpointRegistry())
    first = {"scripted": SCRIPTED_NOTE, "local": f"local {MODEL_NAME}, verified, served by llama.cpp"}.get(chosen, "the configured endpoint")
    print(f"AI Factory demo · agent {agent} · model: {first}", flush=True)
    signer = demo_signer(settings)
    async with factory_stack(settings, model=model, key_overlay=True) as stack:
        if chosen == "local":
            print(f"model: {stack.model_note}", flush=True)
        factory = FactoryClient(stack.client, settings.agents_dir, signer=signer)
        release = factory.release(agent)
        loaded_samples = find_agent(settings.agents_dir, agent).samples
        if not loaded_samples:
            print(f"agent {agent} has no samples/*.json to run")
            return 1
        stamp = time.strftime("%Y%m%d-%H%M%S")
        print(f"{release.spec.name} {release.release_version}, owner {release.spec.owner.name}; {len(loaded_samples)} sample runs for tenant 'demo'", flush=True)
        handles = []
        for name, sample in loaded_samples.items():
            handle = await factory.start_run(agent, sample, tenant="demo", run_key=f"{name}-{stamp}", requester="demo")
            print(f"  started  {handle.workflow_id}", flush=True)
            handles.append((name, handle))
        await approve_like_an_operator(factory, [h.workflow_id for _, h in handles])
        failures = 0
        for name, handle in handles:
            try:
                r = await asyncio.wait_for(handle.result(), timeout=600)
            except RunFailed as e:
                failures += 1
                print(f"  FAILED   {name}: {e}", flush=True)
                continue
            out = r.output
            approved = ", ".join(f"{a.tool} approved by {a.decided_by}" for a in r.approvals if a.decided_by)
            if approved:
                print(f"           {name}: {approved}", flush=True)
            print(
                f"  done     {name}: {out['category']} {out['priority']} {out['ticket_id'] or '(no ticket)'} "
                f"(dept {out.get('requester_department') or 'unknown'}) · {r.steps} steps · "
                f"{r.usage.total_tokens} tokens · ${r.usage.cost_usd:.4f} · \"{out['summary']}\"",
                flush=True,
            )
        await export_to_audit(stack.client, settings, [h.workflow_id for _, h in handles])
        url = stack.runs_url(agent)
        if url:
            print(f"Runs in the Temporal UI: {url}")
            print("(the UI is up while `aifactory dev` runs; the demo's state is kept for it in .aifactory/)")
        print(f"{len(handles) - failures} of {len(handles)} runs completed")
        return 1 if failures else 0


async def export_to_audit(client, settings: Settings, workflow_ids: list[str]) -> None:
    """The export schedule runs every minute; the demo exports its runs now so they can be queried at once."""
    from activities.audit.export import AuditExporter
    from activities.audit.query import run_story

    exporter = AuditExporter(client, settings.db_url, settings.audit_key_ring(), witness_queue=settings.task_queue)
    for wid in workflow_ids:
        await exporter.export(workflow_id=wid, by="demo")
    # Count what the store holds for these runs: the schedule may have exported part of them already.
    stories = [await asyncio.to_thread(run_story, settings.db_url, wid) for wid in workflow_ids]
    records = sum(len(story[1]) for story in stories if story is not None)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    print(f"Audit store: {records} records from {len(workflow_ids)} runs, hash-chained. Ask it, for example:")
    print(f"  bash deploy/local.sh audit query --agent it-triage --on {day} --decision approval")
    print(f"  bash deploy/local.sh audit show {workflow_ids[-1]}")


DEMO_APPROVER = "maria.keller"


def demo_signer(settings: Settings) -> Signer:
    """The demo plays a desk lead, so it signs as one: a key of its own for that person, kept in the
    factory home (never the user's config folder) and registered in the home's directory keys."""
    folder = settings.home / "keys" / "people"
    if not (folder / f"{DEMO_APPROVER}.json").exists():
        init_key(settings, DEMO_APPROVER, days=365, folder=folder)
    return Signer.from_folders(folder)


async def approve_like_an_operator(factory: FactoryClient, workflow_ids: list[str], timeout: float = 900.0) -> None:
    """P1 and security tickets wait for a desk lead; the demo plays that lead, as an operator would."""
    waiting = set(workflow_ids)
    deadline = asyncio.get_running_loop().time() + timeout
    while waiting and asyncio.get_running_loop().time() < deadline:
        for wid in sorted(waiting):
            handle = factory.handle(wid)
            desc = await handle.handle.describe()
            if desc.status is not None and desc.status.name != "RUNNING":
                waiting.discard(wid)
                continue
            status = await handle.status()
            if status.approval is None:
                continue
            r = status.approval
            print(
                f"  approval {wid}: {r.tool} {r.arguments.get('priority', '')} {r.arguments.get('category', '')} "
                f"needs {r.group} (rule {r.rule_id}); approving as {DEMO_APPROVER}, like "
                f"`aifactory approve {wid} --as {DEMO_APPROVER}`",
                flush=True,
            )
            await factory.decide(wid, DEMO_APPROVER, "approve", note="approved in the demo")
        await asyncio.sleep(0.3)
