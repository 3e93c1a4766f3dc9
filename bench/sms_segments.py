"""Conformance and speed of casebridge's SMS segmentation against the shared corpus.

Usage::

    PYTHONPATH=core:plugins/sms .venv/bin/python bench/sms_segments.py \\
        --cases /work/shared/corpora/sms-segments/cases.json [--seconds 2] [--verbose]

Every ``segment`` case is run through ``casebridge_sms.segments.segment`` and each expected
field we compute is compared (field names per the file's ``field_definitions``):
encoding, segments, parts (content, code points, septets, UTF-16 bytes), length_units,
per_message / chars_per_segment, remaining / chars_available_in_last_segment,
message_size_bits / total_size_bits, all_chars_gsm7, last_segment_content, unicode_scalars,
and gsm_split_raises (our GSM-7 encoder must refuse the text). A case agrees when every one of
its comparable fields does. Not compared: grapheme counts (we split by code point, not by
grapheme) and source-specific names (encoding_source_name).

Cases run with options outside our spec (national single-shift tables, Gecko's
strict7BitEncoding) are counted apart, as are tasks we do not implement (truncate,
sanitize_to_gsm, remove_non_gsm). The ``encode`` and ``non_gsm_characters`` tasks are checked
against ``casebridge_sms.gsm``; the smart-encoding map is compared entry by entry with
Twilio's. Then segmentations per second are measured on the corpus texts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from casebridge_sms import gsm
from casebridge_sms.segments import Segmentation, segment

UNSUPPORTED_OPTIONS = {"national_shift_tables", "strict7BitEncoding"}
UNSUPPORTED_TASKS = {"truncate", "sanitize_to_gsm", "remove_non_gsm"}
NOT_COMPARED = {"characters_graphemes", "encoding_source_name"}


def _part_fields(result: Segmentation, index: int) -> dict[str, Any]:
    part = result.parts[index]
    fields: dict[str, Any] = {"content": part, "length": len(part)}
    if result.encoding == "GSM-7":
        fields["septets"] = len(gsm.encode(part))
    else:
        fields["utf16_bytes"] = len(part.encode("utf-16-be", "surrogatepass"))
    return fields


def _actual(field: str, text: str, result: Segmentation) -> Any:
    bits = 7 if result.encoding == "GSM-7" else 16
    match field:
        case "encoding":
            return result.encoding
        case "segments":
            return result.segments
        case "length_units":
            return result.units
        case "per_message" | "chars_per_segment":
            return result.per_segment
        case "remaining" | "chars_available_in_last_segment":
            return result.remaining
        case "message_size_bits":
            return result.units * bits
        case "total_size_bits":
            udh = 48 * result.segments if result.segments > 1 else 0
            return result.units * bits + udh
        case "all_chars_gsm7":
            return result.encoding == "GSM-7"
        case "last_segment_content":
            return result.parts[-1]
        case "unicode_scalars":
            return len(text)
        case "gsm_split_raises":
            try:
                gsm.encode(text)
            except ValueError:
                return "ValueError"
            return None
    raise KeyError(field)


def check_segment(case: dict[str, Any]) -> tuple[bool, list[str], int]:
    """(agrees, mismatches, fields compared) for one ``segment`` case."""
    text = case["text"]
    result = segment(text)
    mismatches: list[str] = []
    compared = 0
    for field, expected in case["expected"].items():
        if field in NOT_COMPARED:
            continue
        compared += 1
        if field == "parts":
            if len(expected) != result.segments:
                mismatches.append(f"parts: {len(expected)} expected, {result.segments} got")
                continue
            for index, want in enumerate(expected):
                got = _part_fields(result, index)
                for key, value in want.items():
                    if got.get(key) != value:
                        mismatches.append(f"parts[{index}].{key}: {value!r} != {got.get(key)!r}")
            continue
        actual = _actual(field, text, result)
        if actual != expected:
            mismatches.append(f"{field}: expected {expected!r}, got {actual!r}")
    return not mismatches, mismatches, compared


def check_other(case: dict[str, Any]) -> tuple[bool, list[str]]:
    """``encode`` and ``non_gsm_characters`` cases, against casebridge_sms.gsm."""
    text, expected = case["text"], case["expected"]
    mismatches: list[str] = []
    if case["task"] == "non_gsm_characters":
        got = gsm.non_gsm_characters(text)
        if got != expected["non_gsm_characters"]:
            mismatches.append(f"non_gsm_characters: {got!r}")
        return not mismatches, mismatches
    encoded: bytes | None
    try:
        encoded = gsm.encode(text)
        encoding = "GSM-7"
    except ValueError:
        encoded = None
        encoding = "UCS-2"
    if "encodable" in expected and expected["encodable"] != (encoded is not None):
        mismatches.append(f"encodable: {encoded is not None}")
    if "first_unencodable_index" in expected:
        first = next((i for i, ch in enumerate(text) if ch not in gsm.GSM_CHARS), None)
        if first != expected["first_unencodable_index"]:
            mismatches.append(f"first_unencodable_index: {first}")
    if "encoding" in expected and expected["encoding"] != encoding:
        mismatches.append(f"encoding: {encoding}")
    if "encoded_hex" in expected:
        wire = encoded if encoded is not None else text.encode("utf-16-be")
        if wire.hex() != expected["encoded_hex"]:
            mismatches.append(f"encoded_hex: {wire.hex()}")
    if "septets" in expected and (encoded is None or len(encoded) != expected["septets"]):
        mismatches.append(f"septets: {None if encoded is None else len(encoded)}")
    return not mismatches, mismatches


def smart_map_report(corpus: dict[str, Any]) -> tuple[int, int, list[str]]:
    entries = corpus.get("smart_encoding", {}).get("map", [])
    differ = []
    for key, value, code in entries:
        ours = gsm.smart_encode(key)
        if ours != value:
            differ.append(f"{code} {key!r}: twilio {value!r}, ours {ours!r}")
    return len(entries) - len(differ), len(entries), differ


def throughput(texts: list[str], seconds: float, *, smart: bool) -> float:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for text in texts:
            segment(text, smart=smart)
        count += len(texts)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True, help="sms-segments/cases.json")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per throughput run")
    parser.add_argument("--verbose", action="store_true", help="print every mismatch")
    args = parser.parse_args(argv)

    corpus = json.loads(args.cases.read_text(encoding="utf-8"))
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    failures: list[str] = []
    texts: list[str] = []
    for case in corpus["cases"]:
        row = rows[case["source"]]
        row["cases"] += 1
        options = set(case.get("options") or {})
        if options & UNSUPPORTED_OPTIONS:
            row["other_rules"] += 1
            continue
        if case["task"] in UNSUPPORTED_TASKS:
            row["other_task"] += 1
            continue
        if case["task"] == "segment":
            texts.append(case["text"])
            ok, why, compared = check_segment(case)
            if not compared:
                row["nothing_comparable"] += 1
                continue
            key = "segment"
        else:
            ok, why = check_other(case)
            key = "gsm"
        row[f"{key}_run"] += 1
        row[f"{key}_ok"] += int(ok)
        if not ok:
            failures.append(f"{case['id']}: {'; '.join(why)}")

    header = (
        f"{'source':38} {'cases':>5} {'segment':>13} {'encode/gsm':>11} "
        f"{'other rules':>11} {'other task':>10} {'no field':>8}"
    )
    print(header)
    print("-" * len(header))
    totals: dict[str, int] = defaultdict(int)
    for source, row in rows.items():
        for key, value in row.items():
            totals[key] += value
        print(_row(source, row))
    print("-" * len(header))
    print(_row("all", totals))

    agree, total, differ = smart_map_report(corpus)
    print(f"\nsmart-encoding map vs Twilio's: {agree}/{total} entries identical")
    if args.verbose:
        for line in differ:
            print(f"  {line}")
    if failures:
        print(f"\n{len(failures)} disagreeing case(s):")
        for line in failures:
            print(f"  {line}")

    plain = throughput(texts, args.seconds, smart=False)
    smart = throughput(texts, args.seconds, smart=True)
    long_texts = [t * 10 for t in texts]
    long = throughput(long_texts, args.seconds, smart=False)
    print(f"\nthroughput on the {len(texts)} corpus texts (mean {_mean_len(texts):.0f} chars):")
    print(f"  segment(text)              {plain:12,.0f} /s")
    print(f"  segment(text, smart=True)  {smart:12,.0f} /s")
    print(f"  segment(text * 10)         {long:12,.0f} /s (mean {_mean_len(long_texts):.0f} chars)")
    return 1 if failures else 0


def _mean_len(texts: list[str]) -> float:
    return sum(map(len, texts)) / max(len(texts), 1)


def _row(source: str, row: dict[str, int]) -> str:
    def ratio(key: str) -> str:
        run = row.get(f"{key}_run", 0)
        if not run:
            return "-"
        return f"{row.get(f'{key}_ok', 0)}/{run} {100 * row.get(f'{key}_ok', 0) / run:.0f}%"

    return (
        f"{source:38} {row['cases']:>5} {ratio('segment'):>13} {ratio('gsm'):>11} "
        f"{row.get('other_rules', 0):>11} {row.get('other_task', 0):>10} "
        f"{row.get('nothing_comparable', 0):>8}"
    )


if __name__ == "__main__":
    sys.exit(main())
