"""`aifactory audit ...` and `aifactory codec-server`: the auditor's and the operator's commands.

Not workflow-safe.

    aifactory audit export [--since 2026-11-01|--since 2d] [--run RUN]   history -> audit store (idempotent)
    aifactory audit verify [--run RUN] [--store-only]   check chains, anchors and summaries, and the store
                                               against the witness and Temporal (exit 1 naming each problem)
    aifactory audit query --agent A [--tenant T] [--on DATE | --since D --until D] [--tool X]
                          [--decision allow|deny|approval] [--approver P] [--json|--csv]
    aifactory audit show RUN [--json]          one run's whole story, in order
    aifactory audit retention [--days N]       delete closed runs older than the retention (logged)
    aifactory codec-server [--port P] [--origin URL ...]   decode payloads for the Temporal UI
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import secrets
import sys
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from activities.keys import KeyRingError
from activities.audit.query import CALL_COLUMNS, CallFilter, find_calls, retire_runs, verified_story
from activities.audit.verify import verify
from contracts.audit import Decision
from workers.settings import Settings, connect
from aifactory.errors import FactoryError


class AuditCliError(FactoryError):
    """A clear one-line refusal."""


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """`2026-11-21`, `2026-11-21T14:00`, or a span back from now: `90m`, `12h`, `7d`."""
    m = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{unit: int(m.group(1))})
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1 if end_of_day else 0), time(), tzinfo=timezone.utc)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise AuditCliError(f"{text!r} is not a date (YYYY-MM-DD), a time (YYYY-MM-DDTHH:MM) or a span (90m, 12h, 7d)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "export":
        from activities.audit.export import AuditExporter

        since = parse_moment(args.since) if args.since else None
        client = await connect(settings)
        report = await AuditExporter(client, settings.db_url, settings.audit_key_ring(), witness_queue=settings.task_queue).export(
            since=since, workflow_id=args.run, by=f"cli:{os.environ.get('USER', '?')}"
        )
        print(
            f"export {report.job_id}: {report.runs_seen} runs read, {report.runs_changed} with new records, "
            f"{report.records} records added, {report.open_runs} still open"
        )
        for error in report.errors:
            print(f"  not exported: {error}", file=sys.stderr)
        for gap in report.gaps:
            print(f"  GAP {gap}", file=sys.stderr)
        return 1 if report.errors or report.gaps else 0
    if args.action == "verify":
        ring = settings.audit_key_ring()
        report = verify(settings.db_url, ring, workflow_id=args.run)
        if not args.store_only:  # what the store cannot rewrite: the witness's history, Temporal's runs
            from activities.audit.witness import verify_against_temporal

            try:
                client = await connect(settings)
                outside = await verify_against_temporal(client, settings.db_url, ring, workflow_id=args.run)
            except ConnectionError as e:
                raise AuditCliError(f"{e}; `audit verify --store-only` checks the store alone") from None
            report.problems += outside
        for problem in report.problems:
            print(f"TAMPERED {problem}")
        for gap in report.gaps:
            print(f"GAP {gap}")
        verdict = "ok" if report.ok else ", ".join(
            part for part in (f"{len(report.problems)} run(s) fail" if report.problems else "", f"{len(report.gaps)} gap(s)" if report.gaps else "") if part
        )
        print(f"verify: {report.runs} runs, {report.records} records, {report.anchors} anchors: {verdict}")
        return 0 if report.ok else 1
    if args.action == "query":
        return _query(args, settings)
    if args.action == "show":
        return _show(args, settings)
    if args.action == "retention":
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from activities.audit.export import AuditExporter

        retired = retire_runs(settings.db_url, args.days or settings.audit_retention_days, by="cli")
        if retired:  # the witness must know, or `audit verify` would report them as deleted by hand
            exporter = AuditExporter(await connect(settings), settings.db_url, settings.audit_key_ring(), witness_queue=settings.task_queue)
            await exporter.witness_retired(retired)
        print(f"retention: {len(retired)} run(s) deleted")
        return 0
    raise AuditCliError(f"unknown audit action {args.action!r}")


def _query(args: argparse.Namespace, settings: Settings) -> int:
    if not args.agent:
        raise AuditCliError("audit query needs --agent")
    if args.on and (args.since or args.until):
        raise AuditCliError("use --on DATE or --since/--until, not both")
    since = parse_moment(args.on or args.since) if (args.on or args.since) else None
    until = parse_moment(args.on or args.until, end_of_day=True) if (args.on or args.until) else None
    try:
        ring = settings.audit_key_ring()
    except KeyRingError as e:  # the values are still what the records say; whether the chains hold is unknown
        ring = None
        print(f"not verified: {e}", file=sys.stderr)
    rows = find_calls(
        settings.db_url,
        CallFilter(agent=args.agent, tenant=args.tenant, since=since, until=until, tool=args.tool,
                   decision=Decision(args.decision) if args.decision else None, approver=args.approver),
        ring,
    )  # fmt: skip
    unverified = sorted({r["run"] for r in rows if r["verified"] is False})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    elif args.csv:
        out = csv.DictWriter(sys.stdout, fieldnames=list(CALL_COLUMNS))
        out.writeheader()
        for row in rows:
            out.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    else:
        print(f"{'AT (UTC)':<20} {'TENANT':<8} {'TOOL':<17} {'DECISION':<9} {'OUTCOME':<18} {'APPROVED BY':<13} {'POLICY':<15} VERSION  RUN")
        for r in rows:
            print(
                f"{r['at'][:19]:<20} {r['tenant']:<8} {r['tool']:<17} {r['decision'] or '-':<9} {r['outcome']:<18} "
                f"{r['approved_by'] or '-':<13} {r['policy'] or '-':<15} {r['agent_version']}  {r['run']}"
            )
        print(f"{len(rows)} tool call(s)")
        for run in unverified:
            print(f"NOT VERIFIED: {run}: its chain does not verify (`aifactory audit verify --run {run}` says why)")
    return 1 if unverified else 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    story = verified_story(settings.db_url, args.run, settings.audit_key_ring())
    if story is None:
        raise AuditCliError(f"run {args.run!r} is not in the audit store (export first: aifactory audit export --run ...)")
    run, records, sm = story.run, story.records, story.summary
    verdict = "verified" if story.problem is None else f"NOT VERIFIED: {story.problem}"
    if args.json:
        print(json.dumps({"run": {"workflow_id": run.workflow_id, **sm.fields()}, "verified": story.problem is None,
                          "problem": str(story.problem) if story.problem else None, "records": records}, indent=2, default=str))  # fmt: skip
        return 0 if story.problem is None else 1
    # Every value below is read from the run's chained records; the summary row is only an index.
    print(f"run {run.workflow_id} · agent {sm.agent} {sm.agent_version} · tenant {sm.tenant} · requested by {sm.requester or '-'}")
    print(f"  policy {sm.policy_bundle or '-'} (sha256 {sm.policy_sha256 or '-'}) · prompt sha256 {sm.prompt_sha256 or '-'}")
    print(f"  {sm.status}{' (' + sm.outcome + ')' if sm.outcome and sm.outcome != sm.status else ''} · {sm.steps} steps · "
          f"{sm.input_tokens}+{sm.output_tokens} tokens · ${sm.cost_usd:.4f} · {sm.tool_calls} tool calls · {sm.denials} denied · {verdict}")  # fmt: skip
    for r in records:
        print(f"  #{r['seq']:<3} {r['at'][11:23]}  {_line(r)}")
    return 0 if story.problem is None else 1


def _line(r: dict[str, Any]) -> str:
    kind = r["kind"]
    step = f"step {r['step']} " if r.get("step") is not None else ""
    if kind == "model_call":
        return f"{step}model {r.get('model')}: {r.get('outcome')} · {r.get('input_tokens', 0)}+{r.get('output_tokens', 0)} tokens · ${r.get('cost_usd', 0):.4f} · {r.get('latency_ms')} ms · attempt {r.get('attempts')}"
    if kind == "tool_call":
        who = f" · approved by {r['person']}" if r.get("person") else ""
        rule = f" ({r.get('decision')} by {r.get('rule_id')})" if r.get("decision") else ""
        tail = f" · {r['detail']}" if r.get("detail") else ""
        return f"{step}tool {r.get('tool')} {json.dumps(r.get('arguments'), sort_keys=True)}: {r.get('outcome')}{rule}{who}{tail}"
    if kind == "run_admitted":
        policy = f" · policy {r['policy']} (sha256 {r.get('policy_sha256')})" if r.get("policy") else ""
        return f"run_admitted · {r.get('outcome')} · {r.get('detail') or ''}{policy}"
    parts = [kind]
    for key in ("tool", "person", "group", "request_id", "outcome", "note", "detail"):
        if r.get(key):
            parts.append(f"{key} {r[key]}")
    return " · ".join(parts)


def cmd_codec_server(args: argparse.Namespace, settings: Settings) -> int:
    from workers.codec import EncryptionCodec
    from workers.codec_server import CodecServer, CodecServerConfig

    ring = settings.key_ring()
    if ring is None:
        raise AuditCliError("payload encryption is off (AIFACTORY_CODEC=off): there is nothing to decode")
    token = os.environ.get("AIFACTORY_CODEC_SERVER_TOKEN") or secrets.token_urlsafe(24)
    encode_token = (os.environ.get("AIFACTORY_CODEC_SERVER_ENCODE_TOKEN") or secrets.token_urlsafe(24)) if args.encode else None
    origins = tuple(args.origin) if args.origin else None
    config = CodecServerConfig(
        EncryptionCodec(ring), tokens=(token,), encode_tokens=(encode_token,) if encode_token else (),
        **({"origins": origins} if origins else {}),
    )  # fmt: skip
    server = CodecServer(config, host=args.host, port=args.port)
    print(f"codec server on {server.url} ({'decode, and encode with its own token' if encode_token else 'decode only'}) for UI origins {', '.join(config.origins)}")
    print(f"In the Temporal UI, set the codec server endpoint to: {server.url}/{token}")
    print("(or send 'Authorization: Bearer <token>'; set AIFACTORY_CODEC_SERVER_TOKEN to choose the token)")
    if encode_token:
        print(f"To start runs with the temporal CLI: --codec-endpoint {server.url}/{encode_token}")
        print("(keep it like a password: it encrypts anything; set AIFACTORY_CODEC_SERVER_ENCODE_TOKEN to choose it)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    au = sub.add_parser("audit", help="the audit store: export, verify, query, show, retention")
    au.add_argument("action", choices=["export", "verify", "query", "show", "retention"])
    au.add_argument("run", nargs="?", help="workflow id (show)")
    au.add_argument("--run", dest="run_opt", help="only this run (export, verify)")
    au.add_argument("--agent")
    au.add_argument("--tenant")
    au.add_argument("--on", help="a day, YYYY-MM-DD (UTC)")
    au.add_argument("--since", help="date, time, or span back from now (7d, 12h)")
    au.add_argument("--until")
    au.add_argument("--tool")
    au.add_argument("--decision", choices=[d.value for d in Decision])
    au.add_argument("--approver")
    au.add_argument("--days", type=int, help="retention in days (default AIFACTORY_AUDIT_RETENTION_DAYS or 365)")
    au.add_argument("--store-only", action="store_true", help="verify: check the store alone, not against the witness and Temporal")
    fmt = au.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")

    cs = sub.add_parser("codec-server", help="codec server: decodes for the Temporal UI; --encode also encodes for trusted starters")
    cs.add_argument("--encode", action="store_true", help="also serve /encode, with a separate token (for `temporal workflow start`)")
    cs.add_argument("--host", default="127.0.0.1")
    cs.add_argument("--port", type=int, default=8089)
    cs.add_argument("--origin", action="append", help="a UI origin allowed by CORS (repeatable; default the local UI)")


def normalise(args: argparse.Namespace) -> None:
    if getattr(args, "command", None) == "audit":
        if args.action in ("export", "verify"):
            args.run = args.run_opt or args.run
        elif args.action == "show" and not args.run:
            raise AuditCliError("audit show needs a run (workflow id)")
