"""A codec server: operators read encrypted payloads in the Temporal UI; trusted starters encode.

Not workflow-safe. It speaks the Temporal codec server protocol: `POST
/decode` (and `/encode`) with `{"payloads": [...]}` in protobuf JSON, the same
shape back. Two kinds of token: a decode token (for the UI) only decodes; an
encode token also encodes, for systems that start runs with the `temporal` CLI
(`temporal workflow start --codec-endpoint ...`). Without encode tokens
`/encode` answers 403, so a decode token can never be used to forge payloads.

Every request carries a token, either as `Authorization: Bearer <token>` (the
UI sends the user's access token when "pass access token" is on; the CLI sends
`--codec-auth`) or as the first path segment (`http://127.0.0.1:8089/<token>`,
the endpoint an operator pastes into the UI's codec server setting). CORS
answers only the listed UI origins. The key ring stays in this process.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from workers.codec import EncryptionCodec, KeyRingError

log = logging.getLogger("aifactory.codec_server")

DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
MAX_BODY = 16 * 1024 * 1024


@dataclass
class CodecServerConfig:
    codec: EncryptionCodec
    tokens: tuple[str, ...] = field(repr=False, default=())
    """Decode tokens."""
    origins: tuple[str, ...] = DEFAULT_ORIGINS
    encode_tokens: tuple[str, ...] = field(repr=False, default=())
    """Tokens that may also encode (none: this server only decodes)."""


class _Handler(BaseHTTPRequestHandler):
    config: CodecServerConfig
    server_version = "aifactory-codec"

    def log_message(self, fmt: str, *args) -> None:  # never the path: it may hold the token
        log.info("%s %s", self.command, args[1] if len(args) > 1 else "")

    # -- plumbing --------------------------------------------------------------------------

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin and origin in self.config.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization")
            self.send_header("Vary", "Origin")

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str | None, str]:
        """(token from the path or header, the action)."""
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        token = None
        if len(parts) == 2:
            token, parts = parts[0], parts[1:]
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        return token, parts[0] if parts else ""

    def _authorized(self, token: str | None, tokens: tuple[str, ...]) -> bool:
        return token is not None and any(hmac.compare_digest(token, t) for t in tokens)

    # -- verbs -----------------------------------------------------------------------------

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        token, action = self._route()
        encoder = self._authorized(token, self.config.encode_tokens)
        if not encoder and not self._authorized(token, self.config.tokens):
            return self._reply(401, {"message": "a valid codec server token is required"})
        if action == "encode" and not encoder:
            return self._reply(403, {"message": "this token only decodes" if self.config.encode_tokens else "this codec server only decodes"})
        if action not in ("decode", "encode"):
            return self._reply(404, {"message": f"unknown action {action!r}; POST /decode or /encode"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._reply(413, {"message": f"body over {MAX_BODY} bytes"})
        try:
            payloads = json_format.Parse(self.rfile.read(length) or b"{}", Payloads())
        except json_format.ParseError as e:
            return self._reply(400, {"message": f"body is not {{\"payloads\": [...]}} in protobuf JSON: {e}"})
        try:
            if action == "encode":
                done = [self.config.codec.encrypt(p) for p in payloads.payloads]
            else:
                done = [self.config.codec.decrypt(p) for p in payloads.payloads]
        except KeyRingError as e:
            return self._reply(422, {"message": str(e)})
        body = json_format.MessageToDict(Payloads(payloads=done))
        self._reply(200, {"payloads": body.get("payloads", [])})

    def do_GET(self) -> None:
        token, action = self._route()
        if action == "health":
            return self._reply(200, {"status": "ok"})
        self._reply(405, {"message": "POST /decode"})


class CodecServer:
    """The server on a thread; `port=0` picks a free port."""

    def __init__(self, config: CodecServerConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        if not config.tokens and not config.encode_tokens:
            raise ValueError("a codec server needs at least one token")
        handler = type("Handler", (_Handler,), {"config": config})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def __enter__(self) -> "CodecServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
