"""The chat client against the scripted server: retries, the concurrency cap, errors."""

from __future__ import annotations

import anyio
import pytest
from casebridge.backoff import BackoffPolicy
from casebridge.secrets import Secret
from casebridge_ai.client import AiUnavailable, ChatClient
from scripted_server import Reply, content, status

KEY = Secret("sk-client-test-key", "literal")


def client(url: str, **options) -> ChatClient:
    settings = {"timeout": 2.0, "retries": 2, "max_concurrency": 4,
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


async def test_retry_after_is_honoured_and_the_usage_read(ai_server) -> None:
    ai_server.script(status(429, retry_after="0.05"), content("fine", prompt=3,
                                                               completion_tokens=4))
    completion = await client(ai_server.url).complete({"model": "m", "messages": []})
    assert completion.message["content"] == "fine"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)
    assert len(ai_server.completions()) == 2


async def test_a_bad_request_is_not_retried_and_names_the_server_message(ai_server) -> None:
    ai_server.script(Reply(status=400, body={"error": {"message": "unknown model 'x'"}}))
    with pytest.raises(AiUnavailable, match=r"answered HTTP 400: unknown model 'x'") as info:
        await client(ai_server.url).complete({"model": "x", "messages": []})
    assert info.value.status == 400 and KEY.reveal() not in str(info.value)
    assert len(ai_server.completions()) == 1


async def test_no_retries_means_one_attempt(ai_server) -> None:
    ai_server.script(status(503), content("late"))
    with pytest.raises(AiUnavailable) as info:
        await client(ai_server.url, retries=0).complete({"model": "m", "messages": []})
    assert str(info.value).endswith("answered HTTP 503")
    assert len(ai_server.completions()) == 1


def test_the_client_repr_shows_no_key() -> None:
    assert KEY.reveal() not in repr(client("http://127.0.0.1:9/v1"))
