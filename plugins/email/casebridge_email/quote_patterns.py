"""Compiled patterns that recognise quote headers, forwarded-message separators, Outlook
header blocks and signatures in many languages. Used by :mod:`casebridge_email.trim` and
:mod:`casebridge_email.trim_html`; every pattern works on one line (or a few joined lines)
with trailing whitespace already removed.

Every marker recognised here contains ``>``, ``:``, ``：``, ``-``, ``_`` or one of
``=*#~+ᐧ``, or starts with an upper-case word of a mobile/Outlook footer. Text without those
cannot be trimmed, which the property tests rely on.

A customer's own closing ("Best,\nAnna", "-Anna") is new content, not a marker: the only
signatures recognised are the ones a mail client or a delimiter sets apart (``-- ``, a rule
line above a short block, Outlook's underscores, mobile footers).
"""

from __future__ import annotations

import re

_DIGIT = re.compile(r"\d")

# Several patterns below are also kept reversed, to be matched at the start of the reversed
# text: an end-anchored search tries every position of the line, a reversed match only one.
# The two agree on single lines (no "\n", where "$" could match before a final newline).


def _phrases(words: tuple[str, ...], *, reverse: bool = False) -> str:
    """An alternation of ``words`` (spelled backwards when ``reverse``); a space in a word
    stands for any run of whitespace."""
    return "|".join(
        re.escape(word[::-1] if reverse else word).replace(r"\ ", r"\s+") for word in words
    )


# "wrote" and its equivalents, as the last word of an "On <date>, <name> wrote:" header.
_WROTE_WORDS = (
    "wrote", "sent", "writes", "schrieb", "schreibt", "a écrit", "a ecrit", "écrit", "escribió",
    "escribio", "ha escrit", "escrigué", "ha scritto", "scrisse", "escreveu", "escreve",
    "schreef", "het volgende geschreven", "geschreven", "napisał(a)", "napisała", "napisał",
    "pisze", "skrev", "skrivit", "kirjoitti", "написал(а)", "написала", "написал", "пишет",
    "написав(ла)", "написав", "пише", "写道", "寫道", "のメッセージ", "は書きました", "작성",
    "đã viết", "a scris", "yazdı", "napsal", "írta",
)
_WROTE = _phrases(_WROTE_WORDS)
# Words a wrapped quote header typically starts with, in the languages above.
_INTRO = (
    r"On|Le|Am|El|Em|Op|Il|In\s+data|W\s+dniu|Dnia|Den|På|Vào|Dne|At|"
    r"\d|\w{1,4}\.?\s+\d|[A-Za-zÀ-ÿА-Яа-яІіЇїЄє]{2,4}[.,]\s+\d|(?:\S+\s+){1,3}<|[\"«]|"
    r"在|于|於"
)
# CJK verbs follow the date or name without a space: "于2025年1月6日 09:14写道："
# (reversed: (?:写道|寫道|のメッセージ|작성)\s*[:：]?$).
_CJK_VERBS_END = ("写道", "寫道", "のメッセージ", "작성")
_CJK_VERB_END_REVERSED = re.compile(rf"[:：]?\s*(?:{_phrases(_CJK_VERBS_END, reverse=True)})")
# The verb before the date: "Ann <a@b.c> schrieb am Mo., 6. Jan. 2025, 09:14:"
# (reversed: (?:^|\s)(?:verb)\s+(?:am|on|...)\s+[^:：]{0,40}\d.{0,20}[:：]$).
_VERBS_BEFORE_DATE = (
    "wrote", "schrieb", "a écrit", "escribió", "escreveu", "ha scritto", "schreef", "skrev",
    "napisał(a)", "napisał", "написал(а)", "написал", "написала",
)
_DATE_PREPOSITIONS = ("am", "on", "le", "el", "em", "il", "op", "den", "dnia", "в")
_VERB_THEN_DATE_REVERSED = re.compile(
    r"[:：].{0,20}\d[^:：]{0,40}\s+"
    rf"(?:{_phrases(_DATE_PREPOSITIONS, reverse=True)})\s+"
    rf"(?:{_phrases(_VERBS_BEFORE_DATE, reverse=True)})(?:\s|\Z)",
    re.IGNORECASE,
)
# The verb before the name, without an address: "Am 06.01.2025 um 09:14 schrieb Ann Lee:".
_VERBS_BEFORE_NAME = ("wrote", "schrieb", "schreef", "skrev", "escribió", "escreveu", "scrisse")
_DATE_VERB_NAME = re.compile(
    r"^\s*(?:On|Am|Op|Den|På|El|Em|Il)\s.{0,60}?\d.{0,40}?\s"
    rf"(?:{_phrases(_VERBS_BEFORE_NAME)})\s+[^\s:：<>@][^:：<>@]{{0,60}}[:：]$",
    re.IGNORECASE,
)
# Cheap necessary parts of _DATE_VERB_NAME, tested first: how it starts, and the verb and
# the first letter of the name (after the last of ":：<>@" before the final colon).
_DATE_VERB_NAME_START = re.compile(r"\s*(?:On|Am|Op|Den|På|El|Em|Il)\s", re.IGNORECASE)
_VERB_BEFORE_NAME = re.compile(
    rf"\s(?:{_phrases(_VERBS_BEFORE_NAME)})\s+[^\s:：<>@]", re.IGNORECASE
)
_STRONG_INTRO = re.compile(
    r"^\s*(?:On|Le|Am|El|Em|Op|Il|In\s+data|W\s+dniu|Dnia|Den|På|Vào|Dne)\s|^\s*\d"
)
# (reversed: (?:^|[\s,)>»"'])(?:wrote|...)\s*[:：]?\s*-*$)
_VERB_END_REVERSED = re.compile(
    rf"-*\s*[:：]?\s*(?:{_phrases(_WROTE_WORDS, reverse=True)})(?:[\s,)>»\"']|\Z)",
    re.IGNORECASE,
)
_INTRO_START = re.compile(rf"^\s*(?:[-*_>]+\s*)?(?:{_INTRO})", re.IGNORECASE)
_HAS_DATEISH = re.compile(r"\d{1,4}[:/.\-]\d{1,2}|\b(?:19|20)\d\d\b|\d{1,2}\s*[:.h]\s*\d\d")
_MAILTO = re.compile(r"\bmailto:")
# "2014-03-20 8:48 GMT+01:00 Name <a@b.c>:" (Gmail without a verb) and similar
# (reversed: (?:>|@[\w.\-]+\)?|"|»)\s*[:：]$).
_ADDRESS_COLON_END_REVERSED = re.compile(r"[:：]\s*(?:>|\)?[\w.\-]+@|\"|»)")


