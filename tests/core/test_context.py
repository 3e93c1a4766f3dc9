"""PluginContext: what a plugin may ask of the runner, on a real bridge and store."""

from __future__ import annotations

from pathlib import Path

import pytest
from casebridge.bridge import Bridge
from casebridge.context import PluginContext
from casebridge.jobs import HandoffJob
from casebridge.model import CrmEvent, Reply
from hypothesis import given, settings
from hypothesis import strategies as st
from support.bridges import install_jsonl, write_config
from support.plugins import LoopChannel


@pytest.fixture
async def bridge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install_jsonl(monkeypatch, tmp_path)
    bridge = Bridge.from_config(write_config(tmp_path), plugins={"loop": LoopChannel()})
    await bridge.open()
    try:
        yield bridge
    finally:
        await bridge.close()


async def test_state_is_the_plugins_own(bridge: Bridge) -> None:
    one, two = PluginContext(bridge, "one", None), PluginContext(bridge, "two", None)
    await one.state.put("cursor", {"uid": 7})
    assert await one.state.get("cursor") == {"uid": 7}
    assert await two.state.get("cursor") is None
    assert await one.state.compare_and_put("cursor", {"uid": 7}, {"uid": 8})
    assert not await one.state.compare_and_put("cursor", {"uid": 7}, {"uid": 9})
    assert await one.state.get("cursor") == {"uid": 8}
    await one.state.delete("cursor")
    assert await one.state.get("cursor") is None


async def test_blobs_round_trip_and_refuse_foreign_locations(bridge: Bridge) -> None:
    context = PluginContext(bridge, "email", None)
    location = await context.blobs.write(b"%PDF-1.7 invoice")
    assert await context.blobs.read(location) == b"%PDF-1.7 invoice"
    assert await context.blobs.write(b"%PDF-1.7 invoice") == location  # kept once
    with pytest.raises(ValueError, match="not a stored file"):
        context.blobs.path("../../etc/passwd")


async def test_crm_events_become_jobs_with_one_trace(bridge: Bridge) -> None:
    context = PluginContext(bridge, "jsonl", None)
    reply = Reply("jsonl", "rep-1", "case-1", "On its way.")
    events = [CrmEvent("agent_reply", "jsonl", "case-1", reply),
              CrmEvent("case_closed", "jsonl", "case-1")]
    assert await context.report_crm_events(events, trace_id="t" * 32) == 2
    jobs = await bridge.store.list_jobs()
    assert sorted(j.kind for j in jobs) == ["closed", "reply"]
    assert {j.trace_id for j in jobs} == {"t" * 32}
    # The same reply reported again (a retried webhook) is not a second job.
    assert await context.report_crm_events(events[:1]) == 1
    assert len(await bridge.store.list_jobs()) == 2


async def test_written_by_bridge_reads_the_write_log(bridge: Bridge) -> None:
    # A CRM that takes client-chosen ids stores each record under its write key: the record
    # id the CRM reports (in any case) is then one the bridge wrote.
    context = PluginContext(bridge, "jsonl", None)
    key = "5f0c2a9e-1b7d-4c3e-9a8f-0123456789ab"
    await bridge.store.record_intent("s1", "m1", "activity", "jsonl", key)
    await bridge.store.record_written(key, key)
    assert await context.written_by_bridge(key.upper())
    assert not await context.written_by_bridge("0" * 8 + key[8:])


@settings(max_examples=25)
@given(host=st.sampled_from(["", "0.0.0.0", "::", "127.0.0.1", "::1", "10.1.2.3"]),
       port=st.integers(1, 65535))
def test_local_url_reaches_the_bridge_from_this_machine(host: str, port: int) -> None:
    class Http:
        pass

    class Config:
        http = Http()

    class FakeBridge:
        config = Config()
        registry = None
        store = None
        blob_dir = Path("/tmp")

    Config.http.host, Config.http.port = host, port
    url = PluginContext(FakeBridge(), "creatio", None).local_url  # type: ignore[arg-type]
    assert url.endswith(f":{port}")
    assert "0.0.0.0" not in url and "[::]" not in url


async def test_tracked_cases_are_this_crms_handed_off_cases(bridge: Bridge) -> None:
    from support.bridges import inbound, settle

    for n in range(3):
        await bridge.receive(inbound("refund", msg_id=f"t{n}", sender=f"c{n}@example.com"))
    await settle(bridge)
    sessions = await bridge.store.list_sessions()
    for session in sessions[:2]:
        await bridge.enqueue(HandoffJob(session.id, "test", "test", "t").to_new_job())
    await settle(bridge)
    handed = [s.case.case_id.lower() for s in await bridge.store.list_sessions() if s.case]
    assert sorted(await PluginContext(bridge, "jsonl", None).tracked_cases()) == sorted(handed)
    assert len(handed) == 2
    assert await PluginContext(bridge, "another-crm", None).tracked_cases() == []


# -- mapped fields ------------------------------------------------------------------------


