"""How long hostile mail takes to ingest, and how long it keeps the event loop from running.

Usage::

    .venv/bin/python bench/hostile_input.py            # the issue's inputs
    .venv/bin/python bench/hostile_input.py --quick    # a tenth of their size (smoke test)

Each row is one message put through the email plugin's pure ingest path (``parse_email``,
then ``to_message``: trimming, sanitizing, rendering) in a worker thread, as the plugin runs
it, while the event loop sleeps 1 ms at a time. "ingest" is the wall time of that work; "worst
loop gap" the longest the loop waited for a 1 ms sleep meanwhile (what /healthz would wait).
The baseline is an ordinary message of the same size (plain paragraphs in HTML); ratios are
against it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from email.message import EmailMessage

import common
from casebridge.model import RawInbound
from casebridge_email.envelope import envelope_fields
from casebridge_email.inbound import to_message
from casebridge_email.mime import parse_email


def html_mail(html: str, subject: str = "hostile") -> bytes:
    message = EmailMessage()
    message["From"] = "Customer <customer@example.org>"
    message["To"] = "support@example.com"
    message["Message-ID"] = "<bench@example.org>"
    message["Subject"] = subject
    message.set_content(html, subtype="html")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def encoded_words(count: int) -> bytes:
    words = [f"=?utf-8?q?w{i}?=" for i in range(count)]
    folded = "\r\n ".join(" ".join(words[i : i + 5]) for i in range(0, count, 5))
    return html_mail("<p>hello</p>", "placeholder").replace(
        b"Subject: placeholder", b"Subject: " + folded.encode(), 1
    )


def nested_divs(depth: int) -> bytes:
    return html_mail("<html><body>" + "<div>" * depth + "lost" + "</div>" * depth)


def ordinary(size: int) -> bytes:
    paragraph = "<p>My order has not arrived, could you look into it please? Thanks.</p>\n"
    return html_mail(paragraph * (size // len(paragraph) + 1))


def ingest(data: bytes) -> None:
    raw = RawInbound(channel="email", payload=data,
                     fields=envelope_fields("", ("support@example.com",)))
    to_message(raw, parse_email(data), is_ours=lambda a: True, keep_signature=False,
               token_secret=b"bench")


async def measure(data: bytes) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    work = loop.run_in_executor(None, ingest, data)
    worst = 0.0
    while not work.done():
        tick = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - tick)
    await work
    return time.perf_counter() - started, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    scale = 10 if parser.parse_args().quick else 1
    inputs = [
        ("Subject of 12,000 encoded words", encoded_words(12_000 // scale)),
        ("Subject of 20,000 encoded words", encoded_words(20_000 // scale)),
        ("30,000 nested <div>s", nested_divs(30_000 // scale)),
        ("100,000 nested <div>s", nested_divs(100_000 // scale)),
    ]
    rows = []
    for name, data in inputs:
        base_seconds, base_gap = asyncio.run(measure(ordinary(len(data))))
        seconds, gap = asyncio.run(measure(data))
        rows.append([name, f"{len(data) / 1024:.0f}", f"{seconds * 1000:.0f}",
                     f"{base_seconds * 1000:.0f}", f"{seconds / base_seconds:.1f}",
                     f"{gap * 1000:.0f}", f"{base_gap * 1000:.0f}"])
    common.report(
        "Hostile mail: ingest time and event-loop gaps",
        ["Baseline: an ordinary HTML message of the same size, ingested the same way."],
        ["input", "KiB", "ingest ms", "baseline ms", "ratio", "worst loop gap ms",
         "baseline gap ms"],
        rows,
    )


if __name__ == "__main__":
    main()
