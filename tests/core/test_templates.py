from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from casebridge.errors import ConfigError, PermanentError
from casebridge.model import (
    Attachment,
    Author,
    CaseLink,
    Contact,
    Direction,
    HandoffDecision,
    Message,
    Session,
    SessionStatus,
    Summary,
)
from casebridge.templates import TemplateError, Templates, TemplateSecurityError
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser as LexborParser
from support.html_structure import Structure

WHEN = datetime(2030, 5, 6, 7, 8, tzinfo=UTC)
LINK = "https://bridge.example.test/sessions/s1?exp=1900000000&sig=abc"
NASTY = [
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "{% raw %}",
    "{% endraw %}",
    "{# c #}",
    "\"'`",
    "\r\n",
    "\r",
    "\n",
    "<img src=x onerror=alert(1)>",
    "</div></body>",
    "<!--",
    "]]>",
    "&amp;",
    "&#x3c;",
    "é漢字🙂",
    "\u2028",
    "\x00",
    "<a href='javascript:x'>",
    "${x}",
]
customer_strings = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=8).map("".join),
)

CONTACT = Contact(id="c1", name="Jane Roe", emails=("jane@example.com",), phones=("+15551234567",))
SESSION = Session(
    id="s1",
    channel="email",
    contact=CONTACT,
    status=SessionStatus.HANDED_OFF,
    subject="Printer on fire",
    case=CaseLink(crm="creatio", case_id="case-1", number="SR00042"),
    created_at=WHEN,
)


