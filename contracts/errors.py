"""Typed failure names that runs end with.

Workflow-safe. Each name is the `type` of an `ApplicationError` raised by the
platform; callers and operators match on these strings, so they are wire API:
add new ones, never rename. The face raises one exception class per name
(`aifactory.errors`, where the class tree is drawn); `FactoryError`, the root of
that tree, lives here so that refusals raised on every floor (a query value, a
kill switch, a key ring) can join it without importing upwards.

    RunFailure (the workflow's own, non-retryable)
    ├── InvalidRunInput        run input does not match the agent's input schema
    ├── ToolArgumentsInvalid   the model kept proposing invalid tool calls
    ├── OutputInvalid          the final answer failed validation after repair
    ├── StepLimitExceeded      the reasoning loop hit the agent's step limit
    ├── BudgetExceeded         the next model call would pass the run's cost cap
    ├── RepeatedToolCall       circuit breaker: one tool call with the same arguments, over and over
    ├── ContextLimitExceeded   circuit breaker: the conversation outgrew the agent's context ceiling
    ├── RunStopped             a kill switch stopped the run (who and why are in the message)
    ├── PolicyDenied           the model kept proposing calls the policy denies
    ├── ApprovalExpired        nobody approved in time and the safe default is to stop
    └── TranscriptMissing      the conversation store lost the run's transcript
    ├── ReleaseUnknown         the worker has no admitted release of that agent (and version)
    ├── AgentNotAdmitted       the agent fails the admission gate on the worker
    ├── PayloadNotEncrypted    a clear-text start of an agent whose runs must be encrypted
    └── PayloadUndecodable     a payload the worker cannot decrypt (wrong key, altered bytes)
    PolicyFileError            the run's policy bundle could not be loaded on the worker
    UnknownTimeZone            a business-hours calendar names a zone this worker's tz database lacks
    ModelUnavailable           the endpoint kept failing until the retries ran out
    ModelCallRejected          the endpoint refused the call (4xx other than 408/409/429)
    ModelResponseTooLarge      the endpoint's reply is too large for a run to take (not retried)

    Types that end no run (tests/test_run_failures.py shows each as a run meets it):
    ModelResponseInvalid       the endpoint answered with something unusable: retried, then the run
                               ends ModelUnavailable, naming it
    ReleaseUnavailable         a model call on a worker without the run's release: retried (another
                               worker may hold it), then ModelUnavailable, naming it
    ToolFailed                 a tool raised a non-retryable error: the call is recorded FAILED and
                               the model told, so the run goes on
"""

INVALID_RUN_INPUT = "InvalidRunInput"
TOOL_ARGUMENTS_INVALID = "ToolArgumentsInvalid"
OUTPUT_INVALID = "OutputInvalid"
STEP_LIMIT_EXCEEDED = "StepLimitExceeded"
BUDGET_EXCEEDED = "BudgetExceeded"
REPEATED_TOOL_CALL = "RepeatedToolCall"
CONTEXT_LIMIT_EXCEEDED = "ContextLimitExceeded"
RUN_STOPPED = "RunStopped"
POLICY_DENIED = "PolicyDenied"
APPROVAL_EXPIRED = "ApprovalExpired"
APPROVAL_REFUSED = "ApprovalRefused"
TRANSCRIPT_MISSING = "TranscriptMissing"
MODEL_CALL_REJECTED = "ModelCallRejected"
MODEL_RESPONSE_INVALID = "ModelResponseInvalid"
MODEL_RESPONSE_TOO_LARGE = "ModelResponseTooLarge"
MODEL_UNAVAILABLE = "ModelUnavailable"
TOOL_FAILED = "ToolFailed"
POLICY_FILE_ERROR = "PolicyFileError"
UNKNOWN_TIME_ZONE = "UnknownTimeZone"
"""A business-hours deadline could not be computed (the run falls back to the wall-clock SLA)."""
RELEASE_UNKNOWN = "ReleaseUnknown"
RELEASE_UNAVAILABLE = "ReleaseUnavailable"
"""A model call on a worker that lacks the run's release (retried: another worker may have it)."""
AGENT_NOT_ADMITTED = "AgentNotAdmitted"
PAYLOAD_NOT_ENCRYPTED = "PayloadNotEncrypted"
PAYLOAD_UNDECODABLE = "PayloadUndecodable"
MESSAGE_REFUSED = "MessageRefused"
"""A signal or update the run could not read or does not take (answered, recorded, the run goes on)."""

#: Failures a run ends with by design; anything else is a platform fault.
RUN_FAILURES = frozenset(
    {
        INVALID_RUN_INPUT,
        TOOL_ARGUMENTS_INVALID,
        OUTPUT_INVALID,
        STEP_LIMIT_EXCEEDED,
        BUDGET_EXCEEDED,
        REPEATED_TOOL_CALL,
        CONTEXT_LIMIT_EXCEEDED,
        RUN_STOPPED,
        POLICY_DENIED,
        APPROVAL_EXPIRED,
        TRANSCRIPT_MISSING,
        MODEL_CALL_REJECTED,
        MODEL_RESPONSE_TOO_LARGE,
        MODEL_UNAVAILABLE,
        RELEASE_UNKNOWN,
        AGENT_NOT_ADMITTED,
        PAYLOAD_NOT_ENCRYPTED,
        PAYLOAD_UNDECODABLE,
    }
)

#: Every wire type above: the face has one exception class of each name (tests/test_error_tree.py).
WIRE_TYPES = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))


class FactoryError(Exception):
    """Root of every failure and refusal the face reports (see `aifactory.errors` for the tree).

    Defined with the wire types, on the bottom floor, so a refusal raised below the face (a bad
    query value, a kill switch, a key ring) subclasses it too: the CLI catches this one class.
    """
