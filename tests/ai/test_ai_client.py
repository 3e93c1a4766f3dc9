"""The chat client against the scripted server: one attempt per call (a bounded retry only
for a customer waiting live), the concurrency cap, errors."""

from __future__ import annotations

import anyio
import pytest
from casebridge.plugin import BackoffPolicy, Secret
from casebridge_ai.client import MAX_LIVE_RETRIES, AiUnavailable, ChatClient
from scripted_server import Reply, content, status

KEY = Secret("sk-client-test-key", "literal")


def client(url: str, **options) -> ChatClient:
    settings = {"timeout": 2.0, "max_concurrency": 4,
                "backoff": BackoffPolicy(base=0.01, cap=0.05, jitter=0.5, max_attempts=3)}
    settings.update(options)
    return ChatClient(url, KEY, **settings)


async def test_the_concurrency_cap_holds_across_simultaneous_calls(ai_server) -> None:
    # Each answer takes long enough for the calls to overlap when nothing stops them.
    ai_server.script(*[content("ok", pause=0.05) for _ in range(5)])
    chat = client(ai_server.url, max_concurrency=2)
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(chat.complete, {"model": "m", "messages": []})
    assert len(ai_server.completions()) == 5
    assert ai_server.max_in_flight == 2


async def test_without_a_cap_the_same_calls_overlap(ai_server) -> None:
    # The control for the test above: the server does see overlapping calls.
    ai_server.script(*[content("ok", pause=0.05) for _ in range(3)])
    chat = client(ai_server.url, max_concurrency=3)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(chat.complete, {"model": "m", "messages": []})
    assert ai_server.max_in_flight > 1


async def test_a_call_is_one_attempt_by_default(ai_server) -> None:
    # Retrying is the outbox's; the call says whether another attempt may help.
    ai_server.script(status(503, retry_after="7"), content("late"))
    with pytest.raises(AiUnavailable) as info:
        await client(ai_server.url).complete({"model": "m", "messages": []})
    assert str(info.value).endswith("answered HTTP 503; the server asks to wait 7s")
    assert info.value.retryable and info.value.retry_after == 7.0
    assert len(ai_server.completions()) == 1


async def test_live_retry_after_is_honoured_and_the_usage_read(ai_server) -> None:
    ai_server.script(status(429, retry_after="0.05"), content("fine", prompt=3,
                                                               completion_tokens=4))
    completion = await client(ai_server.url).complete({"model": "m", "messages": []},
                                                      retries=2)
    assert completion.message["content"] == "fine"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)
    assert len(ai_server.completions()) == 2


async def test_a_bad_request_is_not_retried_and_names_the_server_message(ai_server) -> None:
    ai_server.script(Reply(status=400, body={"error": {"message": "unknown model 'x'"}}))
    with pytest.raises(AiUnavailable, match=r"answered HTTP 400: unknown model 'x'") as info:
        await client(ai_server.url).complete({"model": "x", "messages": []})
    assert info.value.status == 400 and KEY.reveal() not in str(info.value)
    assert not info.value.retryable
    assert len(ai_server.completions()) == 1


async def test_live_retries_are_bounded_whatever_the_caller_asks(ai_server) -> None:
    ai_server.script(*[status(500) for _ in range(6)])
    with pytest.raises(AiUnavailable, match=f"after {MAX_LIVE_RETRIES + 1} attempts"):
        await client(ai_server.url).complete({"model": "m", "messages": []}, retries=5)
    assert len(ai_server.completions()) == MAX_LIVE_RETRIES + 1


def test_the_client_repr_shows_no_key() -> None:
    assert KEY.reveal() not in repr(client("http://127.0.0.1:9/v1"))
