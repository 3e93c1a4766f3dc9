"""``casebridge sandbox creatio``: run the Creatio sandbox server from the command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from casebridge.plugin import Command, Secret

from .sandbox.settings import SandboxSettings


def sandbox_commands() -> list[Command]:
    """The CLI subcommands this plugin adds."""
    return [Command(
        path=("sandbox", "creatio"),
        help="Run a local Creatio sandbox (OData 4, AuthService, OAuth, business processes).",
        configure=configure_parser,
        run=run,
    )]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--db", type=Path, default=None,
                        help="SQLite file that keeps data across restarts (default: memory)")
    parser.add_argument("--webhook", default=None,
                        help="URL the business processes post new_activity/case_closed to")
    parser.add_argument("--webhook-secret", default=None,
                        help="shared secret sent in the webhook header (visible in ps: prefer "
                             "--webhook-secret-env)")
    parser.add_argument("--webhook-secret-env", default=None, metavar="NAME",
                        help="environment variable holding the webhook secret")
    parser.add_argument("--webhook-header", default="X-Casebridge-Secret",
                        help="header that carries the webhook secret")
    parser.add_argument("--path-prefix", default="/0", choices=["/0", ""],
                        help="'/0' for classic hosts (/0/odata), '' for .NET 8 hosts (/odata)")


def settings_from_args(args: argparse.Namespace) -> SandboxSettings:
    """Sandbox settings from parsed arguments; ValueError names a bad one."""
    secret: Secret | None = None
    if args.webhook_secret_env:
        if args.webhook_secret_env not in os.environ:
            raise ValueError(f"environment variable {args.webhook_secret_env} is not set")
        secret = Secret(os.environ[args.webhook_secret_env], f"env {args.webhook_secret_env}")
    elif args.webhook_secret:
        secret = Secret(args.webhook_secret, "command line")
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        raise ValueError(f"--webhook must be an http(s) URL, got {args.webhook!r}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    return SandboxSettings(database=args.db, webhook_url=args.webhook, webhook_secret=secret,
                           webhook_header=args.webhook_header, path_prefix=args.path_prefix)


async def run(args: argparse.Namespace) -> int:
    import uvicorn

    from .sandbox import create_sandbox_app

    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"casebridge sandbox creatio: {exc}")
        return 2
    app = create_sandbox_app(settings)
    base = f"http://{args.host}:{args.port}"
    print(f"Creatio sandbox at {base}  (OData {base}{settings.odata_root}, "
          f"cases {base}/sandbox/cases)")
    print(f"Log in as Supervisor / Supervisor, or OAuth client {settings.oauth_client_id} / "
          f"sandbox-secret at {base}{settings.token_path}")
    if settings.webhook_url:
        print(f"Business processes post to {settings.webhook_url}")
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="info", lifespan="on"))
    await server.serve()
    return 0
