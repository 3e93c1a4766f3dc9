"""A reproducible mix of customer emails for the benchmarks, made here (no corpus): plain
replies quoting the previous turns in English, German, French and Spanish, HTML replies in the
shapes Gmail and Outlook send, and about one in five with a small attachment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

SUPPORT = "support@example.com"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

# (language, attribution line template, customer sentences)
_LANGUAGES = (
    ("en", "On {date}, Support <{support}> wrote:",
     ("My printer stopped working after the update.", "I still cannot log in to my account.",
      "The invoice for March shows the wrong amount.", "Thanks, but the problem is back.",
      "Could you please check the order status again?")),
    ("de", "Am {date} schrieb Support <{support}>:",
     ("Mein Drucker funktioniert seit dem Update nicht mehr.", "Die Rechnung für März ist "
      "falsch.", "Ich kann mich immer noch nicht anmelden.", "Danke, aber das Problem ist "
      "wieder da.", "Können Sie den Status meiner Bestellung prüfen?")),
    ("fr", "Le {date}, Support <{support}> a écrit :",
     ("Mon imprimante ne fonctionne plus depuis la mise à jour.", "La facture de mars est "
      "erronée.", "Je n'arrive toujours pas à me connecter.", "Merci, mais le problème est "
      "revenu.", "Pouvez-vous vérifier l'état de ma commande ?")),
    ("es", "El {date}, Support (<{support}>) escribió:",
     ("Mi impresora dejó de funcionar después de la actualización.", "La factura de marzo "
      "tiene un importe incorrecto.", "Sigo sin poder entrar en mi cuenta.", "Gracias, pero "
      "el problema ha vuelto.", "¿Podrían revisar el estado de mi pedido?")),
)
_AGENT = ("Thank you for reaching out. Could you send us the serial number?",
          "We have reset your password; please try again.",
          "I have forwarded this to our billing team.",
          "Please restart the device and tell us what the display shows.")
_SIGNATURES = ("--\nAnn Example\nAcme Corp, Purchasing\n+1 555 0100",
               "Best regards,\nJosé García", "Sent from my iPhone", "")


def _paragraphs(rng: random.Random, sentences: tuple[str, ...]) -> str:
    return "\n\n".join(" ".join(rng.choice(sentences) for _ in range(rng.randint(1, 4)))
                       for _ in range(rng.randint(1, 3)))


def _history(rng: random.Random, sentences: tuple[str, ...], turns: int) -> list[str]:
    return [rng.choice(_AGENT) if i % 2 == 0 else _paragraphs(rng, sentences)
            for i in range(turns)]


def _plain(rng: random.Random, lang: tuple[str, str, tuple[str, ...]], date: datetime,
           signature: str) -> str:
    _, attribution, sentences = lang
    body = _paragraphs(rng, sentences)
    quoted = ""
    for turn in _history(rng, sentences, rng.randint(1, 5)):
        quoted = (attribution.format(date=format_datetime(date), support=SUPPORT) + "\n"
                  + "\n".join("> " + line if line else ">"
                              for line in (turn + ("\n\n" + quoted if quoted else "")).split("\n")))
    text = body + ("\n\n" + signature if signature else "") + "\n\n" + quoted + "\n"
    return text


def _gmail_html(rng: random.Random, lang: tuple[str, str, tuple[str, ...]], date: datetime,
                signature: str) -> str:
    _, attribution, sentences = lang
    body = _paragraphs(rng, sentences)
    quote = ""
    for turn in _history(rng, sentences, rng.randint(1, 4)):
        attr = escape(attribution.format(date=format_datetime(date), support=SUPPORT))
        quote = (f'<div class="gmail_quote"><div dir="ltr" class="gmail_attr">{attr}<br></div>'
                 '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
                 'border-left:1px solid rgb(204,204,204);padding-left:1ex">'
                 + "".join(f"<div>{escape(p)}</div>" for p in turn.split("\n\n"))
                 + quote + "</blockquote></div>")
    html = ('<div dir="ltr">' + "".join(f"<div>{escape(p)}</div><div><br></div>"
                                        for p in body.split("\n\n"))
            + (f'<div><br></div>-- <br><div dir="ltr" class="gmail_signature">'
               f'{escape(signature).replace(chr(10), "<br>")}</div>' if signature else "")
            + "</div><br>" + quote)
    return html


def _outlook_html(rng: random.Random, lang: tuple[str, str, tuple[str, ...]], date: datetime,
                  signature: str) -> str:
    _, _, sentences = lang
    body = _paragraphs(rng, sentences)
    quoted = "".join(f'<p class="MsoNormal">{escape(t)}</p>'
                     for t in _history(rng, sentences, rng.randint(1, 4)))
    html = ('<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>'
            '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            '<style><!-- p.MsoNormal {margin:0cm; font-size:11.0pt; font-family:"Calibri"} '
            '--></style></head><body lang="EN-US"><div class="WordSection1">'
            + "".join(f'<p class="MsoNormal">{escape(p)}<o:p></o:p></p>'
                      for p in body.split("\n\n"))
            + (f'<p class="MsoNormal">{escape(signature).replace(chr(10), "<br>")}</p>'
               if signature else "")
            + '</div><div id="appendonsend"></div><hr style="display:inline-block;width:98%" '
            'tabindex="-1"><div id="divRplyFwdMsg" dir="ltr"><font face="Calibri" '
            f'style="font-size:11pt" color="#000000"><b>From:</b> Support &lt;{SUPPORT}&gt;<br>'
            f'<b>Sent:</b> {format_datetime(date)}<br><b>To:</b> customer<br>'
            '<b>Subject:</b> Re: your request</font><div>&nbsp;</div></div>'
            f'<div class="BodyFragment">{quoted}</div></body></html>')
    return html


def _attachment(rng: random.Random) -> tuple[bytes, str, str, str]:
    size = rng.randint(2_000, 40_000)
    kind = rng.choice((("image", "png", b"\x89PNG\r\n\x1a\n"),
                       ("application", "pdf", b"%PDF-1.7\n")))
    data = kind[2] + rng.randbytes(size)
    return data, kind[0], kind[1], f"scan-{rng.randint(1, 999)}.{kind[1]}"


def message(rng: random.Random, n: int, *, run: str = "bench") -> bytes:
    """The ``n``-th message of the mix, as bytes; ``run`` makes its Message-ID unique to a
    run. Senders rotate over 200 customers."""
    lang = rng.choice(_LANGUAGES)
    date = T0 + timedelta(minutes=n)
    signature = rng.choice(_SIGNATURES)
    msg = EmailMessage()
    customer = n % 200
    msg["From"] = f"Customer {customer} <customer{customer}@example.org>"
    msg["To"] = f"Acme Support <{SUPPORT}>"
    msg["Subject"] = rng.choice(("Re: Drucker defekt – Rückfrage", "Re: Printer broken",
                                 "RE: Facture de mars", "Re: ¿Dónde está mi pedido?"))
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{run}.{n}.{rng.getrandbits(32):08x}@mail.example.org>"
    msg["In-Reply-To"] = f"<casebridge.{customer}@example.com>"
    msg["References"] = f"<first.{customer}@example.org> <casebridge.{customer}@example.com>"
    shape = rng.random()
    if shape < 0.45:
        latin1 = lang[0] == "de" and n % 2
        msg.set_content(_plain(rng, lang, date, signature),
                        charset="iso-8859-1" if latin1 else "utf-8")
    elif shape < 0.75:
        html = _gmail_html(rng, lang, date, signature)
        msg.set_content(_plain(rng, lang, date, signature))
        msg.add_alternative(html, subtype="html")
    else:
        html = _outlook_html(rng, lang, date, signature)
        msg.set_content(_plain(rng, lang, date, signature))
        msg.add_alternative(html, subtype="html")
    if rng.random() < 0.2:
        data, maintype, subtype, name = _attachment(rng)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    # CRLF line ends, as the message travels over SMTP.
    return msg.as_bytes(policy=policy.SMTP)


def mix(count: int, *, seed: int = 8, run: str = "bench") -> list[bytes]:
    """``count`` messages of the mix, the same for the same ``seed``."""
    rng = random.Random(seed)
    return [message(rng, n, run=run) for n in range(count)]
