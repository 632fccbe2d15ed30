"""The HTTP gateway served for real in a test: uvicorn on 127.0.0.1, called with httpx.

The listening socket is bound to port 0 before the server starts, so no other
process can take the port between choosing it and listening on it. The server
runs on the test's event loop, next to the test's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Iterable

import httpx
from fastapi import FastAPI

from activities.api_keys import ApiKeyStore
from aifactory.client import FactoryClient
from aifactory.gateway.app import GatewayServer, create_app
from aifactory.gateway.oidc import JwtVerifier

STARTS = "/v1/agents/{agent}/runs"


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = GatewayServer(app, log_level="warning")
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise AssertionError("the gateway stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Gateway:
    url: str
    keys: ApiKeyStore
    http: httpx.AsyncClient

    def key(self, tenants: Iterable[str] = ("acme",), agents: Iterable[str] = ("it-triage",), person: str | None = None) -> dict[str, str]:
        """Headers bearing a new API key with this scope."""
        _, token = self.keys.create(f"test-{uuid.uuid4().hex[:6]}", tenants=list(tenants), agents=list(agents), person=person)
        return {"Authorization": f"Bearer {token}"}

    async def until(self, run_id: str, headers: dict[str, str], done=lambda view: view["status"] != "running", tries: int = 1200) -> dict:
        """GET the run until `done` holds for its view (by default: until it has ended)."""
        for _ in range(tries):
            answer = await self.http.get(f"/v1/runs/{run_id}", headers=headers)
            assert answer.status_code == 200, answer.text
            if done(answer.json()):
                return answer.json()
            await asyncio.sleep(0.05)
        raise AssertionError(f"run {run_id} never got there: {answer.json()}")


@contextlib.asynccontextmanager
async def gateway(factory: FactoryClient, db_url: str, jwt: JwtVerifier | None = None) -> AsyncIterator[Gateway]:
    """The gateway for `factory`, its keys in the store at `db_url`, and an HTTP client for it."""
    keys = ApiKeyStore(db_url)
    async with serve(create_app(factory, keys, jwt)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            yield Gateway(url, keys, http)


def problems_named(answer: httpx.Response, status: int, *fragments: str) -> dict:
    """The error body of `answer`, which must have `status`, the one shape, and each fragment in its
    sentence or problems; never a traceback."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    assert set(body) == {"error", "type", "problems"}, body
    text = " ".join([body["error"], *body["problems"]])
    for fragment in fragments:
        assert fragment in text, (fragment, body)
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    return body
