"""Example replies per language and mail client (our own fixtures)."""

from __future__ import annotations

import pytest
from casebridge_email.trim import html_to_text, visible_html, visible_text

REPLY = "Thanks, the new password works.\nCan you also reset Maria's?"
QUOTE = "> Hello,\n> please try the new password.\n> Support"

# (case id, attribution line(s) a client writes above the quote)
HEADERS = [
    ("en-gmail", "On Mon, Jan 6, 2025 at 9:14 AM Ann Lee <ann@example.com> wrote:"),
    ("en-apple", "On 6 Jan 2025, at 09:14, Ann Lee <ann@example.com> wrote:"),
    ("en-wrapped", "On Mon, Jan 6, 2025 at 9:14 AM Ann Lee <\nann@example.com> wrote:"),
    (
        "en-wrapped-name",
        "On Mon, Jan 6, 2025 at 9:14 AM Ann Lee from Support\n<ann@example.com> wrote:",
    ),
    ("de", "Am 06.01.2025 um 09:14 schrieb Ann Lee <ann@example.com>:"),
    ("de-gmail", "Ann Lee <ann@example.com> schrieb am Mo., 6. Jan. 2025, 09:14:"),
    ("fr", "Le lun. 6 janv. 2025 à 09:14, Ann Lee <ann@example.com> a écrit :"),
    ("es", "El lun, 6 ene 2025 a las 9:14, Ann Lee (<ann@example.com>) escribió:"),
    ("it", "Il giorno lun 6 gen 2025 alle ore 09:14 Ann Lee <ann@example.com> ha scritto:"),
    ("pt", "Em seg., 6 de jan. de 2025 às 09:14, Ann Lee <ann@example.com> escreveu:"),
    ("nl", "Op ma 6 jan. 2025 om 09:14 schreef Ann Lee <ann@example.com>:"),
    ("pl", "W dniu 6.01.2025 o 09:14, Ann Lee <ann@example.com> pisze:"),
    ("pl-gmail", "pon., 6 sty 2025 o 09:14 Ann Lee <ann@example.com> napisał(a):"),
    ("sv", "Den mån 6 jan. 2025 kl 09:14 skrev Ann Lee <ann@example.com>:"),
    ("da", "Den man. 6. jan. 2025 kl. 09.14 skrev Ann Lee <ann@example.com>:"),
    ("no", "man. 6. jan. 2025 kl. 09:14 skrev Ann Lee <ann@example.com>:"),
    ("ru", "пн, 6 янв. 2025 г. в 09:14, Анна Ли <ann@example.com>:"),
    ("ru-verb", "6 января 2025 г., 09:14 пользователь Анна <ann@example.com> написал:"),
    ("uk", "пн, 6 січ. 2025 р. о 09:14 Анна <ann@example.com> пише:"),
    ("zh", "Ann Lee <ann@example.com> 于2025年1月6日周一 09:14写道："),
    ("ja", "2025年1月6日(月) 9:14 Ann Lee <ann@example.com>:"),
    ("ja-apple", "2025/01/06 9:14、Ann Lee <ann@example.com> のメッセージ:"),
    ("ko", "2025년 1월 6일 (월) 오전 9:14, Ann Lee <ann@example.com>님이 작성:"),
]


@pytest.mark.parametrize(("header"), [h for _, h in HEADERS], ids=[i for i, _ in HEADERS])
def test_attribution_and_quote_are_removed(header: str) -> None:
    assert visible_text(f"{REPLY}\n\n{header}\n\n{QUOTE}\n") == REPLY


@pytest.mark.parametrize(("header"), [h for _, h in HEADERS], ids=[i for i, _ in HEADERS])
def test_attribution_without_quote_markers_cuts_the_rest(header: str) -> None:
    unmarked = QUOTE.replace("> ", "")
    assert visible_text(f"{REPLY}\n\n{header}\n\n{unmarked}\n") == REPLY


