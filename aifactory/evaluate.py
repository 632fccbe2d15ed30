"""`aifactory eval`: the factory's quality control for prompts, models and tool contracts.

Not workflow-safe. An agent folder may carry `eval/cases.yaml`: realistic inputs with
the expected outcome and the tool calls a correct run makes. `evaluate` runs every
case through the real path (FactoryClient, the agent workflow on a worker, the model
endpoint, the tools, the policy gate; approvals are given by the first member of the
request's approver group) and reports accuracy (every weighted output field right), the
accuracy of each field, tool-call correctness, policy denials, latency p50/p95, tokens and
cost per case, against the last accepted baseline (`eval/baseline.json`, kept in git).

The baseline records a fingerprint of what was evaluated: the prompt, the model
settings, the output schema and the contracts (input schemas) of the agent's tools.
`aifactory check` refuses an agent whose fingerprint differs from its accepted
baseline: a change to any of those ships only after `aifactory eval AGENT --accept`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aifactory.client import FactoryClient, RunFailed
from aifactory.evalset import BASELINE, EvalCase, EvalSet, ToolExpectation, fingerprint
from contracts.policy import Directory
from policies.approvals import first_approver
from policies.loader import load_directory, policies_dir


@dataclass
class CaseResult:
    id: str
    ok: bool
    """Every weighted output field is right."""
    fields: dict[str, bool]
    """Output field -> right?"""
    tools_ok: bool
    got: dict[str, Any] | None
    tool_calls: list[str]
    denials: int
    latency_s: float
    tokens: int
    cost_usd: float
    error: str | None = None
    score: float = 0.0
    """The weighted share of the case's output fields that are right."""
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`set_of` output field -> its counts (`SetCounts`: found, got, expected, right per compared field)."""


@dataclass
class EvalReport:
    agent: str
    release_version: str
    model: str
    fingerprint: str
    cases: list[CaseResult] = field(default_factory=list)
    at: str = ""
    metrics: dict[str, str] = field(default_factory=dict)
    """Output field -> its name in the summary (`EvalSet.metric_names`)."""
    set_metrics: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    """`set_of` output field -> its prefix and compared fields in the summary (`EvalSet.set_metrics`)."""

    @property
    def n(self) -> int:
        return len(self.cases)

    def share(self, attr: str) -> float:
        return round(sum(getattr(c, attr) for c in self.cases) / self.n, 4) if self.n else 0.0

    def field_share(self, name: str) -> float:
        """The share of right answers for one output field, over the cases that expect it."""
        judged = [c.fields[name] for c in self.cases if name in c.fields]
        return round(sum(judged) / len(judged), 4) if judged else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(c.latency_s for c in self.cases)
        pick = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else 0.0  # noqa: E731
        return {
            "agent": self.agent, "release_version": self.release_version, "model": self.model,
            "fingerprint": self.fingerprint, "cases": self.n, "accuracy": self.share("ok"), "score": self.share("score"),
            **{metric: self.field_share(name) for name, metric in self.metrics.items()},
            **self.set_summary(),
            "tool_call_accuracy": self.share("tools_ok"),
            "failed_runs": sum(c.error is not None for c in self.cases),
            "policy_denials": sum(c.denials for c in self.cases),
            "latency_p50_s": pick(0.5), "latency_p95_s": pick(0.95),
            "tokens_per_case": round(sum(c.tokens for c in self.cases) / self.n) if self.n else 0,
            "cost_usd_per_case": round(sum(c.cost_usd for c in self.cases) / self.n, 6) if self.n else 0.0,
            "at": self.at,
        }  # fmt: skip

    def set_summary(self) -> dict[str, float]:
        """Precision and recall over the items of each `set_of` field, summed over the cases (micro
        average), and each compared field's share of right values over the expected items."""
        out: dict[str, float] = {}
        for name, (prefix, compared) in self.set_metrics.items():
            counts = [c.sets[name] for c in self.cases if name in c.sets]
            found, got, expected = (sum(n[k] for n in counts) for k in ("found", "got", "expected"))
            out[f"{prefix}_precision"] = round(found / got, 4) if got else 1.0
            out[f"{prefix}_recall"] = round(found / expected, 4) if expected else 1.0
            for field_name in compared:
                right = sum(n["right"].get(field_name, 0) for n in counts)
                out[f"{prefix}_{field_name}_accuracy"] = round(right / expected, 4) if expected else 1.0
        return out

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


