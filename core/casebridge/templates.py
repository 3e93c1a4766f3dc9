"""The texts the bridge writes: case subject and description, activity bodies,
acknowledgements and the session page, rendered from Jinja templates; and the one loader
chain every template, the plugins' included, is found through.

Templates are looked up by relative path in one chain: the folder the TOML names
(``[templates] dir``), then each plugin's own folder (a plugin adds it with
:meth:`PluginContext.add_templates <casebridge.context.PluginContext.add_templates>`: the email
plugin's ``email/reply.txt.j2``...), then the core's (``casebridge/templates/``). So the
TOML's folder overrides any template by its path (``activity/default.html.j2``,
``email/reply.html.j2``) and may add more specific ones (``activity/customer.sms.txt.j2``).
Everything runs in Jinja's immutable sandbox with strict undefined variables. ``.html.j2``
templates autoescape; ``.txt.j2`` ones do not. Customer text is only ever passed in as data,
never compiled, so ``{{ 7*7 }}`` in a message stays literal.

Filters available to templates: ``nl2br`` (escape, then line breaks as ``<br>``), ``when``
(a datetime as ``YYYY-MM-DD HH:MM UTC``), ``safe_url`` (http/https URLs only, else ``#``),
``sanitize`` (HTML through the one allow-list, :mod:`casebridge.sanitize`) and Jinja's
``filesizeformat``.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup, escape

from .deliveries import DeliveryRecord
from .errors import ConfigError, PermanentError
from .model import Author, HandoffDecision, Message, Session, Summary
from .sanitize import sanitize_html

__all__ = ["TemplateError", "TemplateSecurityError", "Templates"]

# Seconds between two checks of a rendered template's file for edits (see Templates._load).
RELOAD_CHECK = 1.0
SUBJECT_MAX = 200
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_AUTHOR_LABELS = {
    Author.ASSISTANT: "Assistant",
    Author.AGENT: "Agent",
    Author.SYSTEM: "casebridge",
}
_CHANNEL_LABELS = {"email": "email", "sms": "SMS"}


class TemplateError(PermanentError):
    """A template is missing, does not compile or fails to render; the message names it.

    Permanent: retrying the job renders the same template the same way. Fix the template and
    replay the dead-lettered job.
    """


class TemplateSecurityError(TemplateError):
    """A template tried to reach outside the sandbox (``__class__``, mutating a list...)."""


def _nl2br(text: object) -> Markup:
    lines = _LINE_BREAK.split(str(text))
    return Markup("<br>\n").join(escape(line) for line in lines)


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _safe_url(value: object) -> str:
    url = str(value or "").strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return "#"
    return url if scheme in {"http", "https"} else "#"


def _sanitize(html: object) -> Markup:
    # The one policy for HTML from outside, customers' and reps' alike.
    return Markup(sanitize_html(str(html)))  # noqa: S704 - the point of this filter


def _one_line(text: str, limit: int) -> str:
    # Control and separator characters (CR, LF, U+2028, NUL...) become spaces, runs collapse.
    cleaned = "".join(" " if unicodedata.category(c) in {"Cc", "Zl", "Zp"} else c for c in text)
    line = " ".join(cleaned.split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


def _attachment_rows(message: Message) -> list[dict[str, Any]]:
    return [
        {
            "name": a.name or "(unnamed)",
            "content_type": a.content_type or "application/octet-stream",
            "size": a.size,
            "inline": a.inline,
            "refused": a.refused,
        }
        for a in message.attachments
    ]


def _author_label(message: Message, session: Session) -> str:
    if message.author is Author.CUSTOMER:
        name = message.sender_name or session.contact.name
        if name and message.sender and name != message.sender:
            return f"{name} <{message.sender}>"
        return name or message.sender or "Customer"
    if message.author is Author.AGENT and message.sender_name:
        return f"{message.sender_name} (agent)"
    return _AUTHOR_LABELS.get(message.author, str(message.author))


def _opening(transcript: Sequence[Message]) -> str:
    for message in transcript:
        if message.author is Author.CUSTOMER:
            for line in message.text.splitlines():
                if line.strip():
                    return line.strip()
    return ""


class Templates:
    """The bridge's template set, searched in one chain: ``override_dir`` (the TOML's
    ``[templates] dir``), then the plugins' folders (:meth:`add_folder`), then the core's
    packaged templates.

    Raises :class:`~casebridge.errors.ConfigError` when ``override_dir`` is given but is not a
    folder. Every render method raises :class:`TemplateError` (or
    :class:`TemplateSecurityError`) naming the template when rendering fails.
    """

    def __init__(self, override_dir: Path | None = None, *, subject_max: int = SUBJECT_MAX):
        if override_dir is not None and not Path(override_dir).is_dir():
            raise ConfigError(f"templates.dir: {override_dir} is not a folder")
        self.override_dir = override_dir
        self.plugin_dirs: list[Path] = []
        self.subject_max = subject_max
        self.env = ImmutableSandboxedEnvironment(
            loader=self._chain(),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2", "html"),
                disabled_extensions=("txt.j2", "txt"),
                default_for_string=False,
                default=False,
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(nl2br=_nl2br, when=_when, safe_url=_safe_url, sanitize=_sanitize)
        # Which name of a fallback chain exists, remembered: jinja caches the templates it
        # finds but looks again (a file check per loader) for every name it does not, on
        # every render. Edits to a found template are still seen (jinja's auto-reload).
        self._chosen: dict[tuple[str, ...], str] = {}
        # Each found template with when it was last checked against its file: jinja checks
        # the file's mtime on every get_template (a stat per render, a sixth of a render of
        # an activity's two bodies); here at most once every RELOAD_CHECK seconds.
        self._loaded: dict[str, tuple[jinja2.Template, float]] = {}

    def _chain(self) -> jinja2.ChoiceLoader:
        # The one lookup order: the operator's folder, the plugins' folders, the core's.
        folders = [self.override_dir] if self.override_dir is not None else []
        loaders: list[jinja2.BaseLoader] = [
            jinja2.FileSystemLoader(str(folder)) for folder in [*folders, *self.plugin_dirs]
        ]
        loaders.append(jinja2.PackageLoader("casebridge", "templates"))
        return jinja2.ChoiceLoader(loaders)

    def add_folder(self, folder: Path) -> None:
        """Search ``folder`` (a plugin's templates) after the override folder and before the
        core's packaged templates; folders added earlier are searched first. Adding one
        folder twice (two instances of one plugin) changes nothing. Raises
        :class:`~casebridge.errors.ConfigError` when ``folder`` is not a folder."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"plugin template folder {folder} is not a folder")
        if folder in self.plugin_dirs:
            return
        self.plugin_dirs.append(folder)
        # A new loader also starts a fresh template cache (Jinja keys it by loader).
        self.env.loader = self._chain()
        self._chosen.clear()
        self._loaded.clear()

    def _where(self) -> str:
        places = [str(p) for p in (self.override_dir, *self.plugin_dirs) if p is not None]
        return ", ".join([*places, "the packaged templates"])

    def _load(self, names: Sequence[str]) -> jinja2.Template:
        chain = tuple(names)
        chosen = self._chosen.get(chain)
        if chosen is not None:
            now = time.monotonic()
            loaded = self._loaded.get(chosen)
            if loaded is not None and now - loaded[1] < RELOAD_CHECK:
                return loaded[0]
            template = self.env.get_template(chosen)
            self._loaded[chosen] = (template, now)
            return template
        template = self._select(chain)
        if template.name is not None:
            self._chosen[chain] = template.name
        return template

    def _select(self, names: Sequence[str]) -> jinja2.Template:
        try:
            return self.env.select_template(list(names))
        except jinja2.TemplatesNotFound:
            raise TemplateError(
                f"no template {' or '.join(names)} in {self._where()}"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {exc.name or names[0]} line {exc.lineno}: {exc.message}"
            ) from None

    def _render(self, names: Sequence[str], context: dict[str, Any]) -> str:
        template = self._load(names)
        name = template.name or names[0]
        try:
            return template.render(context)
        except SecurityError as exc:
            raise TemplateSecurityError(
                f"template {name} tried an unsafe operation: {exc}"
            ) from None
        except jinja2.TemplateSyntaxError as exc:  # an {% include %} that does not compile
            raise TemplateError(
                f"template {exc.name or name} line {exc.lineno}: {exc.message}"
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {name} includes missing {exc.name}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {name}: {exc.message}") from None
        except (TypeError, ValueError, OverflowError, ArithmeticError, LookupError) as exc:
            raise TemplateError(f"template {name} failed: {type(exc).__name__}: {exc}") from None

    def render(self, name: str, /, **context: Any) -> str:
        """Render the template at ``name`` (e.g. ``"dashboard/index.html.j2"``), found through
        the chain, with ``context``."""
        return self._render([name], context)

    def case_subject(
        self, session: Session, transcript: Sequence[Message], summary: Summary | None
    ) -> str:
        """The case subject: one line, no control characters, at most ``subject_max`` chars.

        ``case/subject.txt.j2`` picks the summary's subject, else the session's, else the
        customer's opening line, else "Conversation with <contact>".
        """
        text = self._render(
            ["case/subject.txt.j2"],
            {
                "session": session,
                "transcript": list(transcript),
                "summary": summary,
                "opening": _opening(transcript),
                "contact_name": session.contact.name or _contact_address(session),
            },
        )
        return _one_line(text, self.subject_max) or _one_line(
            f"Conversation with {_contact_address(session) or session.id}", self.subject_max
        )

    def case_description(
        self,
        summary: Summary,
        session: Session,
        decision: HandoffDecision | None,
        link: str | None,
    ) -> str:
        """The case description (plain text): the summary, why it was handed off, the contact,
        and the session link when given (``case/description.txt.j2``)."""
        return self._render(
            ["case/description.txt.j2"],
            {
                "summary": summary,
                "session": session,
                "decision": decision,
                "link": link,
                "contact": session.contact,
                "channel_label": _CHANNEL_LABELS.get(session.channel, session.channel),
            },
        )

    def activity_bodies(
        self, message: Message, session: Session, *, link: str | None, trace_id: str
    ) -> tuple[str, str]:
        """The text and HTML bodies of the activity for ``message``.

        Looks for ``activity/{author}.{channel}``, then ``activity/{author}``, then
        ``activity/default`` (each ``.txt.j2`` and ``.html.j2``). ``link`` (the signed session
        link, given for the first activity only) adds a "View session" link; ``trace_id`` goes
        in a footer so a rep's question can be traced in the logs.
        """
        context = {
            "message": message,
            "session": session,
            "link": link,
            "trace_id": trace_id,
            "author_label": _author_label(message, session),
            "channel_label": _CHANNEL_LABELS.get(message.channel, message.channel),
            "attachments": _attachment_rows(message),
        }
        author = str(message.author)
        bases = [f"activity/{author}.{message.channel}", f"activity/{author}", "activity/default"]
        text = self._render([f"{base}.txt.j2" for base in bases], context)
        html = self._render([f"{base}.html.j2" for base in bases], context)
        return text, html

    def acknowledgement(self, session: Session, message: Message) -> str:
        """The text that tells a customer their first message arrived (``[bridge]
        acknowledge``): ``acknowledge/{channel}.txt.j2``, else ``acknowledge/default.txt.j2``.
        """
        context = {
            "session": session,
            "message": message,
            "contact_name": session.contact.name,
            "channel_label": _CHANNEL_LABELS.get(session.channel, session.channel),
        }
        names = [f"acknowledge/{session.channel}.txt.j2", "acknowledge/default.txt.j2"]
        return self._render(names, context).strip()

    def session_page(
        self,
        session: Session,
        transcript: Sequence[Message],
        case_url: str | None,
        now: datetime,
        delivery: Mapping[str, DeliveryRecord] | None = None,
    ) -> str:
        """The session view (``session.html.j2``): every message with its author, time,
        attachments and notes, the original text folded under each trimmed one, each reply's
        delivery state (``delivery``, by message id), and the case link. A self-contained
        page: inline CSS, no scripts, readable on a phone."""
        entries = [
            {
                "message": m,
                "author_label": _author_label(m, session),
                "attachments": _attachment_rows(m),
                # Trailing newlines are no trimming: only a real cut offers the original.
                "show_original": bool(m.original_text.strip())
                and m.original_text.strip() != m.text.strip(),
                "delivery": (delivery or {}).get(m.id),
            }
            for m in transcript
        ]
        return self._render(
            ["session.html.j2"],
            {
                "session": session,
                "entries": entries,
                "case_url": case_url,
                "now": now,
                "contact": session.contact,
                "contact_label": session.contact.name or _contact_address(session),
                "channel_label": _CHANNEL_LABELS.get(session.channel, session.channel),
            },
        )


def _contact_address(session: Session) -> str:
    contact = session.contact
    return next(iter(contact.emails), "") or next(iter(contact.phones), "")
