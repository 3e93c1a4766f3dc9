"""Customers' attachments as Creatio case files: the CaseFile row, then its bytes.

FileApiService takes the bytes of a file row that already exists, so an upload is two
requests; the row is deleted again when the bytes do not arrive, so a rep never sees an
empty file. The row's Id is the attachment's write key: a retried upload is recognised.
"""

from __future__ import annotations

import logging

from .client import CreatioClient
from .contacts import clip
from .odata import Guid
from .settings import FILE_TYPE_FILE

__all__ = ["upload_case_file"]

log = logging.getLogger("casebridge.creatio")


async def upload_case_file(
    client: CreatioClient, case_id: str, name: str, content_type: str, data: bytes, key: str
) -> str:
    """Attach a file to the case (a CaseFile row with Id ``key``, then its bytes).

    The row is deleted again when the upload fails, so a rep never sees an empty file.
    Returns the CaseFile id.
    """
    file_id = Guid(key).value
    case = Guid(case_id).value
    row = {
        "Id": file_id,
        "Name": clip(name or "attachment", 250),
        "CaseId": case,
        "Size": len(data),
        "TypeId": FILE_TYPE_FILE,
    }
    await client.create("CaseFile", row)
    try:
        await client.upload_file(
            entity="CaseFile",
            file_id=file_id,
            parent_column="Case",
            parent_id=case,
            name=row["Name"],
            content_type=content_type,
            data=data,
        )
    except Exception:
        try:
            await client.delete("CaseFile", file_id)
        except Exception as exc:  # the upload's own error matters more
            log.warning("could not delete CaseFile %s after a failed upload: %s", file_id, exc)
        raise
    return file_id
