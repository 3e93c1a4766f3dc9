"""Conformance and speed of casebridge's reply trimming against a shared corpus and peers.

Usage::

    PYTHONPATH=core:plugins/email .venv/bin/python bench/reply_trim.py --corpus DIR

DIR holds one folder per source, each with a MANIFEST.json (see the corpus README). Every case
is run through casebridge and, when importable, through the peer libraries mail-parser-reply,
email-reply-parser and talon (install them into the venv for the bench only; a missing one
shows "n/a"). Prints accuracy per source and messages per second per implementation.

How a case is run:
* ``.eml`` inputs use the sibling ``.body.txt`` when present, else the best text part.
* ``.html`` inputs go through the HTML path (casebridge: ``visible_html``; talon:
  ``extract_from_html``); peers without an HTML path get ``html_to_text(input)`` as plain text.
* Expectation kinds that keep signatures (talon's ``extract_from_plain``, quotequail's
  ``text_top`` / visible part) run with ``keep_signature=True``.
* HTML expectations are lxml serialisations, so both sides are rendered with ``html_to_text``
  and compared with all whitespace removed, per the corpus README's advice to compare
  rendered text rather than markup.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from casebridge_email.trim import html_to_text, visible_html, visible_text

_WS = re.compile(r"\s+")
# Expectation kinds whose libraries keep signatures (talon, quotequail).
_KEEPS_SIGNATURE = ("extract_from_plain", "text_top", "visible part")


@dataclass(frozen=True, slots=True)
class Case:
    source: str
    name: str
    fmt: str  # "text" or "html"
    data: str
    expected: str
    expected_is_html: bool
    comparison: str
    keep_signature: bool
    signature_task: bool
    languages: tuple[str, ...] | None


# An implementation maps a case to its output string (text, or HTML when expected_is_html).
Impl = Callable[[Case], str]


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _eml_text(path: Path) -> str:
    body_txt = path.with_name(path.name[: -len(".eml")] + ".body.txt")
    if body_txt.exists():
        return _read(body_txt)
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    return html_to_text(content) if part.get_content_subtype() == "html" else content


def load_cases(corpus: Path) -> list[Case]:
    cases: list[Case] = []
    for manifest_path in sorted(corpus.glob("*/MANIFEST.json")):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        folder = manifest_path.parent
        for entry in manifest["cases"]:
            inp = folder / entry["input_file"]
            kind = entry["expected_kind"]
            if inp.suffix == ".eml":
                fmt, data = "text", _eml_text(inp)
            elif inp.suffix == ".html":
                fmt, data = "html", _read(inp)
            else:
                fmt, data = "text", _read(inp)
            options = entry.get("parser_options") or {}
            cases.append(
                Case(
                    source=manifest.get("source", folder.name),
                    name=entry["name"],
                    fmt=fmt,
                    data=data,
                    expected=_read(folder / entry["expected_file"]),
                    expected_is_html=entry["expected_file"].endswith(".html"),
                    comparison=entry["comparison"],
                    keep_signature=kind.startswith(_KEEPS_SIGNATURE),
                    signature_task=kind == "text_without_signature",
                    languages=tuple(options["languages"]) if "languages" in options else None,
                )
            )
    return cases


def matches(case: Case, output: str) -> bool:
    expected = case.expected
    if case.expected_is_html:
        output, expected = html_to_text(output), html_to_text(expected)
        return _WS.sub("", output) == _WS.sub("", expected)
    if case.comparison == "exact":
        return output == expected
    if case.comparison == "strip":
        return output.strip() == expected.strip()
    if case.comparison == "ignore_all_whitespace":
        return _WS.sub("", output) == _WS.sub("", expected)
    raise ValueError(f"unknown comparison rule {case.comparison!r} in {case.source}/{case.name}")


def casebridge_impl(case: Case) -> str:
    if case.fmt == "html":
        html = visible_html(case.data)
        return html if case.expected_is_html else html_to_text(html)
    return visible_text(case.data, keep_signature=case.keep_signature)


def _as_text(case: Case) -> str:
    return html_to_text(case.data) if case.fmt == "html" else case.data


def load_peers() -> dict[str, Impl | None]:
    peers: dict[str, Impl | None] = {}
    try:
        from mailparser_reply import EmailReplyParser as MprParser
        from mailparser_reply.constants import MAIL_LANGUAGES

        all_langs = list(MAIL_LANGUAGES)
        parsers: dict[tuple[str, ...], MprParser] = {}

        def mpr(case: Case) -> str:
            langs = case.languages or tuple(all_langs)
            parser = parsers.setdefault(langs, MprParser(languages=list(langs)))
            replies = parser.read(_as_text(case)).replies
            return replies[0].body if replies else ""

        peers["mail-parser-reply"] = mpr
    except ImportError:
        peers["mail-parser-reply"] = None
    try:
        from email_reply_parser import EmailReplyParser as ErpParser

        def erp(case: Case) -> str:
            return str(ErpParser.parse_reply(_as_text(case)))

        peers["email-reply-parser"] = erp
    except ImportError:
        peers["email-reply-parser"] = None
    try:
        from talon import quotations
        from talon.signature.bruteforce import extract_signature

        def talon_impl(case: Case) -> str:
            if case.fmt == "html":
                html = quotations.extract_from_html(case.data)
                return html if case.expected_is_html else html_to_text(html)
            if case.signature_task:
                return str(extract_signature(case.data)[0])
            return str(quotations.extract_from_plain(case.data))

        peers["talon"] = talon_impl
    except ImportError:
        peers["talon"] = None
    return peers


def run_impl(impl: Impl, cases: list[Case]) -> tuple[dict[str, list[bool]], float, list[Case]]:
    results: dict[str, list[bool]] = {}
    failed: list[Case] = []
    elapsed = 0.0
    for case in cases:
        start = time.perf_counter()
        try:
            output = impl(case)
        except Exception:  # a peer crashing on a case counts as a miss, not a bench failure
            output = "\0error"
        elapsed += time.perf_counter() - start
        ok = matches(case, output)
        results.setdefault(case.source, []).append(ok)
        if not ok:
            failed.append(case)
    return results, elapsed, failed


def _pct(oks: list[bool] | None) -> str:
    if not oks:
        return "n/a"
    return f"{100 * sum(oks) / len(oks):5.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="reply-trim corpus folder")
    parser.add_argument("--show-failures", action="store_true", help="list casebridge misses")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (best is kept)")
    args = parser.parse_args(argv)
    if not (args.corpus / "INDEX.json").is_file():
        print(f"error: {args.corpus} has no INDEX.json (not a reply-trim corpus)", file=sys.stderr)
        return 2
    cases = load_cases(args.corpus)
    warnings.simplefilter("ignore")  # peers' parsers warn about Outlook's XML namespaces
    impls: dict[str, Impl | None] = {"casebridge": casebridge_impl, **load_peers()}
    table: dict[str, dict[str, list[bool]]] = {}
    speed: dict[str, float] = {}
    failures: list[Case] = []
    for name, impl in impls.items():
        if impl is None:
            continue
        best = float("inf")
        for _ in range(max(1, args.rounds)):
            results, elapsed, failed = run_impl(impl, cases)
            best = min(best, elapsed)
        table[name] = results
        speed[name] = len(cases) / best if best > 0 else float("inf")
        if name == "casebridge":
            failures = failed

    sources = sorted({c.source for c in cases})
    width = max(len(s) for s in [*sources, "overall"]) + 2
    header = f"{'source':<{width}}{'cases':>6}" + "".join(f"{n:>20}" for n in impls)
    print(header)
    print("-" * len(header))
    for source in sources:
        count = sum(1 for c in cases if c.source == source)
        row = f"{source:<{width}}{count:>6}"
        for name in impls:
            row += f"{_pct(table.get(name, {}).get(source)):>20}"
        print(row)
    row = f"{'overall':<{width}}{len(cases):>6}"
    for name in impls:
        oks = [ok for res in table.get(name, {}).values() for ok in res]
        row += f"{_pct(oks or None):>20}"
    print(row)
    row = f"{'messages/second':<{width}}{'':>6}"
    for name in impls:
        row += f"{speed[name]:>20,.0f}" if name in speed else f"{'n/a':>20}"
    print(row)
    if args.show_failures:
        for case in failures:
            print(f"MISS {case.source}/{case.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
