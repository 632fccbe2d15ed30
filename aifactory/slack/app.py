"""Slack's interaction endpoint: an Approve or Reject button pressed in Slack decides the request.

`aifactory slack serve` runs this ASGI app (FastAPI, served by uvicorn). Slack posts
each button press to `POST /slack/interactions` as a form with one `payload` field,
signed with the app's signing secret. A press counts only when:

1. Slack's signature and timestamp hold (checked by the Slack SDK's
   `SignatureVerifier`; older than 5 minutes is stale) - else 401;
2. this exact request was not seen before (its signature is remembered in the
   factory's SQL store, so a replay is refused even after a restart) - else 409;
3. the Slack user is a person in the approver directory (`slack_user_id`) - else 403.

The decision then goes to the run signed with this endpoint's own service key
(`aifactory-slack`, which the directory lets act for its people), naming the Slack
user as evidence; the run still checks the person's group, tenant and that they did
not request the call. What the run answers is sent back to the presser (ephemeral,
through the payload's `response_url`), and the run's own notification rewrites the
message in place with the outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from slack_sdk.signature import SignatureVerifier

from activities.slack import APPROVE, REJECT, first_interaction
from aifactory.client import ApprovalRefused, FactoryClient
from contracts.policy import Directory

log = logging.getLogger("aifactory.slack")
#: Slack's own limit for a request's age; older ones are refused as stale (and could be replays).
STALE_AFTER = timedelta(minutes=5)
VERDICTS = {APPROVE: "approve", REJECT: "reject"}


@dataclass
class SlackEndpoint:
    factory: FactoryClient
    directory: Callable[[], Directory]
    """The approver directory as this endpoint reads it now (Slack user -> person)."""
    signing_secret: str
    db_url: str
    response_url_prefix: str = "https://hooks.slack.com/"
    """Only `response_url`s under this prefix are answered (Slack's own)."""

    def __post_init__(self) -> None:
        self._verifier = SignatureVerifier(self.signing_secret)


def refuse(status: int, error: str) -> JSONResponse:
    log.warning("slack interaction refused (%s): %s", status, error)
    return JSONResponse({"ok": False, "error": error}, status_code=status)


def create_app(endpoint: SlackEndpoint) -> FastAPI:
    app = FastAPI(title="AI Factory Slack interactions", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.post("/slack/interactions")
    async def interactions(request: Request) -> JSONResponse:
        body = await request.body()
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        try:
            age = abs(datetime.now(timezone.utc).timestamp() - int(timestamp))
        except ValueError:
            return refuse(401, "missing or malformed X-Slack-Request-Timestamp")
        if age > STALE_AFTER.total_seconds():
            return refuse(401, f"stale request: signed {int(age)} s ago (more than {int(STALE_AFTER.total_seconds())} s)")
        if not endpoint._verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            return refuse(401, "the request's Slack signature does not verify")
        try:
            payload = json.loads(parse_qs(body.decode())["payload"][0])
            action = payload["actions"][0]
            user_id = str(payload["user"]["id"])
            verdict = VERDICTS.get(action.get("action_id"))
            target = json.loads(action.get("value") or "{}") if verdict else {}
            run_id, request_id = str(target["run"]), str(target["request"])
        except (ValueError, KeyError, IndexError, TypeError):
            return refuse(400, "not a block_actions payload from an AI Factory approval message")
        if not await asyncio.to_thread(first_interaction, endpoint.db_url, signature, STALE_AFTER):
            return refuse(409, "this request was already received: a replay is not acted on")
        person = endpoint.directory().by_slack_user(user_id)
        if person is None:
            await _tell(endpoint, payload, f"You are not in the approver directory (Slack user {user_id}); nothing was decided.")
            return refuse(403, f"Slack user {user_id} is not a person in the approver directory")
        try:
            answer = await endpoint.factory.decide(run_id, person.id, verdict, f"from Slack by {person.name}", request_id, evidence=f"slack:{user_id}")
        except ApprovalRefused as e:
            await _tell(endpoint, payload, f"Not recorded: {e}")
            return JSONResponse({"ok": False, "refused": str(e), "person": person.id})
        text = f"Recorded: {verdict} by {person.name} for request {request_id}." if answer.accepted else f"Not recorded: {answer.reason}"
        await _tell(endpoint, payload, text)
        return JSONResponse({"ok": answer.accepted, "person": person.id, "request": request_id, **({} if answer.accepted else {"refused": answer.reason})})

    return app


async def _tell(endpoint: SlackEndpoint, payload: dict, text: str) -> None:
    """An ephemeral answer to the person who pressed, through Slack's `response_url` (best effort)."""
    url = payload.get("response_url")
    if not isinstance(url, str) or not url.startswith(endpoint.response_url_prefix):
        return
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            await http.post(url, json={"response_type": "ephemeral", "replace_original": False, "text": text})
    except httpx.HTTPError as e:
        log.warning("could not answer the Slack user: %s", type(e).__name__)
