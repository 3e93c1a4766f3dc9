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

Speed: every implementation gets the same cases, each round runs all of them in turn (so load
from other processes falls on all alike), and the best of ``--rounds`` rounds counts. A peer
given ``html_to_text(input)`` is timed including that conversion.

Two accuracies are printed per implementation:

* ``raw``: every case, compared exactly as its manifest says.
* ``spec``: only the cases whose expectation is consistent with casebridge's trimming spec,
  compared in the spec's output form: text lines without trailing whitespace and without
  leading or trailing blank lines (``normalize_lines``), since the spec never keeps trailing
  whitespace (``exact`` cases that differ only there count as matches).

A case *contradicts the spec* (and is counted per source in the ``contra`` column instead of
in ``spec``) when its expectation, judged on the expectation and input alone and never on any
implementation's output, does one of:

1. keeps quoted text: a line starting with ``>``, or (HTML) a ``<blockquote>`` holding text;
2. is empty while the input has text (the spec always leaves something);
3. keeps a quote marker the spec drops: an ``On ... wrote:`` line, an ``Original Message`` or
   ``Forwarded message`` separator, or ends on a line of rule characters only (``-----``);
4. keeps a signature the spec drops, for kinds that strip signatures: a ``--`` line;
5. drops the sender's sign-off, which the spec keeps as new content, for kinds that strip
   signatures: the input's first non-blank line after the expectation's last one is a
   closing (``Regards,``, ``Thanks!``, ``Viele Grüße`` ...) or a ``-Name`` line.

Rules 4 and 5 follow the spec's signature rule: only what a delimiter or a mail client sets
apart (``-- ``, mobile footers) is a signature; the sender's own closing and name stay.
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
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path

from casebridge_email.trim import html_to_text, normalize_lines, visible_html, visible_text

