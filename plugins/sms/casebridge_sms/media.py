"""MMS media: the media a webhook form references, and keeping them in the blob store.

A medium that cannot be kept (not http(s), too large, the download failed) is referenced by
its URL with the reason, and the message notes it: a medium never costs the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import httpx
from casebridge.plugin import Attachment, Blobs, PermanentError

# Twilio allows at most 10 media per MMS; more in a form is not from a real provider.
MAX_MEDIA = 10


class MediaRefused(Exception):
    """A medium was not kept; the message says why."""


def media_fields(fields: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (URL, content type) of each MMS medium the webhook form references."""
    try:
        count = int(fields.get("NumMedia") or 0)
    except ValueError:
        raise PermanentError(f"NumMedia {fields.get('NumMedia')!r} is not a number") from None
    media = []
    for index in range(min(max(count, 0), MAX_MEDIA)):
        url = fields.get(f"MediaUrl{index}", "")
        if url:
            content_type = fields.get(f"MediaContentType{index}") or "application/octet-stream"
            media.append((url, content_type))
    return media


async def keep_media(
    media: Sequence[tuple[str, str]], blobs: Blobs, auth: tuple[str, str] | None, limit: int
) -> tuple[tuple[Attachment, ...], tuple[str, ...]]:
    """The attachments for ``media`` and the notes on the ones not kept. With ``auth`` (the
    provider's account SID and token) each medium is downloaded into ``blobs``, at most
    ``limit`` bytes; without it the media stay referenced by URL."""
    attachments, notes = [], []
    for index, (url, content_type) in enumerate(media):
        name = f"media{index}"
        if auth is None:
            attachments.append(Attachment(name, content_type, 0, "", location=url))
            continue
        try:
            data = await download(url, limit, auth)
        except MediaRefused as exc:
            notes.append(f"{name} not kept: {exc}")
            attachments.append(
                Attachment(name, content_type, 0, "", location=url, refused=str(exc))
            )
            continue
        digest = hashlib.sha256(data).hexdigest()
        location = await blobs.write(data, digest)
        attachments.append(Attachment(name, content_type, len(data), digest, location))
    return tuple(attachments), tuple(notes)


async def download(url: str, limit: int, auth: tuple[str, str]) -> bytes:
    """The medium at ``url``, fetched with the provider's credentials; MediaRefused when it
    is not http(s), over ``limit`` bytes or cannot be fetched."""
    if not url.startswith(("http://", "https://")):
        raise MediaRefused(f"{url!r} is not an http(s) URL")
    try:
        # httpx drops the credentials when a redirect leaves the provider's host.
        async with (
            httpx.AsyncClient(timeout=30, follow_redirects=True) as client,
            client.stream("GET", url, auth=auth) as answer,
        ):
            if answer.status_code >= 400:
                raise MediaRefused(f"download failed: HTTP {answer.status_code}")
            declared = answer.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise MediaRefused(
                    f"{declared} bytes is over the {limit}-byte limit (max_media_bytes)"
                )
            chunks, size = [], 0
            async for chunk in answer.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise MediaRefused(f"over the {limit}-byte limit (max_media_bytes)")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise MediaRefused(f"download failed: {type(exc).__name__}") from None
    return b"".join(chunks)