def message(text: str = "Hello", **changes: object) -> Message:
    base = Message(
        id="m1",
        channel="email",
        direction=Direction.INBOUND,
        author=Author.CUSTOMER,
        external_id="<m1@example.com>",
        sender="jane@example.com",
        recipients=("support@example.test",),
        text=text,
        original_text=text + "\n> quoted",
        subject="Help",
        sender_name="Jane Roe",
        attachments=(
            Attachment(name="photo.jpg", content_type="image/jpeg", size=2_500_000, sha256="a"),
            Attachment(
                name="huge.iso",
                content_type="application/x-iso",
                size=9,
                sha256="b",
                refused="larger than 25 MB",
            ),
        ),
        sent_at=WHEN,
        received_at=WHEN,
        notes=("decoded as windows-1252",),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def parse(html: str) -> Structure:
    parser = Structure()
    parser.feed(html)
    parser.close()
    return parser


def lines(text: str) -> str:
    return re.sub(r"\r\n|\r", "\n", text)


def assert_no_injection(html: str, baseline: str) -> None:
    got, expected = parse(html), parse(baseline)
    assert got.elements == expected.elements
    tree = LexborParser(html)
    assert tree.css("script") == []
    for node in tree.css("*"):
        assert not any(name.lower().startswith("on") for name in node.attributes)


def neutral(value: str) -> str:
    return "x" if value else ""


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


@settings(max_examples=150)
@given(
    text=customer_strings,
    subject=customer_strings,
    name=customer_strings,
    filename=customer_strings,
)
def test_activity_bodies_keep_text_and_never_inject(
    templates: Templates, text: str, subject: str, name: str, filename: str
) -> None:
    attachments = (Attachment(name=filename, content_type="text/plain", size=10, sha256="s"),)
    msg = message(text, subject=subject, sender_name=name, attachments=attachments)
    body_text, body_html = templates.activity_bodies(msg, SESSION, link=LINK, trace_id="t1")
    assert text in body_text
    base = message(
        "x",
        subject=neutral(subject),
        sender_name=neutral(name),
        attachments=(replace(attachments[0], name=neutral(filename)),),
    )
    _, baseline = templates.activity_bodies(base, SESSION, link=LINK, trace_id="t1")
    assert_no_injection(body_html, baseline)
    assert lines(text) in lines("".join(parse(body_html).text))


@settings(max_examples=100)
@given(text=customer_strings, original=customer_strings)
def test_session_page_keeps_text_and_never_injects(
    templates: Templates, text: str, original: str
) -> None:
    msg = message(text, original_text=original)
    page = templates.session_page(SESSION, [msg], "https://crm.example.test/case/1", WHEN)
    # The original is offered only when trimming cut something beyond white space.
    shown = bool(original.strip()) and original.strip() != text.strip()
    base = message("x", original_text="y" if shown else "")
    baseline = templates.session_page(SESSION, [base], "https://crm.example.test/case/1", WHEN)
    assert_no_injection(page, baseline)
    content = lines("".join(parse(page).text))
    assert lines(text) in content
    if shown:
        assert lines(original) in content
        assert LexborParser(page).css_first("details pre") is not None


def test_customer_text_is_not_evaluated(templates: Templates) -> None:
    msg = message("{{ 7*7 }} {% if true %}yes{% endif %} {{ config }}")
    body_text, body_html = templates.activity_bodies(msg, SESSION, link=None, trace_id="t")
    assert "{{ 7*7 }} {% if true %}yes{% endif %} {{ config }}" in body_text
    assert "49" not in body_text + body_html


@settings(max_examples=150)
@given(subject=customer_strings, opening=customer_strings)
def test_case_subject_is_one_capped_line(templates: Templates, subject: str, opening: str) -> None:
    session = replace(SESSION, subject="")
    result = templates.case_subject(
        session, [message(opening)], Summary(subject=subject, description="d")
    )
    assert result
    assert len(result) <= templates.subject_max
    assert not any(c in result for c in "\r\n\x00\u2028\u2029\x85")
    assert result == result.strip()
    words = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", subject).split())
    if words and len(words) <= templates.subject_max:
        assert result == words


def test_case_subject_fallbacks(templates: Templates) -> None:
    transcript = [message("\n\n  My invoice is wrong \nplease help")]
    summary = Summary(subject="", description="d")
    assert templates.case_subject(SESSION, transcript, summary) == "Printer on fire"
    no_subject = replace(SESSION, subject="")
    assert templates.case_subject(no_subject, transcript, summary) == "My invoice is wrong"
    assert templates.case_subject(no_subject, [], None) == "Conversation with Jane Roe"
    long = Summary(subject="word " * 100, description="d")
    capped = templates.case_subject(SESSION, transcript, long)
    assert len(capped) == templates.subject_max - 1 or len(capped) == templates.subject_max
    assert capped.endswith("…")


def test_case_description(templates: Templates) -> None:
    text = templates.case_description(
        Summary(subject="s", description="Cannot log in since Monday."),
        SESSION,
        HandoffDecision(reason="customer asked for a human", source="keyword"),
        LINK,
    )
    assert text.startswith("Cannot log in since Monday.\n")
    assert "Handed off: customer asked for a human" in text
    assert "Jane Roe, jane@example.com, +15551234567" in text
    assert f"View session: {LINK}" in text
    bare = templates.case_description(Summary(subject="s", description="D"), SESSION, None, None)
    assert "Handed off" not in bare
    assert "View session" not in bare


def test_activity_bodies_content(templates: Templates) -> None:
    body_text, body_html = templates.activity_bodies(
        message("Line one\nLine two"), SESSION, link=LINK, trace_id="9f8e7d6c5b4a3210"
    )
    assert f"View session: {LINK}" in body_text
    assert "casebridge trace 9f8e7d6c5b4a3210" in body_text
    assert "- photo.jpg (image/jpeg, 2.5 MB)" in body_text
    assert "- huge.iso (application/x-iso, 9 Bytes) - not kept: larger than 25 MB" in body_text
    assert "decoded as windows-1252" in body_text
    assert "2030-05-06 07:08 UTC" in body_text
    tree = LexborParser(body_html)
    (anchor,) = tree.css("a")
    assert anchor.attributes["href"] == LINK
    assert anchor.text() == "View session"
    assert "casebridge trace 9f8e7d6c5b4a3210" in tree.body.text()
    assert [li.text() for li in tree.css("li")][:1] == ["photo.jpg (image/jpeg, 2.5 MB)"]
    later_text, later_html = templates.activity_bodies(
        message("more"), SESSION, link=None, trace_id="t2"
    )
    assert "View session" not in later_text + later_html
    assert "casebridge trace t2" in later_text


def test_only_http_links_are_linked(templates: Templates) -> None:
    _, body_html = templates.activity_bodies(
        message(), SESSION, link="javascript:alert(1)", trace_id="t"
    )
    assert LexborParser(body_html).css_first("a").attributes["href"] == "#"
    page = templates.session_page(SESSION, [], "data:text/html,<script>x</script>", WHEN)
    assert LexborParser(page).css_first("header a").attributes["href"] == "#"


def test_session_page_shows_the_conversation(templates: Templates) -> None:
    agent = message(
        "Sorry about that.",
        id="m2",
        author=Author.AGENT,
        sender_name="Sam",
        original_text="",
        attachments=(),
        notes=(),
        subject="",
    )
    page = templates.session_page(SESSION, [message("My printer"), agent], "https://crm/c/1", WHEN)
    tree = LexborParser(page)
    assert tree.css_first('meta[name="viewport"]') is not None
    assert tree.css("script") == []
    articles = tree.css("article")
    assert [a.attributes["class"] for a in articles] == ["msg customer", "msg agent"]
    assert "Jane Roe <jane@example.com>" in articles[0].text()
    assert "Sam (agent)" in articles[1].text()
    assert tree.css_first("time").attributes["datetime"] == WHEN.isoformat()
    assert "> quoted" in articles[0].css_first("details").text()
    assert articles[1].css_first("details") is None
    link = tree.css_first("header a")
    assert link.attributes["href"] == "https://crm/c/1"
    assert "SR00042" in link.text()
    empty = LexborParser(templates.session_page(SESSION, [], None, WHEN))
    assert "No messages yet." in empty.body.text()
    assert "SR00042" in empty.body.text()


def write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_override_wins_and_missing_override_falls_back(tmp_path: Path) -> None:
    write(tmp_path, "activity/default.txt.j2", "CUSTOM {{ message.text }} {{ trace_id }}")
    templates = Templates(tmp_path)
    body_text, body_html = templates.activity_bodies(
        message("hi"), SESSION, link=None, trace_id="t7"
    )
    assert body_text == "CUSTOM hi t7"
    assert 'class="casebridge-activity"' in body_html  # not overridden: the packaged one


def test_activity_template_lookup_order(tmp_path: Path) -> None:
    write(tmp_path, "activity/customer.sms.txt.j2", "SMS {{ message.text }}")
    write(tmp_path, "activity/customer.txt.j2", "CUSTOMER {{ message.text }}")
    templates = Templates(tmp_path)
    sms = message("a", channel="sms")
    assert templates.activity_bodies(sms, SESSION, link=None, trace_id="t")[0] == "SMS a"
    assert templates.activity_bodies(message("b"), SESSION, link=None, trace_id="t")[0] == (
        "CUSTOMER b"
    )
    agent = message("c", author=Author.AGENT, sender_name="Sam")
    assert templates.activity_bodies(agent, SESSION, link=None, trace_id="t")[0].startswith(
        "Sam (agent) via email"
    )


def test_html_overrides_autoescape_and_text_ones_do_not(tmp_path: Path) -> None:
    write(tmp_path, "x.html.j2", "<p>{{ value }}</p>")
    write(tmp_path, "x.txt.j2", "{{ value }}")
    templates = Templates(tmp_path)
    assert templates.render("x.html.j2", value="<b>") == "<p>&lt;b&gt;</p>"
    assert templates.render("x.txt.j2", value="<b>") == "<b>"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ message.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ message.attachments.__len__() }}",
        "{{ [1].append(2) }}",
        "{{ {}.update(a=1) }}",
        "{{ '{0.__class__}'.format(message) }}",
    ],
)
def test_sandbox_escapes_fail_clearly(tmp_path: Path, source: str) -> None:
    write(tmp_path, "activity/default.txt.j2", source)
    templates = Templates(tmp_path)
    with pytest.raises(TemplateSecurityError, match=r"template activity/default\.txt\.j2"):
        templates.activity_bodies(message(), SESSION, link=None, trace_id="t")


