"""Agent overhead: factory agent runs/s against bare temporalio runs/s, on one server.

Not workflow-safe (this is the driver). One Temporal dev server is started and
two workers run against it in this process:

- factory: `AgentWorkflow` with the real model activity (the openai client over
  HTTP to a zero-latency `ScriptedModel`), the real tool activities and the
  SQLite transcript store. A run with K tool steps is K `lookup_requester` turns
  and a final answer: K+1 model activities + K tool activities = 2K+1 activities.
- bare: `bench.bare.BareWorkflow`, 2K+1 no-op activities in sequence.

The scripted model runs in a child process by default, as a real model would run
elsewhere; its CPU is reported apart. Rounds alternate bare, factory, factory,
bare... so the noise of a shared machine falls on both sides. From the repo root:

    python -m bench.agent_overhead --runs 200 --steps 3 --rounds 4 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import re
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.db import dispose_all
from activities.keys import KeyRing
from activities.model.endpoints import Endpoint, EndpointRegistry
from activities.model.scripted import Reply, ScriptedModel, turn_index
from activities.tools.it_desk_activities import seed_directory
from aifactory.client import FactoryClient
from activities.releases.loader import find_agent
from activities.releases.registry import ReleaseRegistry
from bench.bare import BareWorkflow, noop
from contracts import search
from contracts.agent import AgentRelease
from contracts.run import AgentRunInput
from workers.codec import EncryptionCodec, data_converter
from workers.devserver import FAST_DYNAMIC_CONFIG, SQLITE_PRAGMAS, temporal_cli
from workers.metrics import FactoryMetrics
from workers.worker import WorkerParts, build_worker
from workflows import agent as agent_module

AGENTS = Path(__file__).resolve().parents[1] / "agents"
EMAIL = "jonas.berg@example.com"

def lookup(turn: int) -> Reply:
    # A different address each turn: the same call K times over would trip the repeated-call breaker.
    return Reply.tool("lookup_requester", {"email": EMAIL if turn == 0 else f"jonas.berg{turn}@example.com"})

FINAL = Reply.text(
    {"category": "access", "priority": "P3", "ticket_id": "INC0000001", "summary": "Bench run answer",
     "requester_department": "Finance"}
)  # fmt: skip
STEPS = re.compile(r"steps=(\d+)")


def responder(body: dict[str, Any]) -> Reply:
    """Zero latency: tool calls while the conversation's turn is below its K, then the answer.

    K travels in the run's input text, so runs with different K share one model.
    """
    first_user = next(m.get("content") or "" for m in body["messages"] if m.get("role") == "user")
    turn = turn_index(body)
    return lookup(turn) if turn < int(STEPS.search(first_user).group(1)) else FINAL


# -- the scripted model ----------------------------------------------------------------------


class Model:
    """The scripted model, in this process or a child; `base_url` and the pid whose CPU it uses."""

    def __init__(self, in_process: bool) -> None:
        self._server = None
        self._proc = None
        if in_process:
            self._server = _start_model()
            port, self.pid = self._server.server_address[1], os.getpid()
        else:
            ctx = multiprocessing.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_model_process, args=(child,), daemon=True)
            self._proc.start()
            if not self._conn.poll(60):
                self._proc.kill()
                raise RuntimeError(f"the scripted model process did not start (exit code {self._proc.exitcode})")
            port, self.pid = self._conn.recv(), self._proc.pid
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._proc is not None:
            self._conn.close()
            self._proc.join(10)


def _start_model():
    model = ScriptedModel(responder)
    model.requests = _Discard()  # the recording is for tests; here it would only grow
    server = model.start()
    # Headers and body go out in two writes; with Nagle on, each call waits ~40 ms for a delayed ACK.
    server.RequestHandlerClass.disable_nagle_algorithm = True
    return server


class _Discard(list):
    def append(self, _item: Any) -> None:
        pass


def _model_process(conn) -> None:
    server = _start_model()
    conn.send(server.server_address[1])
    try:
        conn.recv()
    except EOFError:  # the parent closed the pipe: done
        pass


# -- measuring -------------------------------------------------------------------------------


def _bytecode_cached(module) -> bool:
    """Whether the sandbox, which re-imports the workflow modules for every run, finds them compiled
    (every module of the package, when the workflow is one)."""
    sources = sorted(Path(module.__file__).parent.glob("*.py")) if hasattr(module, "__path__") else [Path(module.__file__)]
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not (cached.exists() and cached.stat().st_mtime >= source.stat().st_mtime):
            return False
    return True


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry))
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass
class Meter:
    """CPU seconds of this process (the workers), the dev server and the scripted model."""

    server: list[int]
    model: int

    def read(self) -> tuple[float, float, float]:
        model = _cpu_seconds(self.model) if self.model != os.getpid() else 0.0
        return time.process_time(), sum(map(_cpu_seconds, self.server)), model


@dataclass
class Round:
    side: str
    runs: int
    seconds: float
    cpu: tuple[float, float, float]
    """Worker (this process), server, model CPU seconds; with the model in process, it is in the first."""
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.runs / self.seconds


async def drive(side: str, n: int, concurrency: int, one: Callable[[int], Awaitable[Any]], meter: Meter) -> Round:
    """`n` runs with at most `concurrency` in flight; wall time from the first start to the last result."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def run(i: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - t0)

    cpu0, t0 = meter.read(), time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(n)))
    seconds, cpu1 = time.perf_counter() - t0, meter.read()
    return Round(side, n, seconds, tuple(b - a for a, b in zip(cpu0, cpu1)), latencies)