def _has_dateish(text: str) -> bool:
    """A date or time: ``2025-01-06``, ``6.1.``, ``2025``, ``09:14``, ``9h14``."""
    # Every match starts at a digit: search from the first one.
    first = _DIGIT.search(text)
    return first is not None and _HAS_DATEISH.search(text, first.start()) is not None


def _has_address(text: str) -> bool:
    """An e-mail address: ``@``, ``<...>`` or ``mailto:``."""
    if "@" in text:
        return True
    opening = text.find("<")
    if opening >= 0 and text.find(">", opening + 1) >= 0:
        return True
    return "mailto:" in text and _MAILTO.search(text) is not None


def _date_verb_name(stripped: str) -> bool:
    """``_DATE_VERB_NAME`` matches ``stripped`` (which ends in a colon)."""
    if _DATE_VERB_NAME_START.match(stripped) is None:
        return False
    body = stripped[:-1]
    last_mark = max(
        body.rfind(":"), body.rfind("："), body.rfind("<"), body.rfind(">"), body.rfind("@")
    )
    return (
        _VERB_BEFORE_NAME.search(body, last_mark + 1) is not None
        and _DATE_VERB_NAME.match(stripped) is not None
    )


# Where a quote header starts inside a line that also holds reply text
# ("Test replyOn 04/19/2011 07:10 AM, Roman wrote:").
SPLIT_HEADER = re.compile(r"(?:(?<=[a-z.!?)])|(?<=\s)|(?<=-))On\s+(?=\S)")

QUOTE_LINE = re.compile(r"^\s*>")
# The tail of an address wrapped onto its own line: "<a@b.c\n>:".
WRAPPED_ADDRESS_END = re.compile(rf"^\s*>\s*(?:{_WROTE})?\s*[:：]\s*$", re.IGNORECASE)

