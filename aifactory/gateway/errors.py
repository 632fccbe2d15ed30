"""Every refusal of the gateway, and the one body it answers with.

Not workflow-safe. A body is `{"error": "<one sentence>", "type": "<class name>",
"problems": [...]}`: `type` is the name of the class below, or of the
FactoryClient exception the refusal comes from, so a caller can match on it.
No body carries a traceback or a file-system path: the factory's own messages
that hold paths (an agents folder, an admission problem) are replaced here.

    GatewayError
    ├── InvalidRequest   400  the request does not fit: each problem names the field, parameter or header
    ├── Unauthenticated  401  no bearer token, or one this gateway does not accept (WWW-Authenticate: Bearer)
    ├── Forbidden        403  the caller's key or token does not cover the tenant, agent or decision
    ├── NotFound         404  no such run, agent or route
    ├── NotAllowed       405  the route does not take this method
    └── Unavailable      503  Temporal or the identity provider did not answer
    RunInputRejected     400  the agent's input schema refused the input (one problem per field)
    AgentNotFound        404  no agent of that name (or no such release) is deployed
    AgentNotAdmitted     409  the agent fails the admission gate
    RunRefused           409  a kill switch is on, or the cost envelope is spent
    ApprovalRefused      409  the run refused the decision; the error is its reason
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from activities.releases.loader import AgentNotFound
from aifactory.client import AgentNotAdmitted, ApprovalRefused, RunInputRejected, RunRefused
from contracts.visibility import QueryValueRejected

log = logging.getLogger("aifactory.gateway")


class GatewayError(Exception):
    status = 500

    def __init__(self, message: str, problems: Sequence[str] = (), headers: dict[str, str] | None = None) -> None:
        self.message = message
        self.problems = list(problems)
        self.headers = headers
        super().__init__(message)


class InvalidRequest(GatewayError):
    status = 400


class Unauthenticated(GatewayError):
    status = 401

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        # RFC 6750: a missing token gets the bare challenge, a refused one says why it was refused.
        challenge = 'Bearer realm="aifactory"' + (', error="invalid_token"' if invalid_token else "")
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(GatewayError):
    status = 403


class NotFound(GatewayError):
    status = 404


class NotAllowed(GatewayError):
    status = 405


class Unavailable(GatewayError):
    status = 503


def error_body(type_: str, message: str, problems: Sequence[str] = ()) -> dict[str, Any]:
    return {"error": message, "type": type_, "problems": list(problems)}


def respond(status: int, type_: str, message: str, problems: Sequence[str] = (), headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(type_, message, problems), status_code=status, headers=headers)


def refusal(e: Exception) -> JSONResponse | None:
    """The answer to an exception the gateway knows, or None for a fault (answered 500)."""
    if isinstance(e, GatewayError):
        return respond(e.status, type(e).__name__, e.message, e.problems, e.headers)
    if isinstance(e, QueryValueRejected):  # the gateway checks first; this is the query builder's own refusal
        return respond(400, "InvalidRequest", str(e), [str(e)])
    if isinstance(e, RunInputRejected):
        return respond(400, "RunInputRejected", f"the input of agent {e.agent!r} was refused: " + "; ".join(e.problems), e.problems)
    if isinstance(e, AgentNotFound):  # its own message names the agents folder: say it without the path
        return respond(404, "AgentNotFound", "no such agent (or release of it) is deployed on this factory")
    if isinstance(e, AgentNotAdmitted):  # its problems name files: `aifactory check` shows them to an engineer
        return respond(409, "AgentNotAdmitted", "the agent is not admitted: it fails the admission gate (`aifactory check` names the problems)")
    if isinstance(e, (RunRefused, ApprovalRefused)):
        return respond(409, type(e).__name__, str(e))
    if isinstance(e, WorkflowUpdateRPCTimeoutOrCancelledError):  # no worker took the decision in time
        return respond(503, "Unavailable", "the run did not take the decision in time (no worker answered); send it again: a repeated decision counts once")
    if isinstance(e, RPCError) and e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return respond(503, "Unavailable", "Temporal did not answer in time; try again")
    if isinstance(e, ConnectionError):
        return respond(503, "Unavailable", "the gateway cannot reach Temporal; try again")
    return None


async def on_error(request: Request, e: Exception) -> JSONResponse:
    answer = refusal(e)
    if answer is not None:
        return answer
    reference = uuid.uuid4().hex[:12]
    # Starlette hands a fault back to the server after this answer, which logs its traceback next.
    log.error("%s %s failed (reference %s): %s", request.method, request.url.path, reference, type(e).__name__)
    return respond(500, "InternalError", f"the gateway failed on this request; its log has the details under reference {reference}")


async def on_http_error(request: Request, e: Exception) -> JSONResponse:
    """Starlette's own refusals (no route, wrong method) in the gateway's body."""
    assert isinstance(e, HTTPException)
    if e.status_code == 404 and not str(request.scope.get("path", "")).isprintable():  # request.url drops it
        # A newline in a run id never reaches a route (its path converter stops at one): say what is wrong with it.
        return respond(400, "InvalidRequest", "the request path holds a control character (a newline, a tab): no agent, tenant or run key has one")
    if e.status_code == 404:
        return respond(404, "NotFound", f"no route {request.url.path} (the OpenAPI document at /openapi.json lists them)")
    if e.status_code == 405:
        return respond(405, "NotAllowed", f"{request.url.path} does not take {request.method}", headers=e.headers)
    return respond(e.status_code, "HTTPError", str(e.detail))


async def on_invalid(request: Request, e: Exception) -> JSONResponse:
    """FastAPI's request validation, as a 400 naming each field instead of its default 422 dump."""
    assert isinstance(e, RequestValidationError)
    problems = [problem(err) for err in e.errors()]
    sent = request.headers.get("content-type", "")
    if request.method == "POST" and request.headers.get("content-length", "0") != "0" and "json" not in sent:
        # FastAPI reads only a body declared as JSON: `curl -d` sends form encoding unless told otherwise.
        problems = [f"the request body must be sent as JSON, with 'Content-Type: application/json' (it came as {sent.split(';')[0] or 'no content type'})"]
    message = problems[0] if len(problems) == 1 else f"{len(problems)} problems in the request: " + "; ".join(problems)
    return respond(400, "InvalidRequest", message, problems)


_WHERE = {"body": "field", "query": "query parameter", "path": "path parameter", "header": "header"}


def problem(err: dict[str, Any]) -> str:
    """One sentence for one of pydantic's errors, naming where it is; the input is never echoed."""
    kind, loc = err.get("type", ""), tuple(err.get("loc", ()))
    if kind == "json_invalid":
        reason = (err.get("ctx") or {}).get("error", "not JSON")
        at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        return f"the request body is not valid JSON: {reason}{at}"
    where, path = _WHERE.get(str(loc[0]), "field") if loc else "field", ".".join(map(str, loc[1:]))
    if not path:
        return "the request body is required and must be a JSON object" if kind in ("missing", "model_attributes_type", "dict_type") else f"the request body: {err.get('msg')}"
    if kind == "missing":
        return f"{where} {path!r} is required"
    if kind == "extra_forbidden":
        return f"{where} {path!r} is not allowed here (see the OpenAPI document at /openapi.json)"
    return f"{where} {path!r}: {str(err.get('msg', 'is not valid')).removeprefix('Value error, ')}"
