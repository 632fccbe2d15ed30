"""The face of AI Factory: the typed client business systems import and the `aifactory` CLI."""

from aifactory.client import FactoryClient, RunHandle, RunInputRejected

__all__ = ["FactoryClient", "RunHandle", "RunInputRejected"]
