"""The reply-trim bench's spec set: which expectations contradict casebridge's trimming rules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import reply_trim

REPLY = "The new password works.\n\nCan you also reset Maria's?"


def _case(data: str, expected: str, *, keep_signature: bool = False) -> reply_trim.Case:
    return reply_trim.Case(
        source="synthetic",
        name="case",
        fmt="text",
        data=data,
        expected=expected,
        expected_is_html=False,
        comparison="strip",
        keep_signature=keep_signature,
        signature_task=False,
        languages=None,
    )


@pytest.mark.parametrize(
    "sign_off", ["Regards,\n\nJohn Doe", "Thanks!\nRoman", "Viele Grüße\nTom", "-Lev.", "- roman"]
)
def test_an_expectation_dropping_the_sign_off_contradicts_the_spec(sign_off: str) -> None:
    case = _case(f"{REPLY}\n\n{sign_off}\n\nSent from my iPhone\n", REPLY)
    assert reply_trim.contradiction(case) == "drops the sender's sign-off"
    # Libraries that keep signatures are judged by their own kind's rules.
    assert reply_trim.contradiction(_case(case.data, REPLY, keep_signature=True)) is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (f"{REPLY}\n\nBest,\nAnna\n\nSent from my iPhone", f"{REPLY}\n\nBest,\nAnna"),
        (f"{REPLY}\n\n-Abhishek Kona\n", f"{REPLY}\n\n-Abhishek Kona"),
        (f"{REPLY}\n-- \nAnna Smith\nAcme Ltd\n", REPLY),
        (f"{REPLY}\n\nSent from my iPhone\n", REPLY),
    ],
)
def test_expectations_that_follow_the_signature_rule_are_in_the_spec_set(
    data: str, expected: str
) -> None:
    assert reply_trim.contradiction(_case(data, expected)) is None


def test_an_expectation_keeping_a_dash_dash_signature_contradicts_the_spec() -> None:
    data = f"{REPLY}\n--\nAnna Smith\n"
    assert reply_trim.contradiction(_case(data, data)) == "keeps a signature"


def test_bench_counts_a_dropped_sign_off_as_a_contradiction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # casebridge alone: peer libraries, when installed, take seconds to import.
    monkeypatch.setattr(reply_trim, "load_peers", dict)
    folder = tmp_path / "synthetic"
    folder.mkdir()
    (tmp_path / "INDEX.json").write_text("{}", encoding="utf-8")
    inputs = {
        "dropped": (f"{REPLY}\n\nRegards,\nJohn\n", REPLY),
        "kept": (f"{REPLY}\n\nMerci,\nLuc\n\nEnvoyé de mon iPhone\n", f"{REPLY}\n\nMerci,\nLuc"),
    }
    entries = []
    for name, (data, expected) in inputs.items():
        (folder / f"{name}.txt").write_text(data, encoding="utf-8")
        (folder / f"{name}.expected.txt").write_text(expected, encoding="utf-8")
        entries.append(
            {
                "name": name,
                "input_file": f"{name}.txt",
                "expected_file": f"{name}.expected.txt",
                "expected_kind": "visible_text",
                "comparison": "strip",
            }
        )
    manifest = {"source": "synthetic", "cases": entries}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert reply_trim.main(["--corpus", str(tmp_path), "--rounds", "1", "--show-failures"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("synthetic"))
    # 2 cases, 1 contradiction; casebridge: raw 50 % (keeps John's sign-off), spec 100 %.
    assert row.split()[1:5] == ["2", "1", "50.0", "/100.0"]
    assert "CONTRADICTS SPEC synthetic/dropped: drops the sender's sign-off" in out