def test_template_mistakes_are_named(tmp_path: Path) -> None:
    write(tmp_path, "broken.txt.j2", "{% if %}")
    write(tmp_path, "undefined.txt.j2", "{{ nothing_here }}")
    write(tmp_path, "huge.txt.j2", "{{ range(10**9) | list | length }}")
    templates = Templates(tmp_path)
    with pytest.raises(TemplateError, match=r"broken\.txt\.j2 line 1"):
        templates.render("broken.txt.j2")
    with pytest.raises(TemplateError, match=r"undefined\.txt\.j2: 'nothing_here' is undefined"):
        templates.render("undefined.txt.j2")
    with pytest.raises(TemplateError, match=r"huge\.txt\.j2"):
        templates.render("huge.txt.j2")
    with pytest.raises(TemplateError, match=r"no template missing\.txt\.j2"):
        templates.render("missing.txt.j2")
    assert issubclass(TemplateError, PermanentError)


def test_shipped_templates_are_strict(templates: Templates) -> None:
    with pytest.raises(TemplateError, match="is undefined"):
        templates.render("case/description.txt.j2")


def test_override_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        Templates(tmp_path / "nope")


def test_packaged_templates_are_package_data() -> None:
    import casebridge

    folder = Path(casebridge.__file__).parent / "templates"
    shipped = {p.relative_to(folder).as_posix() for p in folder.rglob("*.j2")}
    assert {
        "case/subject.txt.j2",
        "case/description.txt.j2",
        "activity/default.txt.j2",
        "activity/default.html.j2",
        "session.html.j2",
    } <= shipped


