"""The face of AI Factory: the typed client business systems import and the `aifactory` CLI."""

from aifactory.client import ApprovalRefused, FactoryClient, RunFailed, RunHandle, RunInputRejected

__all__ = ["ApprovalRefused", "FactoryClient", "RunFailed", "RunHandle", "RunInputRejected"]
