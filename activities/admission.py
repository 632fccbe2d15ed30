"""Admission: the worker decides what governs a run, before the run does anything.

Not workflow-safe (reads the worker's releases, the switch table, the envelope
ledger and policy files). `admit_run` is a run's first (local) activity: it
resolves the release by agent name and version from the worker's own registry,
refuses the run under a kill switch or a spent envelope, and resolves the policy
bundle. Its answer is pinned in history for the run's whole life, so nothing a
starter sends can change the release, the prompt, the policy, the envelope or
whether the switches are checked.

`Admissions.admit` serves runs recorded when a run's first model call admitted
it (the policy and the switch only; the release came with the run input then).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.budget import BudgetLedger
from activities.policy import PolicyActivities
from activities.releases.registry import ReleaseRefused, ReleaseRegistry
from activities.switches import active_switch
from contracts import errors as E
from contracts.control import Admission, Admitted, RunAdmission, RunAdmitted, StartRefusal
from contracts.wire import Activity


class Admissions:
    def __init__(self, db_url: str, policies: PolicyActivities, releases: ReleaseRegistry | None = None) -> None:
        self.db_url = db_url
        self.policies = policies
        self.releases = releases or ReleaseRegistry()

    def admit(self, admission: Admission) -> Admitted:
        """The switch that refuses the run, or the policy it runs under (blocking: call it in a thread)."""
        switch = active_switch(self.db_url, admission.agent, admission.tenant)
        if switch is not None:
            return Admitted(switch=switch)
        return Admitted(policy=self.policies.policy_set(admission.policy))

    def admit_run(self, ask: RunAdmission) -> RunAdmitted:
        """What governs a run of `ask.agent` for `ask.tenant`, or why it may not start (blocking)."""
        try:
            release = self.releases.resolve(ask.agent, ask.version)
        except ReleaseRefused as e:
            return RunAdmitted(refused=StartRefusal(type=e.type, message=e.message))
        spec = release.spec
        try:  # the directory decides whether a lift counts without proof
            directory = self.policies.policy_set(spec.policy).directory
        except ApplicationError:
            directory = None
        switch = active_switch(self.db_url, spec.name, ask.tenant, directory)
        if switch is not None:
            return RunAdmitted(release=release.pinned(), refused=StartRefusal(type=E.RUN_STOPPED, message=f"refused at start: {switch.describe()}"))
        if spec.envelope is not None:
            key = spec.envelope.key(spec.name, ask.tenant, datetime.now(timezone.utc).date())
            spent = BudgetLedger(self.db_url).exhausted(key)
            if spent is not None:
                return RunAdmitted(
                    release=release.pinned(),
                    refused=StartRefusal(
                        type=E.BUDGET_EXCEEDED,
                        message=f"refused at start: the cost envelope {key} is spent (${spent.spent_usd:.4f} of ${spent.limit_usd:.4f}); "
                        "an operator can raise it with `aifactory envelope raise`",
                    ),
                )  # fmt: skip
        try:
            policy = self.policies.policy_set(spec.policy)
        except ApplicationError as e:
            return RunAdmitted(release=release.pinned(), refused=StartRefusal(type=E.POLICY_FILE_ERROR, message=f"policy {spec.policy!r} could not be loaded: {e.message}"))
        return RunAdmitted(release=release.pinned(), policy=policy)

    @activity.defn(name=Activity.ADMIT_RUN)
    async def admit_run_activity(self, ask: RunAdmission) -> RunAdmitted:
        return await asyncio.to_thread(self.admit_run, ask)
