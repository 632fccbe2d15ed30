"""Notifications with idempotent delivery: an outbox table operators can read, and a webhook.

Not workflow-safe (SQL and HTTP I/O). Every notification has a key derived from
the run, the request and the event (`.../tier1`), so a retried activity, or a
timer that fires after a worker was down, writes one outbox row and, once a
post has been recorded as delivered, never posts again. A worker that dies
between a successful post and recording it posts again on the retry, with the
same `Idempotency-Key` header, so a receiver that honours the key sees it once.
The webhook gets Slack-compatible JSON (`text` plus `blocks`); set
`AIFACTORY_NOTIFY_WEBHOOK_URL` to enable it.

A notification also names its own channels (the approver group's Slack channel,
the agent owner's and escalation contact's): Slack channels are posted through
the Web API when the worker has a bot token (`activities.slack`), URLs get the
same webhook JSON, and email addresses stay in the outbox row for a mail relay.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import engine_for
from activities.slack import SlackDelivery, SlackSettings, is_slack_channel
from contracts.notify import Notification, NotificationReceipt
from contracts.wire import Activity


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "notification_outbox"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)
    kind: str = Field(index=True)
    run_id: str = Field(index=True)
    agent: str
    tenant: str = Field(index=True)
    group: str | None = Field(default=None, index=True)
    recipients: str = "[]"
    subject: str
    details: str = "{}"
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    delivered_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None


def slack_payload(n: Notification) -> dict:
    lines = [f"*{n.subject}*", f"run `{n.run_id}` · agent {n.agent} · tenant {n.tenant}"]
    if n.group:
        lines.append(f"group: {n.group}" + (f" ({', '.join(n.recipients)})" if n.recipients else ""))
    for k, v in n.details.items():
        lines.append(f"{k}: {v}")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


class NotifyActivities:
    def __init__(self, db_url: str, webhook_url: str | None = None, slack: SlackSettings | None = None) -> None:
        self._db_url = db_url
        self._webhook_url = webhook_url
        self._slack = SlackDelivery(db_url, slack) if slack else None

    async def aclose(self) -> None:
        if self._slack is not None:
            await self._slack.aclose()

    @activity.defn(name=Activity.SEND_NOTIFICATION)
    async def send_notification(self, n: Notification) -> NotificationReceipt:
        row, first = await asyncio.to_thread(self._record, n)
        targets = self._targets(n)
        if row.delivered_at is not None or not targets:
            return NotificationReceipt(key=n.key, outbox_id=row.id, delivered=row.delivered_at is not None, first_time=first)
        errors = []
        for target in targets:
            error = await self._deliver(n, target)
            if error:
                errors.append(error)
        error = "; ".join(errors) or None
        await asyncio.to_thread(self._mark, row.id, not errors, error)
        if errors:
            raise ApplicationError(f"notification {n.key} kept in the outbox, delivery failed: {error}", type="NotificationUndelivered")
        return NotificationReceipt(key=n.key, outbox_id=row.id, delivered=True, first_time=first)

    def _targets(self, n: Notification) -> list[str]:
        """The factory webhook, then the notification's own channels this worker can reach (each once)."""
        out = [self._webhook_url] if self._webhook_url else []
        for channel in n.channels:
            reachable = channel.startswith(("http://", "https://")) or (self._slack is not None and is_slack_channel(channel))
            if reachable and channel not in out:
                out.append(channel)
        return out

    async def _deliver(self, n: Notification, target: str) -> str | None:
        if not target.startswith(("http://", "https://")):
            return await self._slack.deliver(n, target, activity.info().workflow_namespace)
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                resp = await http.post(target, json=slack_payload(n), headers={"Idempotency-Key": n.key})
        except httpx.HTTPError as e:
            return f"webhook unreachable: {type(e).__name__}"
        return None if resp.status_code < 300 else f"webhook answered HTTP {resp.status_code}"

    def _record(self, n: Notification) -> tuple[OutboxMessage, bool]:
        engine = engine_for(self._db_url)
        with Session(engine) as s:
            existing = s.exec(select(OutboxMessage).where(OutboxMessage.key == n.key)).first()
            if existing:
                return existing, False
            row = OutboxMessage(
                key=n.key, kind=n.kind, run_id=n.run_id, agent=n.agent, tenant=n.tenant, group=n.group,
                recipients=json.dumps(n.recipients), subject=n.subject,
                details=json.dumps({**n.details, **({"channels": n.channels} if n.channels else {})}, sort_keys=True, default=str),
            )  # fmt: skip
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                return s.exec(select(OutboxMessage).where(OutboxMessage.key == n.key)).one(), False
            s.refresh(row)
            return row, True

    def _mark(self, row_id: int, ok: bool, error: str | None) -> None:
        with Session(engine_for(self._db_url)) as s:
            row = s.get(OutboxMessage, row_id)
            row.attempts += 1
            if ok:
                row.delivered_at = datetime.now(timezone.utc)
                row.last_error = None
            else:
                row.last_error = error
            s.add(row)
            s.commit()


def read_outbox(db_url: str, run_id: str | None = None, kind: str | None = None) -> list[OutboxMessage]:
    with Session(engine_for(db_url)) as s:
        q = select(OutboxMessage).order_by(col(OutboxMessage.id))
        if run_id:
            q = q.where(OutboxMessage.run_id == run_id)
        if kind:
            q = q.where(OutboxMessage.kind == kind)
        return list(s.exec(q).all())
