"""`aifactory gateway`: serve the HTTP gateway, and manage its API keys.

Not workflow-safe.

    aifactory gateway [--host 127.0.0.1] [--port 8080]     serve it against this environment's factory
    aifactory gateway keys create --name NAME --tenant T [--tenant T2 ...] --agent A [--agent A2 ...] [--person P] [--json]
    aifactory gateway keys list [--json]                   every key issued, revoked ones too (never a secret)
    aifactory gateway keys revoke KEYID                    the key stops working on its next request

`keys create` prints the token alone on stdout (`TOKEN=$(aifactory gateway keys
create ...)`), once: the store keeps only its SHA-256. `'*'` as a tenant or agent
covers all of them. `--person` is the approver-directory person decisions made
with the key are attributed to; without it the key cannot decide, and its runs
are requested by the key (or by the `requester` a start names).

The gateway is a client of the factory, like the CLI: it needs TEMPORAL_ADDRESS,
AIFACTORY_DB_URL (its keys are there too) and the workers' codec key ring, and
optionally AIFACTORY_GATEWAY_JWKS_URL with its issuer and audience (`oidc`).
FastAPI and uvicorn are imported only when it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import json
import signal
import socket
import sys

from activities.api_keys import ApiKeyError, ApiKeyInfo, ApiKeyStore
from workers.settings import Settings
from aifactory.errors import FactoryError


class GatewayCliError(FactoryError):
    """A clear one-line refusal (exit 2)."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gateway", help="serve the HTTP gateway for business systems; manage its API keys")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; put TLS termination in front)")
    g.add_argument("--port", type=int, default=8080)
    actions = g.add_subparsers(dest="gateway_action")
    keys = actions.add_parser("keys", help="create, list or revoke the gateway's API keys")
    key_actions = keys.add_subparsers(dest="keys_action", required=True)
    c = key_actions.add_parser("create", help="a new key; its token is printed once")
    c.add_argument("--name", required=True, help="who or what uses it (the ERP, a team)")
    c.add_argument("--tenant", action="append", required=True, help="a tenant it covers (repeatable; '*' for all)")
    c.add_argument("--agent", action="append", required=True, help="an agent it covers (repeatable; '*' for all)")
    c.add_argument("--person", help="approver-directory person id its decisions are made as (none: it cannot decide)")
    c.add_argument("--json", action="store_true")
    ls = key_actions.add_parser("list", help="every key issued, without secrets")
    ls.add_argument("--json", action="store_true")
    r = key_actions.add_parser("revoke", help="revoke a key")
    r.add_argument("key_id")


def cmd_gateway(args: argparse.Namespace, settings: Settings):
    if args.gateway_action == "keys":
        try:
            return _keys(args, ApiKeyStore(settings.db_url))
        except ApiKeyError as e:
            raise GatewayCliError(str(e)) from None
    return _serve(args, settings)


def _described(info: ApiKeyInfo) -> dict:
    return {
        "key_id": info.key_id, "name": info.name, "tenants": list(info.tenants), "agents": list(info.agents), "person": info.person,
        "created_at": info.created_at.isoformat(), "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }  # fmt: skip


def _keys(args: argparse.Namespace, store: ApiKeyStore) -> int:
    if args.keys_action == "create":
        info, token = store.create(args.name, tenants=args.tenant, agents=args.agent, person=args.person)
        if args.json:
            print(json.dumps({**_described(info), "token": token}, indent=2))
            return 0
        print(token)
        print(
            f"API key {info.key_id} ({info.name}): tenants {', '.join(info.tenants)}; agents {', '.join(info.agents)}; "
            + (f"decides as {info.person}" if info.person else "cannot decide (no --person)")
            + ". The token above is shown this once: the store keeps only its hash.",
            file=sys.stderr,
        )
        return 0
    if args.keys_action == "list":
        rows = [_described(k) for k in store.list()]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print("no API keys: create one with `aifactory gateway keys create`")
            return 0
        print(f"{'KEY ID':<13} {'NAME':<20} {'TENANTS':<20} {'AGENTS':<20} {'PERSON':<16} {'CREATED (UTC)':<17} REVOKED")
        for k in rows:
            print(
                f"{k['key_id']:<13} {k['name'][:20]:<20} {','.join(k['tenants'])[:20]:<20} {','.join(k['agents'])[:20]:<20} "
                f"{(k['person'] or '-')[:16]:<16} {k['created_at'][:16].replace('T', ' '):<17} {(k['revoked_at'] or '-')[:16].replace('T', ' ')}"
            )
        return 0
    info = store.revoke(args.key_id)
    print(f"revoked API key {info.key_id} ({info.name}) at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a port in use is one sentence rather than the server's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise GatewayCliError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from aifactory.client import FactoryClient
    from aifactory.signing import Signer, signing_folders
    from aifactory.gateway.app import GatewayServer, create_app
    from aifactory.gateway.oidc import GatewayConfigError, JwtConfig, JwtVerifier

    try:
        oidc = JwtConfig.from_env()
    except GatewayConfigError as e:
        raise GatewayCliError(str(e)) from None
    factory = await FactoryClient.connect(settings)
    # Decisions made here are signed with the gateway's own key, for the authenticated caller's person;
    # the directory names whom the service may act for (`acts_for`).
    service = os.environ.get("AIFACTORY_GATEWAY_SIGNER") or "aifactory-gateway"
    factory.signer = Signer.from_folders(*signing_folders(settings), service=service)
    if service not in factory.signer.keys:
        print(f"note: no signing key for {service!r} here (`aifactory keys init --as {service}`): decisions sent through "
              "the gateway will be refused unless the directory says require_signatures: false", flush=True)  # fmt: skip
    app = create_app(factory, ApiKeyStore(settings.db_url), JwtVerifier(oidc) if oidc else None)
    sock = listen(args.host, args.port)
    server = GatewayServer(app, log_level="info")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    print(
        f"gateway on http://{args.host}:{args.port} (OpenAPI at /openapi.json) · Temporal at {settings.address} · "
        f"API keys" + (f" and OIDC tokens from {oidc.issuer}" if oidc else ""),
        flush=True,
    )
    await server.serve(sockets=[sock])
    return 0

