"""The exceptions of the face: one class per wire type, one root to catch.

Not workflow-safe (it is the face), though it holds no I/O. A class's name is the
`type` of the `ApplicationError` it stands for (`contracts.errors`), so a business
system catches the failure it handles and lets the others through:

    FactoryError                    (contracts.errors; every refusal below the face joins it too)
    ├── RunFailed                   the run ended without a result; `.type`, `.details`
    │   ├── InvalidRunInput         ├── PolicyDenied            ├── ModelUnavailable
    │   ├── ToolArgumentsInvalid    ├── ApprovalExpired         ├── ModelCallRejected
    │   ├── OutputInvalid           ├── TranscriptMissing       ├── ModelResponseInvalid
    │   ├── StepLimitExceeded       ├── ReleaseUnknown          ├── ModelResponseTooLarge
    │   ├── BudgetExceeded          ├── ReleaseUnavailable      ├── ToolFailed
    │   ├── RepeatedToolCall        ├── PayloadNotEncrypted     ├── PolicyFileError
    │   ├── ContextLimitExceeded    ├── PayloadUndecodable      └── UnknownTimeZone
    │   ├── RunStopped
    │   └── AgentNotAdmitted        (also a refusal: the client's gate, or the worker's)
    ├── RunRefused                  no run starts, or a run refuses an order (kill switch, spent envelope)
    │   └── MessageRefused          a signal or update the run does not take
    ├── RunInputRejected            the input does not fit the agent's schema (one sentence per field)
    └── ApprovalRefused             the run refused the decision (not authorized, decided, expired)

A type string this client does not know (a newer worker's) is a plain `RunFailed`
with `.type` set. Where a caller caught `ValueError`, `PermissionError` or
`RuntimeError` before this tree, that base stays, second.
"""

from __future__ import annotations

from contracts import errors as E
from contracts.errors import FactoryError
from contracts.run import RunFailure


class RunFailed(FactoryError, RuntimeError):
    """The run ended without a result; `type` is its wire type (the class name of a known one)."""

    def __init__(self, workflow_id: str, type_: str | None = None, message: str = "", details: RunFailure | None = None) -> None:
        self.workflow_id = workflow_id
        self.type = type_ if type_ is not None or type(self) is RunFailed else type(self).__name__
        self.message = message
        """What the run said, without the run id and type this exception's text leads with."""
        self.details = details
        """Where the run stopped: its step, usage, and the tool calls that ran nothing at the end."""
        super().__init__(f"run {workflow_id} failed ({self.type or 'error'}): {message}")

    @classmethod
    def _from_wire(cls, workflow_id: str, type_: str | None, message: str, details: RunFailure | None) -> RunFailed:
        return cls(workflow_id, type_, message, details)


class InvalidRunInput(RunFailed):
    """The run input does not match the agent's input schema (the worker checked it)."""


class ToolArgumentsInvalid(RunFailed):
    """The model kept proposing tool calls whose arguments do not fit the tool."""


class OutputInvalid(RunFailed):
    """The final answer failed validation, after the repair attempts."""


class StepLimitExceeded(RunFailed):
    """The reasoning loop hit the agent's step limit."""


class BudgetExceeded(RunFailed):
    """The next model call would pass the run's cost cap, or its cost envelope is spent."""


class RepeatedToolCall(RunFailed):
    """Circuit breaker: one tool call with the same arguments, over and over."""


class ContextLimitExceeded(RunFailed):
    """Circuit breaker: the conversation outgrew the agent's context ceiling."""


class RunStopped(RunFailed):
    """A kill switch stopped the run, or refused it at start (who and why are in the message)."""


class PolicyDenied(RunFailed):
    """The model kept proposing calls the policy denies."""


class ApprovalExpired(RunFailed):
    """Nobody approved in time, and the safe default is to stop."""


class TranscriptMissing(RunFailed):
    """The conversation store lost the run's transcript."""


class ModelUnavailable(RunFailed):
    """The model endpoint kept failing until the retries ran out."""


