"""`aifactory demo`: an agent on its sample inputs, end to end (`--agent`, it-triage by default).

Not workflow-safe. Starts (or reuses) the embedded dev server, a worker and the
model, runs every sample of the agent, prints a line per run and its output
(whatever fields the agent's output schema has; a list of objects one item a line), and the link to the runs in the
Temporal UI. Approvals are given as an operator would: by the first member of the
request's approver group in the policy directory who may decide it.
"""

from __future__ import annotations

import asyncio
import time

from activities.model.endpoints import EndpointRegistry
from aifactory.client import FactoryClient, RunFailed
from aifactory.keys_cli import init_key
from aifactory.signing import Signer
from activities.releases.loader import find_agent
from aifactory.evaluate import compact
from contracts.policy import Directory
from policies.approvals import first_approver
from policies.loader import load_directory, policies_dir
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
        await approve_like_an_operator(factory, [h.workflow_id for _, h in handles], approver_directory())
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
                f"  done     {name}: {compact(out)} · {r.steps} steps · {r.usage.total_tokens} tokens · ${r.usage.cost_usd:.4f}",
                flush=True,
            )
            for line in item_lines(out):
                print(line, flush=True)
        await export_to_audit(stack.client, settings, [h.workflow_id for _, h in handles], agent)
        url = stack.runs_url(agent)
        if url:
            print(f"Runs in the Temporal UI: {url}")
            print("(the UI is up while `aifactory dev` runs; the demo's state is kept for it in .aifactory/)")
        print(f"{len(handles) - failures} of {len(handles)} runs completed")
        return 1 if failures else 0


def item_lines(output: dict | None) -> list[str]:
    """A field that holds a list of objects (matched pairs, exceptions), one item a line: the run's line cuts it short."""
    lines = []
    for key, value in (output or {}).items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            lines.append(f"           {key}:")
            lines += [f"             - {compact(item, 40)}" for item in value]
    return lines


async def export_to_audit(client, settings: Settings, workflow_ids: list[str], agent: str = "it-triage") -> None:
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
    print(f"  bash deploy/local.sh audit query --agent {agent} --on {day} --decision approval")
    print(f"  bash deploy/local.sh audit show {workflow_ids[-1]}")


def approver_directory() -> Directory:
    """The policy directory approvers are taken from (the one the worker's bundles are checked against)."""
    return load_directory(policies_dir() / "directory.yaml")


def demo_signer(settings: Settings, directory: Directory | None = None) -> Signer:
    """The demo plays the approvers, so it signs as them: a key for every member of an approver group,
    kept in the factory home (never the user's config folder) and registered in the home's directory keys."""
    folder = settings.home / "keys" / "people"
    for person in (directory or approver_directory()).people:
        if person.groups and not person.acts_for and not (folder / f"{person.id}.json").exists():
            init_key(settings, person.id, days=365, folder=folder)
    return Signer.from_folders(folder)


async def approve_like_an_operator(
    factory: FactoryClient, workflow_ids: list[str], directory: Directory | None = None, timeout: float = 900.0
) -> None:
    """Requests that wait for a person (a P1 ticket, a security one) are approved by the first member of
    their approver group who may decide them, as an operator would."""
    directory = directory or approver_directory()
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
            approver = first_approver(r, directory)
            if approver is None:
                print(f"  approval {wid}: {r.tool} needs {r.group}, and nobody in it may decide it: left pending", flush=True)
                waiting.discard(wid)
                continue
            print(
                f"  approval {wid}: {r.tool} {compact(r.arguments, 24)} needs {r.group} (rule {r.rule_id}); "
                f"approving as {approver}, like `aifactory approve {wid} --as {approver}`",
                flush=True,
            )
            await factory.decide(wid, approver, "approve", note="approved in the demo")
        await asyncio.sleep(0.3)
