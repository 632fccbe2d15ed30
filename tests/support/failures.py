"""`fails_with(StepLimitExceeded)`: a run's failure arrives as the exact class of its wire type."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from aifactory import RunFailed


@contextmanager
def fails_with(cls: type[RunFailed], match: str | None = None) -> Iterator[pytest.ExceptionInfo]:
    """`pytest.raises(cls)`, and then: exactly `cls` (not a sibling, not plain `RunFailed`), still a
    `RunFailed`, with `.type` the wire type string, which is the class name."""
    with pytest.raises(cls, match=match) as caught:
        yield caught
    e = caught.value
    assert type(e) is cls and isinstance(e, RunFailed) and e.type == cls.__name__, repr(e)