# (case id, first line, field names: from, sent, to, subject)
OUTLOOK = [
    ("en", "From", "Sent", "To", "Subject"),
    ("de", "Von", "Gesendet", "An", "Betreff"),
    ("fr", "De", "Envoyé", "À", "Objet"),
    ("es", "De", "Enviado", "Para", "Asunto"),
    ("it", "Da", "Inviato", "A", "Oggetto"),
    ("pt", "De", "Enviada", "Para", "Assunto"),
    ("nl", "Van", "Verzonden", "Aan", "Onderwerp"),
    ("pl", "Od", "Wysłano", "Do", "Temat"),
    ("sv", "Från", "Skickat", "Till", "Ämne"),
    ("da", "Fra", "Sendt", "Til", "Emne"),
    ("no", "Fra", "Sendt", "Til", "Emne"),
    ("ru", "От", "Отправлено", "Кому", "Тема"),
    ("uk", "Від", "Надіслано", "Кому", "Тема"),
    ("zh", "发件人", "发送时间", "收件人", "主题"),
    ("ja", "差出人", "送信日時", "宛先", "件名"),
    ("ko", "보낸 사람", "보낸 날짜", "받는 사람", "제목"),
]


@pytest.mark.parametrize(("lang", "frm", "sent", "to", "subject"), OUTLOOK)
@pytest.mark.parametrize("bold", [False, True])
def test_outlook_header_block_cuts_the_rest(
    lang: str, frm: str, sent: str, to: str, subject: str, bold: bool
) -> None:
    def field(name: str, value: str) -> str:
        return f"*{name}:* {value}" if bold else f"{name}: {value}"

    block = "\n".join(
        [
            "________________________________",
            field(frm, "Ann Lee <ann@example.com>"),
            field(sent, "06.01.2025 09:14"),
            field(to, "support@example.com"),
            field(subject, "Re: password"),
        ]
    )
    text = f"{REPLY}\n\n{block}\n\nHello,\nplease try the new password.\n"
    assert visible_text(text) == REPLY, lang


ORIGINAL_MESSAGE = [
    "-----Original Message-----",
    "-----Ursprüngliche Nachricht-----",
    "-----Message d'origine-----",
    "-----Mensaje original-----",
    "-----Messaggio originale-----",
    "-----Mensagem original-----",
    "-----Oorspronkelijk bericht-----",
    "-----Oryginalna wiadomość-----",
    "-----Ursprungligt meddelande-----",
    "-----Oprindelig meddelelse-----",
    "-----Opprinnelig melding-----",
    "-----Исходное сообщение-----",
    "-----Оригінальне повідомлення-----",
    "-----原始邮件-----",
    "-----元のメッセージ-----",
    "-----원본 메시지-----",
    "---------- Forwarded message ---------",
    "Begin forwarded message:",
]


@pytest.mark.parametrize("separator", ORIGINAL_MESSAGE)
def test_original_message_separator_cuts_the_rest(separator: str) -> None:
    text = f"{REPLY}\n\n{separator}\nAnn wrote something long ago.\n"
    assert visible_text(text) == REPLY


FOOTERS = [
    "Sent from my iPhone",
    "Sent from my iPad",
    "Sent from my Samsung Galaxy smartphone.",
    "Sent from my BlackBerry 10 smartphone",
    "Sent from Mail for Windows",
    "Sent from Yahoo Mail for iPhone",
    "Get Outlook for iOS",
    "Get Outlook for Android<https://aka.ms/ghei36>",
    "Von meinem iPhone gesendet",
    "Envoyé de mon iPhone",
    "Enviado desde mi iPhone",
    "Inviato da iPhone",
    "Verzonden vanaf mijn iPhone",
    "Wysłane z iPhone'a",
    "Skickat från min iPhone",
    "Sendt fra min iPhone",
    "Отправлено с iPhone",
    "发自我的iPhone",
    "iPhoneから送信",
]


@pytest.mark.parametrize("footer", FOOTERS)
def test_mobile_footers_are_signatures(footer: str) -> None:
    text = f"{REPLY}\n\n{footer}\n"
    assert visible_text(text) == REPLY
    assert visible_text(text, keep_signature=True) == f"{REPLY}\n\n{footer}"


def test_prose_that_starts_like_a_footer_stays() -> None:
    text = "See you soon.\n\nSent from my desk, which is easier than my phone."
    assert visible_text(text) == text


@pytest.mark.parametrize("delimiter", ["-- ", "--"])
def test_dash_dash_signature(delimiter: str) -> None:
    text = f"{REPLY}\n{delimiter}\nAnn Lee\nACME Support\n+1 555 0100\n"
    assert visible_text(text) == REPLY
    assert visible_text(text, keep_signature=True).endswith("+1 555 0100")