_FIELD_NAMES_FROM = (
    r"From|Von|De|Da|Van|Od|Från|Fra|От|Від|Від кого|Kimden|Lähettäjä|Feladó|Odesílatel|"
    r"发件人|發件人|寄件者|差出人|보낸\s*사람|Expéditeur|Remitente|Mittente|Remetente|Afzender|"
    r"Nadawca|Avsändare|Afsender|Avsender|Отправитель|Відправник"
)
_FIELD_NAMES_OTHER = (
    r"Sent|Date|To|Cc|Bcc|Subject|Reply-To|Gesendet|Datum|An|Betreff|Kopie|Envoyé|Envoye|À|A|"
    r"Objet|Sujet|Message\s+du|Copie\s+à|Cc\s*|Enviado|Enviada|Fecha|Para|Asunto|CC|Inviato|Data|Oggetto|Assunto|"
    r"Verzonden|Verstuurd|Aan|Onderwerp|Wysłano|Wysłane|Do|Temat|DW|Skickat|Till|Ämne|Sendt|"
    r"Dato|Til|Emne|Отправлено|Дата|Кому|Тема|Копия|Надіслано|Відправлено|Копія|"
    r"发送时间|發送時間|日期|收件人|抄送|主题|主旨|送信日時|日付|宛先|件名|보낸\s*날짜|받는\s*사람|"
    r"참조|제목|Tárgy|Předmět|Konu|Gönderildi|Tarih"
)
_FIELD_NAMES_TO = r"To|An|À|A|Para|Aan|Do|Till|Til|Кому|收件人|宛先|받는\s*사람|Címzett|Komu|Kime"
_FIELD_LINE_TO = re.compile(rf"^\s*[*_]{{0,2}}(?:{_FIELD_NAMES_TO})[*_]{{0,2}}\s*[:：]")
_FIELD_LINE_FROM = re.compile(rf"^\s*[*_]{{0,2}}(?:{_FIELD_NAMES_FROM})[*_]{{0,2}}\s*[:：]")
_FIELD_LINE_ANY = re.compile(
    rf"^\s*[*_]{{0,2}}(?:{_FIELD_NAMES_FROM}|{_FIELD_NAMES_OTHER})[*_]{{0,2}}\s*[:：]"
)

# A second header field run into the From: line: "From: a@b.c Date: Thu, 24 Mar 2016".
_INLINE_FIELD = re.compile(r"\s(?:Sent|Date|To|Subject|Gesendet|Datum|An|Betreff)\s*:\s")

# "-----Original Message-----", forwarded-message separators and their translations.
_SEPARATOR_PHRASES = (
    r"Original\s+Message|Forwarded\s+message|Forwarded\s+Message|Ursprüngliche\s+Nachricht|"
    r"Weitergeleitete\s+Nachricht|Antwort\s+Nachricht|Message\s+d['’]origine|Message\s+transféré|"
    r"Mensaje\s+original|Mensaje\s+reenviado|Messaggio\s+originale|Messaggio\s+inoltrato|"
    r"Mensagem\s+original|Mensagem\s+encaminhada|Mensagem\s+reencaminhada|"
    r"Oorspronkelijk\s+bericht|Origineel\s+bericht|Doorgestuurd\s+bericht|"
    r"Oryginalna\s+wiadomość|Wiadomość\s+oryginalna|Przekazana\s+wiadomość|"
    r"Ursprungligt\s+meddelande|Originalmeddelande|Vidarebefordrat\s+meddelande|"
    r"Oprindelig\s+meddelelse|Oprindelig\s+besked|Videresendt\s+meddelelse|"
    r"Opprinnelig\s+melding|Originalnachricht|"
    r"Videresendt\s+melding|Alkuperäinen\s+viesti|Välitetty\s+viesti|"
    r"Исходное\s+сообщение|Пересылаемое\s+сообщение|Пересланное\s+сообщение|"
    r"Оригінальне\s+повідомлення|Вихідне\s+повідомлення|Переслане\s+повідомлення|"
    r"原始邮件|原始郵件|转发的邮件|轉寄的郵件|元のメッセージ|転送されたメッセージ|"
    r"원본\s*메시지|전달된\s*메시지|Reply\s+message|Reply\s+Message"
)
# Possessive runs: a phrase starts with a letter, so giving back a rule character or a space
# never helps, and a long rule line fails at once instead of after trying every split.
SEPARATOR = re.compile(
    rf"^\s*+[-=_*]{{2,}}+\s*+(?:{_SEPARATOR_PHRASES})\s*[-=_*]{{2,}}\s*$"
    rf"|^\s*(?:{_SEPARATOR_PHRASES})\s*[:：]\s*$"
    r"|^\s*(?:Begin\s+forwarded\s+message|Début\s+du\s+message\s+réexpédié|"
    r"Anfang\s+der\s+weitergeleiteten\s+Nachricht|Inicio\s+del\s+mensaje\s+reenviado|"
    r"Inizio\s+messaggio\s+inoltrato|Início\s+da\s+mensagem\s+reencaminhada|"
    r"Begin\s+doorgestuurd\s+bericht|Początek\s+przekazywanej\s+wiadomości|"
    r"Vidarebefordrat\s+brev|Videresendt\s+besked|"
    r"Начало\s+переадресованного\s+сообщения|Forwarded\s+message)\s*[:：]\s*$",
    re.IGNORECASE,
)
_SEPARATOR_ENDS = frozenset(":：-=_*")
_FORWARD_WORD = re.compile(
    r"forward|weitergeleitet|transféré|réexpédié|reenviado|inoltrato|encaminhada|doorgestuurd|"
    r"przekazan|vidarebefordrat|videresendt|välitetty|пересыла|переслан|переадрес|转发|轉寄|"
    r"転送|전달",
    re.IGNORECASE,
)
# Gmail's attribution without a verb: "2016-03-03 17:21 GMT+01:00 Name" or
# "2011/4/7 Name <a@b.c>".
_GMAIL_DATE_HEADER = re.compile(
    r"^\s*\d{4}-\d\d-\d\d \d{1,2}:\d\d GMT[+-]\d\d:\d\d\s+\S"
    r"|^\s*\d{4}[/-]\d{1,2}[/-]\d{1,2}\s.*<[^<>\s]+@[^<>\s]+>\s*$"
)
# "------On 12/29/1987 17:32 PM, Julius Caesar wrote-----": a header fenced in dashes.
_FENCED_HEADER = re.compile(rf"^\s*-{{3,}}\s*On\s.*(?:{_WROTE})\s*[:：]?\s*-{{3,}}\s*$")

