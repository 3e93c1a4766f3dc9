"""FileApiService uploads (whole and chunked) and downloads."""

from __future__ import annotations

import uuid

import httpx
from casebridge_creatio.sandbox import seed


def upload(client: httpx.Client, file_id: str, case_id: str, data: bytes, first: int,
           total: int, name: str = "scan.pdf") -> httpx.Response:
    return client.post("/0/rest/FileApiService/UploadFile", params={
        "fileId": file_id, "totalFileLength": str(total), "mimeType": "application/pdf",
        "fileName": name, "columnName": "Data", "entitySchemaName": "CaseFile",
        "parentColumnName": "Case", "parentColumnValue": case_id,
    }, content=data, headers={"Content-Range": f"bytes {first}-{first + len(data) - 1}/{total}",
                              "Content-Type": "application/octet-stream"})


def test_row_then_upload_then_download(session: httpx.Client) -> None:
    case = session.post("/0/odata/Case", json={"Subject": "with file"}).json()
    file_id = str(uuid.uuid4())
    content = bytes(range(256)) * 40
    row = session.post("/0/odata/CaseFile", json={
        "Id": file_id, "Name": "scan.pdf", "CaseId": case["Id"], "Size": len(content),
        "TypeId": seed.FILE_TYPE_FILE})
    assert row.status_code == 201
    answer = upload(session, file_id, case["Id"], content, 0, len(content))
    assert answer.status_code == 200 and answer.json()["success"] is True
    got = session.get(f"/0/rest/FileService/Download/CaseFile/{file_id}")
    assert got.content == content and got.headers["content-type"] == "application/pdf"
    assert session.get(f"/0/odata/CaseFile({file_id})/Data").content == content
    listed = session.get("/0/odata/CaseFile", params={"$filter": f"CaseId eq {case['Id']}"})
    assert listed.json()["value"][0]["Size"] == len(content)
    assert "Data" not in listed.json()["value"][0]


def test_chunked_upload_creates_the_row_and_completes(session: httpx.Client) -> None:
    case = session.post("/0/odata/Case", json={"Subject": "chunks"}).json()
    file_id = str(uuid.uuid4())
    content = b"0123456789" * 10
    second = upload(session, file_id, case["Id"], content[50:], 50, len(content))
    assert second.json()["isCompleted"] is False
    first = upload(session, file_id, case["Id"], content[:50], 0, len(content))
    assert first.json()["isCompleted"] is True
    got = session.get(f"/0/rest/FileService/Download/CaseFile/{file_id}")
    assert got.content == content
    row = session.get(f"/0/odata/CaseFile({file_id})").json()
    assert row["CaseId"] == case["Id"] and row["Name"] == "scan.pdf"


def test_bad_uploads_are_refused(session: httpx.Client) -> None:
    case = session.post("/0/odata/Case", json={"Subject": "bad"}).json()
    file_id = str(uuid.uuid4())
    lying = session.post("/0/rest/FileApiService/UploadFile", params={
        "fileId": file_id, "totalFileLength": "10", "columnName": "Data",
        "entitySchemaName": "CaseFile", "parentColumnName": "Case",
        "parentColumnValue": case["Id"]}, content=b"abc",
        headers={"Content-Range": "bytes 0-9/10"})
    assert lying.status_code == 400 and lying.json()["success"] is False
    orphan = upload(session, file_id, str(uuid.uuid4()), b"abc", 0, 3)
    assert orphan.status_code == 400 and "Case" in orphan.json()["errorInfo"]["message"]
    assert session.get(f"/0/odata/CaseFile({file_id})").status_code == 404
    no_csrf = session.headers.pop("BPMCSRF")
    assert upload(session, file_id, case["Id"], b"abc", 0, 3).status_code == 401
    session.headers["BPMCSRF"] = no_csrf
