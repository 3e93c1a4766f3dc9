"""derived_id: the text of a version-5 UUID of the joined parts, as uuid.uuid5 makes it."""

from __future__ import annotations

import uuid

from casebridge.model import NAMESPACE, derived_id
from hypothesis import given
from hypothesis import strategies as st


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_derived_id_is_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    assert derived_id(*parts) == str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def test_derived_id_is_stable_and_tells_parts_apart() -> None:
    assert derived_id("case", "s1") == str(uuid.uuid5(NAMESPACE, "case\x1fs1"))
    assert derived_id("case", "s1") != derived_id("case", "s2")
    assert uuid.UUID(derived_id("x")).version == 5