# A line of nothing but rule characters: an Outlook separator, or decoration before a
# signature. "ᐧ" is Gmail's tracking-pixel placeholder.
_DASH_RULE = re.compile(r"^\s*[-_]{3,}\s*$")
DELIMITER = re.compile(r"^\s*(?:[-_=*#~+]{2,}|ᐧ)\s*$")
_UNDERSCORES = re.compile(r"^\s*_{2,}\s*$")
_DASH_SIGNATURE = re.compile(r"^\s*--\s*$")

# Footers added by mobile mail apps; short lines only, so prose that merely starts with
# "Sent from my desk, ..." stays.
MOBILE_FOOTER = re.compile(
    r"^\s*(?:"
    r"Sent\s+wirelessly\s+from\s+my\s+[^,;:<]{1,60}|"
    r"(?:Sent|Envoyé|Envoye|Enviado|Inviato|Verzonden|Verstuurd|Wysłane|Skickat|Sendt|"
    r"Lähetetty|Отправлено|Надіслано)\s+(?:from|with|from\s+my|via|de|desde|da|met|vanaf|"
    r"von|z|från|fra|från\s+min|fra\s+min|с|з|depuis|dal|do|mit|à\s+partir\s+de)\b[^,;:<]{0,60}"
    r"|Von\s+meinem\s+[^,;:]{1,40}\s+gesendet[.!]?"
    r"|Gesendet\s+(?:von|mit)\s+[^,;:<]{1,40}"
    r"|Get\s+Outlook\s+for\s+(?:iOS|Android)[^,;:]{0,20}"
    r"|Télécharger\s+Outlook\s+pour\s+(?:iOS|Android)"
    r"|Outlook\s+(?:for|für|pour|para|per|voor|dla)\s+(?:iOS|Android)\s+\S+(?:\s+\S+)?"
    r"|发自我的\S+|從我的\S+傳送|iPhoneから送信|iPadから送信|"
    r"Sent\s+from\s+Yahoo\s+Mail[^,;:]{0,40}|Sent\s+with\s+Sparrow.*"
    r")\s*(?:<[^<>\s]*>)?\s*$"
)
_MAX_HEADER_CHARS = 400


