"""`resolve_policy`: the local activity that hands a run its policy bundle and approver directory.

Not workflow-safe (reads files through `policies.loader`). Runs are admitted
by their first model call now (`activities.admission`, which reads the same
store); this stays registered for runs recorded when they asked it at start.
The result is recorded in history, so the bundle a run used (and its hash) is
fixed for the whole run and replays exactly; the worker keeps serving its
last good bundle when a file is edited into something invalid.
"""

from __future__ import annotations

import logging
import os

from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.errors import POLICY_FILE_ERROR
from contracts.policy import Directory, PolicySet
from contracts.wire import Activity
from policies.loader import PolicyFileError, PolicyStore

log = logging.getLogger("aifactory.policy")


class PolicyActivities:
    def __init__(self, store: PolicyStore | None = None) -> None:
        self.store = store or PolicyStore()

    def policy_set(self, name: str) -> PolicySet:
        """The bundle `name` and the directory; a bundle that cannot be loaded fails the run, not retried."""
        try:
            return self.store.get(name)
        except PolicyFileError as e:
            # The run's failure is read by whoever started it: the file is named within the policies
            # folder, never by the worker's own path (the worker's log keeps the whole message).
            log.warning("policy bundle %r cannot be used: %s", name, e)
            message = str(e).replace(f"{self.store.root}{os.sep}", "").replace(str(self.store.root), "policies")
            raise ApplicationError(message, type=POLICY_FILE_ERROR, non_retryable=True) from None

    @activity.defn(name=Activity.RESOLVE_DIRECTORY)
    async def resolve_directory(self, name: str) -> Directory:
        """The approver directory as this worker has it now (with the keys and revocations since the run
        began): a run reads it to check a decision's signature and its signer's standing."""
        return self.policy_set(name).directory

    @activity.defn(name=Activity.RESOLVE_POLICY)
    async def resolve_policy(self, name: str) -> PolicySet:
        return self.policy_set(name)
