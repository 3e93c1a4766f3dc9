"""Header values as ``email.policy.default`` reads them, without building its header objects.

``policy.default`` turns each header it is asked for into a structured header object: a new
class per fetch and a full parse, about 50 µs even for ``text/plain``. The parser and the
code reading a message ask for ``Content-Type`` alone a dozen times per part. Everything
casebridge reads from those objects is their string (``str(header)``, which the classic
``Message.get_content_type``/``get_param``/``get_filename`` methods then parse), so
:class:`ValuePolicy` hands out that string instead, computed cheaply where its form is
plain and by the stdlib's own parser (once per distinct value) otherwise. Pure; no I/O.

Each function here returns exactly what ``str()`` of the stdlib's header gives (the
property tests compare them on generated values); only the cost differs.
"""

from __future__ import annotations

import re
from email import _header_value_parser as value_parser
from email import headerregistry, utils
from email.policy import EmailPolicy, default, linesep_splitter
from functools import lru_cache
from typing import Any

from .header_limits import bounded, is_bounded

# RFC 2045 token; without "*", "'" and "%" (RFC 2231 syntax, which the stdlib's parameter
# parse reads) for parameter names and values; a quoted string with nothing the stdlib
# would re-quote or decode in it.
_MIME_WORD = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_ATTRIBUTE = r"[!#$&+\-.0-9A-Z^_`a-z{|}~]+"
_W = r"[ \t]*"
_PLAIN_PARAM = re.compile(
    rf'(?:;{_W}({_ATTRIBUTE}){_W}={_W}(?:({_ATTRIBUTE})|"([\t !#-\[\]-~]*)"){_W})'
)
_PLAIN_PARAMS = re.compile(rf"(?:{_PLAIN_PARAM.pattern})*")
# Content-Type's "type/subtype" and Content-Disposition's kind, as written before any ";".
_MIME_TYPE = re.compile(rf"{_W}{_MIME_WORD}{_W}/{_W}{_MIME_WORD}{_W}")
_MIME_KIND = re.compile(rf"{_W}{_MIME_WORD}{_W}")
# A msg-id of dot-atom-text on both sides, which the stdlib's parse keeps as written.
_ATEXT = r"[!#$%&'*+\-/0-9=?A-Z^_`a-z{|}~]+"
_PLAIN_ID = re.compile(rf"{_W}<{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*>{_W}")
_REGISTRY = default.header_factory
# Values longer than this are parsed each time rather than kept in the cache.
_CACHED_CHARS = 1024


def unfolded(value: str) -> str:
    """The value with its line breaks removed, as ``EmailPolicy.header_fetch_parse`` does
    before parsing (folding whitespace stays)."""
    return "".join(linesep_splitter.split(value))


def header_text(name: str, value: str) -> str:
    """``str(policy.default.header_factory(name, value))`` for an unfolded ``value``.

    Raises what the stdlib's parse raises, where it raises.
    """
    cls = _REGISTRY.registry.get(name.lower(), _REGISTRY.default_class)
    if issubclass(cls, headerregistry.UnstructuredHeader):
        return unstructured_text(value)
    if issubclass(cls, headerregistry.DateHeader):
        return date_text(value)
    if issubclass(cls, headerregistry.ParameterizedMIMEHeader):
        plain = mime_text(value, content_type=issubclass(cls, headerregistry.ContentTypeHeader))
        if plain is not None:
            return plain
    elif cls is headerregistry.ContentTransferEncodingHeader:
        if _MIME_KIND.fullmatch(value):
            return value
    elif cls is headerregistry.MessageIDHeader and _PLAIN_ID.fullmatch(value):
        return value
    return _structured_text(name.lower(), value)


def unstructured_text(value: str) -> str:
    """What ``policy.default`` makes of an unstructured header (Subject, References, any
    X- header): RFC 2047 words decoded, raw 8-bit bytes read as UTF-8 (else U+FFFD)."""
    if "=?" in value:
        value = str(value_parser.get_unstructured(value))
    return _sanitized(value)


def date_text(value: str) -> str:
    """What ``policy.default`` makes of a Date header: the date reformatted, or the value
    as written when it is no date (``headerregistry.DateHeader.parse``)."""
    if not value:
        return ""
    try:
        when = utils.parsedate_to_datetime(value)
    except ValueError:
        return _sanitized(value)
    return utils.format_datetime(when)


def mime_text(value: str, *, content_type: bool) -> str | None:
    """What ``policy.default`` makes of a Content-Type (``content_type``) or
    Content-Disposition value of the plain form ``kind; name=value; ...``: the kind as
    written, then each parameter as ``name="value"``; None for any other form (RFC 2231
    parameters, escapes, encoded words, repeated names...), which the stdlib must parse."""
    semicolon = value.find(";")
    head = value if semicolon < 0 else value[:semicolon]
    if not (_MIME_TYPE if content_type else _MIME_KIND).fullmatch(head):
        return None
    if semicolon < 0:
        return value
    if "=?" in value or not _PLAIN_PARAMS.fullmatch(value, semicolon):
        return None
    params = []
    names = set()
    for match in _PLAIN_PARAM.finditer(value, semicolon):
        name, token, quoted = match.groups()
        if name in names:
            return None  # the stdlib keeps the first; not worth following
        names.add(name)
        text = token if token is not None else quoted
        params.append(f'{name}="{text}"' if text else name)
    return value[: semicolon + 1] + " " + "; ".join(params)


def _sanitized(value: str) -> str:
    """Raw 8-bit bytes (surrogate escapes) read as UTF-8, else U+FFFD, as the stdlib's
    header objects do (``email.utils._sanitize``)."""
    if utils._has_surrogates(value):
        return utils._sanitize(value)
    return value


def _structured_text(key: str, value: str) -> str:
    if len(value) > _CACHED_CHARS:
        return str(_REGISTRY(key, value))
    return _cached_structured_text(key, value)


@lru_cache(maxsize=2048)
def _cached_structured_text(key: str, value: str) -> str:
    # A pure function of its arguments: the same Content-Type (say) read by the parser, by
    # get_content_type and by get_param is parsed once.
    return str(_REGISTRY(key, value))


class ValuePolicy(EmailPolicy):
    """``email.policy.default`` whose fetched headers are plain strings: :func:`header_text`
    of the value cut to :mod:`.header_limits`' bounds. Messages parsed with it answer
    ``get_content_type``, ``get_param``, ``get_filename``, ``get_content_charset`` and
    ``get`` exactly as under ``policy.default`` (its parser, nested parts' ``Content-Type``
    read to find boundaries included), at a fraction of the cost."""

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name"):
            return value  # a header object a caller stored (set_boundary does)
        if is_bounded(value):
            value = bounded(value)
        return header_text(name, unfolded(value))


VALUES = ValuePolicy()