@dataclass
class CaseScore:
    fields: dict[str, bool]
    """Output field -> right?"""
    tools_ok: bool
    score: float
    """Weighted share of right output fields (1.0 when the case weighs none)."""
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`set_of` output field -> its counts."""

    @property
    def ok(self) -> bool:
        """Every output field of weight above 0 is right."""
        return self.score == 1.0


def score(case: EvalCase, output: dict[str, Any] | None, calls: list[tuple[str, dict | None, str]]) -> CaseScore:
    """Compare a run with the case's expectations, field by field and call by call."""
    exp = case.expect
    refs = {"input": case.input, "output": output}
    fields = {name: output is not None and check.matches(output.get(name), refs) for name, check in exp.output.items()}
    total = sum(check.weight for check in exp.output.values())
    right = sum(check.weight for name, check in exp.output.items() if fields[name])
    sets = {
        name: check.set_counts(None if output is None else output.get(name)).model_dump()
        for name, check in exp.output.items()
        if check.set_of is not None
    }
    return CaseScore(fields, tools_right(exp.tools, calls, refs), round(right / total, 4) if total else 1.0, sets)


def tools_right(expected: list[ToolExpectation] | None, calls: list[tuple[str, dict | None, str]], refs: dict[str, Any]) -> bool:
    """The calls that succeeded are the expected ones, in order, each with the expected arguments."""
    if expected is None:
        return True
    ran = [(name, args or {}) for name, args, outcome in calls if outcome == "ok"]
    if [name for name, _ in ran] != [t.name for t in expected]:
        return False
    return all(check.matches(args.get(key), refs) for (_, args), t in zip(ran, expected) for key, check in t.args.items())


def compact(output: dict[str, Any] | None, width: int = 60) -> str:
    """An output object on one line: `field=value` pairs, long values cut."""
    if not output:
        return "(no output)"
    parts = []
    for key, value in output.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"{key}={text[: width - 1] + '…' if len(text) > width else text}")
    return " ".join(parts)


async def evaluate(
    factory: FactoryClient, agent: str, cases: EvalSet, model_note: str, *, concurrency: int = 1, say=print,
    directory: Directory | None = None,
) -> EvalReport:
    """Run every case through the real path and score it. Approvals are given as an operator would,
    by the first member of the request's approver group in `directory` (default: the shipped one)."""
    directory = directory or load_directory(policies_dir() / "directory.yaml")
    release = factory.release(agent)
    report = EvalReport(
        agent, release.release_version, model_note, fingerprint(release),
        at=datetime.now(timezone.utc).isoformat(timespec="seconds"), metrics=cases.metric_names(),
        set_metrics=cases.set_metrics(),
    )  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    gate = asyncio.Semaphore(concurrency)

    async def one(case: EvalCase) -> CaseResult:
        async with gate:
            started = time.monotonic()
            run = await factory.start_run(agent, case.input, tenant="eval", run_key=f"{case.id}-{stamp}", requester="eval")
            waiter = asyncio.ensure_future(run.result())
            try:
                while not waiter.done():  # approvals: given as the demo gives them
                    await asyncio.wait({waiter}, timeout=0.5)
                    if not waiter.done():
                        status = await run.status()
                        approver = first_approver(status.approval, directory) if status.approval is not None else None
                        if approver is not None:
                            await factory.decide(run.workflow_id, approver, "approve", note="evaluation")
            except asyncio.CancelledError:  # interrupted: an evaluation's run never outlives it
                waiter.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.shield(run.handle.terminate("the evaluation that started this run was interrupted"))
                raise
            latency = time.monotonic() - started
            try:
                result = waiter.result()
            except RunFailed as e:
                say(f"  {case.id:<28} FAILED  {e}")
                missed = score(case, None, []).sets  # a failed run found none of the expected items
                return CaseResult(case.id, False, {n: False for n in case.expect.output}, False, None, [], 0, latency, 0, 0.0, str(e), sets=missed)
            calls = [(t.tool, t.arguments, t.outcome.value) for t in result.tool_calls]
            s = score(case, result.output, calls)
            r = CaseResult(
                case.id, s.ok, s.fields, s.tools_ok, result.output, [f"{n}:{o}" for n, _, o in calls],
                result.denials, round(latency, 2), result.usage.total_tokens, result.usage.cost_usd, score=s.score, sets=s.sets,
            )  # fmt: skip
            wrong = [n for n, right in s.fields.items() if not right]
            say(
                f"  {case.id:<28} {'ok ' if r.ok else 'MISS'} {compact(result.output, 24)}"
                f"{' (wrong: ' + ', '.join(wrong) + ')' if wrong else ''} tools {'ok' if s.tools_ok else 'WRONG'} "
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
    fields = [k for k in summary if k.endswith(("_accuracy", "_precision", "_recall")) and k != "tool_call_accuracy"]
    for key in ("accuracy", *fields, "tool_call_accuracy", "latency_p50_s", "latency_p95_s", "tokens_per_case"):
        old, new = baseline.get(key), summary.get(key)
        if isinstance(old, (int, float)) and isinstance(new, (int, float)):
            lines.append(f"  {key:<20} {old:>8} -> {new:<8} ({new - old:+.4g})")
    if baseline.get("fingerprint") != summary["fingerprint"]:
        lines.append("  the prompt, model settings or tool contracts changed since the baseline")
    return lines