_WS = re.compile(r"\s+")
# Markers for the contradiction rules in the module docstring; deliberately simple and
# independent of casebridge's own patterns.
_QUOTED_LINE = re.compile(r"^\s*>")
_ATTRIBUTION = re.compile(r"^\s*On\s.*\swrote\s*:?\s*$")
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Forwarded message)\s*-{2,}\s*$", re.IGNORECASE
)
_RULE = re.compile(r"^\s*[-_=*]{3,}\s*$")
_SIGNATURE_LINE = re.compile(r"^--\s*$")
_CLOSING_LINE = re.compile(
    r"^\s*(?:(?:Many\s+|Best\s+|Kind\s+|Warm\s+)?(?:Thanks|Regards|Wishes)|Thank\s+you|Thx|"
    r"Cheers|Best|Sincerely|Yours|Merci|Cordialement|Bien\s+à\s+vous|(?:Viele\s+)?Grüße|Gruß|"
    r"Mit\s+freundlichen\s+Grüßen|Saludos|Saluti|Groeten|Pozdrawiam|Hälsningar|Hilsen|"
    r"С\s+уважением)\s*[,.!]*\s*$",
    re.IGNORECASE,
)
_DASH_NAME_LINE = re.compile(r"^\s*-\s?[^\W\d_][\w.'’]*(?:\s[A-Z][\w.'’]*)?\s*$")
_BLOCKQUOTE = re.compile(r"<blockquote\b[^>]*>(.*?)</blockquote>", re.IGNORECASE | re.DOTALL)
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
    contradiction: str | None = None


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
            case = Case(
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
            cases.append(replace(case, contradiction=contradiction(case)))
    return cases


def contradiction(case: Case) -> str | None:
    """Which spec rule the case's expectation breaks (see the module docstring), or None."""
    expected = html_to_text(case.expected) if case.expected_is_html else case.expected
    lines = normalize_lines(expected)
    given = normalize_lines(html_to_text(case.data) if case.fmt == "html" else case.data)
    # A message that is only a quote keeps it under the spec, so keeping it is no contradiction.
    only_quote = all(not line or _QUOTED_LINE.match(line) for line in given) or (
        case.fmt == "html" and not html_to_text(_BLOCKQUOTE.sub("", case.data))
    )
    if not only_quote and (
        any(_QUOTED_LINE.match(line) for line in lines)
        or (
            case.expected_is_html
            and any(html_to_text(m.group(1)) for m in _BLOCKQUOTE.finditer(case.expected))
        )
    ):
        return "keeps quoted text"
    if not lines and given:
        return "empty output"
    if any(_ATTRIBUTION.match(line) or _SEPARATOR.match(line) for line in lines) or (
        lines and _RULE.match(lines[-1])
    ):
        return "keeps a quote marker"
    # A signature under content; a message that is only a signature keeps it under the spec.
    if not case.keep_signature and any(_SIGNATURE_LINE.match(line) for line in lines[1:]):
        return "keeps a signature"
    if not case.keep_signature and _drops_sign_off(lines, given):
        return "drops the sender's sign-off"
    return None


def _drops_sign_off(expected: list[str], given: list[str]) -> bool:
    """Whether the first non-blank input line after the expectation's lines (matched in
    order) is a closing or a ``-Name`` line."""
    if not expected:
        return False
    position = 0
    for line in expected:
        while position < len(given) and given[position] != line:
            position += 1
        if position == len(given):
            return False  # the expectation is not made of input lines: no judgement
        position += 1
    following = next((line for line in given[position:] if line.strip()), "")
    return bool(_CLOSING_LINE.match(following) or _DASH_NAME_LINE.match(following))


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


def matches_spec_form(case: Case, output: str) -> bool:
    """``matches`` with text compared in the spec's output form (normalised lines)."""
    if case.expected_is_html or case.comparison == "ignore_all_whitespace":
        return matches(case, output)
    return normalize_lines(output) == normalize_lines(case.expected)


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


@dataclass(slots=True)
class Score:
    """Results of one implementation on one source."""

    raw: list[bool]
    spec: list[bool]  # cases consistent with the spec only


def run_impl(impl: Impl, cases: list[Case]) -> tuple[dict[str, Score], float, list[Case]]:
    results: dict[str, Score] = {}
    failed: list[Case] = []
    elapsed = 0.0
    for case in cases:
        start = time.perf_counter()
        try:
            output = impl(case)
        except Exception:  # a peer crashing on a case counts as a miss, not a bench failure
            output = "\0error"
        elapsed += time.perf_counter() - start
        score = results.setdefault(case.source, Score([], []))
        ok = matches(case, output)
        score.raw.append(ok)
        if case.contradiction is None:
            spec_ok = matches_spec_form(case, output)
            score.spec.append(spec_ok)
            if not spec_ok:
                failed.append(case)
    return results, elapsed, failed


def _pct(oks: list[bool]) -> str:
    return f"{100 * sum(oks) / len(oks):5.1f}" if oks else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="reply-trim corpus folder")
    parser.add_argument(
        "--show-failures",
        action="store_true",
        help="list casebridge misses on spec-consistent cases, and the contradicting cases",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="timing rounds, each running every implementation once (the best is kept)",
    )
    args = parser.parse_args(argv)
    if not (args.corpus / "INDEX.json").is_file():
        print(f"error: {args.corpus} has no INDEX.json (not a reply-trim corpus)", file=sys.stderr)
        return 2
    cases = load_cases(args.corpus)
    warnings.simplefilter("ignore")  # peers' parsers warn about Outlook's XML namespaces
    impls: dict[str, Impl | None] = {"casebridge": casebridge_impl, **load_peers()}
    table: dict[str, dict[str, Score]] = {}
    speed: dict[str, float] = {}
    failures: list[Case] = []
    best: dict[str, float] = {}
    # Round after round, every implementation in turn: a burst of load on a shared machine
    # then slows all of them alike, instead of whichever was running at the time.
    for _ in range(max(1, args.rounds)):
        for name, impl in impls.items():
            if impl is None:
                continue
            results, elapsed, failed = run_impl(impl, cases)
            best[name] = min(best.get(name, float("inf")), elapsed)
            table[name] = results
            if name == "casebridge":
                failures = failed
    for name, elapsed in best.items():
        speed[name] = len(cases) / elapsed if elapsed > 0 else float("inf")

    sources = sorted({c.source for c in cases})
    width = max(len(s) for s in [*sources, "messages/second"]) + 2
    col = 14
    header = f"{'source':<{width}}{'cases':>6}{'contra':>7}" + "".join(
        f"{n[:col - 1]:>{col}}" for n in impls
    )
    sub = f"{'':<{width}}{'':>13}" + f"{'raw / spec':>{col}}" * len(impls)
    print(header)
    print(sub)
    print("-" * len(header))

    def cell(name: str, source: str | None) -> str:
        scores = table.get(name)
        if scores is None:
            return f"{'n/a':>{col}}"
        picked = list(scores.values()) if source is None else [scores[source]]
        raw = [ok for sc in picked for ok in sc.raw]
        spec = [ok for sc in picked for ok in sc.spec]
        return f"{_pct(raw) + ' /' + _pct(spec):>{col}}"

    for source in [*sources, None]:
        subset = [c for c in cases if source is None or c.source == source]
        contra = sum(1 for c in subset if c.contradiction)
        label = source or "overall"
        row = f"{label:<{width}}{len(subset):>6}{contra:>7}"
        print(row + "".join(cell(name, source) for name in impls))
    row = f"{'messages/second':<{width}}{'':>13}"
    for name in impls:
        row += f"{speed[name]:>{col},.0f}" if name in speed else f"{'n/a':>{col}}"
    print(row)
    if args.show_failures:
        for case in failures:
            print(f"MISS {case.source}/{case.name}")
        for case in cases:
            if case.contradiction:
                print(f"CONTRADICTS SPEC {case.source}/{case.name}: {case.contradiction}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
