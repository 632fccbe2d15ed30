"""`aifactory slack serve`: the endpoint Slack posts Approve and Reject button presses to.

Not workflow-safe.

    aifactory slack serve [--host 127.0.0.1] [--port 3100]

It needs AIFACTORY_SLACK_SIGNING_SECRET (the Slack app's signing secret, from "Basic
Information"), the factory's TEMPORAL_ADDRESS, AIFACTORY_DB_URL (replays are
remembered there) and codec key ring, and a signing key for its service id
(`aifactory keys init --as aifactory-slack` on its host, entered in the directory
with `acts_for`). AIFACTORY_SLACK_SIGNER names another service id. Set the Slack
app's Interactivity "Request URL" to `https://<public host>/slack/interactions`,
with TLS terminated in front of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from workers.settings import Settings
from aifactory.errors import FactoryError


class SlackCliError(FactoryError):
    """A clear one-line refusal (exit 2)."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("slack", help="serve the endpoint that takes approvals from Slack buttons")
    actions = s.add_subparsers(dest="slack_action", required=True)
    serve = actions.add_parser("serve", help="serve POST /slack/interactions (an ASGI app)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; put TLS termination in front)")
    serve.add_argument("--port", type=int, default=3100)


def cmd_slack(args: argparse.Namespace, settings: Settings):
    return _serve(args, settings)


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from aifactory.client import FactoryClient
    from aifactory.gateway.app import GatewayServer
    from aifactory.gateway.cli import listen
    from aifactory.keys_cli import directory_overlay
    from aifactory.signing import Signer, signing_folders
    from aifactory.slack.app import SlackEndpoint, create_app
    from policies.loader import load_directory, policies_dir

    secret = os.environ.get("AIFACTORY_SLACK_SIGNING_SECRET")
    if not secret:
        raise SlackCliError("set AIFACTORY_SLACK_SIGNING_SECRET to the Slack app's signing secret (Basic Information > App Credentials)")
    factory = await FactoryClient.connect(settings)
    service = os.environ.get("AIFACTORY_SLACK_SIGNER") or "aifactory-slack"
    factory.signer = Signer.from_folders(*signing_folders(settings), service=service)
    if service not in factory.signer.keys:
        print(f"note: no signing key for {service!r} here (`aifactory keys init --as {service}`): decisions from Slack "
              "will be refused unless the directory says require_signatures: false", flush=True)  # fmt: skip
    overlay = directory_overlay(settings.home) if settings.embedded else None
    endpoint = SlackEndpoint(factory, lambda: load_directory(policies_dir() / "directory.yaml", overlay), secret, settings.db_url,
                             os.environ.get("AIFACTORY_SLACK_RESPONSE_URL_PREFIX") or "https://hooks.slack.com/")  # fmt: skip
    sock = listen(args.host, args.port)  # a port in use is a GatewayCliError: one sentence, exit 2, as any FactoryError
    server = GatewayServer(create_app(endpoint), log_level="info")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    print(f"Slack interactions on http://{args.host}:{args.port}/slack/interactions · Temporal at {settings.address} · signing as {service}", flush=True)
    await server.serve(sockets=[sock])
    return 0
