"""Every `workflow.patched(...)` id of the agent workflow, in one place.

Workflow-safe: constants only. A patch id is history: never rename or reuse one.
"""

#: The trust boundary: from here on a run reads nothing that governs it from its input.
#: The worker resolves release, prompt, policy, envelope and kill switches (`admit_run`); histories
#: recorded without the marker replay through the protocol their input recorded.
WORKER_RESOLVES_PATCH = "worker-resolves-release"
#: Signed decisions: from here on a decision counts only with valid proof of who made it.
SIGNED_DECISIONS_PATCH = "signed-decisions-v1"
#: Parking a run whose write or external tool ran out of retries (it went on before).
WRITES_PARK_PATCH = "writes-park-v1"
#: The policy gate; runs started before it replay without the gate.
POLICY_GATE_PATCH = "policy-gate-v1"
#: The repeated-call and context breakers; a marker is written only by a run that trips one.
BREAKERS_PATCH = "breakers-v1"
#: Business-hours SLAs: a business-clock tier's deadline comes from a local activity (recorded in
#: history, since zone data differs between machines). Wall-clock tiers never reach the patch check.
BUSINESS_HOURS_PATCH = "business-hours-v1"
#: The kill-switch check at start, for runs whose starter did not set `kill_switch_check`.
KILL_SWITCH_PATCH = "kill-switch-v1"
#: Telling the agent's owner when a breaker trips or a kill switch stops a run.
OWNER_ALERTS_PATCH = "owner-alerts-v1"

ALL = (
    WORKER_RESOLVES_PATCH, SIGNED_DECISIONS_PATCH, WRITES_PARK_PATCH, POLICY_GATE_PATCH, BREAKERS_PATCH,
    BUSINESS_HOURS_PATCH, KILL_SWITCH_PATCH, OWNER_ALERTS_PATCH,
)  # fmt: skip
