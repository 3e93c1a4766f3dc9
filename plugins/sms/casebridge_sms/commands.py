"""The SMS plugin's CLI subcommands: ``casebridge sms segments`` and ``casebridge sandbox sms``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from casebridge.plugin import Command, Secret

from casebridge_sms.segments import segment

TOKEN_ENV = "CASEBRIDGE_SANDBOX_SMS_AUTH_TOKEN"  # noqa: S105 (a variable name, not a secret)


def sms_commands() -> list[Command]:
    """Every command the SMS plugin contributes."""
    return [
        Command(
            path=("sms", "segments"),
            help="show how a text is split into SMS parts (JSON)",
            configure=_configure_segments,
            run=_run_segments,
        ),
        Command(
            path=("sandbox", "sms"),
            help="serve a local Twilio-compatible SMS provider for tests and demos",
            configure=_configure_sandbox,
            run=_run_sandbox,
        ),
    ]


def _configure_segments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", metavar="TEXT", help="the message text ('-' reads stdin)")
    parser.add_argument(
        "--smart",
        action="store_true",
        help="replace look-alike characters (curly quotes, dashes...) with GSM-7 ones first",
    )


def _run_segments(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    result = segment(text, smart=args.smart)
    print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    return 0


def _configure_sandbox(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument(
        "--webhook", metavar="URL", help="bridge webhook for POST /sandbox/inbound by default"
    )
    parser.add_argument("--account-sid", help="account SID to accept (default AC000...0)")
    parser.add_argument(
        "--auth-token",
        help=f"auth token to accept and sign with (default: ${TOKEN_ENV}, else 'sandbox-token')",
    )
    parser.add_argument(
        "--messaging-service-sid", help="MessagingServiceSid to put on inbound messages"
    )
    parser.add_argument(
        "--number",
        action="append",
        default=[],
        metavar="E164",
        help="a number the account owns, accepted as From (repeatable; +15005550006 always is)",
    )
    parser.add_argument(
        "--no-opt-out",
        action="store_true",
        help="switch off Twilio's opt-out handling (STOP blocking and its keyword answers)",
    )


async def _run_sandbox(args: argparse.Namespace) -> int:
    # Imported here so the other commands do not pay for loading the web stack.
    import uvicorn

    from casebridge_sms.sandbox import SandboxState, create_sandbox_app

    state = SandboxState(
        webhook_url=args.webhook,
        messaging_service_sid=args.messaging_service_sid,
        numbers=tuple(args.number),
        opt_out_handling=not args.no_opt_out,
    )
    if args.account_sid:
        state.account_sid = args.account_sid
    token = args.auth_token or os.environ.get(TOKEN_ENV)
    if token:
        state.auth_token = Secret(token, "--auth-token" if args.auth_token else f"env {TOKEN_ENV}")
    print(
        f"SMS sandbox on http://{args.host}:{args.port}  account SID {state.account_sid}, "
        f"auth token {state.auth_token}",
        flush=True,
    )
    config = uvicorn.Config(
        create_sandbox_app(state), host=args.host, port=args.port, log_level="info"
    )
    await uvicorn.Server(config).serve()
    return 0
