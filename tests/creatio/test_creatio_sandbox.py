"""The client and operations against the real Creatio sandbox on a loopback port."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
import uvicorn
from casebridge.errors import AmbiguousWriteError
from casebridge.model import (
    ActivityRequest,
    CaseRef,
    CaseRequest,
    Contact,
    FieldValue,
    HandoffRequest,
)
from casebridge.plugin import TransientError
from casebridge.secrets import Secret
from casebridge_creatio import settings as cs
from casebridge_creatio.auth import CreatioAuthError
from casebridge_creatio.client import BatchRequest, CreatioClient
from casebridge_creatio.handoff import AtomicHandoff
from casebridge_creatio.operations import CreatioOperations
from casebridge_creatio.sandbox import SandboxSettings, create_sandbox_app
from casebridge_creatio.settings import CreatioSettings
from test_creatio_operations import activity_request, case_request

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    app = create_sandbox_app(SandboxSettings())
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "sandbox did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def base(sandbox_url: str) -> str:
    httpx.post(f"{sandbox_url}/sandbox/admin/reset").raise_for_status()
    return sandbox_url


def faults(base: str, **values) -> None:
    httpx.post(f"{base}/sandbox/admin/faults", json=values).raise_for_status()


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def login(base: str, **kw) -> CreatioSettings:
    kw.setdefault("password", Secret("Supervisor"))
    return CreatioSettings(url=base, username="Supervisor", **kw)


def oauth(base: str, **kw) -> CreatioSettings:
    return CreatioSettings(
        url=base,
        auth="oauth",
        identity_url=base,
        client_id="casebridge-sandbox",
        client_secret=Secret("sandbox-secret"),
        **kw,
    )


@pytest.mark.parametrize("mode", ["login", "oauth"])
async def test_handoff_flow_against_the_sandbox(base, mode):
    settings = login(base) if mode == "login" else oauth(base)
    async with CreatioClient(settings) as client:
        assert (await client.check()).detail == "Active"
        ops = CreatioOperations(client, settings)
        await ops.prepare()
        who = await ops.sync_contact(
            Contact(id=f"c-{mode}", name="Ann Example", emails=("ann@example.org",))
        )
        assert who.crm_id
        again = await ops.sync_contact(replace(who, crm_id=""))
        assert again.crm_id == who.crm_id
        request = case_request(who.crm_id)
        activities = [activity_request(request.key, n=n, crm_id=who.crm_id) for n in range(3)]
        case = await ops.create_case(request)
        refs = await ops.append_activities(activities)
        assert case.number and case.is_open
        assert (await ops.find_open_case(who)) == case
        read = await ops.read_activity(refs[0].id)
        assert read is not None and read["written_by_bridge"] and read["case_id"] == case.id
        file_id = await ops.upload_attachment(
            case.id, "notes.txt", "text/plain", b"hello sandbox", str(uuid.uuid4())
        )
        assert await client.get("CaseFile", file_id) is not None
        await ops.resolve_case(case.id)
        resolved = await ops.get_case(case.id)
        assert resolved is not None and resolved.status == cs.STATUS_RESOLVED


async def test_wrong_password_names_creatio_message(base):
    async with CreatioClient(login(base, password=Secret("nope-not-it"))) as client:
        result = await client.check()
        with pytest.raises(CreatioAuthError) as info:
            await client.query("Case", top=1)
    assert not result.ok and "nope-not-it" not in result.detail
    assert "refused the login" in str(info.value)


async def test_expired_session_throttle_and_5xx_each_cost_one_attempt(base):
    # What the outbox sees: an expired session is mended inside the attempt; a 429 and a
    # 5xx each end one attempt, and the 429's Retry-After holds back the next request.
    sleeps = Sleeps()
    async with CreatioClient(login(base), sleep=sleeps) as client:
        await client.query("CaseStatus", top=1)
        faults(base, script=["expire", "429", "5xx"], retry_after_s=2)
        with pytest.raises(TransientError) as throttled:
            await client.query("CaseStatus", select=["Id", "Name"])
        assert throttled.value.retry_after == 2
        with pytest.raises(TransientError, match="HTTP 5"):
            await client.query("CaseStatus", select=["Id", "Name"])
        rows = await client.query("CaseStatus", select=["Id", "Name"])
    assert {r["Id"] for r in rows} >= {cs.STATUS_NEW, cs.STATUS_RESOLVED}
    # The fake sleep moves no clock: each later request waited at the gate, never past 2 s.
    assert sleeps and all(0 < s <= 2 for s in sleeps)


async def test_write_committed_then_failed_is_not_written_twice(base):
    async with CreatioClient(login(base)) as client:
        await client.query("CaseStatus", top=1)
        record_id = str(uuid.uuid4())
        faults(base, script=["fail_after_write"], fail_after_write_mode="drop")
        created = await client.create("Contact", {"Id": record_id, "Name": "Once"})
        rows = await client.query("Contact", select=["Id"], top=5)
        assert created["Id"] == record_id
        assert [r["Id"] for r in rows].count(record_id) == 1
        faults(base, script=["fail_after_write"], fail_after_write_mode="drop")
        with pytest.raises(AmbiguousWriteError):
            await client.batch([BatchRequest("POST", "Contact", {"Name": "Batch"})])


async def test_a_refused_mapped_field_is_left_out_and_noted(base):
    # A column Creatio does not have, and a text value for a lookup column: Creatio refuses
    # each with a 400 naming the property; the case is written without them.
    settings = login(base)
    async with CreatioClient(settings) as client:
        ops = CreatioOperations(client, settings)
        who = await ops.sync_contact(Contact(id="c-fields", name="Pia", emails=("pia@x.org",)))
        request = case_request(who.crm_id, fields={
            "ProductName": FieldValue("Printer X200"),
            "CategoryId": FieldValue("Incident"),
            "PriorityId": FieldValue("High", "lookup"),
        })
        case = await ops.create_case(request)
        row = await client.get("Case", case.id)
        assert row is not None
        assert row["PriorityId"] == (await ops.lookups.resolve("CasePriority", "High"))
        assert row["CategoryId"] == "00000000-0000-0000-0000-000000000000"
        symptoms = row["Symptoms"]
        assert symptoms.startswith("It started smoking after the update.\n\nFields left empty:\n")
        [product, category] = symptoms.split("Fields left empty:\n")[1].split("\n")
        assert product.startswith("- ProductName: Creatio refused this column, so "
                                  "'Printer X200' was not written (The property 'ProductName' "
                                  "does not exist on type 'Terrasoft.Configuration.Case'.")
        assert category.startswith("- CategoryId: Creatio refused this column, so 'Incident'")
        assert "Edm.Guid" in category


async def test_a_refused_field_does_not_stop_the_batched_handoff(base):
    settings = login(base)
    async with CreatioClient(settings) as client:
        ops = CreatioOperations(client, settings)
        who = Contact(id="c-batch", name="Ola", emails=("ola@x.org",))
        request = case_request("", fields={"ProductName": FieldValue("X200")})

        async def describe(found: Contact) -> CaseRequest:
            return replace(request, contact=found, session=replace(request.session,
                                                                   contact=found))

        async def activities(case: CaseRef) -> list[ActivityRequest]:
            return [activity_request(case.id, n=n) for n in range(2)]

        handoff = HandoffRequest(key=request.key, session=replace(request.session, contact=who),
                                 contact=who, describe=describe, activities=activities)
        # The atomic write batch is refused for the unknown column as a whole; the handoff
        # is completed request by request, the case written without the field.
        result = await AtomicHandoff(ops).run(handoff)
        case, refs = result.case, result.activities
        assert result.created and len(refs) == 2
        row = await client.get("Case", case.id, select=["Symptoms"])
        assert row is not None and "- ProductName: Creatio refused" in row["Symptoms"]
        assert all([await client.get("Activity", r.id, select=["Id"]) for r in refs])
