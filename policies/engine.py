"""The policy engine: one pure function from a bundle and a tool call's facts to a decision.

Workflow-safe: no I/O, no clock. Precedence, most restrictive first:

1. any matching `deny` rule denies;
2. else any matching `require_approval` rule requires approval (the first one's chain);
3. else a matching `allow` rule allows, except that a write or external tool
   still requires the default approval unless the allowing rule names the
   agent (a rule lowers approval only for the agents it names) and the agent
   is not `supervised`;
4. else the call is denied (`default:deny`): what no rule allows is not done.
"""

from __future__ import annotations

from contracts.policy import Autonomy, Outcome, PolicyBundle, PolicyDecision, Rule, ToolCallFacts
from contracts.tools import SideEffect
from policies.predicates import evaluate_predicate


def matches(rule: Rule, facts: ToolCallFacts) -> bool:
    m = rule.match
    if m.agents is not None and facts.agent not in m.agents:
        return False
    if m.tools is not None and facts.tool not in m.tools:
        return False
    if m.tenants is not None and facts.tenant not in m.tenants:
        return False
    if m.side_effects is not None and facts.side_effect not in m.side_effects:
        return False
    if m.data_classes is not None and not set(m.data_classes) & set(facts.data_classes):
        return False
    if m.autonomy is not None and facts.autonomy not in m.autonomy:
        return False
    if m.when is not None and not evaluate_predicate(m.when, facts.arguments):
        return False
    return True


def evaluate(bundle: PolicyBundle, facts: ToolCallFacts) -> PolicyDecision:
    """Decide one tool call. Deterministic: same bundle, same facts, same decision."""
    label = f"{bundle.name}@{bundle.version}"

    def decide(outcome: Outcome, rule_id: str, reason: str, approval=None) -> PolicyDecision:
        return PolicyDecision(
            outcome=outcome, rule_id=rule_id, reason=reason, bundle=label, bundle_sha256=bundle.sha256,
            approval=approval if outcome is Outcome.REQUIRE_APPROVAL else None,
        )  # fmt: skip

    hits = [r for r in bundle.rules if matches(r, facts)]
    for r in hits:
        if r.decision is Outcome.DENY:
            return decide(Outcome.DENY, r.id, r.reason)
    for r in hits:
        if r.decision is Outcome.REQUIRE_APPROVAL:
            return decide(Outcome.REQUIRE_APPROVAL, r.id, r.reason, r.approval or bundle.default_approval)
    allows = [r for r in hits if r.decision is Outcome.ALLOW]
    if not allows:
        return decide(Outcome.DENY, "default:deny", f"no rule of {label} allows {facts.tool} for {facts.agent}")
    if facts.side_effect is SideEffect.READ:
        return decide(Outcome.ALLOW, allows[0].id, allows[0].reason)
    lowering = next((r for r in allows if r.match.agents and facts.agent in r.match.agents), None)
    if lowering is not None and facts.autonomy is not Autonomy.SUPERVISED:
        return decide(Outcome.ALLOW, lowering.id, lowering.reason)
    why = (
        f"{facts.tool} is a {facts.side_effect.value} tool and agent {facts.agent} is supervised"
        if facts.autonomy is Autonomy.SUPERVISED
        else f"{facts.tool} is a {facts.side_effect.value} tool and no rule lowers approval for {facts.agent}"
    )
    return decide(Outcome.REQUIRE_APPROVAL, "default:write-approval", why, bundle.default_approval)
