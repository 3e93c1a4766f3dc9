"""Parse raw RFC 5322 bytes into a :class:`ParsedEmail`, whatever the sender got wrong.

:func:`parse_email` never raises: a broken header falls back to its raw value, an unreadable
charset to detection, damaged base64 to whatever could be decoded. Each such repair is
recorded in ``ParsedEmail.notes`` so the rep and the logs can see it. Nothing here does I/O.

The work is bounded, so that no message, however built, takes long to read: each header is
read up to :mod:`.header_limits`' bounds, and parts are walked for at most ``budget``
seconds; what was left unread is noted.

The body is the message's own text: a forwarded message (``message/rfc822``) is kept whole as
an ``.eml`` attachment and its text does not become the body. HTML is returned raw (sanitize
it before showing it) and no HTML-to-text conversion happens here.
"""

from __future__ import annotations

import binascii
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.feedparser import BytesFeedParser
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from .header_limits import bounded, cut_note, is_bounded
from .mime_headers import VALUES, header_text, unfolded
from .mime_outline import Outline, outline
from .mime_text import (
    decode_text,
    decode_words,
    first_message_id,
    fix_surrogates,
    message_ids,
    safe_filename,
)
from .part_body import PartBody

# A message nested deeper than this is not walked further (a zip-bomb of multiparts).
MAX_DEPTH = 40
# Seconds spent walking the parts of one message at most; a part is never cut midway.
PARSE_BUDGET = 5.0
# Bytes fed to the parser at a time; see _parse_bytes.
FEED_CHUNK = 64 * 1024
# A message this large is outlined (its bodies left in place, see .mime_outline) when its
# structure allows; anything else is parsed by the stdlib, with its repairs. Every size is:
# outlining finds boundaries with bytes.find where the stdlib's parser reads line by line
# and compiles a regex for each boundary (unique per message, so Python's pattern cache never
# helps): about 40% less CPU on an ordinary reply.
OUTLINE_BYTES = 0
# A plain addr-spec: one @, nothing that cannot stand unquoted in an address.
_ADDRESS = re.compile(r'[^\s<>@,;:"()\[\]\\]+@[^\s<>@,;:"()\[\]\\]+')
# A base64 body with nothing to repair: the alphabet in lines, padding only at the end.
_CLEAN_BASE64 = re.compile(r"[A-Za-z0-9+/\r\n]*={0,2}[\r\n]*")


@dataclass(frozen=True, slots=True)
class ExtractedPart:
    """One attachment or inline image. ``name`` is safe as a file name. ``body`` reads its
    decoded bytes, in pieces (:meth:`PartBody.chunks`) or whole (``data``)."""

    name: str
    content_type: str
    body: PartBody = field(repr=False)
    content_id: str = ""
    inline: bool = False

    @property
    def data(self) -> bytes:
        """The decoded bytes, whole (a new copy each time: prefer ``body.chunks()``)."""
        return self.body.read()


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    """What a message says, with every header decoded and every address lower-cased.

    Message ids (``message_id``, ``in_reply_to``, ``references``) carry no angle brackets.
    ``text`` and ``html`` are the message's own body ("" when it has none of that kind);
    ``html`` is unsanitized. The guard headers (``auto_submitted`` ... ``content_type``) are
    lower-cased, stripped values, "" when absent. ``size`` is the raw message's byte count.
    """

    from_addr: str = ""
    from_name: str = ""
    reply_to: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    date: datetime | None = None
    message_id: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    html: str = ""
    attachments: tuple[ExtractedPart, ...] = ()
    auto_submitted: str = ""
    precedence: str = ""
    x_autoreply: str = ""
    x_autorespond: str = ""
    x_failed_recipients: str = ""
    list_id: str = ""
    return_path: str = ""
    content_type: str = ""
    notes: tuple[str, ...] = ()
    size: int = 0


