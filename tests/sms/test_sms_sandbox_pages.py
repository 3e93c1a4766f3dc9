"""The SMS sandbox's page: what the bridge sent, what was pushed in, the callbacks, and a
form that sends an inbound SMS (signed) to the bridge, over real loopback HTTP."""

from __future__ import annotations

import httpx
import pytest
from casebridge.secrets import Secret
from casebridge_sms.sandbox import SandboxState, create_sandbox_app
from test_sms_sandbox import SID, TOKEN, Receiver

pytestmark = pytest.mark.anyio

HOSTILE = "<script>alert('x')</script> your parcel & more"


async def test_the_page_shows_every_sent_sms_escaped(serve) -> None:
    state = SandboxState(account_sid=SID, auth_token=Secret(TOKEN), callback_statuses=("sent",))
    with serve(create_sandbox_app(state)) as base:
        async with httpx.AsyncClient(
            base_url=base, auth=(SID, TOKEN), follow_redirects=True
        ) as client:
            for n in range(2):
                created = await client.post(
                    f"/2010-04-01/Accounts/{SID}/Messages.json",
                    data={"To": "+14155550100", "From": "+15005550006", "Body": f"{HOSTILE} #{n}"},
                )
                assert created.status_code == 201
            empty = await client.get("/")
            assert empty.status_code == 200 and empty.url.path == "/sandbox"
            page = empty.text
    assert page.count('<tr class="sms">') == 2
    assert "<script>alert" not in page and "&lt;script&gt;alert(" in page
    assert "your parcel &amp; more #1" in page
    # Newest first.
    assert page.index("more #1") < page.index("more #0")


async def test_the_form_sends_a_signed_inbound_to_the_bridge(serve) -> None:
    receiver = Receiver()
    with serve(receiver.app) as hook:
        receiver.url = f"{hook}/sms/inbound"
        state = SandboxState(account_sid=SID, auth_token=Secret(TOKEN), webhook_url=receiver.url)
        with serve(create_sandbox_app(state)) as base:
            async with httpx.AsyncClient(base_url=base, follow_redirects=True) as client:
                answer = await client.post(
                    "/sandbox/send",
                    data={
                        "from": "+14155550100",
                        "to": "+15005550006",
                        "body": "Where is my order?",
                    },
                )
                missing = await client.post(
                    "/sandbox/send", data={"from": "", "to": "x", "body": ""}
                )
    assert answer.status_code == 200 and "the bridge answered HTTP 200" in answer.text
    [(form, signed)] = receiver.calls
    assert signed and form["Body"] == "Where is my order?" and form["From"] == "+14155550100"
    assert "Where is my order?" in answer.text  # listed under the inbound messages
    assert "Fill in from, body." in missing.text
