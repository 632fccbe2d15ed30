"""A Slack Web API double on 127.0.0.1: `chat.postMessage` and `chat.update` as Slack answers them.

It speaks the real protocol (HTTP POST to `<base>/api/<method>` with the bot token
as `Authorization: Bearer`, a JSON or form body, Slack's `{"ok": ...}` envelope),
so the worker's own Slack SDK client runs unchanged against it. Messages are kept
per channel with their `ts`; `response_url` posts land in `responses`. It also
signs interaction requests the way Slack does, for tests of `aifactory slack serve`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

TOKEN = "xoxb-test-token-never-in-history"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@dataclass
class Message:
    channel: str
    ts: str
    body: dict[str, Any]
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def current(self) -> dict[str, Any]:
        return self.updates[-1] if self.updates else self.body

    def buttons(self) -> list[dict[str, Any]]:
        return [e for b in self.current.get("blocks", []) if b.get("type") == "actions" for e in b["elements"] if e.get("type") == "button" and "value" in e]


class FakeSlack:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.responses: list[dict[str, Any]] = []
        self.refused_auth = 0
        self._lock = threading.Lock()
        self._seq = 0
        self.url = ""

    def in_channel(self, channel: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.channel == channel]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = body.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        with self._lock:
            self._seq += 1
            ts = f"{int(time.time())}.{self._seq:06d}"
            self.messages.append(Message(channel, ts, body))
        return {"ok": True, "channel": channel, "ts": ts, "message": body}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for m in self.messages:
                if m.channel == body.get("channel") and m.ts == body.get("ts"):
                    m.updates.append(body)
                    return {"ok": True, "channel": m.channel, "ts": m.ts}
        return {"ok": False, "error": "message_not_found"}

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve until the block ends; yields the Web API base URL (`.../api/`)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                path = urllib.parse.urlparse(self.path).path
                if path.startswith("/response/"):
                    with fake._lock:
                        fake.responses.append(json.loads(raw))
                    return self._answer({"ok": True})
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    fake.refused_auth += 1
                    return self._answer({"ok": False, "error": "invalid_auth"})
                if "json" in (self.headers.get("content-type") or ""):
                    body = json.loads(raw)
                else:
                    body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
                    if isinstance(body.get("blocks"), str):
                        body["blocks"] = json.loads(body["blocks"])
                method = path.rsplit("/", 1)[-1]
                handler = {"chat.postMessage": fake._post, "chat.update": fake._update}.get(method)
                self._answer(handler(body) if handler else {"ok": False, "error": "unknown_method"})

            def _answer(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield f"{self.url}/api/"
        finally:
            server.shutdown()
            server.server_close()

    def press(self, message: Message, action_id: str, user_id: str) -> dict[str, Any]:
        """The interaction payload Slack sends when `user_id` presses a button of `message`."""
        button = next(b for b in message.buttons() if b["action_id"] == action_id)
        return {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_id.lower(), "team_id": "T0TEST"},
            "team": {"id": "T0TEST", "domain": "acme"},
            "channel": {"id": message.channel},
            "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel},
            "message": {"ts": message.ts, "text": message.current.get("text", "")},
            "response_url": f"{self.url}/response/{message.ts}",
            "trigger_id": f"{message.ts}.trigger",
            "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": button["value"], "action_ts": f"{time.time():.6f}"}],
        }


def signed_request(payload: dict[str, Any], secret: str = SIGNING_SECRET, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The form body and headers of an interaction request, signed as Slack signs them (v0, HMAC-SHA256)."""
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}
    return body, headers
