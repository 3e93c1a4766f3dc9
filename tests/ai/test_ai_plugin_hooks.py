"""The AI plugin's hooks against the scripted local server, over real HTTP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from ai_world import API_KEY, ai_table
from casebridge.bridge import Bridge
from casebridge.errors import ConfigError
from casebridge.model import (
    Author,
    Contact,
    Direction,
    FieldValue,
    HandoffDecision,
    Message,
    Session,
    SessionStatus,
    Summary,
)
from casebridge.plugins import PluginError
from casebridge_ai.plugin import AiPlugin
from scripted_server import Reply, content, status, tool_call
from support.bridges import write_config

SECRET_WORDS = "my card number is 4111 1111 1111 1111"
LOOKUP = {"column": "PriorityId", "kind": "lookup", "description": "How urgent the case is.",
          "allowed": ["High", "Medium", "Low"]}
TEXT = {"column": "ProductName", "kind": "text", "description": "The product concerned.",
        "max_chars": 20}

SESSION = Session(id="s-1", channel="loop", status=SessionStatus.ASSISTANT, subject="Printer",
                  contact=Contact(id="c-1", name="Ann Example", emails=("ann@example.com",)))


def msg(n: int, text: str, author: Author = Author.CUSTOMER) -> Message:
    return Message(id=f"m{n}", channel="loop", external_id=f"e{n}", sender="ann@example.com",
                   recipients=("desk",), text=text, author=author,
                   direction=Direction.INBOUND if author is Author.CUSTOMER
                   else Direction.OUTBOUND, session_id=SESSION.id)


TRANSCRIPT = [msg(1, "My printer prints blank pages."), msg(2, "Did you check the ink?",
              Author.ASSISTANT), msg(3, f"Yes. {SECRET_WORDS}")]


def plugin(bridge: Bridge) -> AiPlugin:
    found = bridge.pm.get_plugin("ai")
    assert isinstance(found, AiPlugin)
    return found


def tokens(bridge: Bridge, kind: str) -> float:
    return bridge.registry.get_sample_value("casebridge_ai_tokens_total", {"kind": kind}) or 0.0


# -- assistant_turn -------------------------------------------------------------------------


async def test_hook_assistant_turn_ai_answers_through_a_tool_call(make_bridge, ai_server,
                                                                   caplog) -> None:
    ai_server.script(tool_call("respond", {"action": "answer", "answer": "  Clean the heads. ",
                                           "reason": ""}, prompt=30, completion_tokens=12))
    caplog.set_level(logging.INFO)
    async with make_bridge(system_prompt="You help with printers.") as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
        assert turn is not None and turn.answer == "Clean the heads." and turn.handoff is None
        [request] = ai_server.completions()
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        body = request.body
        assert body["model"] == "test-model" and body["tool_choice"] == "required"
        assert body["tools"][0]["function"]["name"] == "respond"
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["system", "user", "assistant", "user"]
        assert "You help with printers." in body["messages"][0]["content"]
        assert SECRET_WORDS not in body["messages"][0]["content"]
        assert body["messages"][1]["content"].startswith("Subject: Printer")
        assert SECRET_WORDS in body["messages"][3]["content"]
        usage = await plugin(bridge).session_usage(SESSION.id)
        assert usage["prompt_tokens"] == 30 and usage["completion_tokens"] == 12
        assert usage["by_kind"]["assistant"]["calls"] == 1
        assert tokens(bridge, "assistant") == 42
    assert SECRET_WORDS not in caplog.text and API_KEY not in caplog.text
    assert "Clean the heads" not in caplog.text


async def test_hook_assistant_turn_ai_structured_handoff(make_bridge, ai_server) -> None:
    ai_server.script(tool_call("respond", {"action": "handoff", "answer": "",
                                           "reason": "payment data needs a person"}))
    async with make_bridge() as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    assert turn is not None and turn.answer == ""
    assert turn.handoff == HandoffDecision("payment data needs a person", "ai")


async def test_hook_assistant_turn_ai_json_response_format(make_bridge, ai_server) -> None:
    ai_server.script(content('```json\n{"action": "answer", "answer": "Hi!", "reason": ""}\n```'))
    async with make_bridge(use_tools=False) as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    assert turn is not None and turn.answer == "Hi!"
    body = ai_server.completions()[0].body
    assert "tools" not in body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == [
        "action", "answer", "reason"]


@pytest.mark.parametrize(("reply", "why"), [
    (tool_call("respond", '{"action": "answer", "answer": '), "not JSON"),
    (tool_call("respond", {"action": "refund", "answer": "x", "reason": ""}), "unknown action"),
    (tool_call("respond", {"action": "answer", "answer": "   ", "reason": ""}), "empty"),
    (tool_call("other", {"action": "answer", "answer": "x", "reason": ""}), "other than"),
    (content("Sure, clean the heads and it will work."), "free text"),
    (Reply(body={"choices": []}), "no choices"),
    (Reply(body="<html>gateway</html>"), "other than JSON"),
    (Reply(body="[" * 100_000), "nested deeper than 64 levels"),
    (tool_call("respond", "[" * 5_000), "nested deeper than 64 levels"),
])
async def test_hook_assistant_turn_ai_unusable_output_hands_off(make_bridge, ai_server, reply,
                                                                why) -> None:
    ai_server.script(reply)
    async with make_bridge() as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    assert turn is not None and turn.answer == "" and turn.handoff is not None
    assert turn.handoff.source == "ai" and why in turn.handoff.reason


async def test_hook_assistant_turn_ai_retries_429_and_5xx(make_bridge, ai_server) -> None:
    ai_server.script(status(429, retry_after="0"), status(503),
                     tool_call("respond", {"action": "answer", "answer": "Ok", "reason": ""}))
    async with make_bridge(retries=2) as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    assert turn is not None and turn.answer == "Ok"
    assert len(ai_server.completions()) == 3


async def test_hook_assistant_turn_ai_unavailable_hands_off_after_retries(make_bridge,
                                                                          ai_server) -> None:
    ai_server.script(status(500), status(502), status(500), status(500))
    async with make_bridge(retries=2) as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    assert turn is not None and turn.handoff is not None
    assert turn.handoff.reason.startswith("the assistant is unavailable: ")
    assert "HTTP 500 after 3 attempts" in turn.handoff.reason
    assert len(ai_server.completions()) == 3 and API_KEY not in turn.handoff.reason


async def test_hook_assistant_turn_ai_long_retry_after_gives_up_at_once(make_bridge,
                                                                        ai_server) -> None:
    ai_server.script(status(429, retry_after="120"))
    async with make_bridge(retries=2) as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    assert turn is not None and turn.handoff is not None
    assert "asks to wait 120s" in turn.handoff.reason and len(ai_server.completions()) == 1


async def test_hook_assistant_turn_ai_timeout_hands_off(make_bridge, ai_server) -> None:
    ai_server.script(Reply(hang=True), Reply(hang=True))
    async with make_bridge(timeout=0.2, retries=1) as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    assert turn is not None and turn.handoff is not None
    assert "no answer" in turn.handoff.reason and "within 0.2s after 2 attempts" in (
        turn.handoff.reason)


async def test_hook_assistant_turn_ai_refused_key_is_not_retried(make_bridge, ai_server) -> None:
    ai_server.script(status(401))
    async with make_bridge(retries=2) as (bridge, _):
        turn = await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    assert turn is not None and turn.handoff is not None
    assert "HTTP 401 (check api_key): scripted 401" in turn.handoff.reason
    assert len(ai_server.completions()) == 1


async def test_hook_assistant_turn_ai_knowledge_files_reach_the_system_prompt(
        make_bridge, ai_server, tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text("Blank pages: run the head cleaning twice.")
    ai_server.script(tool_call("respond", {"action": "answer", "answer": "Ok", "reason": ""}))
    async with make_bridge(knowledge_files=["faq.md"]) as (bridge, _):
        await plugin(bridge).assistant_turn(SESSION, TRANSCRIPT)
    system = ai_server.completions()[0].body["messages"][0]["content"]
    assert "## faq.md\nBlank pages: run the head cleaning twice." in system


async def test_hook_configure_ai_missing_knowledge_file_names_it(make_bridge) -> None:
    with pytest.raises(ConfigError, match=r"knowledge_files: cannot read .*nope\.md"):
        async with make_bridge(knowledge_files=["nope.md"]):
            pass


@pytest.mark.parametrize(("table", "message"), [
    ({"fields": [{**LOOKUP, "allowed": []}]}, "a lookup needs its allowed values"),
    ({"fields": [LOOKUP, LOOKUP]}, "listed twice"),
    ({"base_url": "ftp://x"}, "base_url must start with http"),
    ({"base_url": "https://user:pw@api.example.com/v1"}, "must not contain credentials"),
    ({"timeout": 0}, "timeout must be positive"),
    ({"api_key": API_KEY}, "api_key must come from the environment or a file"),
    ({"fields": [{**TEXT, "kind": "number"}]}, "expected one of 'text', 'lookup'"),
    # The assistant's retries keep a customer waiting: a couple of short ones at most.
    ({"retries": 3}, "retries must be 0 to 2"),
    ({"backoff_cap": 30.0}, "backoff_cap at most 10 seconds"),
])
def test_ai_settings_errors_name_the_problem(tmp_path, monkeypatch, ai_server, table,
                                             message) -> None:
    from support.bridges import install_jsonl

    install_jsonl(monkeypatch, tmp_path)
    monkeypatch.setenv("CB_TEST_AI_KEY", API_KEY)
    path = write_config(tmp_path, bridge={"plugins": ["ai"]},
                        plugins={"ai": ai_table(ai_server, **table)})
    with pytest.raises(ConfigError, match=message) as info:
        Bridge.from_config(path, plugins={"loop": object()})
    assert API_KEY not in str(info.value) and "pw@" not in str(info.value)


# -- summarize ------------------------------------------------------------------------------

DECISION = HandoffDecision("the customer asked for a person", "defaults")


async def test_hook_summarize_ai_writes_the_case_description(make_bridge, ai_server) -> None:
    long = "Ann's printer prints blank pages; the assistant suggested checking the ink. " * 10
    ai_server.script(tool_call("write_case_summary", {"subject": "Blank\npages",
                                                      "description": long, "language": "en"}))
    async with make_bridge(summary_max_chars=200, language="de") as (bridge, _):
        summary = await plugin(bridge).summarize(SESSION, TRANSCRIPT, DECISION)
        assert tokens(bridge, "summary") == 27
    assert summary is not None and summary.subject == "Blank pages"
    assert len(summary.description) <= 200 and summary.description.endswith("…")
    assert summary.language == "de"
    body = ai_server.completions()[0].body
    system, user = body["messages"]
    assert "'de'" in system["content"] and "at most 200 characters" in system["content"]
    assert SECRET_WORDS not in system["content"] and DECISION.reason not in system["content"]
    document = json.loads(user["content"])
    assert document["handoff_reason"] == DECISION.reason
    assert [m["from"] for m in document["messages"]] == ["customer", "assistant", "customer"]


@pytest.mark.parametrize("reply", [
    tool_call("write_case_summary", {"subject": "x", "description": "", "language": "en"}),
    content("Here is the summary: the printer is broken."),
    status(500),
])
async def test_hook_summarize_ai_failure_lets_the_default_serve(make_bridge, ai_server, reply,
                                                                caplog) -> None:
    ai_server.script(reply, reply, reply)
    caplog.set_level(logging.WARNING)
    async with make_bridge() as (bridge, _):
        assert await plugin(bridge).summarize(SESSION, TRANSCRIPT, DECISION) is None
        # One attempt: no customer waits for a summary, and the default is at hand.
        assert len(ai_server.completions()) == 1
        summary = await bridge.hooks.summarize(SESSION, TRANSCRIPT, DECISION)
    assert "default summary serves" in caplog.text
    assert "Request, in the customer's words:" in summary.description


# -- map_fields -----------------------------------------------------------------------------

SUMMARY = Summary("Blank pages", "Ann's printer prints blank pages.")


async def test_hook_map_fields_ai_fills_validated_fields_in_one_call(make_bridge,
                                                                     ai_server) -> None:
    ai_server.script(tool_call("fill_case_fields", {
        "PriorityId": " medium ", "ProductName": "LaserJet 1020 with the duplex unit"}))
    async with make_bridge(fields=[LOOKUP, TEXT]) as (bridge, _):
        fields = await plugin(bridge).map_fields(SESSION, TRANSCRIPT, SUMMARY)
        assert tokens(bridge, "fields") == 27
    assert {c: (v.value, v.kind, v.source) for c, v in fields.items()} == {
        "PriorityId": ("Medium", "lookup", "ai"),
        "ProductName": ("LaserJet 1020 with…", "text", "ai"),
    }
    [request] = ai_server.completions()
    schema = request.body["tools"][0]["function"]["parameters"]
    assert schema["properties"]["PriorityId"]["enum"] == ["High", "Medium", "Low", None]
    assert '"High"; "Medium"; "Low"' in request.body["messages"][0]["content"]


async def test_hook_map_fields_ai_value_outside_the_list_is_left_empty_with_why(
        make_bridge, ai_server, caplog) -> None:
    ai_server.script(tool_call("fill_case_fields", {"PriorityId": "Critical",
                                                    "ProductName": None}))
    caplog.set_level(logging.INFO)
    async with make_bridge(fields=[LOOKUP, TEXT]) as (bridge, _):
        why = "the model's choice is not one of the allowed values (High, Medium, Low)"
        assert await plugin(bridge).map_fields(SESSION, TRANSCRIPT, SUMMARY) == {
            "PriorityId": FieldValue("", "lookup", "ai", note=why)}
        state = await bridge.store.get_state("ai", f"fields:{SESSION.id}")
    assert state["rejected"] == {
        "PriorityId": "the model's choice is not one of the allowed values (High, Medium, Low)"}
    assert "AI field PriorityId left empty" in caplog.text
    assert "Critical" not in caplog.text  # the model's words stay out of INFO logs


RULES = {"rules": [{"column": "PriorityId", "value": "Low", "kind": "lookup"}]}


@pytest.mark.parametrize("reply", [status(503), content("PriorityId: High"),
                                   tool_call("fill_case_fields", "[1, 2]")])
async def test_hook_map_fields_ai_failure_fills_nothing_and_the_rules_still_apply(
        make_bridge, ai_server, reply) -> None:
    ai_server.script(reply, reply, reply)
    async with make_bridge(fields=[LOOKUP], core={"fields": RULES}) as (bridge, _):
        assert await plugin(bridge).map_fields(SESSION, TRANSCRIPT, SUMMARY) == {}
        ai_server.script(reply, reply, reply)
        merged = await bridge.hooks.map_fields(SESSION, TRANSCRIPT, SUMMARY)
    assert merged == {"PriorityId": FieldValue("Low", "lookup", "defaults")}


async def test_hook_map_fields_ai_and_a_rule_on_one_column_need_prefer(make_bridge,
                                                                       ai_server) -> None:
    answer = tool_call("fill_case_fields", {"PriorityId": "High"})
    ai_server.script(answer)
    async with make_bridge(fields=[LOOKUP], core={"fields": RULES}) as (bridge, _):
        with pytest.raises(PluginError, match="say which wins in \\[fields\\] prefer"):
            await bridge.hooks.map_fields(SESSION, TRANSCRIPT, SUMMARY)
    ai_server.script(answer)
    preferred = {"fields": {**RULES, "prefer": {"PriorityId": "ai"}}}
    async with make_bridge(fields=[LOOKUP], core=preferred) as (bridge, _):
        merged = await bridge.hooks.map_fields(SESSION, TRANSCRIPT, SUMMARY)
    assert merged == {"PriorityId": FieldValue("High", "lookup", "ai")}


async def test_hook_map_fields_ai_without_fields_makes_no_call(make_bridge, ai_server) -> None:
    async with make_bridge() as (bridge, _):
        assert await plugin(bridge).map_fields(SESSION, TRANSCRIPT, SUMMARY) == {}
    assert ai_server.completions() == []


# -- check ----------------------------------------------------------------------------------


async def test_hook_check_ai_active_when_the_model_is_served(make_bridge, ai_server) -> None:
    async with make_bridge() as (bridge, _):
        result = await bridge.hooks.check("ai")
    assert result.ok and result.detail == "Active"
    assert ai_server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_hook_check_ai_names_a_model_the_server_lacks(make_bridge, ai_server) -> None:
    ai_server.models = ["llama-3.1-8b", "qwen2.5-7b"]
    async with make_bridge() as (bridge, _):
        result = await bridge.hooks.check("ai")
    assert not result.ok
    assert "does not serve the model 'test-model' (it lists: llama-3.1-8b, qwen2.5-7b)" in (
        result.detail)


async def test_hook_check_ai_falls_back_to_a_completion_without_a_model_list(
        make_bridge, ai_server) -> None:
    ai_server.models_status = 404
    ai_server.script(content("OK"))
    async with make_bridge() as (bridge, _):
        result = await bridge.hooks.check("ai")
        assert tokens(bridge, "check") == 27
    assert result.ok
    assert ai_server.completions()[0].body["max_tokens"] == 1


async def test_hook_check_ai_unreachable_server(make_bridge, ai_server) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    async with make_bridge(base_url=f"http://127.0.0.1:{port}/v1", retries=0) as (bridge, _):
        result = await bridge.hooks.check("ai")
    assert not result.ok and result.detail == (
        f"cannot reach http://127.0.0.1:{port}/v1/models (ConnectError)")


async def test_hook_check_ai_reads_the_key_from_a_file(make_bridge, ai_server,
                                                       tmp_path: Path) -> None:
    (tmp_path / "ai.key").write_text("sk-from-a-file\n")
    async with make_bridge(api_key={"file": "ai.key"}) as (bridge, _):
        assert (await bridge.hooks.check("ai")).ok
        assert "sk-from-a-file" not in repr(bridge.settings("ai"))
    assert ai_server.requests[0].headers["authorization"] == "Bearer sk-from-a-file"
