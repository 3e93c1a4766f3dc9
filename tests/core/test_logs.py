from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest
from casebridge.logs import (
    configure_logging,
    current_session_id,
    current_trace_id,
    customer_text,
    log_context,
    new_trace_id,
    redact,
)
from casebridge.secrets import Secret
from hypothesis import given, settings
from hypothesis import strategies as st

log = logging.getLogger("casebridge.test_logs")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_core_fields_and_extras() -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    log.info("case %s created", "CS-1", extra={"crm": "creatio", "attempt": 2})
    log.debug("not shown at info")
    (line,) = json_lines(stream)
    assert line["level"] == "INFO"
    assert line["logger"] == "casebridge.test_logs"
    assert line["msg"] == "case CS-1 created"
    assert line["crm"] == "creatio"
    assert line["attempt"] == 2
    assert line["session_id"] is None
    assert line["trace_id"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["ts"]))


def test_context_ids_are_carried_and_restored() -> None:
    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    with log_context(session_id="s-1", trace_id="t-1"):
        log.info("outer")
        with log_context(trace_id="t-2"):
            assert (current_session_id(), current_trace_id()) == ("s-1", "t-2")
            log.info("inner")
        log.info("outer again")
    log.info("outside")
    ids = [(line["session_id"], line["trace_id"]) for line in json_lines(stream)]
    assert ids == [("s-1", "t-1"), ("s-1", "t-2"), ("s-1", "t-1"), (None, None)]


def test_context_follows_anyio_tasks_without_leaking_between_them() -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)

    async def handle(session: str) -> None:
        with log_context(session_id=session, trace_id=f"trace-{session}"):
            await anyio.lowlevel.checkpoint()
            log.info("handled")

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for session in ("a", "b", "c"):
                group.start_soon(handle, session)

    anyio.run(main)
    pairs = {(line["session_id"], line["trace_id"]) for line in json_lines(stream)}
    assert pairs == {("a", "trace-a"), ("b", "trace-b"), ("c", "trace-c")}


def test_customer_text_hidden_above_debug() -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    secret_words = "my account number is 1234"
    log.info("got %s", customer_text(secret_words), extra={"text": customer_text(secret_words)})
    log.info(customer_text(secret_words))
    output = stream.getvalue()
    assert secret_words not in output
    first, second = json_lines(stream)
    assert first["msg"] == f"got [customer text, {len(secret_words)} chars]"
    assert first["text"] == f"[customer text, {len(secret_words)} chars]"
    assert second["msg"] == f"[customer text, {len(secret_words)} chars]"


def test_customer_text_shown_at_debug() -> None:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    log.info("got %s", customer_text("hello there"), extra={"text": customer_text("hi")})
    (line,) = json_lines(stream)
    assert line["msg"] == "got hello there"
    assert line["text"] == "hi"


def test_customer_text_never_leaks_through_other_paths() -> None:
    wrapped = customer_text("private words")
    assert "private" not in str(wrapped)
    assert "private" not in repr(wrapped)
    assert "private" not in f"{wrapped} {wrapped!r} {wrapped:>40}"
    assert "private" not in "%s %r" % (wrapped, wrapped)  # noqa: UP031 - as logging does
    # A handler that is not ours (a library's, pytest's) sees only the placeholder.
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)
    foreign.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(foreign)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    try:
        log.debug("text: %s", wrapped)
    finally:
        log.removeHandler(foreign)
        log.setLevel(old_level)
    assert stream.getvalue() == "text: [customer text, 13 chars]\n"


@given(st.text(max_size=200))
@settings(max_examples=100)
def test_text_format_is_one_line_per_record(text: str) -> None:
    stream = io.StringIO()
    configure_logging("debug", json=False, stream=stream)
    with log_context(session_id="s9", trace_id="abc"):
        log.info("customer said %s", customer_text(text), extra={"note": text})
    output = stream.getvalue()
    assert output.endswith("\n")
    (line,) = output.splitlines()
    assert "[session=s9 trace=abc]" in line


@given(st.text(max_size=200))
@settings(max_examples=100)
def test_json_round_trips_customer_text_at_debug(text: str) -> None:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    log.info("%s", customer_text(text), extra={"body": customer_text(text)})
    (line,) = json_lines(stream)  # splitlines: no raw line break of any kind
    assert line["msg"] == text
    assert line["body"] == text


def test_text_format_shape() -> None:
    stream = io.StringIO()
    configure_logging("info", json=False, stream=stream)
    with log_context(session_id="s-7", trace_id="t-7"):
        log.warning("retrying\nlater", extra={"kind": "create_case", "reason": "429 Too Many"})
    line = stream.getvalue()
    assert re.fullmatch(
        r"\S+Z WARNING casebridge\.test_logs \[session=s-7 trace=t-7\] retrying\\nlater "
        r'kind=create_case reason="429 Too Many"\n',
        line,
    ), line


def test_exception_is_logged() -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("job failed")
    (line,) = json_lines(stream)
    assert line["msg"] == "job failed"
    assert "RuntimeError: boom" in str(line["exc"])


def test_secret_like_extras_are_masked() -> None:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    headers = {"Authorization": "Bearer abc123", "Cookie": "BPMCSRF=zzz", "Accept": "json"}
    log.info(
        "calling",
        extra={
            "password": "hunter2",
            "access_token": "tok-1",
            "client_secret": "cs-1",
            "api_key": "k-1",
            "headers": headers,
            "nested": [{"Set-Cookie": "x=1"}, {"fine": "visible"}],
            "tokens": 812,  # a count, not a credential
            "secret_obj": Secret("s3cr3t-value", "env X"),
        },
    )
    output = stream.getvalue()
    for leaked in ("hunter2", "tok-1", "cs-1", "k-1", "abc123", "zzz", "x=1", "s3cr3t-value"):
        assert leaked not in output
    (line,) = json_lines(stream)
    assert line["password"] == line["access_token"] == line["client_secret"] == "***"
    assert line["headers"] == {"Authorization": "***", "Cookie": "***", "Accept": "json"}
    assert line["nested"] == [{"Set-Cookie": "***"}, {"fine": "visible"}]
    assert line["tokens"] == 812
    # The caller's own dict is not changed by the redaction.
    assert headers["Authorization"] == "Bearer abc123"


@given(
    st.recursive(
        st.dictionaries(st.sampled_from(["Token", "x", "user", "MyPassword"]), st.text()),
        lambda inner: st.dictionaries(st.sampled_from(["a", "b", "cookie"]), inner),
        max_leaves=10,
    )
)
def test_redact_masks_every_secret_key(value: dict[str, object]) -> None:
    def check(node: object) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if key.lower() in {"token", "cookie", "mypassword"}:
                    assert child == "***"
                else:
                    check(child)

    check(redact(value))


def test_configure_replaces_its_own_handler_and_checks_level() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", json=True, stream=first)
    configure_logging("info", json=False, stream=second)
    log.info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud", json=True)


def test_trace_ids_are_short_random_hex() -> None:
    ids = {new_trace_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{16}", trace) for trace in ids)
