"""Loading and routing: one manager per runner, tolerant loading, strict routing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from casebridge import hookimpl
from casebridge.errors import PluginError
from casebridge.model import (
    Author,
    CaseRef,
    Contact,
    FieldValue,
    HandoffDecision,
    Message,
    Session,
    SessionStatus,
    Summary,
)
from casebridge.plugins import Hooks, describe, load_entry_points, new_manager
from support.dists import install_dist


def session() -> Session:
    return Session("s1", "loop", Contact("c1", "Ann", ("ann@example.com",)),
                   SessionStatus.ASSISTANT)


def message(text: str) -> Message:
    from casebridge.model import Direction

    return Message("m1", "loop", Direction.INBOUND, Author.CUSTOMER, "x1", "ann@example.com",
                   ("desk",), text)


class Crm:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

    @hookimpl
    async def find_open_case(self, contact: Contact) -> CaseRef | None:
        self.calls.append(contact.id)
        return CaseRef(self.name, f"case-of-{contact.id}")


async def test_routed_hooks_reach_only_the_named_plugin() -> None:
    pm = new_manager()
    first, second = Crm("first"), Crm("second")
    pm.register(first, name="first")
    pm.register(second, name="second")
    hooks = Hooks(pm)
    case = await hooks.find_open_case("second", Contact("c9"))
    assert case == CaseRef("second", "case-of-c9")
    assert second.calls == ["c9"] and first.calls == []


async def test_routing_to_a_missing_plugin_or_hook_is_a_clear_error() -> None:
    pm = new_manager()
    pm.register(Crm("first"), name="first")
    hooks = Hooks(pm)
    with pytest.raises(PluginError, match="no plugin named 'nope' is enabled"):
        await hooks.find_open_case("nope", Contact("c"))
    with pytest.raises(PluginError, match="'first' does not implement the create_case hook"):
        await hooks.create_case("first", None)  # type: ignore[arg-type]


async def test_transform_hooks_await_sync_and_async_results_in_order() -> None:
    class Sync:
        @hookimpl(trylast=True)
        def handoff_policy(self):
            return HandoffDecision("sync rule")

    class Async:
        @hookimpl
        async def handoff_policy(self, transcript):
            return HandoffDecision("async rule") if "person" in transcript[-1].text else None

    pm = new_manager()
    pm.register(Sync(), name="sync")
    pm.register(Async(), name="async")
    hooks = Hooks(pm)
    assert (await hooks.handoff_policy(session(), [message("a person please")])).reason == \
        "async rule"
    assert (await hooks.handoff_policy(session(), [message("hello")])).reason == "sync rule"


def _fields(name: str, fields: dict[str, str]):
    class Mapper:
        @hookimpl
        def map_fields(self):
            return {k: FieldValue(v, source=name) for k, v in fields.items()}

    return Mapper()


async def test_map_fields_merges_and_refuses_unresolved_conflicts() -> None:
    pm = new_manager()
    pm.register(_fields("a", {"PriorityId": "High", "Notes": "x"}), name="a")
    pm.register(_fields("b", {"PriorityId": "Low", "CategoryId": "Billing"}), name="b")
    args = (session(), [message("hi")], Summary("s", "d"))
    with pytest.raises(PluginError, match="'a' and 'b' both set the column 'PriorityId'"):
        await Hooks(pm).map_fields(*args)
    merged = await Hooks(pm, prefer={"PriorityId": "a"}).map_fields(*args)
    assert {k: v.value for k, v in merged.items()} == {
        "PriorityId": "High", "Notes": "x", "CategoryId": "Billing"}
    merged = await Hooks(pm, prefer={"PriorityId": "b"}).map_fields(*args)
    assert merged["PriorityId"].value == "Low"


def test_implementations_with_default_arguments_are_refused(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "cb_defaults_plugin.py").write_text(textwrap.dedent("""
        from casebridge import hookimpl

        @hookimpl
        def handoff_policy(session, transcript=()):
            return None
    """))
    install_dist(monkeypatch, tmp_path / "site", "cb-defaults-plugin",
                 {"withdefaults": "cb_defaults_plugin"}, source=pkg)
    with pytest.raises(PluginError, match=r"takes default arguments \(transcript\)"):
        load_entry_points(new_manager(), enabled=["withdefaults"], strict=False)


def test_misspelled_hooks_fail_at_start_up(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "cb_typo_plugin.py").write_text(
        "from casebridge import hookimpl\n\n@hookimpl\ndef summarise(session):\n    return None\n")
    install_dist(monkeypatch, tmp_path / "site", "cb-typo", {"typo": "cb_typo_plugin"},
                 source=pkg)
    with pytest.raises(PluginError, match=r"'typo'.*summarise"):
        load_entry_points(new_manager(), enabled=["typo"], strict=False)


def test_a_broken_plugin_is_named_and_skipped_or_fatal_under_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "cb_broken_plugin.py").write_text("import surely_not_a_module_anywhere\n")
    (pkg / "cb_fine_plugin.py").write_text(
        "from casebridge import hookimpl\n\n@hookimpl\ndef cli_commands():\n    return []\n")
    install_dist(monkeypatch, tmp_path / "site", "cb-two",
                 {"broken": "cb_broken_plugin", "fine": "cb_fine_plugin"}, source=pkg)
    pm = new_manager()
    report = load_entry_points(pm, enabled=["broken", "fine"], strict=False)
    assert [f.name for f in report.failures] == ["broken"]
    assert "ModuleNotFoundError" in report.failures[0].error
    assert "plugin 'broken' (cb_broken_plugin) failed to load" in caplog.text
    assert pm.has_plugin("fine")
    info = {i.name: i for i in describe(pm, report.sources)}
    assert info["fine"].version == "0.1.0" and info["fine"].hooks == ("cli_commands",)
    with pytest.raises(PluginError, match=r"plugin 'broken'.*failed to load"):
        load_entry_points(new_manager(), enabled=["broken", "fine"], strict=True)


def test_only_enabled_plugins_act(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "cb_idle_plugin.py").write_text(
        "from casebridge import hookimpl\n\n@hookimpl\ndef cli_commands():\n    return []\n")
    install_dist(monkeypatch, tmp_path / "site", "cb-idle", {"idle": "cb_idle_plugin"},
                 source=pkg)
    pm = new_manager()
    load_entry_points(pm, enabled=["defaults"], strict=True)
    assert not pm.has_plugin("idle") and pm.is_blocked("idle")
    assert pm.has_plugin("defaults")
    with pytest.raises(PluginError, match="enables 'ghost', but no installed plugin"):
        load_entry_points(new_manager(), enabled=["ghost"], strict=True)


def test_each_manager_instantiates_its_own_plugins() -> None:
    a, b = new_manager(), new_manager()
    load_entry_points(a, enabled=["defaults"], strict=True)
    load_entry_points(b, enabled=["defaults"], strict=True)
    assert a.get_plugin("defaults") is not b.get_plugin("defaults")


async def test_map_fields_an_empty_value_with_a_note_never_conflicts() -> None:
    class Refuser:
        @hookimpl
        def map_fields(self):
            return {"PriorityId": FieldValue("", "lookup", "a", note="'Huge' is not allowed"),
                    "CategoryId": FieldValue("", "lookup", "a", note="no answer")}

    pm = new_manager()
    pm.register(Refuser(), name="a")
    pm.register(_fields("b", {"PriorityId": "Low"}), name="b")
    merged = await Hooks(pm).map_fields(session(), [message("hi")], Summary("s", "d"))
    assert merged["PriorityId"] == FieldValue("Low", source="b")
    assert merged["CategoryId"].note == "no answer" and not merged["CategoryId"].value


class _AsyncPolicy:
    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        self.awaited = 0

    @hookimpl
    async def handoff_policy(self, session, transcript):
        self.awaited += 1
        return HandoffDecision(self.reason, "rule") if self.reason else None


async def test_first_result_awaits_only_what_it_calls() -> None:
    # Two async implementations of a transform hook: the first answer wins and the other
    # is never called, so no coroutine is left unawaited.
    import gc
    import warnings

    pm = new_manager()
    later, earlier = _AsyncPolicy("later"), _AsyncPolicy("earlier")
    pm.register(later, name="later")
    pm.register(earlier, name="earlier")  # registered last: called first
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decision = await Hooks(pm).handoff_policy(session(), [message("hi")])
        gc.collect()
    assert decision is not None and decision.reason == "earlier"
    assert (earlier.awaited, later.awaited) == (1, 0)
    assert not [w for w in caught if "never awaited" in str(w.message)]


class _Broken:
    @hookimpl
    async def handoff_policy(self, session, transcript):
        raise RuntimeError("policy exploded")

    @hookimpl
    def assistant_turn(self, session, transcript):
        raise RuntimeError("assistant exploded")

    @hookimpl
    async def summarize(self, session, transcript, decision):
        raise ValueError("summary exploded")

    @hookimpl
    def map_fields(self, session, transcript, summary):
        raise KeyError("fields exploded")


class _Fallback:
    @hookimpl(trylast=True)
    def handoff_policy(self, session, transcript):
        return HandoffDecision("fallback", "rule")

    @hookimpl(trylast=True)
    def summarize(self, session, transcript, decision):
        return Summary("fallback subject", "fallback description")

    @hookimpl
    def map_fields(self, session, transcript, summary):
        return {"Notes": FieldValue("kept", source="fallback")}


async def test_a_transform_that_raises_is_isolated(caplog) -> None:
    from casebridge.metrics import BridgeMetrics, new_registry, render

    pm = new_manager()
    pm.register(_Fallback(), name="fallback")
    pm.register(_Broken(), name="broken")
    registry = new_registry()
    hooks = Hooks(pm, metrics=BridgeMetrics(registry))
    args = (session(), [message("hi")])
    with caplog.at_level("ERROR"):
        assert (await hooks.handoff_policy(*args)).reason == "fallback"
        turn = await hooks.assistant_turn(*args)
        summary = await hooks.summarize(*args, HandoffDecision("r", "rule"))
        fields = await hooks.map_fields(*args, summary)
    assert summary.subject == "fallback subject"
    # No other assistant answered: the session goes to a human rather than waiting.
    assert turn is not None and turn.answer == "" and turn.handoff is not None
    assert "broken: RuntimeError" in turn.handoff.reason
    assert {k: v.value for k, v in fields.items()} == {"Notes": "kept"}
    failures = [r for r in caplog.records if "broken" in r.getMessage()]
    assert {h for r in failures for h in ("handoff_policy", "assistant_turn", "summarize",
                                          "map_fields") if h in r.getMessage()} == {
        "handoff_policy", "assistant_turn", "summarize", "map_fields"}
    assert "exploded" in caplog.text
    text = render(registry)
    assert 'casebridge_hook_errors_total{hook="summarize",plugin="broken"} 1.0' in text
    assert 'casebridge_hook_errors_total{hook="map_fields",plugin="broken"} 1.0' in text
