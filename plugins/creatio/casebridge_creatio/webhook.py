"""Reading the calls Creatio's business processes make to ``POST /webhooks/creatio/<token>``.

Pure logic, no I/O: authenticating a call, parsing its thin JSON body, deciding whether an
activity read back from Creatio is a rep's reply, and turning its body into plain text.
Creatio cannot sign these calls, so a call is authentic when the path token (and, if one is
configured, a secret header) match; both are compared in constant time and never echoed.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from casebridge.plugin import (
    JsonInputError,
    Reply,
    Secret,
    WebhookRefused,
    read_json,
    sanitize_html,
)

from .odata import is_guid
from .settings import (
    ACTIVITY_TYPE_EMAIL,
    ACTIVITY_TYPE_TASK,
    MESSAGE_TYPE_INCOMING,
    MESSAGE_TYPE_OUTGOING,
)

NEW_ACTIVITY = "new_activity"
CASE_CLOSED = "case_closed"
# The sandbox's optional third process: any status change, closing or not.
CASE_STATUS_CHANGED = "case_status_changed"
EVENT_TYPES = (NEW_ACTIVITY, CASE_CLOSED, CASE_STATUS_CHANGED)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One business-process call: ``kind`` is one of :data:`EVENT_TYPES`; ``activity_id``
    is set for ``new_activity``, ``status_id`` (possibly empty) for the case events."""

    kind: str
    case_id: str
    activity_id: str = ""
    status_id: str = ""


def _same(given: str, expected: Secret) -> bool:
    return hmac.compare_digest(given.encode(), expected.reveal().encode())


def authenticate(
    path_token: str,
    headers: Mapping[str, str],
    *,
    token: Secret | None,
    secret: Secret | None,
    secret_header: str,
) -> None:
    """Raise ``WebhookRefused`` (403) unless the path token is ``token`` and, when ``secret``
    is set, the header ``secret_header`` carries it. ``headers`` has lower-cased names.
    With no token configured every call is refused."""
    if token is None:
        raise WebhookRefused(
            "no webhook_token is configured in [plugins.creatio]; the webhook is closed"
        )
    if not _same(path_token, token):
        raise WebhookRefused("wrong webhook token in the URL")
    if secret is not None:
        given = headers.get(secret_header.lower())
        if given is None:
            raise WebhookRefused(f"the {secret_header} header is missing")
        if not _same(given, secret):
            raise WebhookRefused(f"wrong value in the {secret_header} header")


def parse_event(body: bytes) -> WebhookEvent:
    """The event a call's body describes, or ``WebhookRefused`` (400) saying what is wrong.

    Accepted bodies: ``{"event_type": "new_activity", "caseId": <guid>, "activityId":
    <guid>}`` and ``{"event_type": "case_closed", "caseId": <guid>, "statusId": <guid>?}``
    (``case_status_changed`` is read like ``case_closed``). Other keys are ignored.
    """
    try:
        data = read_json(body)
    except JsonInputError as exc:
        raise WebhookRefused(
            f'{exc}; expected {{"event_type": ..., "caseId": ..., ...}}', status=400
        ) from None
    if not isinstance(data, dict):
        raise WebhookRefused(
            f"the body must be a JSON object, got {type(data).__name__}", status=400
        )
    kind = data.get("event_type")
    if kind not in EVENT_TYPES:
        raise WebhookRefused(
            f"event_type must be one of {', '.join(EVENT_TYPES)}, got {_shown(kind)}",
            status=400,
        )
    case_id = _guid(data, "caseId")
    if kind == NEW_ACTIVITY:
        return WebhookEvent(kind, case_id, activity_id=_guid(data, "activityId"))
    status = data.get("statusId")
    status_id = _guid(data, "statusId") if status not in (None, "") else ""
    return WebhookEvent(kind, case_id, status_id=status_id)


def _guid(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not is_guid(value.strip().strip("{}")):
        raise WebhookRefused(f"{key} must be a GUID, got {_shown(value)}", status=400)
    return value.strip().strip("{}").lower()


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."


# -- is it a rep's reply? ----------------------------------------------------------------------


def ignore_reason(activity: Mapping[str, Any], reply_type_ids: frozenset[str]) -> str:
    """Why an activity (as ``CreatioOperations.read_activity`` returns it) is not a rep's
    reply to send to the customer, or "" when it is.

    A reply is an activity of a reply type (Email, Task, the SMS activity type) on a case,
    not written by the bridge, whose direction is Outgoing; a Task may have no direction
    (Creatio's task page has none), an Email must say Outgoing.
    """
    if activity.get("written_by_bridge"):
        return "written by casebridge"
    if not activity.get("case_id"):
        return "not linked to a case"
    type_id = str(activity.get("type_id") or "").lower()
    if type_id not in reply_type_ids:
        return f"activity type {type_id or '(none)'} is not a reply type"
    direction = str(activity.get("message_type_id") or "").lower()
    if direction == MESSAGE_TYPE_INCOMING:
        return "an incoming message, not a rep's reply"
    if direction != MESSAGE_TYPE_OUTGOING and (direction or type_id == ACTIVITY_TYPE_EMAIL):
        return "not an outgoing message"
    return ""


def reply_type_ids(sms_activity_type_id: str) -> frozenset[str]:
    """The activity types that can carry a rep's reply."""
    return frozenset({ACTIVITY_TYPE_EMAIL, ACTIVITY_TYPE_TASK, sms_activity_type_id.lower()})


def reply_from_activity(activity: Mapping[str, Any], crm: str) -> Reply | None:
    """The reply an activity carries for the CRM plugin named ``crm``, or None when its
    body has no text."""
    body = str(activity.get("body") or "")
    if activity.get("is_html"):
        text, html = html_to_text(body), sanitize_html(body)
    else:
        text, html = _tidy(body), ""
    if not text:
        return None
    return Reply(
        crm=crm,
        activity_id=str(activity["id"]).lower(),
        case_id=str(activity["case_id"]).lower(),
        text=text,
        html=html,
        author_name=str(activity.get("author_name") or ""),
    )


# -- HTML to text ------------------------------------------------------------------------------

_BREAK_BEFORE = frozenset({"br", "li", "tr", "dt", "dd"})
_PARAGRAPH = frozenset(
    {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "ul", "ol", "table",
     "section", "article", "header", "footer", "hr"}
)
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_BLANKS = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\f\v\r\u00a0]+")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _PARAGRAPH:
            self.parts.append("\n\n")
            self.pre += tag == "pre"
        elif tag in _BREAK_BEFORE:
            self.parts.append("\n- " if tag == "li" else "\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BREAK_BEFORE or tag == "hr":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _PARAGRAPH:
            self.parts.append("\n\n")
            if tag == "pre":
                self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        # Outside <pre>, a line break in the source is just a space, as a browser shows it.
        self.parts.append(data if self.pre else data.replace("\n", " "))


def html_to_text(html: str) -> str:
    """The text a reader sees in an HTML body: paragraphs apart by a blank line, ``<br>`` a
    line break, list items as ``- item``; scripts and styles dropped, entities decoded."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    return _tidy("".join(collector.parts))


def _tidy(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()
