"""Slack delivery: approval requests as Block Kit messages with Approve and Reject buttons, updated in place.

Not workflow-safe (SQL and HTTP I/O). Messages go out through the Slack Web API
(`chat.postMessage`, `chat.update`) with the bot token of the worker's environment
(`AIFACTORY_SLACK_BOT_TOKEN`, never in history). Every post is recorded in
`slack_messages` under its notification key and channel, so a retried activity
posts once; an approval's later events (escalated, decided, expired) rewrite the
messages already posted for that request, so nobody presses a button on a request
that is no longer waiting. The buttons carry only the run id and request id; a
press reaches `aifactory slack serve`, which checks Slack's signature and decides
as the directory person mapped from the Slack user.

Block Kit limits honoured here (Slack's reference, "Blocks" and "Block elements"):
at most 50 blocks, section text 3000 characters, header text 150, button text 75,
button value 2000, action ids 255, URLs 3000.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, delete, select

from activities.db import engine_for
from contracts.notify import Notification

#: Channel references the notifier posts to through Slack: `#name` or a channel id (`C024BE91L`).
SLACK_CHANNEL = re.compile(r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{2,20})$")
APPROVE, REJECT = "aifactory_approve", "aifactory_reject"
#: Kinds whose message asks for a decision (buttons); the others report on a request.
ASKING = ("approval_requested",)
OUTCOMES = ("approval_decided", "approval_expired")
#: How long a claimed post may take before another attempt takes it over (the claimant died mid-post).
CLAIM_FOR = timedelta(seconds=60)


class SlackMessage(SQLModel, table=True):
    """A message posted to Slack, so retries post once and later events update it in place."""

    __tablename__ = "slack_messages"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)
    """The notification key and the channel (`<key>@<channel>`)."""
    run_id: str = Field(index=True)
    request_id: str | None = Field(default=None, index=True)
    channel: str
    ts: str
    """Slack's id of the message in its channel (empty while an attempt is posting it; `-` when nothing was posted)."""
    kind: str
    posted_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class SlackInteractionSeen(SQLModel, table=True):
    """A Slack interaction request already acted on (by its signature): the same request is never taken twice."""

    __tablename__ = "slack_interactions_seen"
    id: int | None = Field(default=None, primary_key=True)
    signature_sha256: str = Field(unique=True, index=True)
    seen_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc), index=True)


def first_interaction(db_url: str, signature: str, stale_after: timedelta) -> bool:
    """Remember a Slack request by its signature; False when it was seen before (a replay)."""
    digest = hashlib.sha256(signature.encode()).hexdigest()
    with Session(engine_for(db_url)) as s:
        # Older than twice the staleness window is refused by its timestamp anyway: forget it.
        s.exec(delete(SlackInteractionSeen).where(col(SlackInteractionSeen.seen_at) < datetime.now(timezone.utc) - 2 * stale_after))
        s.add(SlackInteractionSeen(signature_sha256=digest))
        try:
            s.commit()
            return True
        except IntegrityError:
            s.rollback()
            return False


@dataclass(frozen=True)
class SlackSettings:
    """Where and how the worker posts to Slack (from its environment)."""

    token: str = field(repr=False)
    api_url: str = "https://slack.com/api/"
    ui_url: str = "http://localhost:8233"
    """Base URL of the Temporal UI, for the link to the run."""

    @classmethod
    def from_env(cls) -> "SlackSettings | None":
        token = os.environ.get("AIFACTORY_SLACK_BOT_TOKEN")
        if not token:
            return None
        api = os.environ.get("AIFACTORY_SLACK_API_URL") or cls.api_url
        return cls(token=token, api_url=api if api.endswith("/") else api + "/", ui_url=os.environ.get("AIFACTORY_UI_URL") or cls.ui_url)


def is_slack_channel(target: str) -> bool:
    return bool(SLACK_CHANNEL.fullmatch(target))


def run_link(ui_url: str, namespace: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/{quote(run_id, safe='')}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _facts(n: Notification) -> str:
    lines = [f"*Agent* {n.agent} · *tenant* {n.tenant} · *run* `{n.run_id}`"]
    for k, v in n.details.items():
        if k in ("request", "tier") or v in (None, ""):
            continue
        lines.append(f"*{k}*: {v}")
    return "\n".join(lines)


def approval_message(n: Notification, link: str, *, buttons: bool) -> dict:
    """The Block Kit message for an approval event: summary, deadline, link to the run and, when a
    decision is asked for, Approve and Reject buttons carrying the run and request ids."""
    request = n.details.get("request")
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(n.subject, 150), "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(_facts(n), 3000)}},
    ]
    context = [f"<{link}|Open the run in the Temporal UI>"]
    if n.group:
        context.append(f"group *{n.group}*" + (f" ({', '.join(n.recipients)})" if n.recipients else ""))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(" · ".join(context), 3000)}]})
    if buttons and request:
        value = json.dumps({"run": n.run_id, "request": request}, separators=(",", ":"))
        blocks.append({
            "type": "actions",
            "block_id": _clip(f"decide/{request}", 255),
            "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
                 "text": {"type": "plain_text", "text": "Approve", "emoji": False}},
                {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
                 "text": {"type": "plain_text", "text": "Reject", "emoji": False},
                 "confirm": {"title": {"type": "plain_text", "text": "Reject this request?"},
                             "text": {"type": "plain_text", "text": _clip(f"The agent will be told it may not run {n.details.get('tool', 'the tool')}.", 300)},
                             "confirm": {"type": "plain_text", "text": "Reject"}, "deny": {"type": "plain_text", "text": "Keep waiting"}}},
                {"type": "button", "action_id": "aifactory_open_run", "url": link, "text": {"type": "plain_text", "text": "Open run", "emoji": False}},
            ],
        })  # fmt: skip
    return {"text": _clip(n.subject, 3000), "blocks": blocks}


