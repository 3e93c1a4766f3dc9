"""One conversation through a real Bridge (loop channel, JSON-lines CRM), with the AI plugin
answering from the scripted local server, and the same conversation with it disabled."""

from __future__ import annotations

import logging
from typing import Any

from casebridge.metrics import render
from casebridge.model import SessionStatus
from scripted_server import Reply, tool_call
from support.bridges import inbound, jsonl_records, only_session, settle

CONVERSATION = [
    "My LaserJet 1020 prints blank pages.",
    "Still blank after the cleaning. I want my money back for the cartridge.",
    "Hello? Anyone there?",
]
AI_SUMMARY = ("Ann Example (ann@example.com) reports that her LaserJet 1020 prints blank pages. "
              "The assistant suggested running the head cleaning twice; it did not help. She "
              "asks for a refund of the cartridge, which needs a person.")
FIELDS = [
    {"column": "PriorityId", "kind": "lookup", "description": "How urgent the case is.",
     "allowed": ["High", "Medium", "Low"]},
    {"column": "ProductName", "kind": "text", "description": "The product concerned."},
    {"column": "CategoryId", "kind": "lookup", "description": "The kind of request.",
     "allowed": ["Hardware", "Software"]},
]
CORE = {
    "handoff": {"max_customer_turns": 3},
    "fields": {"rules": [{"column": "PriorityId", "value": "Low", "kind": "lookup"},
                         {"column": "OriginId", "value": "Chat", "kind": "lookup"}],
               "prefer": {"PriorityId": "ai"}},
}


def model(body: dict[str, Any]) -> Reply:
    """The scripted model: answers until the customer mentions money, then hands off."""
    tool = body["tools"][0]["function"]["name"]
    if tool == "respond":
        last = body["messages"][-1]["content"]
        if "money back" in last:
            return tool_call(tool, {"action": "handoff", "answer": "",
                                    "reason": "refunds need a person"})
        return tool_call(tool, {"action": "answer", "answer": "Please run the head cleaning "
                                "twice from the printer's menu.", "reason": ""})
    if tool == "write_case_summary":
        return tool_call(tool, {"subject": "LaserJet 1020 prints blank pages; refund wanted",
                                "description": AI_SUMMARY, "language": "en"})
    return tool_call(tool, {"PriorityId": "High", "ProductName": "LaserJet 1020",
                            "CategoryId": "Billing dispute"})


async def converse(bridge) -> None:
    for n, text in enumerate(CONVERSATION, 1):
        await bridge.receive(inbound(text, msg_id=f"m{n}"))
        await settle(bridge)


async def test_hook_assistant_turn_ai_conversation_reaches_the_crm_with_ai_summary_and_fields(
        make_bridge, ai_server, caplog) -> None:
    ai_server.responder = model
    caplog.set_level(logging.INFO)
    async with make_bridge(core=CORE, fields=FIELDS) as (bridge, loop):
        await converse(bridge)
        session = await only_session(bridge)
        assert session.status is SessionStatus.HANDED_OFF and session.case is not None

        # One assistant answer, then the structured handoff.
        assert [m.text for m in loop.sent] == [
            "Please run the head cleaning twice from the printer's menu."]
        [case] = jsonl_records(bridge, "case")
        assert case["id"] == session.case.case_id
        assert case["subject"] == "LaserJet 1020 prints blank pages; refund wanted"
        assert case["description"].startswith(AI_SUMMARY)
        assert "Handed off: refunds need a person" in case["description"]
        # Validated AI fields; the rule fills what the AI does not; the out-of-list lookup
        # stays empty and says why.
        assert case["fields"] == {"PriorityId": "High", "ProductName": "LaserJet 1020",
                                  "OriginId": "Chat"}
        state = await bridge.store.get_state("ai", f"fields:{session.id}")
        assert set(state["rejected"]) == {"CategoryId"}
        assert "AI field CategoryId left empty" in caplog.text
        assert "Fields left empty:\n- CategoryId: the model's choice is not one of" in \
            case["description"]
        # Every message reaches the case, the one after the handoff included.
        activities = jsonl_records(bridge, "activity")
        assert [a["author"] for a in activities] == ["customer", "assistant", "customer",
                                                     "customer"]
        # Token usage per session and as metrics.
        usage = await bridge.pm.get_plugin("ai").session_usage(session.id)
        assert {k: v["calls"] for k, v in usage["by_kind"].items()} == {
            "assistant": 2, "summary": 1, "fields": 1}
        metrics = render(bridge.registry)
        for kind, calls in (("assistant", 2), ("summary", 1), ("fields", 1)):
            assert f'casebridge_ai_tokens_total{{kind="{kind}"}} {27 * calls}.0' in metrics
    assert len(ai_server.completions()) == 4 and ai_server.unscripted == 0
    for text in CONVERSATION:
        assert text not in caplog.text


async def test_hook_summarize_ai_disabled_the_same_conversation_reaches_the_crm_by_defaults(
        make_bridge, ai_server) -> None:
    ai_server.responder = model
    async with make_bridge(ai=False, core=CORE) as (bridge, loop):
        assert bridge.pm.get_plugin("ai") is None
        await converse(bridge)
        session = await only_session(bridge)
        assert session.status is SessionStatus.HANDED_OFF
        assert loop.sent == []
        [case] = jsonl_records(bridge, "case")
        assert "3 customer messages without resolution" in case["description"]
        assert "Request, in the customer's words:" in case["description"]
        assert CONVERSATION[0] in case["description"]
        assert case["fields"] == {"PriorityId": "Low", "OriginId": "Chat"}
        assert len(jsonl_records(bridge, "activity")) == 3
    assert ai_server.requests == []


async def test_hook_assistant_turn_ai_model_down_still_hands_the_customer_to_a_person(
        make_bridge, ai_server) -> None:
    # No script and no responder: every call gets HTTP 500.
    async with make_bridge(core=CORE, fields=FIELDS, retries=1) as (bridge, loop):
        await bridge.receive(inbound(CONVERSATION[0], msg_id="m1"))
        await settle(bridge)
        session = await only_session(bridge)
        assert session.status is SessionStatus.HANDED_OFF and loop.sent == []
        [case] = jsonl_records(bridge, "case")
        assert "the assistant failed (ai: AiUnavailable: " in case["description"]
        assert "Request, in the customer's words:" in case["description"]
        assert case["fields"] == {"PriorityId": "Low", "OriginId": "Chat"}
