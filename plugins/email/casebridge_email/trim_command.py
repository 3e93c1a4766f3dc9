"""``casebridge email trim PATH``: print the new content of a reply, for trying the trimmer on
real mail. I/O lives here; the trimming itself is in :mod:`casebridge_email.trim`."""

from __future__ import annotations

import argparse
import email
import email.policy
import sys
from email.message import EmailMessage
from pathlib import Path

from casebridge.plugin import Command

from casebridge_email.trim import html_to_text, visible_text


def trim_commands() -> list[Command]:
    """The email plugin's ``("email", "trim")`` subcommand."""
    return [
        Command(
            path=("email", "trim"),
            help="print the new content of a reply (.eml, or plain text with --text)",
            configure=_configure,
            run=_run,
        )
    ]


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a .eml file, or a text file with --text")
    parser.add_argument(
        "--text", action="store_true", help="PATH is a plain-text body, not an RFC 822 message"
    )
    parser.add_argument(
        "--keep-signature",
        action="store_true",
        help="keep '-- ' signatures and mobile footers too (the sender's sign-off always stays)",
    )


def _run(args: argparse.Namespace) -> int:
    path: Path = args.path
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"casebridge email trim: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.text:
        body = data.decode("utf-8", errors="replace")
    else:
        found = _best_text(data)
        if found is None:
            print(f"casebridge email trim: {path} has no text or HTML body part", file=sys.stderr)
            return 1
        body = found
    print(visible_text(body, keep_signature=args.keep_signature))
    return 0


def _best_text(data: bytes) -> str | None:
    """The text of a message's best body part: text/plain, else text/html rendered as text."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, EmailMessage):
        return None
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):
        # An unknown or lying charset: decode the raw payload leniently instead.
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return None
    return html_to_text(content) if part.get_content_subtype() == "html" else content
