"""The pure parts of the Creatio plugin: webhook authentication and parsing, which
activities are replies, HTML to text, and the reconciliation watermark."""

from __future__ import annotations

import html
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from casebridge.errors import WebhookRefused
from casebridge.secrets import Secret
from casebridge_creatio import settings as cs
from casebridge_creatio.odata import format_datetime
from casebridge_creatio.reconcile import next_watermark, parse_creatio_datetime
from casebridge_creatio.sandbox.pages import reply_html
from casebridge_creatio.webhook import (
    WebhookEvent,
    authenticate,
    html_to_text,
    ignore_reason,
    parse_event,
    reply_from_activity,
    reply_type_ids,
)
from hypothesis import assume, given
from hypothesis import strategies as st

guids = st.uuids().map(str)
tokens = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40)
words = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp", "Cf", "Co", "Cn")),
    min_size=1, max_size=8,
)
lines = st.lists(words, min_size=1, max_size=5).map(" ".join)
paragraphs = st.lists(lines, min_size=1, max_size=3).map("\n".join)
texts = st.lists(paragraphs, min_size=1, max_size=4).map("\n\n".join)


# -- authenticate ------------------------------------------------------------------------------


@given(tokens, tokens)
def test_authenticate_accepts_only_the_token(token: str, given_token: str) -> None:
    if given_token == token:
        authenticate(given_token, {}, token=Secret(token), secret=None, secret_header="X-S")
        return
    with pytest.raises(WebhookRefused) as refused:
        authenticate(given_token, {}, token=Secret(token), secret=None, secret_header="X-S")
    assert refused.value.status == 403
    assert token not in str(refused.value) and given_token not in str(refused.value)


@given(tokens, tokens)
def test_authenticate_checks_the_secret_header(secret: str, sent: str) -> None:
    token = Secret("the-path-token")
    ok = {"x-casebridge-secret": secret}
    authenticate("the-path-token", ok, token=token, secret=Secret(secret),
                 secret_header="X-Casebridge-Secret")
    for headers in ({}, {"x-casebridge-secret": sent}):
        if headers.get("x-casebridge-secret") == secret:
            continue
        with pytest.raises(WebhookRefused) as refused:
            authenticate("the-path-token", headers, token=token, secret=Secret(secret),
                         secret_header="X-Casebridge-Secret")
        assert refused.value.status == 403 and secret not in str(refused.value)


def test_authenticate_without_a_token_refuses_everything() -> None:
    with pytest.raises(WebhookRefused, match="no webhook_token is configured"):
        authenticate("", {}, token=None, secret=None, secret_header="X-S")


# -- parse_event -------------------------------------------------------------------------------


@given(guids, guids, st.booleans(), st.dictionaries(st.text(max_size=5), st.integers()))
def test_parse_event_reads_new_activity(case: str, activity: str, upper: bool, extra) -> None:
    body = {**extra, "event_type": "new_activity",
            "caseId": case.upper() if upper else case, "activityId": f"{{{activity}}}"}
    assert parse_event(json.dumps(body).encode()) == WebhookEvent(
        "new_activity", case, activity_id=activity)


@given(guids, st.one_of(st.none(), st.just(""), guids),
       st.sampled_from(["case_closed", "case_status_changed"]))
def test_parse_event_reads_case_events(case: str, status: str | None, kind: str) -> None:
    body = {"event_type": kind, "caseId": case, "statusId": status}
    assert parse_event(json.dumps(body).encode()) == WebhookEvent(kind, case,
                                                                  status_id=status or "")


@given(st.binary(max_size=40))
def test_parse_event_refuses_anything_else_with_400(body: bytes) -> None:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    assume(not isinstance(data, dict))
    with pytest.raises(WebhookRefused) as refused:
        parse_event(body)
    assert refused.value.status == 400


@pytest.mark.parametrize(("body", "message"), [
    (b"[1]", "the body must be a JSON object, got list"),
    (b'{"event_type": "nope", "caseId": "x"}',
     'event_type must be one of new_activity, case_closed, case_status_changed, got "nope"'),
    (b'{"event_type": "case_closed", "caseId": "SR0001"}', 'caseId must be a GUID, got "SR0001"'),
    (b'{"event_type": "case_closed", "caseId": "4b9f0a3c-6d5e-4f7a-8b9c-0d1e2f3a4b5c", '
     b'"statusId": 7}', "statusId must be a GUID, got 7"),
])
def test_parse_event_names_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse_event(body)
    assert str(refused.value) == message and refused.value.status == 400


# -- which activities are replies --------------------------------------------------------------

TYPES = reply_type_ids(cs.ACTIVITY_TYPE_TASK)
CASE = str(uuid.uuid4())


def activity(**values) -> dict:
    base = {"id": str(uuid.uuid4()), "case_id": CASE, "body": "Hello", "is_html": False,
            "type_id": cs.ACTIVITY_TYPE_EMAIL, "message_type_id": cs.MESSAGE_TYPE_OUTGOING,
            "author_name": "Alex Agent", "written_by_bridge": False}
    return base | values