# The customer's own closing, in several languages: new content (often the only name the rep
# sees), kept by default like the rest of the reply.
SIGN_OFFS = [
    ("en", "Best,\nAnna"),
    ("en-bang", "Thanks!\nRoman"),
    ("en-initial", "Cheers\nJ."),
    ("en-company", "Kind regards,\nAnna Smith\nAcme Ltd"),
    ("en-one-line", "Thanks, Anna"),
    ("en-dash-text", "Thanks!\n-- no wait that's a delimiter"),
    ("fr", "Merci,\nLuc"),
    ("fr-long", "Cordialement,\nLuc Martin"),
    ("de", "Viele Grüße\nTom"),
    ("de-mfg", "Mit freundlichen Grüßen\nTom Becker"),
    ("es", "Saludos,\nPilar"),
    ("it", "Saluti,\nGiulia"),
    ("nl", "Groeten,\nSanne"),
    ("pl", "Pozdrawiam,\nMarta"),
    ("sv", "Hälsningar,\nErik"),
    ("ru", "С уважением,\nАнна"),
    ("ja", "よろしくお願いします。\n田中"),
]
_SIGN_OFF_IDS = [i for i, _ in SIGN_OFFS]
_SIGN_OFF_TEXTS = [s for _, s in SIGN_OFFS]


@pytest.mark.parametrize("sign_off", _SIGN_OFF_TEXTS, ids=_SIGN_OFF_IDS)
def test_sign_off_is_kept(sign_off: str) -> None:
    text = f"{REPLY}\n\n{sign_off}\n"
    assert visible_text(text) == f"{REPLY}\n\n{sign_off}"
    assert visible_text(text, keep_signature=True) == f"{REPLY}\n\n{sign_off}"


@pytest.mark.parametrize("sign_off", _SIGN_OFF_TEXTS, ids=_SIGN_OFF_IDS)
@pytest.mark.parametrize(
    "footer",
    [
        "Sent from my iPhone",
        "Get Outlook for iOS",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
    ],
)
def test_sign_off_is_kept_and_mobile_footer_goes(sign_off: str, footer: str) -> None:
    text = f"{REPLY}\n\n{sign_off}\n\n{footer}\n"
    assert visible_text(text) == f"{REPLY}\n\n{sign_off}"
    assert visible_text(text, keep_signature=True) == f"{REPLY}\n\n{sign_off}\n\n{footer}"


@pytest.mark.parametrize("sign_off", _SIGN_OFF_TEXTS, ids=_SIGN_OFF_IDS)
@pytest.mark.parametrize("delimiter", ["-- ", "--", "-----", "________________________________"])
def test_sign_off_is_kept_and_delimited_signature_goes(sign_off: str, delimiter: str) -> None:
    signature = f"{delimiter}\nAnna Smith\nSupport Lead, Acme\n+1 555 0100"
    text = f"{REPLY}\n\n{sign_off}\n{signature}\n"
    assert visible_text(text) == f"{REPLY}\n\n{sign_off}"
    kept = f"{REPLY}\n\n{sign_off}\n{signature.replace('-- ', '--')}"
    assert visible_text(text, keep_signature=True) == kept


@pytest.mark.parametrize("sign_off", _SIGN_OFF_TEXTS, ids=_SIGN_OFF_IDS)
@pytest.mark.parametrize("header", [h for _, h in HEADERS[:8]], ids=[i for i, _ in HEADERS[:8]])
def test_sign_off_is_kept_and_quote_goes(sign_off: str, header: str) -> None:
    text = f"{REPLY}\n\n{sign_off}\n\n{header}\n{QUOTE}\n"
    assert visible_text(text) == f"{REPLY}\n\n{sign_off}"
    assert visible_text(text, keep_signature=True) == f"{REPLY}\n\n{sign_off}"


def test_sign_off_is_kept_above_an_outlook_block() -> None:
    text = (
        f"{REPLY}\n\nRegards,\nAnna\n\n________________________________\n"
        "From: Support <support@example.com>\nSent: Monday, January 6, 2025 9:14 AM\n"
        "To: Anna\nSubject: Re: password\n\nPlease try the new password.\n"
    )
    assert visible_text(text) == f"{REPLY}\n\nRegards,\nAnna"


def test_sign_off_in_html_reply_is_kept() -> None:
    html = (
        "<div>Works now.</div><br><div>Best,<br>Anna</div>"
        '<div class="gmail_quote"><div class="gmail_attr">On Mon, Jan 6, 2025 Ann wrote:</div>'
        '<blockquote class="gmail_quote">Try</blockquote></div>'
    )
    assert visible_text(html_to_text(visible_html(html))) == "Works now.\n\nBest,\nAnna"


