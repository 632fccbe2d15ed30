"""`aifactory`: the command line for engineers and operators.

Not workflow-safe.

    aifactory agents list|show NAME      what is admitted, who owns it, which version
    aifactory check [AGENT ...]          the admission gate (exit 1 with one line per problem)
    aifactory run AGENT --tenant T --input JSON|@file [--run-key K] [--version V] [--label K=V] [--wait] [--json]
    aifactory status RUN                 where a run is (step, cost, what it waits on)
    aifactory approvals list [--group G] [--json]      runs waiting for a person
    aifactory approve RUN --as PERSON [--note ...]     approve what RUN waits for
    aifactory reject RUN --as PERSON --note ...        reject it (a note is required)
    aifactory worker                     run a worker against the configured cluster
    aifactory dev                        dev server + worker, until Ctrl-C
    aifactory demo                       dev server + worker + an agent on its samples (--agent)
    aifactory setup                      register the search attributes on a cluster
    aifactory audit export|verify|query|show|retention   the audit store (see aifactory.audit_cli)
    aifactory codec-server               decode encrypted payloads for the Temporal UI
    aifactory model install|serve|status the verified local model (see aifactory.model_cli)
    aifactory eval AGENT [--model P] [--accept]   the evaluation gate for prompt/model/tool changes
    aifactory kill|unkill AGENT|--tenant T|--all --reason R --as P   kill switches (see aifactory.control_cli)
    aifactory switches                   every kill switch set, who, when, why
    aifactory envelope status|raise|stop cost envelopes (see aifactory.control_cli)
    aifactory keys init|show|revoke --as P   your signing key for decisions (see aifactory.keys_cli)
    aifactory gateway [--host H] [--port P]      the HTTP gateway for business systems (see aifactory.gateway.cli)
    aifactory gateway keys create|list|revoke    its API keys
    aifactory slack serve [--host H] [--port P]  the endpoint Slack's Approve/Reject buttons post to

Exit codes: 0 done; 1 the command ran and reports a failure (an agent refused by the gate, a
failed run, a refused decision, tampering), or an error this CLI does not know, with its
traceback; 2 a clear refusal, in one sentence (any `FactoryError`, see aifactory.errors); 3 Temporal cannot be reached; 130 Ctrl-C;
141 the reader of the output went away (`| head`), as for any command stopped by SIGPIPE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from temporalio.service import RPCError, RPCStatusCode

from aifactory import audit_cli, control_cli, keys_cli, model_cli
from aifactory.gateway import cli as gateway_cli
from aifactory.slack import cli as slack_cli
from activities.releases.gate import check_agent, check_all
from aifactory.client import FactoryClient
from aifactory.errors import ApprovalRefused, FactoryError, RunFailed
from activities.releases.loader import discover, find_agent
from workers.runtime import command_runtime
from workers.settings import Settings


class CliError(FactoryError):
    """A clear, one-line refusal (exit code 2)."""


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


# -- agents and check -------------------------------------------------------------------------


def cmd_agents(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        rows = []
        for agent in discover(settings.agents_dir):
            r = agent.release
            rows.append(
                {
                    "name": agent.name,
                    "version": r.release_version if r else "-",
                    "owner": r.spec.owner.name if r else "-",
                    "function": r.spec.business_function if r else "-",
                    "admitted": not check_agent(agent),
                }
            )
        if args.json:
            _print_json(rows)
        else:
            print(f"{'AGENT':<20} {'VERSION':<28} {'OWNER':<20} {'ADMITTED':<9} FUNCTION")
            for row in rows:
                print(f"{row['name']:<20} {row['version']:<28} {row['owner']:<20} {'yes' if row['admitted'] else 'NO':<9} {row['function']}")
        return 0
    if not args.name:
        raise CliError("agents show needs an agent name")
    agent = find_agent(settings.agents_dir, args.name)
    problems = check_agent(agent)
    if agent.release is None:
        for p in problems:
            print(p, file=sys.stderr)
        return 1
    r = agent.release
    data = {
        "release_version": r.release_version,
        "prompt_sha256": r.prompt_sha256,
        "folder": str(agent.folder),
        "admitted": not problems,
        "problems": [str(p) for p in problems],
        "samples": sorted(agent.samples),
        **r.spec.model_dump(mode="json"),
    }
    if args.json:
        _print_json(data)
        return 0
    s = r.spec
    print(f"{s.name} {r.release_version}  ({'admitted' if not problems else 'NOT admitted'})")
    print(f"  {s.description}")
    print(f"  owner:        {s.owner.name} <{s.owner.contact}>")
    print(f"  function:     {s.business_function}")
    print(f"  escalation:   {s.escalation_contact}")
    print(f"  model:        {s.model.name} via endpoint profile '{s.model.endpoint}' (temperature {s.model.temperature}, max {s.model.max_tokens} tokens)")
    print(f"  tools:        {', '.join(s.tools) or '(none)'}")
    print(f"  limits:       {s.step_limit} steps, ${s.cost_limit_usd:.2f} per run")
    print(f"  SLO:          p95 {s.slo.latency_p95_seconds:g}s, success {s.slo.success_rate:.1%}")
    print(f"  runbook:      {agent.folder / s.runbook}")
    print(f"  rollback to:  {s.rollback_to}")
    print(f"  task queue:   {s.task_queue}")
    print(f"  samples:      {', '.join(sorted(agent.samples)) or '(none)'}")
    for p in problems:
        print(f"  problem: {p}")
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    if args.agents:
        results = {name: check_agent(find_agent(settings.agents_dir, name)) for name in args.agents}
    else:
        results = check_all(settings.agents_dir)
    failed = 0
    for name, problems in results.items():
        if problems:
            failed += 1
            for p in problems:
                print(p)
        else:
            print(f"ok: {name}")
    if failed:
        print(f"{failed} of {len(results)} agent(s) refused by the admission gate", file=sys.stderr)
        return 1
    return 0


# -- runs --------------------------------------------------------------------------------------


def _read_input(raw: str) -> Any:
    text = raw
    if raw.startswith("@"):
        path = Path(raw[1:])
        if not path.is_file():
            raise CliError(f"--input: file {path} does not exist")
        text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"--input is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    payload = _read_input(args.input)
    factory = await FactoryClient.connect(settings)
    run_key = args.run_key or f"cli-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    labels: dict[str, str] = {}
    for item in args.label or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--label {item!r}: expected KEY=VALUE")
        labels[key.strip()] = value
    handle = await factory.start_run(
        args.agent, payload, tenant=args.tenant, run_key=run_key, requester=args.requester, version=args.version, labels=labels
    )
    verb = "started" if handle.started else "already exists (same business key); not started again"
    if not args.wait:
        if args.json:
            _print_json({"workflow_id": handle.workflow_id, "started": handle.started})
        else:
            print(f"{handle.workflow_id}: {verb}")
        return 0
    if not args.json:
        print(f"{handle.workflow_id}: {verb}; waiting for the result ...", file=sys.stderr)
    try:
        result = await handle.result()
    except RunFailed as e:
        if args.json:
            _print_json({"workflow_id": handle.workflow_id, "failed": e.type, "message": str(e)})
        else:
            print(str(e), file=sys.stderr)
        return 1
    if args.json:
        _print_json({"workflow_id": handle.workflow_id, **result.model_dump(mode="json")})
    else:
        _print_json(result.output)
        u = result.usage
        print(
            f"{result.agent} {result.agent_version}: {result.steps} steps, {u.total_tokens} tokens, ${u.cost_usd:.4f}",
            file=sys.stderr,
        )
    return 0


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    factory = await FactoryClient.connect(settings)
    handle = factory.handle(args.run)
    try:
        desc = await handle.handle.describe()
    except RPCError as e:
        if e.status is not RPCStatusCode.NOT_FOUND:
            raise
        raise CliError(
            f"no run {args.run} in namespace '{settings.namespace}' at {settings.address}: check the workflow id "
            "(agent/<agent>/<tenant>/<run key>; `aifactory approvals list` shows the runs waiting for a person)"
        ) from None
    status = await handle.status()
    data = {"workflow_id": args.run, "execution": desc.status.name if desc.status else None, **status.model_dump(mode="json")}
    if args.json:
        _print_json(data)
    else:
        u = status.usage
        print(
            f"{args.run}: {data['execution']} · {status.state.value} · step {status.step}/{status.step_limit} · "
            f"waiting on {status.waiting_on} · {u.total_tokens} tokens · ${u.cost_usd:.4f} · "
            f"{status.tool_calls} tool calls ({status.invalid_tool_calls} refused)"
        )
    return 0


# -- approvals ---------------------------------------------------------------------------------


async def cmd_approvals(args: argparse.Namespace, settings: Settings) -> int:
    factory = await FactoryClient.connect(settings)
    pending = await factory.pending_approvals(args.group)
    if args.json:
        _print_json([{"workflow_id": p.workflow_id, "agent": p.agent, "tenant": p.tenant, **p.request.model_dump(mode="json")} for p in pending])
        return 0
    if not pending:
        print("no runs are waiting for approval" + (f" from {args.group}" if args.group else ""))
        return 0
    for p in pending:
        r = p.request
        print(f"{p.workflow_id}  request {r.id}  {r.tool} {json.dumps(r.arguments, sort_keys=True)}")
        print(f"    group {r.group} (tier {r.tier + 1}/{len(r.approval.chain)}) · deadline {r.deadline:%Y-%m-%d %H:%M:%S} UTC · rule {r.rule_id}: {r.reason}")
    return 0


async def cmd_decide(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "reject" and not (args.note or "").strip():
        raise CliError("reject needs --note saying why")
    factory = await FactoryClient.connect(settings)
    try:
        answer = await factory.decide(args.run, args.person, "approve" if args.command == "approve" else "reject", args.note, args.request)
    except ApprovalRefused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    print(f"{args.run} request {answer.request_id}: {answer.reason}")
    return 0


# -- processes ---------------------------------------------------------------------------------


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from activities.model.endpoints import EndpointRegistry
    from aifactory.stack import factory_stack, model_choice

    if args.model == "auto" and not settings.embedded and model_choice("auto", EndpointRegistry()) == "local":
        # On a cluster a worker without an endpoint is a configuration gap, not a cue to build a local model.
        raise CliError(
            "no model endpoint is configured for this worker: set AIFACTORY_ENDPOINT_DEFAULT_BASE_URL "
            "(see deploy/README.md), or pass --model local to serve the verified local model from this machine"
        )
    async with factory_stack(settings, model=args.model, start_server=False, say=lambda m: print(m, file=sys.stderr)) as stack:
        print(f"worker on task queue '{settings.task_queue}' at {settings.address} · model: {stack.model_note}", flush=True)
        await _until_interrupted()
    return 0


async def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from aifactory.stack import factory_stack
    from aifactory.stack_lock import home_lock

    with home_lock(settings.home):
        return await _dev(args, settings, factory_stack)


async def _dev(args: argparse.Namespace, settings: Settings, factory_stack) -> int:
    async with factory_stack(settings, model=args.model) as stack:
        print(f"AI Factory dev · model: {stack.model_note}")
        print(f"Temporal at {settings.address} · worker on task queue '{settings.task_queue}'")
        if stack.ui_url:
            print(f"Temporal UI: {stack.runs_url()}")
        print("Start a run:  aifactory run it-triage --tenant demo --input @agents/it-triage/samples/wifi-down.json --wait")
        print("Ctrl-C stops the worker and the dev server; runs resume on the next start.", flush=True)
        await _until_interrupted()
    return 0


async def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    from aifactory.stack import factory_stack

    async with factory_stack(settings, run_worker=False) as stack:
        from workers.search_attributes import ensure_search_attributes

        added = await ensure_search_attributes(stack.client)
        print(f"search attributes on {settings.address}/{settings.namespace}: " + (", ".join(added) + " added" if added else "all present"))
        from workers.schedules import AUDIT_SCHEDULE_ID, ensure_audit_schedule

        created = await ensure_audit_schedule(stack.client, settings.task_queue)
        print(f"schedule {AUDIT_SCHEDULE_ID}: " + ("created (an audit export pass every minute)" if created else "present"))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from aifactory.demo import run_demo
    from aifactory.stack_lock import home_lock

    with home_lock(settings.home):
        return asyncio.run(run_demo(settings, model=args.model, agent=args.agent))


# -- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aifactory", description="Run LLM agents in production on Temporal.")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("agents", help="list or show agents")
    a.add_argument("action", choices=["list", "show"])
    a.add_argument("name", nargs="?")
    a.add_argument("--json", action="store_true")

    c = sub.add_parser("check", help="admission gate: does every agent meet the deployment standard?")
    c.add_argument("agents", nargs="*")

    r = sub.add_parser("run", help="start a run")
    r.add_argument("agent")
    r.add_argument("--tenant", required=True)
    r.add_argument("--input", required=True, help="JSON text, or @file")
    r.add_argument("--run-key", help="business key of the run (default: generated)")
    r.add_argument("--requester", default="cli")
    r.add_argument("--version", help="pin a release (1.3.0, or 1.3.0+prompt.<hash>); default: the workers' current one")
    r.add_argument("--label", action="append", help="KEY=VALUE, kept with the run's audit story (repeatable)")
    r.add_argument("--wait", action="store_true", help="wait for the result")
    r.add_argument("--json", action="store_true")

    ap = sub.add_parser("approvals", help="runs waiting for approval")
    ap.add_argument("action", choices=["list"])
    ap.add_argument("--group")
    ap.add_argument("--json", action="store_true")
    for verb in ("approve", "reject"):
        d = sub.add_parser(verb, help=f"{verb} what a run waits for")
        d.add_argument("run", help="workflow id, e.g. agent/it-triage/acme/T-1001")
        d.add_argument("--as", dest="person", required=True, help="your person id in the approver directory")
        d.add_argument("--note")
        d.add_argument("--request", help="request id (default: the pending one)")

    s = sub.add_parser("status", help="status of a run")
    s.add_argument("run", help="workflow id, e.g. agent/it-triage/acme/T-1001")
    s.add_argument("--json", action="store_true")

    for name, help_ in (("worker", "run a worker"), ("dev", "dev server and worker until Ctrl-C"), ("demo", "run an agent on its samples")):
        w = sub.add_parser(name, help=help_)
        w.add_argument("--model", choices=["auto", "local", "scripted", "endpoint"], default="auto",
                       help="auto: the configured endpoint if any, else the verified local model (installed on "
                            "first use, which takes minutes); scripted: a fast offline stand-in that answers from "
                            "rules, not a language model (for CI, or a machine without a compiler)")
        if name == "demo":
            w.add_argument("--agent", default="it-triage", help="the agent whose samples/*.json run (default: it-triage)")

    sub.add_parser("setup", help="register search attributes on the configured cluster")
    audit_cli.add_parsers(sub)
    model_cli.add_parsers(sub)
    control_cli.add_parsers(sub)
    keys_cli.add_parsers(sub)
    gateway_cli.add_parsers(sub)
    slack_cli.add_parsers(sub)
    return p


class Terminated(Exception):
    """The command was sent SIGTERM and unwound (its servers stopped, its runs settled)."""


def _run_until_done_or_terminated(coro):
    """`asyncio.run`, with SIGTERM cancelling the command as Ctrl-C does, so what it started (a model
    server, an evaluation's runs) is stopped by its own clean-up instead of left running."""

    async def command():
        task = asyncio.current_task()
        assert task is not None
        terminated = []
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: (terminated.append(True), task.cancel()))
        try:
            return await coro
        except asyncio.CancelledError:
            if terminated:
                raise Terminated() from None
            raise

    return asyncio.run(command())


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code (see the module docstring).

    The command's Temporal runtime ends before this returns (`workers.runtime`): a runtime
    left to the interpreter's exit could abort the process after the command succeeded.
    """
    args = build_parser().parse_args(argv)
    with command_runtime():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    handlers = {
        "agents": cmd_agents, "check": cmd_check, "run": cmd_run, "status": cmd_status,
        "worker": cmd_worker, "dev": cmd_dev, "setup": cmd_setup, "demo": cmd_demo,
        "approvals": cmd_approvals, "approve": cmd_decide, "reject": cmd_decide,
        "audit": audit_cli.cmd_audit, "codec-server": audit_cli.cmd_codec_server,
        "model": model_cli.cmd_model, "eval": model_cli.cmd_eval,
        "kill": control_cli.cmd_kill, "unkill": control_cli.cmd_kill, "switches": control_cli.cmd_switches,
        "envelope": control_cli.cmd_envelope, "tool": control_cli.cmd_tool, "gateway": gateway_cli.cmd_gateway,
        "keys": keys_cli.cmd_keys, "slack": slack_cli.cmd_slack,
    }  # fmt: skip
    # Every outcome is handled here, so no exception (and none of the clients its frames hold)
    # is still alive when `main` lets go of the command's runtime.
    try:
        settings = Settings.from_env()
        audit_cli.normalise(args)
        result = handlers[args.command](args, settings)
        if asyncio.iscoroutine(result):
            result = _run_until_done_or_terminated(result)
        sys.stdout.flush()  # a reader that went away shows here, not as an error at exit
        return int(result or 0)
    except FactoryError as e:  # every clear refusal, from any floor, is one (`aifactory.errors`)
        print(f"aifactory {args.command}: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"aifactory {args.command}: stopped (SIGTERM)", file=sys.stderr)
        return 143
    except BrokenPipeError:  # before ConnectionError, its base class: the reader left, not the server
        _discard_stdout()
        return 141
    except ConnectionError as e:
        print(f"aifactory {args.command}: {e}", file=sys.stderr)
        return 3
    except RPCError as e:
        print(f"aifactory {args.command}: {_rpc_sentence(e)}", file=sys.stderr)
        return 3 if e.status in _UNREACHABLE else 2
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()  # not a case this CLI knows: a bug, and its traceback is the report
        return 1


_UNREACHABLE = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED})


def _rpc_sentence(e: RPCError) -> str:
    if e.status in _UNREACHABLE:
        return f"Temporal did not answer ({e.status.name}: {e.message}): is the server up, and a worker running for the run?"
    return f"Temporal refused the call ({e.status.name}: {e.message})"


def _discard_stdout() -> None:
    """The reader closed the pipe (`aifactory audit query --csv | head`): stop quietly.

    What is still buffered for stdout would fail again when Python flushes it at exit, so
    stdout now points at /dev/null (the recipe in the Python docs, "Note on SIGPIPE").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