async def history_stats(handles: list[WorkflowHandle]) -> tuple[float, float]:
    """Mean events and mean serialized bytes per run over `handles`."""
    events, size = [], []
    for h in handles:
        hist = await h.fetch_history()
        events.append(len(hist.events))
        size.append(History(events=hist.events).ByteSize())
    return statistics.mean(events), statistics.mean(size)


# -- the two sides ---------------------------------------------------------------------------


class Sides:
    def __init__(self, client: Client, factory_client: Client, releases: ReleaseRegistry, release: AgentRelease, bare_queue: str, activities: int) -> None:
        self.client = client
        self.factory = FactoryClient(factory_client, releases=releases)
        self.release = release
        self.bare_queue = bare_queue
        self.activities = activities

    async def start_factory(self, tag: str, i: int, steps: int) -> WorkflowHandle:
        inp = AgentRunInput(
            agent=self.release.spec.name,
            version=self.release.spec.version,
            input={"ticket_text": f"bench {tag} {i} steps={steps}", "requester_email": EMAIL},
            tenant="bench",
            run_key=f"{tag}-{i}",
        )
        return (await self.factory.start_prepared(inp)).handle

    async def start_bare(self, tag: str, i: int, activities: int | None = None) -> WorkflowHandle:
        return await self.client.start_workflow(
            BareWorkflow.run, activities or self.activities, id=f"bare/{tag}-{i}", task_queue=self.bare_queue
        )

    def runner(self, side: str, tag: str, steps: int) -> Callable[[int], Awaitable[Any]]:
        async def one(i: int) -> Any:
            handle = await (self.start_factory(tag, i, steps) if side == "factory" else self.start_bare(tag, i))
            return await handle.result()

        return one