def test_signature_before_quote_kept_or_dropped() -> None:
    header = "On Mon, Jan 6, 2025 at 9:14 AM Ann <ann@example.com> wrote:"
    text = f"{REPLY}\n\nSent from my iPhone\n\n{header}\n{QUOTE}"
    assert visible_text(text) == REPLY
    assert visible_text(text, keep_signature=True) == f"{REPLY}\n\nSent from my iPhone"


def test_interleaved_answers_are_kept() -> None:
    text = (
        "On Mon, Jan 6, 2025 at 9:14 AM Ann <ann@example.com> wrote:\n"
        "> Which plan are you on?\n"
        "\n"
        "Business.\n"
        "\n"
        "> And how many seats?\n"
        "\n"
        "Twelve.\n"
    )
    assert visible_text(text) == "Business.\n\nTwelve."


def test_quote_header_sharing_a_line_with_the_reply() -> None:
    text = "Works now, thanks!On Mon, Jan 6, 2025 at 9:14 AM Ann <ann@example.com> wrote:\n> Try"
    assert visible_text(text) == "Works now, thanks!"


def test_reply_cut_short_by_a_header_ends_the_reply() -> None:
    text = (
        "Works now, thanks!On Mon, Jan 6, 2025 at 9:14 AM Ann <ann@example.com> wrote:\n"
        "> Try\n"
        "Ann\n"
    )
    assert visible_text(text) == "Works now, thanks!"


def test_message_that_is_only_a_quote_is_kept() -> None:
    text = "> Hello\n> are you there?\n"
    assert visible_text(text) == "> Hello\n> are you there?"


def test_crlf_and_trailing_whitespace() -> None:
    text = "Hi  \r\n\r\nsee below\r\n> old\r\n"
    assert visible_text(text) == "Hi\n\nsee below"


def test_large_text_is_handled() -> None:
    paragraph = "This is a line of a long reply that goes on for a while.\n" * 20_000
    text = f"{paragraph}\nOn Mon, Jan 6, 2025 at 9:14 AM Ann <ann@example.com> wrote:\n{QUOTE}"
    assert visible_text(text) == paragraph.rstrip("\n")


def test_header_wrapped_inside_an_address_over_three_lines() -> None:
    text = (
        f"{REPLY}\n\nOn Jan 6, 2025, at 9:14 AM, Ann Lee <\n"
        "20250106support-ticket@example.com>\nwrote:\n\nPlease try the new password.\n"
    )
    assert visible_text(text) == REPLY


@pytest.mark.parametrize(
    "header",
    [
        "Am 06.01.2025 um 09:14 schrieb Ann Lee:",
        "Op 6 jan. 2025 om 09:14 schreef Ann Lee:",
        "Den 6 jan. 2025 kl. 09:14 skrev Ann Lee:",
    ],
)
def test_verb_before_name_header_without_address(header: str) -> None:
    assert visible_text(f"{REPLY}\n\n{header}\n\nPlease try again.\n") == REPLY


@pytest.mark.parametrize(
    "closing",
    [
        "- ann",
        "-Abhishek Kona",
        "-roman",
        "-- Lev.",
        "Please bring:\n\n- cables",
        "Bring:\n- cables\n- adapters",
    ],
)
def test_dash_name_and_dash_items_stay(closing: str) -> None:
    # "-Anna" is the customer signing with her name, not a delimiter: only a line that is
    # "--" alone delimits a signature.
    text = f"See you tomorrow.\n\n{closing}"
    assert visible_text(text) == text


def test_long_translated_mobile_footer() -> None:
    text = f"{REPLY}\nEnviado desde mi oficina móvil BlackBerry® de Movistar Perú"
    assert visible_text(text) == REPLY


def test_unmarked_quote_under_a_leading_attribution_loses_the_attribution() -> None:
    text = (
        'On 6 Jan 2025 09:14, "Ann Lee" <ann@example.com> wrote:\n\n'
        "    reset --hard\n\nThat is the command.\n"
    )
    assert visible_text(text) == "    reset --hard\n\nThat is the command."


# --- HTML ------------------------------------------------------------------------------