async def test_mapped_fields_are_the_rules_the_core_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_jsonl(monkeypatch, tmp_path)
    rules = [{"column": "ProductName", "value": "Printer X200"},
             {"column": "PriorityId", "value": "High", "kind": "lookup", "channel": "loop"}]
    path = write_config(tmp_path, fields={"rules": rules})
    bridge = Bridge.from_config(path, plugins={"loop": LoopChannel()})
    found = PluginContext(bridge, "jsonl", None).mapped_fields()
    assert [(f.column, f.kind, f.values, f.where) for f in found] == [
        ("ProductName", "text", ("Printer X200",), "fields.rules[0]"),
        ("PriorityId", "lookup", ("High",), "fields.rules[1]"),
    ]


def test_mapped_fields_add_each_enabled_plugins_declared_fields(tmp_path: Path) -> None:
    from casebridge.config import load
    from casebridge.fieldmap import MappedField, mapped_fields

    path = tmp_path / "casebridge.toml"
    path.write_text(
        '[bridge]\ncrm = "jsonl"\nchannels = ["loop"]\nplugins = ["ai"]\n'
        '[[fields.rules]]\ncolumn = "Notes"\nvalue = "from casebridge"\n'
        '[[plugins.ai.fields]]\ncolumn = "CategoryId"\nkind = "lookup"\n'
        'allowed = ["Incident", "Complaint"]\n'
        '[[plugins.ai.fields]]\ncolumn = "ProductName"\n'
        '[[plugins.ai.fields]]\ndescription = "no column: not a mapped field"\n'
        # A plugin the TOML does not enable maps nothing.
        '[[plugins.other.fields]]\ncolumn = "Ignored"\n')
    assert mapped_fields(load(path)) == [
        MappedField("Notes", "text", ("from casebridge",), "fields.rules[0]"),
        MappedField("CategoryId", "lookup", ("Incident", "Complaint"), "plugins.ai.fields[0]"),
        MappedField("ProductName", "text", (), "plugins.ai.fields[1]"),
    ]


# -- templates and keys ------------------------------------------------------------------


async def test_a_plugins_templates_render_through_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casebridge.templates import TemplateError

    shipped, override = tmp_path / "shipped", tmp_path / "override"
    for folder, text in ((shipped, "SHIPPED {{ value }}"), (override, "OVERRIDE {{ value }}")):
        (folder / "loop").mkdir(parents=True)
        (folder / "loop" / "note.txt.j2").write_text(text)
    (shipped / "loop" / "card.html.j2").write_text("<p>{{ value }}</p>")
    install_jsonl(monkeypatch, tmp_path)
    plain = Bridge.from_config(write_config(tmp_path), plugins={"loop": LoopChannel()})
    context = PluginContext(plain, "loop", None)
    context.add_templates(shipped)
    assert context.render("loop/note.txt.j2", value="<b>") == "SHIPPED <b>"
    assert context.render("loop/card.html.j2", value="<b>") == "<p>&lt;b&gt;</p>"
    with pytest.raises(TemplateError, match=rf"no template loop/gone\.txt\.j2 in {shipped}"):
        context.render("loop/gone.txt.j2")
    # The TOML's [templates] dir wins over what the plugin ships, by the same path.
    path = write_config(tmp_path, templates={"dir": "override"})
    overridden = Bridge.from_config(path, plugins={"loop": LoopChannel()})
    context = PluginContext(overridden, "loop", None)
    context.add_templates(shipped)
    assert context.render("loop/note.txt.j2", value="x") == "OVERRIDE x"
    assert context.render("loop/card.html.j2", value="x") == "<p>x</p>"


async def test_derived_keys_are_stable_per_purpose_and_not_the_link_secret(
    bridge: Bridge,
) -> None:
    context = PluginContext(bridge, "email", None)
    key = context.derived_key(b"reply token")
    assert len(key) == 32
    assert key == PluginContext(bridge, "other", None).derived_key(b"reply token")
    assert key != context.derived_key(b"something else")
    assert bridge.link_secret not in key and key != bridge.link_secret


async def test_blobs_write_sync_is_write_for_worker_threads(bridge: Bridge) -> None:
    import anyio

    context = PluginContext(bridge, "email", None)
    location = await anyio.to_thread.run_sync(context.blobs.write_sync, b"scan.pdf bytes")
    assert location == await context.blobs.write(b"scan.pdf bytes")
    assert context.blobs.path(location).read_bytes() == b"scan.pdf bytes"


async def test_blobs_writer_stores_pieces_where_write_puts_the_whole(bridge: Bridge) -> None:
    context = PluginContext(bridge, "files", None)
    writer = context.blobs.writer()
    for piece in (b"%PDF-1.7 ", b"invoice"):
        writer.write(piece)
    location = writer.commit()
    assert location == await context.blobs.write(b"%PDF-1.7 invoice")
    assert await context.blobs.read(location) == b"%PDF-1.7 invoice"