def parse_email(data: bytes, *, budget: float = PARSE_BUDGET,
                outline_bytes: int = OUTLINE_BYTES) -> ParsedEmail:
    """Parse one message. Never raises; repairs are listed in ``notes``. Parts not reached
    within ``budget`` seconds are skipped (and noted).

    A message of ``outline_bytes`` or more (by default any) whose structure needs no repair
    keeps its bodies in ``data``: its text is decoded once from there and its attachments'
    ``body`` reads them from there, piece by piece. ``data`` must then not change while the
    result is used.
    """
    notes: list[str] = []
    spans: dict[int, tuple[int, int]] = {}
    shape = _outline(data) if len(data) >= outline_bytes else None
    try:
        if shape is not None:
            msg, spans = shape.root, shape.spans
        else:
            msg = _parse_bytes(data)
    except (Exception, RecursionError) as exc:
        # The parser gives up only on pathological input; keep the bytes as plain text.
        notes.append(f"message could not be parsed ({type(exc).__name__}); kept as plain text")
        text, note = decode_text(data, None)
        return ParsedEmail(text=text, notes=(*notes, *_opt(note)), size=len(data))

    headers = _Headers(msg, notes)
    from_pairs = headers.addresses("From")
    from_name, from_addr = from_pairs[0] if from_pairs else ("", "")
    body = _Body(notes, deadline=time.monotonic() + budget, budget=budget, source=data,
                 spans=spans)
    body.walk(msg)
    return ParsedEmail(
        from_addr=from_addr,
        from_name=from_name,
        reply_to=tuple(addr for _, addr in headers.addresses("Reply-To")),
        to=tuple(addr for _, addr in headers.addresses("To")),
        cc=tuple(addr for _, addr in headers.addresses("Cc")),
        date=_parse_date(headers.text("Date")),
        message_id=first_message_id(headers.text("Message-ID")),
        in_reply_to=first_message_id(headers.text("In-Reply-To")),
        references=message_ids(headers.text("References")),
        subject=headers.text("Subject"),
        text=body.text(),
        html=body.html(),
        attachments=tuple(body.attachments),
        auto_submitted=headers.flag("Auto-Submitted"),
        precedence=headers.flag("Precedence"),
        x_autoreply=headers.flag("X-Autoreply"),
        x_autorespond=headers.flag("X-Autorespond"),
        x_failed_recipients=headers.flag("X-Failed-Recipients"),
        list_id=headers.flag("List-Id"),
        return_path=headers.flag("Return-Path"),
        content_type=_content_type(msg),
        notes=tuple(dict.fromkeys(notes)),
        size=len(data),
    )


def _outline(data: bytes) -> Outline | None:
    try:
        return outline(data, max_depth=MAX_DEPTH)
    except Exception:
        return None  # only a shortcut: whatever surprises it is the stdlib's to parse


def _parse_bytes(data: bytes, chunk: int = FEED_CHUNK) -> Message:
    """What ``BytesParser(policy=policy.default).parsebytes(data)`` returns, with less memory
    and plain strings for headers (:class:`.mime_headers.ValuePolicy`).

    ``parsebytes`` decodes the whole message to a str and copies it into a StringIO (four
    bytes per character) before parsing: about 8x a large message's size at its peak. Fed in
    slices instead, the parser holds one slice at a time; decoding is per byte (ASCII with
    surrogateescape), so where a slice ends changes nothing.
    """
    parser = BytesFeedParser(policy=VALUES)
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        parser.feed(bytes(view[start : start + chunk]))
    return parser.close()


def _opt(note: str | None) -> tuple[str, ...]:
    return (note,) if note else ()


def _unfold(value: str) -> str:
    return " ".join(value.split())


