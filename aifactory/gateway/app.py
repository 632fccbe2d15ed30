"""`create_app`: the gateway as an ASGI app, built from its collaborators.

Not workflow-safe. The app holds a `FactoryClient` (the factory it serves), the
API key store, and a JWT verifier where OIDC is configured; tests build it with
a client pointed at their own worker, `aifactory gateway` with the environment's.
Every refusal has the body `errors.ErrorBody`; FastAPI's default 422 for a body
that does not fit is a 400 naming the field here, and the OpenAPI document says so.
"""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from activities.api_keys import ApiKeyStore
from activities.releases.loader import AgentNotFound
from aifactory.client import AgentNotAdmitted, ApprovalRefused, FactoryClient, RunInputRejected, RunRefused
from aifactory.gateway.auth import install
from aifactory.gateway.errors import GatewayError, on_error, on_http_error, on_invalid
from aifactory.gateway.oidc import JwtVerifier
from aifactory.gateway.routes import router
from contracts.visibility import QueryValueRejected

TITLE = "AI Factory gateway"
DESCRIPTION = """\
The HTTP face of AI Factory, for business systems in any language that have no Temporal SDK.

Start a run of an agent (idempotent on its run key: the same key starts one run), read it
(where it is while it runs, its decoded result, or its typed failure), list the runs waiting
for a person's approval, and approve or reject them as the person your key or token acts for.

Every `/v1/` call needs `Authorization: Bearer <token>`: an API key from
`aifactory gateway keys create`, scoped to tenants and agents, or an OIDC access token where
the gateway is configured with a JWKS. Every refusal has one body,
`{"error": "<one sentence>", "type": "<kind>", "problems": [...]}`: 400 for a request that does
not fit (each problem names the field), 401 without a valid token, 403 outside the caller's
scope, 404 for an unknown run or agent, 409 when the factory refuses (kill switch, spent
cost envelope, agent not admitted, a decision the run refused), 503 when Temporal does not answer.
"""

_KNOWN = (
    GatewayError, RunInputRejected, AgentNotFound, AgentNotAdmitted, RunRefused, ApprovalRefused, RPCError, ConnectionError,
    WorkflowUpdateRPCTimeoutOrCancelledError, QueryValueRejected,
)  # fmt: skip


def _version() -> str:
    try:
        return version("ai-factory")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(factory: FactoryClient, keys: ApiKeyStore, jwt: JwtVerifier | None = None) -> FastAPI:
    """The gateway for `factory`, authenticating with `keys` (and `jwt`, where OIDC is configured)."""
    app = FastAPI(title=TITLE, version=_version(), description=DESCRIPTION, redoc_url=None)
    app.state.factory = factory
    install(app, keys, jwt)
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http_error)
    for known in _KNOWN:
        app.add_exception_handler(known, on_error)
    app.add_exception_handler(Exception, on_error)  # a fault: 500 with a reference, the traceback in the log only
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, less the 422 answers the gateway never gives (it answers 400, documented per route)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        app.openapi_schema = schema
    return app.openapi_schema


class GatewayServer(uvicorn.Server):
    """uvicorn serving the gateway, leaving signals to its owner: `aifactory gateway` stops on
    SIGINT or SIGTERM and exits 0; a test stops it by setting `should_exit`."""

    def __init__(self, app: FastAPI, **config: Any) -> None:
        # Forwarded headers are trusted from FORWARDED_ALLOW_IPS (uvicorn's setting; default 127.0.0.1).
        super().__init__(uvicorn.Config(app, lifespan="off", proxy_headers=True, **config))

    @contextlib.contextmanager
    def capture_signals(self):
        yield