class ModelCallRejected(RunFailed):
    """The model endpoint refused the call (4xx other than 408/409/429)."""


class ModelResponseInvalid(RunFailed):
    """The model endpoint answered with something unusable."""


class ModelResponseTooLarge(RunFailed):
    """The model endpoint's reply is too large for a run to take."""


class ToolFailed(RunFailed):
    """A tool raised a non-retryable error."""


class PolicyFileError(RunFailed):
    """The run's policy bundle could not be loaded on the worker."""


class UnknownTimeZone(RunFailed):
    """A business-hours calendar names a zone the worker's tz database lacks."""


class ReleaseUnknown(RunFailed):
    """The worker has no release of that agent (and version)."""


class ReleaseUnavailable(RunFailed):
    """The run's release is on no worker that took its model call."""


class PayloadNotEncrypted(RunFailed):
    """A clear-text start of an agent whose runs must be encrypted."""


class PayloadUndecodable(RunFailed):
    """A payload the worker cannot decrypt (wrong key, altered bytes)."""


class AgentNotAdmitted(RunFailed, ValueError):
    """The agent fails the admission gate (`aifactory check`): refused by this client before a
    start (no run, `workflow_id` None), or by the worker, which ends the run with this type."""

    def __init__(self, message: str, *, workflow_id: str | None = None, details: RunFailure | None = None) -> None:
        self.workflow_id = workflow_id
        self.type = E.AGENT_NOT_ADMITTED
        self.message = message
        self.details = details
        Exception.__init__(self, message if workflow_id is None else f"run {workflow_id} failed ({self.type}): {message}")

    @classmethod
    def _from_wire(cls, workflow_id: str, type_: str | None, message: str, details: RunFailure | None) -> RunFailed:
        return cls(message, workflow_id=workflow_id, details=details)


class RunRefused(FactoryError, PermissionError):
    """A kill switch is on for this agent or tenant, or a spent envelope: no new run starts. The message says which."""


class MessageRefused(RunRefused):
    """A signal or update the run could not read or does not take (answered, recorded; the run goes on)."""


class ApprovalRefused(FactoryError, PermissionError):
    """The run refused the decision (not authorized, already decided, expired); the reason says which."""


class RunInputRejected(FactoryError, ValueError):
    """The run was not started: its input, tenant or run key is invalid."""

    def __init__(self, agent: str, problems: list[str]) -> None:
        self.agent = agent
        self.problems = problems
        super().__init__(f"run input for agent {agent!r} rejected: " + "; ".join(problems))


#: The class of each wire type, read from `contracts.errors`: a type without its class fails this import.
BY_TYPE: dict[str, type[FactoryError]] = {t: globals()[t] for t in sorted(E.WIRE_TYPES)}


def run_failed(workflow_id: str, type_: str | None, message: str, details: RunFailure | None = None) -> RunFailed:
    """The exception for a run that failed with `type_`: its class, or plain `RunFailed` for a type
    this client does not know (or a refusal type, which no run ends with)."""
    cls = BY_TYPE.get(type_ or "")
    if cls is None or not issubclass(cls, RunFailed):
        return RunFailed(workflow_id, type_, message, details)
    return cls._from_wire(workflow_id, type_, message, details)


__all__ = [
    "FactoryError", "BY_TYPE", "run_failed", "RunFailed", "InvalidRunInput", "ToolArgumentsInvalid", "OutputInvalid",
    "StepLimitExceeded", "BudgetExceeded", "RepeatedToolCall", "ContextLimitExceeded", "RunStopped", "PolicyDenied",
    "ApprovalExpired", "TranscriptMissing", "ModelUnavailable", "ModelCallRejected", "ModelResponseInvalid",
    "ModelResponseTooLarge", "ToolFailed", "PolicyFileError", "UnknownTimeZone", "ReleaseUnknown",
    "ReleaseUnavailable", "PayloadNotEncrypted", "PayloadUndecodable", "AgentNotAdmitted", "RunRefused",
    "MessageRefused", "ApprovalRefused", "RunInputRejected",
]
