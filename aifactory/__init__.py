"""The face of AI Factory: the typed client business systems import and the `aifactory` CLI.

    from aifactory import FactoryClient, PolicyDenied, RunFailed, StepLimitExceeded

Every failure and refusal is a class of `aifactory.errors` (the tree is drawn there).
"""

from aifactory.client import FactoryClient, RunHandle
from aifactory.errors import *  # noqa: F403 (the tree is the public API; its __all__ says what)
from aifactory.errors import __all__ as _errors

__all__ = ["FactoryClient", "RunHandle", *_errors]