def is_quote_header(candidate: str, *, before_quote: bool) -> bool:
    """Whether ``candidate`` (one line, or a few joined with spaces) is an attribution line
    such as ``On <date>, <name> wrote:``. ``before_quote`` relaxes the test when the next
    non-blank line is a ``>`` quote, where ``Someone wrote:`` alone is enough."""
    if len(candidate) > _MAX_HEADER_CHARS:
        return False
    stripped = candidate.rstrip()
    if not stripped:
        return False
    # Gmail's dated header starts with a digit (\d is isdecimal), the fenced one with dashes
    # and ends with them.
    head = stripped[0]
    if head.isspace():
        head = stripped.lstrip()[:1]
    if head.isdecimal() and _GMAIL_DATE_HEADER.match(stripped):
        return True
    last = stripped[-1]
    if last not in ":：-" and not stripped.endswith(("작성", "写道")):
        # "On <date> <name> <address> wrote" without its colon (Zoho, some webmails).
        if "@" not in stripped and "<" not in stripped and "mailto" not in stripped:
            return False
        backwards = stripped[-60:][::-1]
        return bool(
            _VERB_END_REVERSED.match(backwards)
            and _INTRO_START.match(stripped)
            and _has_dateish(stripped)
            and _has_address(stripped)
        )
    if head == "-" and _FENCED_HEADER.match(stripped):
        return True
    backwards = stripped[-60:][::-1]
    if _CJK_VERB_END_REVERSED.match(backwards):
        return before_quote or _has_address(stripped) or _has_dateish(stripped)
    if _VERB_END_REVERSED.match(backwards):
        # Also covers a verb before the date or name: both need an address or a date.
        if before_quote:
            return True
        return bool(
            _has_dateish(stripped) or _has_address(stripped) or _INTRO_START.match(stripped)
        )
    colon = last in ":："
    if colon and _has_address(stripped) and _VERB_THEN_DATE_REVERSED.match(backwards):
        return True
    if colon and _date_verb_name(stripped) and _has_dateish(stripped):
        return True
    if colon and _ADDRESS_COLON_END_REVERSED.match(backwards):
        return _has_dateish(stripped)
    return False


_MARK_CHARS = re.compile(r"[:：\-_=*@<]")


def may_mark_quote(line: str) -> bool:
    """A cheap test: ``False`` when ``line`` alone cannot be an attribution, header field or
    separator (those hold one of ``:：-_=*@<`` or end in a CJK verb)."""
    return bool(_MARK_CHARS.search(line)) or line.endswith(("작성", "写道", "寫道"))


# First words of an attribution's first line (lower case), for could_start_header's prefilter.
_INTRO_WORDS = frozenset(
    ("on", "le", "am", "el", "em", "op", "il", "in", "w", "dnia", "den", "på", "vào", "dne", "at")
)
_INTRO_SPECIAL = re.compile(r'[<"«]')


def could_start_header(line: str) -> bool:
    """Whether ``line`` may be the first line of an attribution wrapped over several lines."""
    if len(line) > _MAX_HEADER_CHARS:
        return False
    # Cheap prefilter: every _INTRO alternative needs a digit near the start, one of <"«, or
    # an intro word first.
    if not _DIGIT.search(line, 0, 60) and not _INTRO_SPECIAL.search(line):
        words = line.lstrip(" \t-*_>").split(None, 1)
        if not words or (words[0].lower() not in _INTRO_WORDS and words[0][0] not in "在于於"):
            return False
    return bool(_INTRO_START.match(line))


def starts_new_header(line: str) -> bool:
    """Whether ``line`` opens an attribution of its own (so it does not continue one)."""
    return bool(_STRONG_INTRO.match(line))


def _has_colon(line: str) -> bool:
    return ":" in line or "：" in line


def is_field_line(line: str) -> bool:
    """An e-mail header line as Outlook quotes it: ``From:``, ``*Sent:*``, ``Betreff:`` ..."""
    return _has_colon(line) and _FIELD_LINE_ANY.match(line) is not None


def is_field_block(lines: list[str]) -> bool:
    """Whether ``lines`` open with a quoted mail header block: a ``From:`` or ``To:`` line and
    another kind of field (``Sent:``, ``Date:``, ``Subject:`` ...) among them, or fields run
    together on a first ``From:`` line (``From: a@b.c Date: ...``)."""
    # Every field line holds a colon; most lines that reach here have none.
    if not lines or not _has_colon(lines[0]) or not _FIELD_LINE_ANY.match(lines[0]):
        return False
    party = other = 0
    for line in lines:
        if not _has_colon(line):
            continue
        if _FIELD_LINE_FROM.match(line) or _FIELD_LINE_TO.match(line):
            party += 1
        elif _FIELD_LINE_ANY.match(line):
            other += 1
    if party and (other or (party >= 2 and any(_FIELD_LINE_TO.match(x) for x in lines))):
        return True
    return bool(_FIELD_LINE_FROM.match(lines[0]) and _INLINE_FIELD.search(lines[0]))


