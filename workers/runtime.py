"""A Temporal runtime that ends with the command that used it, not with the interpreter.

Not workflow-safe (process assembly). The SDK's default runtime is a process
global: its Rust (tokio) threads live until the interpreter finalizes. The
thread that resolves a client call hands the result to Python with
`loop.call_soon_threadsafe`, which releases the GIL for its write to the
loop's wake-up pipe. The main thread can wake on that write, finish the
command and start finalizing while that thread still has to take the GIL back
and return. CPython ends a thread that asks for the GIL during finalization
(`pthread_exit`); the unwind runs pyo3's GIL guard, which releases a thread
state that is no longer current, and the process aborts: `Fatal Python error:
PyGILState_Release`, exit 134, after the command printed its success
(temporalio/sdk-python#300; about one `aifactory status` or `approve` in six
on a 2-core machine).

`command_runtime()` gives the clients connected inside it (`workers.settings.connect`)
a runtime of their own and drops it when the block ends, while the interpreter
is whole: dropping the runtime shuts tokio down with the GIL released and joins
its threads, so none is left to wake up during finalization.

    with command_runtime():
        asyncio.run(command())      # every client it connects uses the command's runtime
    # here the runtime's threads have ended
"""

from __future__ import annotations

import contextlib
import gc
import weakref
from contextvars import ContextVar
from typing import Iterator

from temporalio.runtime import Runtime, TelemetryConfig

_CURRENT: ContextVar[Runtime | None] = ContextVar("aifactory_temporal_runtime", default=None)


def current_runtime() -> Runtime | None:
    """The runtime of the command in progress, or None outside `command_runtime()` (the SDK default)."""
    return _CURRENT.get()


@contextlib.contextmanager
def command_runtime() -> Iterator[None]:
    """Run the block on a Temporal runtime of its own, shut down when the block ends.

    The block must let go of every client and worker it made before it ends (an exception
    still being handled keeps its frames, and their clients, alive: handle it inside).
    """
    runtime = Runtime(telemetry=TelemetryConfig())
    alive = weakref.ref(runtime)
    token = _CURRENT.set(runtime)
    del runtime
    try:
        yield
    finally:
        _CURRENT.reset(token)
        # Clients caught in reference cycles (finished tasks, an exception's frames) are freed now,
        # and with the last of them the runtime: its threads are joined here, not at finalization.
        # One pass may only run the finalizers of closed coroutines, which frees more on the next.
        for _ in range(3):
            if alive() is None:
                break
            gc.collect()
