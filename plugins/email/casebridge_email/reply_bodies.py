"""The bodies of an outbound e-mail reply, rendered from the plugin's own templates.

``email/reply.txt.j2`` and ``email/reply.html.j2`` ship in this package's ``templates``
folder, which the plugin adds to the bridge's one template chain: a file at the same path
in the TOML's ``[templates] dir`` overrides either. They render in the core's sandbox with
its filters (``nl2br``, ``sanitize``...); the variables are built here, free of I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from casebridge.plugin import Author, Message, Session

__all__ = ["TEMPLATES", "reply_bodies", "reply_variables"]

TEMPLATES = Path(__file__).parent / "templates"
TEXT, HTML = "email/reply.txt.j2", "email/reply.html.j2"
_AUTHOR_LABELS = {Author.ASSISTANT: "Assistant", Author.AGENT: "Agent", Author.SYSTEM: "casebridge"}


def author_label(message: Message) -> str:
    """Who a reply is from, for the templates: "Sam Rep (agent)", else "Agent",
    "Assistant"..."""
    if message.author is Author.AGENT and message.sender_name:
        return f"{message.sender_name} (agent)"
    if message.author is Author.CUSTOMER:
        return message.sender_name or message.sender or "Customer"
    return _AUTHOR_LABELS.get(message.author, str(message.author))


def reply_variables(message: Message, session: Session) -> dict[str, Any]:
    """What the reply templates see: ``message``, ``session``, ``author_label`` and
    ``attachments`` (name, content type, size, inline, refused of each)."""
    return {
        "message": message,
        "session": session,
        "author_label": author_label(message),
        "attachments": [
            {
                "name": a.name or "(unnamed)",
                "content_type": a.content_type or "application/octet-stream",
                "size": a.size,
                "inline": a.inline,
                "refused": a.refused,
            }
            for a in message.attachments
        ],
    }


def reply_bodies(
    render: Callable[..., str], message: Message, session: Session
) -> tuple[str, str]:
    """The text and HTML parts of the reply, rendered with ``render`` (the context's).

    The HTML part shows ``message.html`` through the sanitizer when there is one, else the
    text with its line breaks. Raises the renderer's TemplateError (permanent) naming the
    template when one is missing or broken.
    """
    variables = reply_variables(message, session)
    return render(TEXT, **variables), render(HTML, **variables)
