"""The pipeline's pure parts, apart from the store and the hooks: activity titles, which
attachments are uploaded, the fields a case gets, and which message a new session
acknowledges."""

from __future__ import annotations

from casebridge.case_sync import activity_title, attach_jobs, uploadable
from casebridge.handoffs import filled_fields
from casebridge.intake import ack_job, new_session
from casebridge.model import (
    Attachment,
    Author,
    Contact,
    Direction,
    FieldValue,
    Message,
    Summary,
)
from hypothesis import given
from hypothesis import strategies as st


def message(id_: str = "m1", *, author: Author = Author.CUSTOMER, subject: str = "",
            attachments: tuple[Attachment, ...] = (), external_id: str = "e1") -> Message:
    return Message(id=id_, channel="sms", direction=Direction.INBOUND, author=author,
                   external_id=external_id, sender="+15550100", recipients=("+15559999",),
                   text="hi", subject=subject, sender_name="Ann", attachments=attachments)


SESSION = new_session(message(subject="Printer  jams\n again"), Contact(id="c"))


def test_a_new_session_is_on_the_address_its_first_message_came_in_on() -> None:
    assert (SESSION.channel, SESSION.channel_address, SESSION.subject) == (
        "sms", "+15559999", "Printer  jams\n again")
    assert new_session(message(), Contact(id="c")).id == SESSION.id  # derived: a re-run finds it


@given(st.text(max_size=400), st.sampled_from(list(Author)))
def test_an_activity_title_is_one_line_within_250_characters(subject: str,
                                                             author: Author) -> None:
    title = activity_title(message(subject=subject, author=author), SESSION)
    assert title.startswith("SMS from ") and len(title) <= 250
    assert "\n" not in title


def test_an_activity_title_names_who_wrote_and_the_sessions_subject() -> None:
    assert activity_title(message(), SESSION) == "SMS from Ann: Printer jams again"
    assert activity_title(message(author=Author.AGENT, subject="Re: x"), SESSION) == (
        "SMS from Agent: Re: x")


def test_only_files_kept_in_the_blob_store_are_uploaded() -> None:
    kept = Attachment("a.txt", "text/plain", 3, "ab", "ab/ab")
    hosted = Attachment("b.jpg", "image/jpeg", 3, "cd", "https://media.example/b.jpg")
    refused = Attachment("c.exe", "application/x", 3, "ef", "ef/ef", refused="not allowed")
    assert [uploadable(a) for a in (kept, hosted, refused)] == [True, False, False]
    jobs = attach_jobs(SESSION, [message(attachments=(kept, hosted, refused))])
    assert [j.key for j in jobs] == [f"attach:{SESSION.id}:m1:ab"]


def test_empty_fields_are_left_out_and_their_reasons_told_to_the_rep() -> None:
    fields, summary = filled_fields(Summary("s", "Printer jams."), {
        "ProductName": FieldValue("Laser 5"),
        "CategoryId": FieldValue("", note="not one of the values"),
        "Priority": FieldValue(""),
    })
    assert list(fields) == ["ProductName"]
    assert summary.description == (
        "Printer jams.\n\nFields left empty:\n- CategoryId: not one of the values")
    assert filled_fields(Summary("s", "d"), {})[1] == Summary("s", "d")


def test_only_the_message_that_opened_a_session_is_acknowledged() -> None:
    [ack] = ack_job(SESSION, message())
    assert (ack.kind, ack.key, ack.order_key) == ("ack", f"ack:{SESSION.id}", SESSION.id)
    assert ack_job(SESSION, message("m2", external_id="e2")) == []
