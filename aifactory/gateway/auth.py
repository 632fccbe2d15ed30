"""Bearer authentication: every `/v1/` request is authenticated before anything of it is read.

Not workflow-safe (reads the key store). It runs as middleware, ahead of
routing and body parsing, so a request without a valid token gets 401 whatever
its body holds, and a revoked key stops working on its next request. A token
that starts with `aif_` is an API key (`activities.api_keys`); any other is
taken as an OIDC JWT where a JWKS is configured (`oidc`).
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from activities.api_keys import ApiKeyInfo, ApiKeyStore, looks_like_key
from aifactory.gateway.callers import Caller
from aifactory.gateway.errors import GatewayError, Unauthenticated, refusal
from aifactory.gateway.oidc import JwtVerifier

PROTECTED = "/v1/"

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (`aif_<key id>_<secret>`, from `aifactory gateway keys create`) or, where the gateway "
    "is configured with a JWKS, an OIDC access token (JWT).",
)


def key_caller(info: ApiKeyInfo) -> Caller:
    return Caller(
        name=f"key {info.key_id} ({info.name})", tenants=frozenset(info.tenants), agents=frozenset(info.agents),
        person=info.person, requester=info.person or f"api-key:{info.key_id}",
    )  # fmt: skip


async def authenticate(authorization: str | None, keys: ApiKeyStore, jwt: JwtVerifier | None) -> Caller:
    """The caller an `Authorization` header names, or `Unauthenticated` saying what is wrong with it."""
    if not authorization or not authorization.strip():
        raise Unauthenticated("this endpoint needs a bearer token: send 'Authorization: Bearer <API key or token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer <API key or token>'")
    if looks_like_key(token):
        info = await asyncio.to_thread(keys.verify, token)
        if info is None:
            raise Unauthenticated("the API key is not one this gateway issued", invalid_token=True)
        if info.revoked_at is not None:
            raise Unauthenticated(f"API key {info.key_id} was revoked on {info.revoked_at:%Y-%m-%d %H:%M} UTC", invalid_token=True)
        return key_caller(info)
    if jwt is not None:
        return await asyncio.to_thread(jwt.verify, token)
    raise Unauthenticated("the bearer token is not an API key of this gateway (and it accepts no other tokens)", invalid_token=True)


def install(app: FastAPI, keys: ApiKeyStore, jwt: JwtVerifier | None) -> None:
    """Authenticate every request under `/v1/`; the caller is `request.state.caller`."""

    @app.middleware("http")
    async def bearer(request: Request, call_next):
        if request.url.path.startswith(PROTECTED):
            try:
                request.state.caller = await authenticate(request.headers.get("authorization"), keys, jwt)
            except GatewayError as e:
                return refusal(e)
        return await call_next(request)


async def current_caller(request: Request, _: HTTPAuthorizationCredentials | None = Security(BEARER)) -> Caller:
    """The authenticated caller (the `Security` parameter puts the bearer scheme in the OpenAPI document)."""
    return request.state.caller