def outcome_message(n: Notification, link: str) -> dict:
    """What an earlier message for the request becomes once it is decided, escalated or expired."""
    if n.kind == "approval_decided":
        verdict = n.details.get("verdict", "decided")
        line = f"*{verdict.capitalize()}* by {n.details.get('by')}" + (f": {n.details['note']}" if n.details.get("note") else "")
    elif n.kind == "approval_expired":
        line = f"*Expired* without a decision: {n.details.get('reason') or 'safe default applied'}"
    else:
        line = f"*Escalated* to {n.group} (no decision within this tier's SLA)"
    head = n.subject
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(head, 150), "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(line, 3000)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(f"run `{n.run_id}` · <{link}|Open the run in the Temporal UI>", 3000)}]},
    ]
    return {"text": _clip(f"{head}: {line.replace('*', '')}", 3000), "blocks": blocks}


class SlackDelivery:
    """Posts and updates messages through the Slack Web API, once per notification and channel."""

    def __init__(self, db_url: str, settings: SlackSettings) -> None:
        self._db_url = db_url
        self._settings = settings
        self._client = AsyncWebClient(token=settings.token, base_url=settings.api_url, timeout=10)

    async def deliver(self, n: Notification, channel: str, namespace: str) -> str | None:
        """Post (or, for a request's later events, update in place); returns an error sentence or None.

        The post is claimed first (a row under the notification key and channel), so two workers
        delivering the same notification at once post it once; a failed post gives its claim back."""
        link = run_link(self._settings.ui_url, namespace, n.run_id)
        key = f"{n.key}@{channel}"
        if not await asyncio.to_thread(self._claim, key, n, channel):
            return None
        request = n.details.get("request")
        escalated = n.kind.startswith("approval_escalated")
        try:
            if request and (n.kind in OUTCOMES or escalated):
                # Nobody should press a button on a request that no longer waits at that tier.
                earlier = await asyncio.to_thread(self._earlier, n.run_id, request)
                for message in earlier:
                    await self._client.chat_update(channel=message.channel, ts=message.ts, **outcome_message(n, link))
                if n.kind in OUTCOMES and any(m.channel == channel for m in earlier):
                    # The outcome is shown where the request was asked: nothing more to post there.
                    await asyncio.to_thread(self._settle, key, "-")
                    return None
            if request and n.kind in OUTCOMES:
                message = outcome_message(n, link)
            elif request and (n.kind in ASKING or escalated):
                message = approval_message(n, link, buttons=True)
            else:
                message = alert_message(n, link)
            answer = await self._client.chat_postMessage(channel=channel, **message)
        except SlackApiError as e:
            await asyncio.to_thread(self._release, key)
            return f"Slack refused the message for {channel}: {e.response.get('error', 'error')}"
        except (SlackClientError, OSError, asyncio.TimeoutError) as e:
            await asyncio.to_thread(self._release, key)
            return f"Slack unreachable for {channel}: {type(e).__name__}"
        await asyncio.to_thread(self._settle, key, str(answer.get("ts") or "-"))
        return None

    async def aclose(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None and not session.closed:
            await session.close()

    def _claim(self, key: str, n: Notification, channel: str) -> bool:
        """Take the right to post `key`: False when it was posted, or another attempt is posting it now."""
        with Session(engine_for(self._db_url)) as s:
            row = s.exec(select(SlackMessage).where(SlackMessage.key == key)).first()
            if row is not None:
                stale = row.ts == "" and row.posted_at.replace(tzinfo=timezone.utc) < datetime.now(timezone.utc) - CLAIM_FOR
                if not stale:
                    return False
                row.posted_at = datetime.now(timezone.utc)  # that attempt died mid-post: take it over
                s.add(row)
                s.commit()
                return True
            s.add(SlackMessage(key=key, run_id=n.run_id, request_id=n.details.get("request"), channel=channel, ts="", kind=n.kind))
            try:
                s.commit()
                return True
            except IntegrityError:  # a concurrent attempt claimed it first
                s.rollback()
                return False

    def _settle(self, key: str, ts: str) -> None:
        with Session(engine_for(self._db_url)) as s:
            row = s.exec(select(SlackMessage).where(SlackMessage.key == key)).one()
            row.ts, row.posted_at = ts, datetime.now(timezone.utc)
            s.add(row)
            s.commit()

    def _release(self, key: str) -> None:
        with Session(engine_for(self._db_url)) as s:
            s.exec(delete(SlackMessage).where(SlackMessage.key == key))
            s.commit()

    def _earlier(self, run_id: str, request_id: str) -> list[SlackMessage]:
        with Session(engine_for(self._db_url)) as s:
            q = select(SlackMessage).where(SlackMessage.run_id == run_id, SlackMessage.request_id == request_id, col(SlackMessage.ts).not_in(["", "-"]))
            return [m for m in s.exec(q.order_by(col(SlackMessage.id))).all() if m.kind not in OUTCOMES]

def alert_message(n: Notification, link: str) -> dict:
    """An alert for the agent's owner (envelope, breaker, kill switch, a write waiting on an operator)."""
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(n.subject, 150), "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(_facts(n), 3000)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(f"<{link}|Open the run in the Temporal UI>", 3000)}]},
    ]
    return {"text": _clip(n.subject, 3000), "blocks": blocks}


def read_slack_messages(db_url: str, run_id: str | None = None) -> list[SlackMessage]:
    with Session(engine_for(db_url)) as s:
        q = select(SlackMessage).order_by(col(SlackMessage.id))
        if run_id:
            q = q.where(SlackMessage.run_id == run_id)
        return list(s.exec(q).all())
