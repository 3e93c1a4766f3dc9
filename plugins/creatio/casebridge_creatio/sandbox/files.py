"""FileApiService: file content uploaded in byte ranges onto a file row (``CaseFile.Data``),
and read back."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import seed
from .engine import ODataEngine
from .errors import ODataError
from .schema import BINARY, ENTITIES, is_guid

_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)")
MAX_FILE_BYTES = 100 * 1024 * 1024


class UploadError(ODataError):
    """A refused upload; FileApiService answers ``{"success": false, "errorInfo": ...}``."""

    def answer(self) -> dict[str, Any]:
        return {"success": False,
                "errorInfo": {"errorCode": self.code, "message": self.message,
                              "stackTrace": None}}


@dataclass(slots=True)
class FileService:
    engine: ODataEngine
    received: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    mime_types: dict[str, str] = field(default_factory=dict)

    def upload(self, params: Mapping[str, str], content_range: str | None, data: bytes, *,
               actor: str, service_root: str) -> dict[str, Any]:
        """Store one chunk; creates the file row when it does not exist yet. Returns the
        success answer; raises :class:`UploadError`."""
        file_id = _guid_param(params, "fileId")
        entity_name = params.get("entitySchemaName", "")
        entity = ENTITIES.get(entity_name)
        column = params.get("columnName", "Data")
        if entity is None or column not in entity.columns or entity.columns[column].type != BINARY:
            raise UploadError(400, f"'{entity_name}.{column}' is not a file column.",
                              code="InvalidFileColumn")
        total_text = params.get("totalFileLength", "")
        if not total_text.isdigit():
            raise UploadError(400, "totalFileLength must be a non-negative integer.",
                              code="InvalidParameter")
        total = int(total_text)
        if total > MAX_FILE_BYTES:
            raise UploadError(400, f"The file is larger than {MAX_FILE_BYTES} bytes.",
                              code="FileTooLarge")
        start, end, range_total = _parse_range(content_range, len(data))
        if range_total != total:
            raise UploadError(400, f"Content-Range total {range_total} differs from "
                              f"totalFileLength {total}.", code="InvalidContentRange")
        if end - start + 1 != len(data) or end >= total:
            raise UploadError(400, f"Content-Range bytes {start}-{end} do not match the "
                              f"{len(data)} bytes sent.", code="InvalidContentRange")
        row = self.engine.store.get(entity.name, file_id)
        if row is None:
            row = self._create_row(entity.name, file_id, params, total, actor, service_root)
        content = bytearray(self.engine.store.blob(file_id) or b"")
        if len(content) != total:
            content = content[:total].ljust(total, b"\0")
        content[start:end + 1] = data
        self.engine.store.put_blob(file_id, bytes(content))
        ranges = _merge([*self.received.get(file_id, []), (start, end + 1)])
        self.received[file_id] = ranges
        complete = ranges == [(0, total)] or total == 0
        if params.get("mimeType"):
            self.mime_types[file_id] = params["mimeType"]
        if complete and (row.get("Size"), row.get("TotalSize")) != (total, total):
            # Creatio keeps both sizes of a file row itself once the content is in.
            self.engine.store.put(entity.name, {**row, "Size": total, "TotalSize": total})
        self.engine.store.forget_journal()
        return {"success": True, "errorInfo": None, "fileId": file_id,
                "uploadedLength": sum(b - a for a, b in ranges), "totalFileLength": total,
                "isCompleted": complete}

    def _create_row(self, entity: str, file_id: str, params: Mapping[str, str], total: int,
                    actor: str, service_root: str) -> dict[str, Any]:
        values: dict[str, Any] = {"Id": file_id, "Name": params.get("fileName") or file_id,
                                  "Size": total, "TypeId": seed.FILE_TYPE_FILE}
        parent = params.get("parentColumnName")
        if parent:
            values[f"{parent}Id"] = _guid_param(params, "parentColumnValue")
        reply = self.engine.handle("POST", entity, {}, json.dumps(values).encode(),
                                   actor=actor, service_root=service_root)
        if reply.status >= 400:
            message = reply.body["error"]["message"]
            raise UploadError(400, f"Cannot create the file row: {message}",
                              code="FileRowNotCreated")
        row = self.engine.store.get(entity, file_id)
        assert row is not None
        return row

    def download(self, entity_name: str, file_id: str) -> tuple[bytes, str, str]:
        """(content, mime type, file name) of a stored file; ODataError 404 if none."""
        entity = ENTITIES.get(entity_name)
        if entity is None or not any(c.type == BINARY for c in entity.columns.values()):
            raise ODataError(404, f"'{entity_name}' holds no files.")
        if not is_guid(file_id):
            raise ODataError(400, f"'{file_id}' is not a GUID.")
        row = self.engine.store.get(entity.name, file_id)
        content = self.engine.store.blob(file_id)
        if row is None or content is None:
            raise ODataError(404, f"No file content for {entity_name} '{file_id}'.")
        mime = self.mime_types.get(file_id.lower(), "application/octet-stream")
        return content, mime, row.get("Name") or file_id


def _guid_param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not is_guid(value):
        raise UploadError(400, f"The parameter '{name}' must be a GUID.", code="InvalidParameter")
    return value.lower()


def _parse_range(header: str | None, length: int) -> tuple[int, int, int]:
    if not header:
        return 0, length - 1, length
    m = _RANGE_RE.fullmatch(header.strip())
    if m is None:
        raise UploadError(400, f"Content-Range '{header[:60]}' is not 'bytes first-last/total'.",
                          code="InvalidContentRange")
    start, end, total = (int(g) for g in m.groups())
    if end < start:
        raise UploadError(400, "Content-Range ends before it starts.", code="InvalidContentRange")
    return start, end, total


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
