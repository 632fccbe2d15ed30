"""A scripted model: an OpenAI-compatible HTTP server that answers from a script.

Test support shipped with the project, so tests and the offline demo run the
real `openai` client over real HTTP. Not workflow-safe.

A script is a `Responder`: a function from the request body (the parsed JSON
of `POST /v1/chat/completions`) to a `Reply`. `Turns` is the usual responder:
a list of replies per conversation, where the conversation is identified by its
first user message and the turn by how many assistant messages it already has,
so a retried request gets the same answer and concurrent runs don't interfere.

Replies can be tool calls, text, HTTP errors (with `Retry-After`, served for
the first N attempts of a turn), slow answers and raw bodies (malformed answers).

    model = ScriptedModel(Turns([Reply.tool("lookup_requester", {"email": "a@b.co"}),
                                 Reply.error(429, retry_after=0.1), Reply.text('{"ok": true}')]))
    with model.serve() as base_url: ...
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator


@dataclass
class Reply:
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    status: int = 200
    retry_after: float | None = None
    error_times: int = 1
    """For errors: how many attempts of this turn get the error before the next entry answers."""
    delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    body: dict[str, Any] | None = None
    """An answer served as is, with status 200 (an endpoint's malformed answer: no choices, ...)."""

    @staticmethod
    def text(content: str | dict | list, **kw) -> "Reply":
        if not isinstance(content, str):
            content = json.dumps(content)
        return Reply(content=content, **kw)

    @staticmethod
    def tool(name: str, arguments: dict[str, Any] | str, **kw) -> "Reply":
        return Reply(tool_calls=[(name, arguments)], **kw)

    @staticmethod
    def tools(*calls: tuple[str, dict[str, Any] | str], **kw) -> "Reply":
        return Reply(tool_calls=list(calls), **kw)

    @staticmethod
    def tool_as_text(name: str, arguments: dict[str, Any], **kw) -> "Reply":
        """The way small open models answer: the call as a JSON block in the message text."""
        block = json.dumps({"name": name, "arguments": arguments})
        return Reply(content=f"I will look that up.\n```json\n{block}\n```", **kw)

    @staticmethod
    def raw(body: dict[str, Any], **kw) -> "Reply":
        return Reply(body=body, **kw)

    @staticmethod
    def error(status: int, message: str = "scripted error", retry_after: float | None = None, times: int = 1) -> "Reply":
        return Reply(content=message, status=status, retry_after=retry_after, error_times=times)


Responder = Callable[[dict[str, Any]], Reply]


def conversation_key(body: dict[str, Any]) -> str:
    first_user = next((m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user"), "")
    return hashlib.sha256(str(first_user).encode()).hexdigest()[:16]


def turn_index(body: dict[str, Any]) -> int:
    return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")


class Turns:
    """Replies by turn, for every conversation alike (or per conversation via `by_first_user`)."""

    def __init__(self, replies: list[Reply], by_first_user: dict[str, list[Reply]] | None = None) -> None:
        self.replies = replies
        self.by_first_user = by_first_user or {}
        self._attempts: dict[tuple[str, int], int] = defaultdict(int)
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        first_user = next((m.get("content") or "" for m in body["messages"] if m.get("role") == "user"), "")
        script = self.by_first_user.get(first_user, self.replies)
        key = (conversation_key(body), turn_index(body))
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
        # Walk the turn's entries: leading errors are served for their first `error_times` attempts.
        turn = turn_index(body)
        entries = _turn_entries(script, turn)
        for entry in entries:
            if entry.status != 200:
                if attempt < entry.error_times:
                    return entry
                attempt -= entry.error_times
                continue
            return entry
        return Reply.text('{"error": "script has no reply for this turn"}')


def _turn_entries(script: list[Reply], turn: int) -> list[Reply]:
    """Group a flat script into turns: errors attach to the answer that follows them."""
    turns: list[list[Reply]] = [[]]
    for r in script:
        turns[-1].append(r)
        if r.status == 200:
            turns.append([])
    return turns[turn] if turn < len(turns) else turns[-1]


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]
    status: int


class _Server(ThreadingHTTPServer):
    # A real endpoint accepts a burst of connections (a worker opens one per call in flight);
    # socketserver's default backlog of 5 resets the rest.
    request_queue_size = 256


class ScriptedModel:
    """The server. `serve()` runs it on 127.0.0.1 on a free port and yields the base URL."""

    def __init__(self, responder: Responder, model_name: str = "scripted") -> None:
        self.responder = responder
        self.model_name = model_name
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._counter = 0

    def handle(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        try:
            reply = self.responder(body)
        except Exception as e:  # a broken script answers 500 rather than hanging the client
            reply = Reply.error(500, f"script raised {type(e).__name__}: {e}")
        with self._lock:
            self.requests.append(Recorded(body, headers, reply.status))
            self._counter += 1
            n = self._counter
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            extra = {"retry-after": f"{reply.retry_after:g}"} if reply.retry_after is not None else {}
            return reply.status, extra, {"error": {"message": reply.content, "type": "scripted", "code": reply.status}}
        if reply.body is not None:
            return 200, {}, reply.body
        prompt_tokens = reply.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = sum(len(str(m.get("content") or "")) for m in body.get("messages", [])) // 4 + 1
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{n}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
                }
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
        completion_tokens = reply.completion_tokens
        if completion_tokens is None:
            completion_tokens = len(json.dumps(message)) // 4 + 1
        return 200, {}, {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model") or self.model_name,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        server = self.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/v1"
        finally:
            server.shutdown()
            server.server_close()

    def start(self) -> ThreadingHTTPServer:
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # otherwise each answer waits ~40 ms for a delayed ACK

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout, killed worker): nothing to answer

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {}, {"object": "list", "data": [{"id": model.model_name, "object": "model"}]})
                elif self.path.rstrip("/").endswith("/health"):
                    self._send(200, {}, {"status": "ok"})
                else:
                    self._send(404, {}, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {}, {"error": {"message": "not found"}})
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(400, {}, {"error": {"message": "body is not JSON"}})
                    return
                self._send(*model.handle(body, {k.lower(): v for k, v in self.headers.items()}))

        server = _Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="scripted-model", daemon=True).start()
        return server