# -- the one loader chain: the TOML's folder, then the plugins', then the core's -------------


def test_a_plugin_folder_is_found_after_the_override_and_before_the_core(tmp_path: Path) -> None:
    override, plugin = tmp_path / "override", tmp_path / "plugin"
    write(plugin, "myplugin/note.txt.j2", "PLUGIN {{ value }}")
    write(plugin, "myplugin/other.txt.j2", "PLUGIN other")
    write(plugin, "acknowledge/default.txt.j2", "PLUGIN ack")
    write(override, "myplugin/other.txt.j2", "OVERRIDE {{ 1 + 1 }}")
    templates = Templates(override)
    templates.add_folder(plugin)
    assert templates.render("myplugin/note.txt.j2", value="<b>") == "PLUGIN <b>"
    assert templates.render("myplugin/other.txt.j2") == "OVERRIDE 2"
    # A plugin may replace one of the core's templates; the TOML's folder still wins.
    assert templates.acknowledgement(SESSION, message()) == "PLUGIN ack"
    write(override, "acknowledge/default.txt.j2", "OVERRIDE ack")
    assert Templates(override).acknowledgement(SESSION, message()) == "OVERRIDE ack"


def test_plugin_folders_are_searched_in_the_order_added(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write(first, "x.txt.j2", "first")
    write(second, "x.txt.j2", "second")
    write(second, "y.html.j2", "<p>{{ value }}</p>")
    templates = Templates()
    templates.add_folder(first)
    templates.add_folder(second)
    templates.add_folder(first)  # a second instance of the same plugin
    assert templates.plugin_dirs == [first, second]
    assert templates.render("x.txt.j2") == "first"
    # A plugin's templates render in the same sandbox, with the same autoescaping.
    assert templates.render("y.html.j2", value="<b>") == "<p>&lt;b&gt;</p>"


def test_a_folder_added_after_a_miss_is_found(tmp_path: Path) -> None:
    # Jinja caches lookups: a folder added later must not be hidden by that cache.
    templates = Templates()
    with pytest.raises(TemplateError):
        templates.render("late/x.txt.j2")
    write(tmp_path, "late/x.txt.j2", "found")
    templates.add_folder(tmp_path)
    assert templates.render("late/x.txt.j2") == "found"


def test_a_missing_template_names_every_place_searched(tmp_path: Path) -> None:
    override, plugin = tmp_path / "override", tmp_path / "plugin"
    override.mkdir()
    plugin.mkdir()
    templates = Templates(override)
    templates.add_folder(plugin)
    with pytest.raises(TemplateError) as raised:
        templates.render("nowhere/x.txt.j2")
    assert str(raised.value) == (
        f"no template nowhere/x.txt.j2 in {override}, {plugin}, the packaged templates"
    )


def test_a_plugin_folder_must_exist(tmp_path: Path) -> None:
    templates = Templates()
    with pytest.raises(ConfigError, match=r"nope is not a folder"):
        templates.add_folder(tmp_path / "nope")
    assert templates.plugin_dirs == []


def test_an_edited_template_is_seen_after_the_reload_check_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from casebridge import templates as module

    write(tmp_path, "activity/default.txt.j2", "FIRST {{ message.text }}")
    templates = Templates(tmp_path)
    render = lambda: templates.activity_bodies(message("hi"), SESSION, link=None,  # noqa: E731
                                               trace_id="t")[0]
    assert render() == "FIRST hi"
    assert render() == "FIRST hi"
    path = tmp_path / "activity/default.txt.j2"
    path.write_text("SECOND {{ message.text }}")
    later = path.stat().st_mtime + 10
    os.utime(path, (later, later))
    # Within the interval the file is not looked at again...
    monkeypatch.setattr(module, "RELOAD_CHECK", 3600.0)
    assert render() == "FIRST hi"
    # ...once it has passed, the edit shows.
    monkeypatch.setattr(module, "RELOAD_CHECK", 0.0)
    assert render() == "SECOND hi"