class _Headers:
    """Header access that cannot fail: what ``policy.default`` reads, else the raw value."""

    def __init__(self, msg: Message, notes: list[str]) -> None:
        self._notes = notes
        # The first value of each header, as Message.get finds it.
        self._values: dict[str, str] = {}
        for key, value in msg.raw_items():
            self._values.setdefault(key.lower(), str(value))

    def _raw(self, name: str) -> str | None:
        """The header's value as written, cut to the header bounds (and noted when cut)."""
        value = self._values.get(name.lower())
        if value is not None and is_bounded(value):
            self._notes.append(cut_note(name, value))
            return bounded(value)
        return value

    def text(self, name: str) -> str:
        raw = self._raw(name)
        if raw is None:
            return ""
        try:
            return _unfold(fix_surrogates(header_text(name, unfolded(raw))))
        except Exception:
            self._notes.append(f"header {name} malformed; used as written")
            return _unfold(fix_surrogates(decode_words(raw)))

    def flag(self, name: str) -> str:
        return self.text(name).lower()

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, lower-cased address) pairs; unparseable entries are left out."""
        raw = self._raw(name)
        if raw is None:
            return []
        raw = _unfold(fix_surrogates(raw))
        try:
            pairs = getaddresses([raw])
        except Exception:
            pairs = []
        result = []
        for display, addr in pairs:
            addr = addr.strip().lower()
            if not _ADDRESS.fullmatch(addr):
                # A broken header can parse into a "address" with spaces or brackets in it;
                # such a thing must not become a contact's address.
                continue
            result.append((decode_words(display).strip(), addr))
        if not result and raw.strip():
            self._notes.append(f"header {name} has no readable address")
        return result


def _parse_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"


class _Body:
    """Walks the MIME tree once, collecting body text, body HTML and attachments."""

    def __init__(self, notes: list[str], *, deadline: float, budget: float,
                 source: bytes = b"", spans: dict[int, tuple[int, int]] | None = None) -> None:
        self.notes = notes
        # An outlined message's leaves have no payload: their bodies are source[start:end].
        self._source = source
        self._spans = spans or {}
        self._deadline = deadline
        self._budget = budget
        self.attachments: list[ExtractedPart] = []
        self._texts: list[str] = []
        self._htmls: list[str] = []

    def text(self) -> str:
        return _join_nonblank(self._texts)

    def html(self) -> str:
        return _join_nonblank(self._htmls)

    def walk(self, msg: Message) -> None:
        try:
            texts, htmls = self._part(msg, 0, in_related=False)
        except RecursionError:
            self.notes.append("message nested too deeply; body incomplete")
            return
        self._texts, self._htmls = texts, htmls

    def _part(self, part: Message, depth: int, *, in_related: bool) -> tuple[list[str], list[str]]:
        if depth > MAX_DEPTH:
            self.notes.append(f"MIME parts nested deeper than {MAX_DEPTH} levels were skipped")
            return [], []
        if time.monotonic() > self._deadline:
            self.notes.append(
                f"reading the message took over {self._budget:g}s; its remaining parts were skipped"
            )
            return [], []
        ctype = _content_type(part)
        maintype = ctype.split("/", 1)[0]
        if maintype == "message" or (
            isinstance(part.get_payload(), list) and maintype != "multipart"
        ):
            self._attach_message(part, ctype)
            return [], []
        if maintype == "multipart":
            return self._multipart(part, ctype, depth)
        disposition = _disposition(part)
        filename = _filename(part)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text = self._decode_body(part)
            return ([text], []) if ctype == "text/plain" else ([], [text])
        self._attach(part, ctype, disposition, filename, in_related=in_related)
        return [], []

    def _multipart(self, part: Message, ctype: str, depth: int) -> tuple[list[str], list[str]]:
        children = part.get_payload()
        if not isinstance(children, list):
            # A multipart without a usable boundary: the parser leaves the body as a string.
            self.notes.append(f"{ctype} without parts (missing boundary?); read as text")
            text = self._decode_body(part)
            return ([text] if text.strip() else []), []
        if part.defects:
            self.notes.append(
                f"{ctype} is damaged (truncated or bad boundary); read what was there"
            )
        related = ctype == "multipart/related"
        results = [self._part(c, depth + 1, in_related=related) for c in children]
        if ctype == "multipart/alternative":
            # Alternatives say the same thing; the last one of each kind is the preferred one.
            texts = next((t for t, _ in reversed(results) if t), [])
            htmls = next((h for _, h in reversed(results) if h), [])
            return texts, htmls
        return [t for ts, _ in results for t in ts], [h for _, hs in results for h in hs]

    def _decode_body(self, part: Message) -> str:
        data = self._body(part).view()
        try:
            charset = part.get_content_charset()
        except Exception:
            charset = None
        text, note = decode_text(data, charset)
        if note:
            self.notes.append(note)
        return text

    def _body(self, part: Message) -> PartBody:
        """The part's decoded bytes: read from the message in place where they can be,
        else decoded now (with the stdlib's repairs, noted)."""
        span = self._spans.get(id(part))
        if span is not None:
            start, end = span
            cte = str(part.get("content-transfer-encoding", "")).lower()
            body = PartBody.of_span(self._source, start, end, cte)
            if body is not None:
                return body
            # What the stdlib's parse would have left as the payload, for its decoding.
            part.set_payload(self._source[start:end].decode("ascii", "surrogateescape"))
        return PartBody(self._payload(part))

    def _payload(self, part: Message) -> bytes:
        before = len(part.defects)
        try:
            data = _clean_base64(part)
            if data is None:
                data = part.get_payload(decode=True)
        except Exception:
            data = None
        if data is None:
            raw = part.get_payload()
            data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
            self.notes.append(f"{_content_type(part)} part could not be decoded; kept as sent")
        elif len(part.defects) > before:
            self.notes.append(
                f"{_content_type(part)} part has damaged encoding; decoded what was readable"
            )
        return data

    def _attach(
        self, part: Message, ctype: str, disposition: str | None, filename: str, *, in_related: bool
    ) -> None:
        content_id = _content_id(part)
        # Apple Mail sends images inline with no Content-Disposition at all.
        inline = disposition == "inline" or (
            disposition is None and (bool(content_id and in_related) or ctype.startswith("image/"))
        )
        self.attachments.append(
            ExtractedPart(
                name=safe_filename(filename, ctype),
                content_type=ctype,
                body=self._body(part),
                content_id=content_id,
                inline=inline,
            )
        )

    def _attach_message(self, part: Message, ctype: str) -> None:
        inner = part.get_payload()
        data = b""
        subject = ""
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            try:
                data = inner[0].as_bytes(policy=policy.compat32)
            except Exception:
                self.notes.append(f"attached {ctype} could not be re-serialized; kept empty")
            try:
                subject = str(inner[0].get("Subject") or "")
            except Exception:
                subject = ""
        else:
            data = self._payload(part)
        subject = subject.strip()
        name = _filename(part)
        if not name and ctype == "message/rfc822":
            name = f"{subject}.eml" if subject else "message.eml"
        self.attachments.append(
            ExtractedPart(
                name=safe_filename(name, "text/plain"),
                content_type=ctype,
                body=PartBody(data),
                content_id=_content_id(part),
                inline=False,
            )
        )


def _join_nonblank(bodies: list[str]) -> str:
    """The bodies that hold more than whitespace, one per line. A lone body is returned as
    it is, not copied (``isspace`` tests without the copy ``strip`` makes)."""
    return "\n".join(b for b in bodies if b and not b.isspace())


def _clean_base64(part: Message) -> bytes | None:
    """A well-formed base64 body, decoded in one step; None for any other body.

    The stdlib splits a base64 body into lines and joins them again before decoding: about
    4.5x the body at its peak. A body with nothing to repair decodes to the same bytes
    directly; anything else takes the stdlib's path, with its repairs and defects.
    """
    if str(part.get("Content-Transfer-Encoding", "")).strip().lower() != "base64":
        return None
    raw = part.get_payload()
    if not isinstance(raw, str) or not _CLEAN_BASE64.fullmatch(raw):
        return None
    if (len(raw) - raw.count("\r") - raw.count("\n")) % 4:
        return None  # a partial last quantum: the stdlib repairs it and says so
    try:
        return binascii.a2b_base64(raw)
    except binascii.Error:
        return None


def _disposition(part: Message) -> str | None:
    try:
        value = part.get_content_disposition()
    except Exception:
        return None
    return value.lower() if isinstance(value, str) else None


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    name = fix_surrogates(str(name))
    if "=?" in name:
        # Outlook writes RFC 2047 inside the parameter, which RFC 2231 does not cover.
        name = decode_words(name)
    return name.strip()


def _content_id(part: Message) -> str:
    try:
        value = part.get("Content-ID")
    except Exception:
        return ""
    return first_message_id(fix_surrogates(str(value))) if value else ""