@pytest.mark.parametrize(("values", "reason"), [
    ({}, ""),
    ({"type_id": cs.ACTIVITY_TYPE_TASK, "message_type_id": ""}, ""),
    ({"type_id": cs.ACTIVITY_TYPE_TASK}, ""),
    ({"written_by_bridge": True}, "written by casebridge"),
    ({"case_id": ""}, "not linked to a case"),
    ({"message_type_id": cs.MESSAGE_TYPE_INCOMING}, "an incoming message, not a rep's reply"),
    ({"message_type_id": ""}, "not an outgoing message"),
    ({"type_id": cs.ACTIVITY_TYPE_CALL},
     f"activity type {cs.ACTIVITY_TYPE_CALL} is not a reply type"),
])
def test_ignore_reason(values: dict, reason: str) -> None:
    assert ignore_reason(activity(**values), TYPES) == reason


def test_reply_from_activity_text_html_and_empty() -> None:
    plain = reply_from_activity(activity(body="  Thanks,\r\nAlex  "), "creatio")
    assert plain is not None and (plain.text, plain.html) == ("Thanks,\nAlex", "")
    assert plain.crm == "creatio" and plain.case_id == CASE and plain.author_name == "Alex Agent"
    rich = reply_from_activity(activity(
        body='<p onclick="x()">Hi <b>Ann</b></p><img src=x onerror=alert(1)>', is_html=True),
        "creatio")
    assert rich is not None and rich.text == "Hi Ann"
    assert "onclick" not in rich.html and "onerror" not in rich.html and "<b>Ann</b>" in rich.html
    assert reply_from_activity(activity(body="<p> </p><br>", is_html=True), "creatio") is None


# -- html_to_text ------------------------------------------------------------------------------


@given(texts)
def test_html_to_text_reads_back_what_an_agent_typed(text: str) -> None:
    assume(text == text.strip())
    assert html_to_text(reply_html(text)) == text


@given(lines)
def test_html_to_text_drops_scripts_and_styles(text: str) -> None:
    marker = "HIDDEN-MARKER"
    page = (f"<html><head><style>{marker}</style></head><body><div>{html.escape(text)}</div>"
            f"<script>var a = '{marker}';</script></body></html>")
    assert html_to_text(page) == text.strip()


@given(st.text(max_size=200))
def test_html_to_text_is_tidy_for_any_input(markup: str) -> None:
    text = html_to_text(markup)
    assert text == text.strip() and "\n\n\n" not in text
    assert all(line == line.strip() for line in text.split("\n"))


def test_html_to_text_structure() -> None:
    assert html_to_text("<ul><li>one</li><li>two</li></ul><p>a&amp;b<br/>c</p>") == (
        "- one\n- two\n\na&b\nc")
    assert html_to_text("<pre>keep\n  this</pre>") == "keep\nthis"


# -- the watermark -----------------------------------------------------------------------------

times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC))


@given(times, st.integers(0, 9))
def test_parse_creatio_datetime_reads_seven_digit_times(when: datetime, extra: int) -> None:
    text = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond:06d}{extra}Z"
    assert parse_creatio_datetime(text) == when
    assert parse_creatio_datetime(format_datetime(when)) == when


@given(times, st.integers(-12, 14))
def test_parse_creatio_datetime_honours_offsets(when: datetime, hours: int) -> None:
    local = when.astimezone(timezone(timedelta(hours=hours)))
    assert parse_creatio_datetime(local.isoformat()) == when
    assert parse_creatio_datetime(when.replace(tzinfo=None).isoformat()) == when


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01T00:00:00Z", "2024-01-01"])
def test_parse_creatio_datetime_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_creatio_datetime(text)


@given(times, st.lists(times, max_size=5), st.lists(st.text(max_size=5), max_size=3))
def test_next_watermark_is_the_newest_time_seen(start, seen, junk) -> None:
    texts_seen = [format_datetime(t) for t in seen] + junk
    assert next_watermark(start, texts_seen) == max([start, *seen])


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"caseId": ' * 50_000, b"[" * 65 + b"]" * 65])
def test_parse_event_refuses_deep_nesting_with_400(body: bytes) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse_event(body)
    assert refused.value.status == 400
    assert "nested deeper than 64 levels" in str(refused.value)


def test_a_reps_html_goes_through_the_same_policy_as_customers() -> None:
    # One allow-list for HTML from outside: what the customer's HTML may not carry, the
    # rep's may not either (a CRM user's HTML reaches the customer's mail client).
    from casebridge.sanitize import sanitize_html

    body = ('<p onclick="x()">Hi <a href="javascript:alert(1)">there</a></p>'
            '<img src="https://tracker.example/p.gif"><style>p{}</style>'
            '<table><tr><td style="color: red; position: fixed">ok</td></tr></table>')
    reply = reply_from_activity({"id": "a" * 8, "case_id": "c" * 8, "body": body,
                                 "is_html": True}, "creatio")
    assert reply is not None and reply.html == sanitize_html(body)
    assert "javascript:" not in reply.html and "onclick" not in reply.html
    assert "tracker.example" not in reply.html and "<style" not in reply.html
    assert "<table>" in reply.html and "position" not in reply.html
