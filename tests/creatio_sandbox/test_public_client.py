"""The sandbox accepts what the public client creatio-api-py sends.

creatio-api-py (``CreatioODataAPI``) signs in through AuthService with requests, keeps the
cookies (encrypted with Fernet in ``cookies_file``), sends ``BPMCSRF`` and ``ForceUseSession``
on every call and builds URLs as ``{base_url}0/odata/{collection}``. Its activity-creation
step posts exactly the columns below and relies on Creatio's defaults for the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from casebridge_creatio.sandbox import seed
from conftest import RunningSandbox
from cryptography.fernet import Fernet


@pytest.fixture
def api(sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # The client reads ./.env and asks on stdin for a cookie key when none is set: give it a
    # key and a directory of its own.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSIONS_ENCRYPTION_KEY", Fernet.generate_key().decode())
    # Imported here: its module configures logging when imported.
    from creatio_api_py import CreatioODataAPI

    client = CreatioODataAPI(base_url=sandbox.url, cookies_file=tmp_path / "sessions.bin")
    client.authenticate("Supervisor", "Supervisor")
    return client


def test_creatio_api_py_creates_an_activity_on_a_case(api: Any) -> None:
    case = api.add_collection_data("Case", data={"Subject": "Printer on fire"})
    assert case.status_code == 201, case.text
    case_id = case.json()["Id"]
    answer = api.add_collection_data(
        "Activity",
        data={
            "Title": "Called the customer back",
            "CaseId": case_id,
            "TypeId": seed.ACTIVITY_TYPE_TASK,
            "StartDate": "2026-12-04T10:00:00Z",
            "DueDate": "2026-12-04T10:30:00Z",
            "Body": "They will send a photo.",
        },
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["StatusId"] == seed.ACTIVITY_STATUS_NOT_STARTED
    assert created["PriorityId"] == seed.ACTIVITY_PRIORITY_MEDIUM
    assert created["ActivityCategoryId"] == seed.ACTIVITY_CATEGORY_TODO
    assert created["OwnerId"] == created["AuthorId"] == seed.SUPERVISOR_CONTACT
    assert created["DueDate"] == "2026-12-04T10:30:00.0000000Z"
    # And the client reads it back on the case, as its users do.
    listed = api.get_collection_data(
        "Activity", filter=f"CaseId eq {case_id}", select=["Title", "StatusId"]
    ).json()["value"]
    assert listed == [
        {"Title": "Called the customer back", "StatusId": seed.ACTIVITY_STATUS_NOT_STARTED}
    ]


def test_creatio_api_py_uploads_and_downloads_a_case_file(api: Any, tmp_path: Path) -> None:
    # Its upload creates the CaseFile row with Size and TotalSize, then posts the bytes to
    # FileApiService; its download reads the name from Content-Disposition.
    case_id = api.add_collection_data("Case", data={"Subject": "Invoice"}).json()["Id"]
    # An ASCII name: the client decodes the header's filename as raw UTF-8 read as latin-1,
    # and the sandbox sends RFC 6266's filename*= form, which the client cannot read back.
    source = tmp_path / "invoice 42.txt"
    source.write_bytes(b"total: 42 EUR\n")
    answer = api.upload_file("CaseFile", case_id, source)
    assert answer.status_code == 200 and answer.json()["success"] is True, answer.text
    [row] = api.get_collection_data("CaseFile", filter=f"CaseId eq {case_id}").json()["value"]
    assert row["Name"] == source.name and row["Size"] == row["TotalSize"] == 14
    assert row["TypeId"] == seed.FILE_TYPE_FILE
    target = tmp_path / "downloads"
    target.mkdir()
    api.download_file("CaseFile", row["Id"], target)
    assert (target / source.name).read_bytes() == b"total: 42 EUR\n"