async def start_server(args: argparse.Namespace, tmp: Path) -> WorkflowEnvironment:
    extra: list[str] = []
    for value in FAST_DYNAMIC_CONFIG:
        extra += ["--dynamic-config-value", value]
    if not args.in_memory:
        for pragma in SQLITE_PRAGMAS:
            extra += ["--sqlite-pragma", pragma]
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search.ALL,
        data_converter=pydantic_data_converter,
        dev_server_database_filename=None if args.in_memory else str(tmp / "temporal.db"),
        dev_server_extra_args=extra,
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    k, suffix = args.steps, uuid.uuid4().hex[:8]
    factory_queue, bare_queue = f"bench-factory-{suffix}", f"bench-bare-{suffix}"
    with tempfile.TemporaryDirectory(prefix="aif-bench-") as tmp:
        model = Model(in_process=args.model_in_process)
        env = await start_server(args, Path(tmp))
        try:
            server = [p for p in _children() if Path(f"/proc/{p}/comm").read_text().strip() == "temporal"]
            db_url = f"sqlite:///{Path(tmp) / 'factory.db'}"
            seed_directory(db_url, json.loads((AGENTS / "it-triage" / "seed" / "it_desk.json").read_text()))
            endpoints = EndpointRegistry(env={})
            endpoints.register(Endpoint("default", model.base_url, api_key="sk-bench"))
            release = find_agent(AGENTS, "it-triage").release
            assert release is not None
            spec = release.spec.model_copy(
                update={"task_queue": factory_queue, "step_limit": max(release.spec.step_limit, k + 1), "version": f"{release.spec.version}-bench"}
                | ({"envelope": None} if args.no_envelope else {})
            )
            release = release.model_copy(update={"spec": spec})
            releases = ReleaseRegistry([release])  # what the bench's worker is deployed with
            # The factory side as it ships: its client and worker use the factory's data converter
            # (`workers.codec`), the bare side temporalio's pydantic one. With `--codec` both sides
            # encrypt their payloads with the factory's codec, as a deployment that needs it would.
            ring = KeyRing.generate("bench") if args.codec else None
            factory_client = Client(env.client.service_client, namespace=env.client.namespace, data_converter=data_converter(ring))
            bare_client = env.client
            if ring is not None:
                bare_converter = dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(ring))
                bare_client = Client(env.client.service_client, namespace=env.client.namespace, data_converter=bare_converter)
            sides = Sides(bare_client, factory_client, releases, release, bare_queue, 2 * k + 1)
            factory_worker = build_worker(
                factory_client, factory_queue, WorkerParts(db_url=db_url, releases=releases, endpoints=endpoints, metrics=FactoryMetrics()),
                sandboxed=args.sandbox,
            )
            # Like against like: the bare side runs on the same workflow runner as the factory side.
            bare_runner = {} if args.sandbox else {"workflow_runner": UnsandboxedWorkflowRunner()}
            bare_worker = Worker(bare_client, task_queue=bare_queue, workflows=[BareWorkflow], activities=[noop], **bare_runner)
            async with factory_worker, bare_worker:
                return await measure(args, sides, Meter(server, model.pid))
        finally:
            await env.shutdown()
            model.stop()
            dispose_all()


