"""`aifactory kill|unkill|switches`: the operator's kill switches.

Not workflow-safe.

    aifactory kill AGENT | --tenant T | --all  --reason TEXT --as PERSON [--json]
    aifactory unkill AGENT | --tenant T | --all  --reason TEXT --as PERSON
    aifactory switches [--json]          every switch ever set, with who, when and why
    aifactory envelope status [AGENT]    spend against each envelope this period
    aifactory envelope raise AGENT [--tenant T] --to USD --as PERSON   raise it; paused runs resume
    aifactory envelope stop AGENT [--tenant T] --as PERSON [--note N]  end the runs paused on it
    aifactory tool retry|give-up RUN --as PERSON [--reason R]   a run whose write ran out of retries

`kill` writes the switch to the factory's store (new runs are refused from that
moment) and sends every running run in scope the `stop` update; each run starts
no activity after acknowledging it, cancels the one in flight, and ends with
`RunStopped` naming the operator and reason. State survives restarts: the
switch is a row, not a process.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from activities.switches import switch_history
from contracts.control import SwitchScope
from workers.settings import Settings
from aifactory.errors import FactoryError


class ControlCliError(FactoryError):
    """A clear one-line refusal."""


def _scope(args: argparse.Namespace) -> tuple[SwitchScope, str]:
    chosen = [x for x in (args.agent, args.tenant, args.all) if x]
    if len(chosen) != 1:
        raise ControlCliError("name exactly one of: an AGENT, --tenant T, --all")
    if args.all:
        return SwitchScope.ALL, ""
    if args.tenant:
        return SwitchScope.TENANT, args.tenant
    return SwitchScope.AGENT, args.agent


async def cmd_kill(args: argparse.Namespace, settings: Settings) -> int:
    from aifactory.client import FactoryClient

    scope, target = _scope(args)
    if not args.reason.strip() or not args.person.strip():
        raise ControlCliError("--reason and --as must not be empty")
    factory = await FactoryClient.connect(settings)
    if args.command == "unkill":
        lifted = await factory.unkill(scope, target, reason=args.reason, by=args.person)
        if not lifted:
            print(f"no kill switch is on for {scope.value} {target}".rstrip())
            return 1
        for s in lifted:
            print(f"lifted {s.describe()} (by {args.person}: {args.reason})")
        return 0
    report = await asyncio.wait_for(factory.kill(scope, target, reason=args.reason, by=args.person), timeout=600)
    if args.json:
        print(json.dumps({"switch": report.switch.model_dump(mode="json"), "stopped": report.stopped, "finished": report.finished,
                          "terminated": report.terminated, "missed": report.missed}, indent=2))  # fmt: skip
    else:
        print(f"ON: {report.switch.describe()}")
        print(f"  new runs in scope are refused; stopped {len(report.stopped)} run(s) in flight"
              + (f", {len(report.finished)} ended on their own" if report.finished else ""))  # fmt: skip
        for wid in report.terminated:
            print(f"  TERMINATED: {wid} (it could not take the stop order; the switch and reason are on its termination)")
        for wid in report.missed:
            print(f"  STILL RUNNING: {wid} (neither stopped nor terminated: look at it in the Temporal UI)")
    return 1 if report.missed else 0


def cmd_switches(args: argparse.Namespace, settings: Settings) -> int:
    rows = switch_history(settings.db_url)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print("no kill switch has ever been set")
    for r in rows:
        state = f"lifted by {r.lifted_by} at {r.lifted_at:%Y-%m-%d %H:%M:%S}: {r.lift_reason or ''}" if r.lifted_at else "ON"
        print(f"#{r.id:<4} {r.scope:<7} {r.target or '*':<20} set by {r.set_by} at {r.set_at:%Y-%m-%d %H:%M:%S}: {r.reason} · {state}")
    return 0


async def cmd_envelope(args: argparse.Namespace, settings: Settings) -> int:
    from activities.budget import BudgetLedger
    from aifactory.client import FactoryClient
    from contracts.budget import BudgetDecision

    if args.action == "status":
        rows = BudgetLedger(settings.db_url).rows(args.agent)
        if not rows:
            print("no envelope has been drawn on yet")
        for r in rows:
            share = r.spent_usd / r.limit_usd if r.limit_usd else 0
            state = " · SPENT: new runs refused" if r.exhausted_at else ""
            print(f"{r.key:<48} ${r.spent_usd:.4f} of ${r.limit_usd:.2f} ({share:.0%}) · held ${r.reserved_usd:.4f}{state}")
        return 0
    if not args.agent or not args.person:
        raise ControlCliError(f"envelope {args.action} needs AGENT and --as PERSON")
    factory = await FactoryClient.connect(settings)
    if args.action == "raise":
        if args.to is None:
            raise ControlCliError("envelope raise needs --to USD")
        taken = await factory.decide_budget(
            args.agent, args.tenant, BudgetDecision(by=args.person, action="resume", note=args.note or ""), raise_to=args.to
        )
        print(f"raised {factory.envelope_key(args.agent, args.tenant or '*')} to ${args.to:.2f}; {len(taken)} paused run(s) resumed")
        return 0
    taken = await factory.decide_budget(args.agent, args.tenant, BudgetDecision(by=args.person, action="stop", note=args.note or ""))
    print(f"stopped {len(taken)} run(s) paused on the envelope of {args.agent}")
    return 0


async def cmd_tool(args: argparse.Namespace, settings: Settings) -> int:
    from aifactory.client import FactoryClient

    if not args.person.strip():
        raise ControlCliError("--as must not be empty")
    if args.action == "give-up" and not (args.reason or "").strip():
        raise ControlCliError("tool give-up needs --reason saying why the call is given up")
    factory = await FactoryClient.connect(settings)
    await factory.resolve_tool(args.run, "retry" if args.action == "retry" else "give_up", by=args.person, reason=args.reason or "")
    what = "retries the call now" if args.action == "retry" else "goes on without the call; the model is told why"
    print(f"{args.run}: {what} (by {args.person})")
    return 0


def add_parsers(sub) -> None:
    for verb, help_ in (("kill", "stop an agent, a tenant or everything: refuse new runs, stop runs in flight"),
                        ("unkill", "lift a kill switch")):  # fmt: skip
        k = sub.add_parser(verb, help=help_)
        k.add_argument("agent", nargs="?", help="agent name")
        k.add_argument("--tenant")
        k.add_argument("--all", action="store_true")
        k.add_argument("--reason", required=True)
        k.add_argument("--as", dest="person", required=True, help="your person id")
        k.add_argument("--json", action="store_true")
    s = sub.add_parser("switches", help="every kill switch set, with who, when and why")
    s.add_argument("--json", action="store_true")
    t = sub.add_parser("tool", help="a run whose write ran out of retries: retry the call now, or give it up")
    t.add_argument("action", choices=["retry", "give-up"])
    t.add_argument("run", help="workflow id, e.g. agent/it-triage/acme/T-1001")
    t.add_argument("--as", dest="person", required=True, help="your person id")
    t.add_argument("--reason", help="why (required to give up)")
    e = sub.add_parser("envelope", help="cost envelopes: status, raise, stop paused runs")
    e.add_argument("action", choices=["status", "raise", "stop"])
    e.add_argument("agent", nargs="?")
    e.add_argument("--tenant")
    e.add_argument("--to", type=float, help="raise: the new envelope in USD for this period")
    e.add_argument("--as", dest="person")
    e.add_argument("--note")
