"""`aifactory eval`: the factory's quality control for prompts, models and tool contracts.

Not workflow-safe. An agent folder may carry `eval/cases.yaml`: realistic inputs with
the expected outcome and the tool calls a correct run makes. `evaluate` runs every
case through the real path (FactoryClient, the agent workflow on a worker, the model
endpoint, the tools, the policy gate; approvals are given as a desk lead would) and
reports accuracy, tool-call correctness, policy denials, latency p50/p95, tokens and
cost per case, against the last accepted baseline (`eval/baseline.json`, kept in git).

The baseline records a fingerprint of what was evaluated: the prompt, the model
settings, the output schema and the contracts (input schemas) of the agent's tools.
`aifactory check` refuses an agent whose fingerprint differs from its accepted
baseline: a change to any of those ships only after `aifactory eval AGENT --accept`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aifactory.client import FactoryClient, RunFailed
from aifactory.evalset import BASELINE, EvalCase, EvalSet, fingerprint


@dataclass
class CaseResult:
    id: str
    ok: bool
    category_ok: bool
    priority_ok: bool
    tools_ok: bool
    ticket_ok: bool
    got: dict[str, Any] | None
    tool_calls: list[str]
    denials: int
    latency_s: float
    tokens: int
    cost_usd: float
    error: str | None = None


@dataclass
class EvalReport:
    agent: str
    release_version: str
    model: str
    fingerprint: str
    cases: list[CaseResult] = field(default_factory=list)
    at: str = ""

    @property
    def n(self) -> int:
        return len(self.cases)

    def share(self, attr: str) -> float:
        return round(sum(getattr(c, attr) for c in self.cases) / self.n, 4) if self.n else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(c.latency_s for c in self.cases)
        pick = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else 0.0  # noqa: E731
        return {
            "agent": self.agent, "release_version": self.release_version, "model": self.model,
            "fingerprint": self.fingerprint, "cases": self.n, "accuracy": self.share("ok"),
            "category_accuracy": self.share("category_ok"), "priority_accuracy": self.share("priority_ok"),
            "tool_call_accuracy": self.share("tools_ok"), "tickets_as_expected": self.share("ticket_ok"),
            "failed_runs": sum(c.error is not None for c in self.cases),
            "policy_denials": sum(c.denials for c in self.cases),
            "latency_p50_s": pick(0.5), "latency_p95_s": pick(0.95),
            "tokens_per_case": round(sum(c.tokens for c in self.cases) / self.n) if self.n else 0,
            "cost_usd_per_case": round(sum(c.cost_usd for c in self.cases) / self.n, 6) if self.n else 0.0,
            "at": self.at,
        }  # fmt: skip

    def passed(self, cases: EvalSet, baseline: dict[str, Any] | None = None) -> bool:
        return not self.shortfalls(cases, baseline)

    def shortfalls(self, cases: EvalSet, baseline: dict[str, Any] | None = None) -> list[str]:
        """Why the evaluation does not pass: under a floor of the set, or a regression from the
        accepted baseline on the same model beyond `max_regression`."""
        out = []
        accuracy, tools = self.share("ok"), self.share("tools_ok")
        if accuracy < cases.min_accuracy:
            out.append(f"accuracy {accuracy:.4f} is below the set's floor {cases.min_accuracy}")
        if tools < cases.min_tool_accuracy:
            out.append(f"tool-call accuracy {tools:.4f} is below the set's floor {cases.min_tool_accuracy}")
        if baseline and same_model(baseline.get("model", ""), self.model):
            for key, now in (("accuracy", accuracy), ("tool_call_accuracy", tools)):
                was = baseline.get(key)
                if isinstance(was, (int, float)) and now < was - cases.max_regression:
                    out.append(f"{key} {now:.4f} fell more than {cases.max_regression} below the baseline's {was}")
        return out


def score(case: EvalCase, output: dict[str, Any] | None, calls: list[tuple[str, dict | None, str]]) -> tuple[bool, bool, bool, bool]:
    """(category, priority, tool calls, ticket) right?"""
    exp = case.expect
    category_ok = bool(output) and output.get("category") == exp.category
    priority_ok = bool(output) and output.get("priority") in exp.priority
    ran = [name for name, _, outcome in calls if outcome == "ok"]
    tools_ok = ran == exp.tools
    for name, args, outcome in calls:
        if name == "lookup_requester" and outcome == "ok":
            tools_ok &= (args or {}).get("email", "").lower() == case.input["requester_email"].lower()
        if name == "create_ticket" and outcome == "ok" and output:
            tools_ok &= (args or {}).get("category") == output.get("category")
    ticket_ok = bool(output) and (output.get("ticket_id") is not None) == exp.ticket
    return category_ok, priority_ok, tools_ok, ticket_ok


async def evaluate(factory: FactoryClient, agent: str, cases: EvalSet, model_note: str, *, concurrency: int = 1, say=print) -> EvalReport:
    from aifactory.demo import DEMO_APPROVER

    release = factory.release(agent)
    report = EvalReport(agent, release.release_version, model_note, fingerprint(release), at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    gate = asyncio.Semaphore(concurrency)

    async def one(case: EvalCase) -> CaseResult:
        async with gate:
            started = time.monotonic()
            run = await factory.start_run(agent, case.input, tenant="eval", run_key=f"{case.id}-{stamp}", requester="eval")
            waiter = asyncio.ensure_future(run.result())
            while not waiter.done():  # approvals: a desk lead approves, as in the demo
                await asyncio.wait({waiter}, timeout=0.5)
                if not waiter.done():
                    status = await run.status()
                    if status.approval is not None:
                        await factory.decide(run.workflow_id, DEMO_APPROVER, "approve", note="evaluation")
            latency = time.monotonic() - started
            try:
                result = waiter.result()
            except RunFailed as e:
                say(f"  {case.id:<28} FAILED  {e}")
                return CaseResult(case.id, False, False, False, False, False, None, [], 0, latency, 0, 0.0, str(e))
            calls = [(t.tool, t.arguments, t.outcome.value) for t in result.tool_calls]
            cat, pri, tools, ticket = score(case, result.output, calls)
            r = CaseResult(
                case.id, cat and pri, cat, pri, tools, ticket, result.output, [f"{n}:{o}" for n, _, o in calls],
                result.denials, round(latency, 2), result.usage.total_tokens, result.usage.cost_usd,
            )  # fmt: skip
            mark = "ok " if r.ok else "MISS"
            say(
                f"  {case.id:<28} {mark} {result.output.get('category')}/{result.output.get('priority')} "
                f"(want {case.expect.category}/{'|'.join(case.expect.priority)}) tools {'ok' if tools else 'WRONG'} "
                f"· {latency:5.1f}s · {r.tokens} tokens"
            )
            return r

    report.cases = list(await asyncio.gather(*(one(c) for c in cases.cases)))
    return report


def same_model(a: str, b: str) -> bool:
    """Model notes name the same model (they differ in ports and thread counts)."""
    return a.split(" (")[0] == b.split(" (")[0]


def write_baseline(agent_dir: Path, report: EvalReport) -> Path:
    path = agent_dir / "eval" / BASELINE
    body = {**report.summary(), "per_case": [asdict(c) for c in report.cases]}
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path


def comparison(summary: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    if baseline is None:
        return ["no accepted baseline yet"]
    lines = [f"baseline: {baseline.get('release_version')} on {baseline.get('model')} ({baseline.get('at')})"]
    for key in ("accuracy", "category_accuracy", "priority_accuracy", "tool_call_accuracy", "latency_p50_s", "latency_p95_s", "tokens_per_case"):
        old, new = baseline.get(key), summary.get(key)
        if isinstance(old, (int, float)) and isinstance(new, (int, float)):
            lines.append(f"  {key:<20} {old:>8} -> {new:<8} ({new - old:+.4g})")
    if baseline.get("fingerprint") != summary["fingerprint"]:
        lines.append("  the prompt, model settings or tool contracts changed since the baseline")
    return lines
