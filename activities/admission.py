"""Admission: what a run's first model call settles before the call is made.

Not workflow-safe (reads the switch table and policy files). A run is refused
if a kill switch covers its agent or tenant, read fresh from the store; else
the policy bundle that gates its tool calls is resolved, and it travels back
in that call's result, so the bundle a run used is fixed in history for its
whole life and replays exactly. One activity does what two local activities
did before (`resolve_policy`, `check_kill_switch`, still registered for runs
recorded then).
"""

from __future__ import annotations

from activities.policy import PolicyActivities
from activities.switches import active_switch
from contracts.control import Admission, Admitted


class Admissions:
    def __init__(self, db_url: str, policies: PolicyActivities) -> None:
        self.db_url = db_url
        self.policies = policies

    def admit(self, admission: Admission) -> Admitted:
        """The switch that refuses the run, or the policy it runs under (blocking: call it in a thread)."""
        switch = active_switch(self.db_url, admission.agent, admission.tenant)
        if switch is not None:
            return Admitted(switch=switch)
        return Admitted(policy=self.policies.policy_set(admission.policy))