def is_forward_separator(line: str) -> bool:
    """A separator that introduces a forwarded (not a replied-to) message."""
    return is_separator(line) and _FORWARD_WORD.search(line) is not None


def is_separator(line: str) -> bool:
    """``-----Original Message-----``, ``---------- Forwarded message ---------`` and the like."""
    # Every separator ends in a colon or a rule character.
    return line.rstrip()[-1:] in _SEPARATOR_ENDS and SEPARATOR.match(line) is not None


def is_dash_rule(line: str) -> bool:
    """A line of three or more dashes or underscores."""
    return bool(_DASH_RULE.match(line))


def is_delimiter(line: str) -> bool:
    """A line made only of rule characters (``-----``, ``____``, ``====``)."""
    return bool(DELIMITER.match(line))


# Lower-case starts of every mobile footer recognised below (MOBILE_FOOTER).
_SIGNATURE_STARTS = (
    "sent", "sendt", "envoy", "enviado", "inviato", "verzonden", "verstuurd", "wysłane", "skickat",
    "lähetetty", "отправлено", "надіслано", "von", "gesendet", "get", "télécharger",
    "outlook", "发自我的", "從我的", "iphoneから", "ipadから",
)


def may_open_signature(line: str) -> bool:
    """A cheap test: ``False`` when no signature rule below can match ``line``."""
    stripped = line.lstrip()
    # Lower-casing a head longer than any start gives the same answer as the whole line.
    return stripped[:1] in ("-", "_") or stripped[:_HEAD_CHARS].lower().startswith(
        _SIGNATURE_STARTS
    )


# Characters one of the rules needs somewhere in the line: markers, digits (dates), and the
# quote marks and "<" an attribution may open with.
_MATTER_CHARS = re.compile(r"[:：\-_=*@<\"«\d]")
# The same for ASCII text, much faster: a class of characters searches quicker than \d.
_MATTER_CHARS_ASCII = re.compile(r"[:\-_=*@<\"0-9]")
_CJK_VERBS = ("작성", "写道", "寫道")
# Longer than every word of _SIGNATURE_STARTS and _INTRO_WORDS.
_HEAD_CHARS = 14
_HEAD_FIRST_CHARS = frozenset(
    word[0] for word in (*_SIGNATURE_STARTS, *_INTRO_WORDS, "在", "于", "於")
)


def may_matter(line: str) -> bool:
    """A cheap test: ``False`` when ``line`` can start no attribution, header block,
    separator or signature; ``True`` whenever ``may_mark_quote``, ``could_start_header`` or
    ``may_open_signature`` is (and sometimes when none is)."""
    if line.isascii():
        if _MATTER_CHARS_ASCII.search(line) is not None:
            return True
    elif _MATTER_CHARS.search(line) is not None or line.endswith(_CJK_VERBS):
        return True
    # Without "-*_" in the line, both word tests look at the first word after " \t>".
    head = line.lstrip(" \t>").lstrip()[:_HEAD_CHARS].lower()
    if head[:1] not in _HEAD_FIRST_CHARS:
        return False
    if head.startswith(_SIGNATURE_STARTS):
        return True
    words = head.split(None, 1)
    return bool(words) and (words[0] in _INTRO_WORDS or words[0][0] in "在于於")


def opens_signature(line: str) -> bool:
    """A line after which everything is signature: ``--``, ``-- ``, a line of underscores,
    or a mobile footer such as ``Sent from my iPhone``."""
    return bool(
        _DASH_SIGNATURE.match(line) or _UNDERSCORES.match(line) or MOBILE_FOOTER.match(line)
    )


def signature_needs_context(line: str) -> bool:
    """Whether a signature test on ``line`` depends on the lines around it: ``False`` when
    only :func:`opens_signature`, which looks at ``line`` alone, can find one there (the
    other test: a dash rule above a short block)."""
    return bool(_DASH_RULE.match(line))