async def measure(args: argparse.Namespace, sides: Sides, meter: Meter) -> dict[str, Any]:
    k = args.steps
    order = [s for s in ("bare", "factory") if args.only in (None, s)]
    for side in order:  # warm-up: sandbox imports, connection pools, SQLite pages
        await drive(side, args.warmup, args.concurrency, sides.runner(side, "warm", k), meter)
    rounds: list[Round] = []
    for r in range(args.rounds):
        for side in order if r % 2 == 0 else order[::-1]:
            rounds.append(await drive(side, args.runs, args.concurrency, sides.runner(side, f"r{r}", k), meter))
            print(f"  round {r + 1} {side:<7} {rounds[-1].rate:6.1f} runs/s", flush=True)

    probes = min(5, args.runs)
    factory_k = [await sides.start_factory("probe-k", i, k) for i in range(probes)]
    factory_0 = [await sides.start_factory("probe-0", i, 0) for i in range(probes)]
    bare = [await sides.start_bare("probe", i) for i in range(probes)]
    bare_1 = [await sides.start_bare("probe-1", i, 1) for i in range(probes)]
    for h in factory_k + factory_0 + bare + bare_1:
        await h.result()
    ev_fk, bytes_fk = await history_stats(factory_k)
    ev_f0, _ = await history_stats(factory_0)
    ev_b, bytes_b = await history_stats(bare)
    ev_b1, _ = await history_stats(bare_1)

    out: dict[str, Any] = {
        "runs": args.runs, "steps": k, "activities_per_run": 2 * k + 1, "rounds": args.rounds,
        "concurrency": args.concurrency, "server_store": "memory" if args.in_memory else "sqlite-wal",
        "workflow_runner": "sandboxed, both sides" if args.sandbox else "unsandboxed, both sides (production default)",
        "model": "in-process" if args.model_in_process else "child-process",
        "codec": "aes-gcm, both sides" if args.codec else "off",
        "bytecode_cache": _bytecode_cached(agent_module),
    }  # fmt: skip
    for side in order:
        mine = [r for r in rounds if r.side == side]
        runs, secs = sum(r.runs for r in mine), sum(r.seconds for r in mine)
        lat = sorted(x for r in mine for x in r.latencies)
        cpu = [1000 * sum(r.cpu[i] for r in mine) / runs for i in range(3)]
        out[side] = {
            "runs_per_s": round(runs / secs, 2),
            "rounds_runs_per_s": [round(r.rate, 2) for r in mine],
            "p50_s": round(lat[len(lat) // 2], 3),
            "p95_s": round(lat[int(len(lat) * 0.95)], 3),
            "worker_cpu_ms_per_run": round(cpu[0], 1),
            "server_cpu_ms_per_run": round(cpu[1], 1),
            "model_cpu_ms_per_run": round(cpu[2], 1),
        }
    if len(order) == 2:
        out["ratio"] = round(out["factory"]["runs_per_s"] / out["bare"]["runs_per_s"], 3)
    out["history"] = {
        "bare_events_per_run": ev_b,
        "bare_events_per_activity": round((ev_b - ev_b1) / (2 * k), 2) if k else None,
        "factory_events_per_run": ev_fk,
        "factory_events_no_tools": ev_f0,
        "factory_events_per_agent_step": round(ev_fk / (k + 1), 2),
        "factory_events_per_tool_step": round((ev_fk - ev_f0) / k, 2) if k else None,
        "bare_bytes_per_run": round(bytes_b),
        "factory_bytes_per_run": round(bytes_fk),
    }
    return out


def report(out: dict[str, Any]) -> None:
    k, h = out["steps"], out["history"]
    print(
        f"\nagent overhead: {out['runs']} runs x {out['rounds']} rounds per side, K={k} tool steps "
        f"({out['activities_per_run']} activities/run), {out['concurrency']} in flight, "
        f"server store {out['server_store']}, model {out['model']}, "
        f"workflow runner: {out.get('workflow_runner', '?')}, "
        f"payload encryption {out.get('codec', 'off')}"
    )
    print(f"{'side':<8} {'runs/s':>7} {'p50 s':>6} {'p95 s':>6}   CPU ms/run: {'worker':>6} {'server':>6} {'model':>6}   rounds")
    for side in ("bare", "factory"):
        if side in out:
            s = out[side]
            print(
                f"{side:<8} {s['runs_per_s']:>7.1f} {s['p50_s']:>6.2f} {s['p95_s']:>6.2f}   {'':11} "
                f"{s['worker_cpu_ms_per_run']:>6.1f} {s['server_cpu_ms_per_run']:>6.1f} {s['model_cpu_ms_per_run']:>6.1f}"
                f"   {s['rounds_runs_per_s']}"
            )
    if "ratio" in out:
        print(f"ratio factory/bare: {out['ratio']:.3f}")
    print(
        f"history events/run: bare {h['bare_events_per_run']:g} ({h['bare_events_per_activity']} per activity), "
        f"factory {h['factory_events_per_run']:g} (with no tool step: {h['factory_events_no_tools']:g})"
    )
    print(
        f"events per agent step (events/run / {k + 1} model turns): {h['factory_events_per_agent_step']}; "
        f"per tool step (one tool call + the model turn after it, marginal): {h['factory_events_per_tool_step']}"
    )
    print(f"history bytes/run: bare {h['bare_bytes_per_run']}, factory {h['factory_bytes_per_run']}")
    if not out["bytecode_cache"]:
        print(
            "note: the workflows/agent package has no bytecode cache, so the sandbox compiles it from source for every run "
            "(PYTHONDONTWRITEBYTECODE?); see bench/README.md"
        )
    print(json.dumps(out, separators=(",", ":")))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.agent_overhead", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=200, help="runs per side per round")
    p.add_argument("--steps", type=int, default=3, help="tool steps per agent run (K); bare runs do 2K+1 activities")
    p.add_argument("--rounds", type=int, default=4, help="measured rounds per side; sides alternate ABBA, so an even count gives both the same average position as the server's store grows")
    p.add_argument("--concurrency", type=int, default=50, help="runs in flight at once")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured runs per side first")
    p.add_argument("--in-memory", action="store_true", help="dev server keeps its state in memory, not a SQLite file")
    p.add_argument("--model-in-process", action="store_true", help="serve the scripted model from the worker process")
    p.add_argument("--only", choices=("bare", "factory"), help="measure one side (for profiling)")
    p.add_argument("--no-envelope", action="store_true", help="run the agent without its cost envelope (to see what the ledger costs)")
    p.add_argument("--codec", action="store_true", help="encrypt both sides' payloads with the factory's AES-GCM codec (factory workers do by default)")
    p.add_argument(
        "--sandbox", "--factory-sandbox", dest="sandbox", action="store_true",
        help="run both sides' workflows in Temporal's sandbox (by default both run unsandboxed, as production "
        "workers do unless AIFACTORY_WORKFLOW_SANDBOX=1)",
    )
    report(asyncio.run(bench(p.parse_args(argv))))


if __name__ == "__main__":
    main()
