"""How received mail is read: kept raw at the 250 and parsed by the outbox (large mail parsed
before the 250), in a worker process, with the flood limit applied before any attachment is
stored."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import casebridge_email.plugin as email_plugin
import pytest
from casebridge.model import RawInbound
from casebridge.processes import Processes
from casebridge_email.envelope import envelope_fields
from casebridge_email.reading import ReadRules, read_mail
from support.bridges import only_session, settle
from test_email_plugin import running
from test_email_plugin_support import CUSTOMER, SUPPORT, customer_mail

pytestmark = pytest.mark.anyio


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    calls: list[Any] = []
    real = getattr(owner, name)

    async def spy(*args: Any) -> Any:
        calls.append(args)
        return await real(*args)

    monkeypatch.setattr(owner, name, spy)
    return calls


async def test_smtp_mail_is_kept_raw_then_parsed_in_a_worker_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, monkeypatch) as world:
        bridge = world.bridge
        bridge.processes = Processes(1)  # whatever this machine's cores
        receiving = bridge.pipeline.receiving
        kept, parsed_now = (_spy(monkeypatch, receiving, "receive_later"),
                            _spy(monkeypatch, receiving, "receive"))
        ran = _spy(monkeypatch, bridge.processes, "run")
        await world.send(customer_mail("Hello, my printer is broken.", msgid="<a1@x>"))
        assert len(kept) == 1 and parsed_now == []
        await settle(bridge)
        assert [args[0] for args in ran] == [read_mail]
        [message] = await bridge.store.transcript((await only_session(bridge)).id)
        assert message.text == "Hello, my printer is broken."
        assert await bridge.store.count_raw() == 0


async def test_large_mail_is_parsed_before_the_250_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_plugin, "QUEUE_BELOW", 1024)
    async with running(tmp_path, monkeypatch) as world:
        bridge = world.bridge
        receiving = bridge.pipeline.receiving
        kept, parsed_now = (_spy(monkeypatch, receiving, "receive_later"),
                            _spy(monkeypatch, receiving, "receive"))
        ran = _spy(monkeypatch, bridge.processes, "run")
        body = "A long story about my printer. " * 100
        await world.send(customer_mail(body, msgid="<big@x>"))
        # Parsed and stored before the 250: the message is there already.
        assert kept == [] and len(parsed_now) == 1 and ran == []
        [job] = [j for j in await bridge.store.list_jobs() if j.kind == "inbound"]
        message = await bridge.store.get_message(job.payload["message_id"])
        assert message is not None and message.text == body.strip()
        assert await bridge.store.count_raw() == 0


async def test_a_flooding_senders_attachments_are_never_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, monkeypatch, rate_limit_messages=1) as world:
        bridge = world.bridge
        first, second = b"%PDF first " * 40, b"%PDF second " * 40
        await world.send(customer_mail("One.", msgid="<f1@x>", attachment=("a.pdf", first)))
        await world.send(customer_mail("Two.", msgid="<f2@x>", attachment=("b.pdf", second)))
        await settle(bridge)
        [dropped] = await bridge.store.list_dropped()
        assert dropped.reason.startswith("rate limit: over 1 messages")
        stored = sorted(p.read_bytes() for p in (bridge.data_dir / "attachments").rglob("*")
                        if p.is_file())
        assert stored == [first]
        assert hashlib.sha256(second).hexdigest() not in {
            p.name for p in (bridge.data_dir / "attachments").rglob("*")}


async def test_reading_in_a_worker_process_gives_what_reading_here_gives(
    tmp_path: Path,
) -> None:
    rules = ReadRules(
        support_addresses=(SUPPORT,), support_domains=(), our_domains=("example.com",),
        bounce_domain="example.com", keep_signature=False, token_secret=b"k" * 32,
        blob_folder=tmp_path, max_attachment_bytes=1 << 20, max_attachments=5,
        mailbox_peer_prefix="imap:")
    mail = customer_mail("Hi,\n\nIt is broken.\n\n> quoted\n", msgid="<p1@x>",
                         attachment=("x.pdf", b"%PDF " * 30))
    raw = RawInbound(channel="email", payload=mail, peer="127.0.0.1:1",
                     fields=envelope_fields(CUSTOMER, (SUPPORT,)))
    here = read_mail(raw, rules, True)
    there = await Processes(1).run(read_mail, raw, rules, True)
    assert there == here and here.message is not None
    assert here.message.attachments[0].location  # stored, by either
    pending = await Processes(1).run(read_mail, raw, rules, False)
    assert pending.parts_pending and pending.message is None and pending.sender == CUSTOMER