HTML_CLIENTS = [
    (
        "gmail",
        '<div dir="ltr">Works now.</div><br><div class="gmail_quote"><div class="gmail_attr">'
        "On Mon, Jan 6, 2025 Ann wrote:<br></div><blockquote class=\"gmail_quote\">Try"
        "</blockquote></div>",
    ),
    (
        "apple",
        "<div>Works now.</div><div><br><blockquote type=\"cite\"><div>On 6 Jan 2025, at 09:14, "
        "Ann wrote:</div><div>Try</div></blockquote></div>",
    ),
    (
        "thunderbird",
        '<p>Works now.</p><div class="moz-cite-prefix">On 06/01/2025 09:14, Ann wrote:<br></div>'
        '<blockquote type="cite">Try</blockquote>',
    ),
    (
        "outlook",
        '<div>Works now.</div><hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg">'
        "<b>From:</b> Ann<br><b>Sent:</b> Monday</div><div>Try</div>",
    ),
    (
        "outlook-desktop",
        '<div class="WordSection1"><p>Works now.</p><div><div style="border:none;border-top:'
        'solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in"><p><b>From:</b> Ann<br><b>Sent:</b> '
        "Monday</p></div></div><p>Try</p></div>",
    ),
    (
        "yahoo",
        '<div>Works now.</div><div class="yahoo_quoted"><div>On Monday, Ann wrote:</div>'
        "<div>Try</div></div>",
    ),
    (
        "plain-attribution",
        "<div>Works now.</div><div>On Mon, Jan 6, 2025 at 9:14 AM Ann &lt;ann@example.com&gt; "
        "wrote:</div><blockquote>Try</blockquote>",
    ),
]


@pytest.mark.parametrize("html", [h for _, h in HTML_CLIENTS], ids=[c for c, _ in HTML_CLIENTS])
def test_visible_html_removes_client_quotes(html: str) -> None:
    assert html_to_text(visible_html(html)) == "Works now."


HTML_UNMARKED = [
    ("plain-blockquote", "<div>Works now.</div><blockquote><div>Try</div></blockquote>"),
    (
        "header-block-after-hr",
        "<div>Works now.<br><hr>From: <a href='mailto:ann@example.com'>Ann</a><br>"
        "Sent: Monday, January 6, 2025 9:14 AM<br>To: Support<br>Subject: Re: password<br>"
        "<p>Try</p></div>",
    ),
    (
        "header-block-ru",
        "<p>Works now.</p><p>От: Анна (mailto:ann@example.com)<br>"
        "Отправлено: 6 января 2025 г. 9:14<br>Кому: Support</p><p>Try</p>",
    ),
    (
        "fields-run-together",
        "Works now.<div><div><b>From: ann@example.com</b> <b>Date: Mon, 6 Jan 2025 09:14</b>"
        "</div><div>Try</div></div>",
    ),
    (
        "attribution-as-loose-text",
        "<p>Works now.</p><br>06.01.2025, 09:14, &quot;Ann Lee&quot; &lt;ann@example.com&gt;:"
        "<br><div>Try</div>",
    ),
]


@pytest.mark.parametrize("html", [h for _, h in HTML_UNMARKED], ids=[c for c, _ in HTML_UNMARKED])
def test_visible_html_finds_quotes_by_their_text(html: str) -> None:
    assert html_to_text(visible_html(html)) == "Works now."


def test_visible_html_keeps_a_single_field_line() -> None:
    html = "<p>Works now.</p><p>From: the billing team, with thanks</p>"
    assert visible_html(html) == html


def test_visible_html_keeps_interleaved_answers() -> None:
    html = '<blockquote type="cite">Which plan?</blockquote><p>Business.</p>'
    assert html_to_text(visible_html(html)) == "Business."


def test_visible_html_keeps_quote_only_message() -> None:
    html = '<div class="gmail_quote">Only the quote</div>'
    assert visible_html(html) == html


def test_html_to_text_rendering() -> None:
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body>"
        "<p>Hello&nbsp;&amp;   welcome</p><p>line one<br>line two</p>"
        "<ul><li>first</li><li>second</li></ul>"
        '<p><a href="https://example.com/x">the docs</a> and '
        '<a href="https://example.com">https://example.com</a></p>'
        "<script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == (
        "Hello & welcome\n\nline one\nline two\n\n- first\n- second\n\n"
        "the docs (https://example.com/x) and https://example.com"
    )


def test_html_to_text_handles_deep_nesting() -> None:
    html = "<div>" * 5000 + "deep" + "</div>" * 5000
    assert html_to_text(html) == "deep"


def test_a_signature_needs_text_above_it_not_just_a_rule() -> None:
    # Without text above, "--" is no signature: the default keeps what keep_signature keeps
    # instead of trimming to nothing and falling back to the whole quote.
    text = "> Which plan?\n==\n--\nBob\n"
    assert visible_text(text) == visible_text(text, keep_signature=True) == "==\n--\nBob"
