import json

import pytest
from casebridge_sms import gsm
from casebridge_sms.segments import segment
from hypothesis import given
from hypothesis import strategies as st

# Written out here from 3GPP TS 23.038 rather than imported, so the tests check gsm.py's table.
SPEC_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
SPEC_EXTENSION = set("\x0c^{}\\[~]|€")


def ref_units(text: str) -> tuple[str, int]:
    """Encoding and size computed independently of the code under test."""
    if set(text) <= SPEC_BASIC | SPEC_EXTENSION:
        return "GSM-7", sum(2 if ch in SPEC_EXTENSION else 1 for ch in text)
    return "UCS-2", len(text.encode("utf-16-be")) // 2


def part_units(part: str, encoding: str) -> int:
    if encoding == "GSM-7":
        return sum(2 if ch in SPEC_EXTENSION else 1 for ch in part)
    return len(part.encode("utf-16-be")) // 2


def min_parts(text: str, encoding: str, budget: int) -> int:
    """Fewest parts by exhaustive dynamic programming over every split point."""
    n = len(text)
    best = [0] + [n + 1] * n
    for end in range(1, n + 1):
        for start in range(end - 1, -1, -1):
            if part_units(text[start:end], encoding) > budget:
                break
            best[end] = min(best[end], best[start] + 1)
    return best[n]


mixed_chars = st.sampled_from(
    sorted(SPEC_BASIC) + sorted(SPEC_EXTENSION) * 4 + list("櫻ちé́á`") + ["😜", "🍔", "🇮"]
)
texts = st.one_of(
    st.text(alphabet=st.sampled_from(sorted(SPEC_BASIC | SPEC_EXTENSION)), max_size=400),
    st.text(alphabet=mixed_chars, max_size=300),
    st.text(max_size=200),
)


@given(texts)
def test_parts_rebuild_text_fit_and_are_fewest(text: str) -> None:
    result = segment(text)
    encoding, units = ref_units(text)
    assert result.encoding == encoding
    assert result.units == units
    assert "".join(result.parts) == text
    assert result.segments == len(result.parts)
    single, multi = (160, 153) if encoding == "GSM-7" else (70, 67)
    budget = single if units <= single else multi
    assert result.per_segment == budget
    assert all(part_units(p, encoding) <= budget for p in result.parts)
    assert result.remaining == budget - part_units(result.parts[-1], encoding)
    if text:
        assert all(result.parts)
        assert result.segments == min_parts(text, encoding, budget)


@given(st.text(alphabet=mixed_chars, min_size=60, max_size=300))
def test_no_surrogate_pair_or_escape_is_split(text: str) -> None:
    result = segment(text)
    wire = "utf-16-be" if result.encoding == "UCS-2" else None
    for part in result.parts:
        if wire:
            # Each part must be valid UTF-16 on its own: no half of a pair at either end.
            raw = part.encode(wire)
            assert raw.decode(wire) == part
            first = int.from_bytes(raw[:2], "big")
            last = int.from_bytes(raw[-2:], "big")
            assert not 0xDC00 <= first <= 0xDFFF
            assert not 0xD800 <= last <= 0xDBFF
        else:
            assert not gsm.encode(part).endswith(b"\x1b")
    if result.encoding == "GSM-7":
        assert b"".join(gsm.encode(p) for p in result.parts) == gsm.encode(text)


@given(st.text(max_size=200))
def test_smart_parts_rebuild_the_smart_text(text: str) -> None:
    result = segment(text, smart=True)
    encoded = gsm.smart_encode(text)
    assert "".join(result.parts) == encoded
    assert result.encoding == ref_units(encoded)[0]
    if encoded:
        assert result.segments == min_parts(encoded, result.encoding, result.per_segment)


@pytest.mark.parametrize(
    ("text", "encoding", "sizes"),
    [
        ("a" * 160, "GSM-7", [160]),
        ("a" * 161, "GSM-7", [153, 8]),
        ("€" * 80, "GSM-7", [160]),
        ("€" * 81, "GSM-7", [152, 10]),
        ("a" * 152 + "{" + "a" * 7, "GSM-7", [152, 9]),
        ("櫻" * 70, "UCS-2", [70]),
        ("櫻" * 71, "UCS-2", [67, 4]),
        ("😎" * 35, "UCS-2", [70]),
        ("😎" * 36, "UCS-2", [66, 6]),
    ],
)
def test_known_boundaries(text: str, encoding: str, sizes: list[int]) -> None:
    result = segment(text)
    assert result.encoding == encoding
    assert [part_units(p, encoding) for p in result.parts] == sizes


def test_empty_text_is_one_empty_gsm_part() -> None:
    result = segment("")
    assert (result.encoding, result.segments, result.parts) == ("GSM-7", 1, ("",))
    assert result.remaining == 160


def test_smart_encoding_keeps_typography_in_gsm7() -> None:
    text = "“Hello” – it’s\u00a0done…\t\u200b"
    assert segment(text).encoding == "UCS-2"
    smart = segment(text, smart=True)
    assert smart.encoding == "GSM-7"
    assert smart.parts == ('"Hello" - it\'s done... ',)


def test_smart_map_is_sound() -> None:
    for key, value in gsm.SMART_MAP.items():
        assert len(key) == 1
        assert key not in SPEC_BASIC | SPEC_EXTENSION, key
        assert set(value) <= SPEC_BASIC | SPEC_EXTENSION, key


def test_gsm_table_matches_spec() -> None:
    assert gsm.GSM_CHARS == SPEC_BASIC | SPEC_EXTENSION
    assert gsm.encode("{@}") == bytes.fromhex("1b28001b29")
    with pytest.raises(ValueError, match=r"'°' \(U\+00B0\) at index 2"):
        gsm.encode("ab°c")


def test_to_json_is_json() -> None:
    data = json.loads(json.dumps(segment("a" * 200).to_json()))
    assert data["encoding"] == "GSM-7"
    assert data["segments"] == 2
    assert "".join(data["parts"]) == "a" * 200


def test_rejects_non_text() -> None:
    with pytest.raises(TypeError, match="bytes"):
        segment(b"hi")  # type: ignore[arg-type]
