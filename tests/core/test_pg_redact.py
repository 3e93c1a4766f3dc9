"""The PostgreSQL URL shown in logs and errors never carries the password."""

from __future__ import annotations

from urllib.parse import quote

from casebridge.pgstore.db import redact
from hypothesis import given
from hypothesis import strategies as st

names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)


# No surrogates: a URL is UTF-8 text, and a lone surrogate cannot be encoded at all.
@given(user=names, password=st.text(st.characters(min_codepoint=1, exclude_categories=("Cs",)),
                                    min_size=4, max_size=20),
       host=st.from_regex(
    r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?", fullmatch=True), port=st.integers(1, 65535),
    db=st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True))
def test_redact_drops_the_password(user: str, password: str, host: str, port: int,
                                   db: str) -> None:
    url = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{db}"
    shown = redact(url)
    assert shown == f"postgresql://{user}@{host}:{port}/{db}"
    if password not in f"{user}@{host}:{port}/{db}":
        assert password not in shown


def test_redact_of_garbage_does_not_echo_it() -> None:
    assert redact("postgresql://u:secret@h:1/x?sslmode=") == "postgresql://u@h:1/x"
    assert redact("host=h password=secret dbname=x") == "postgresql://h/x"
    assert redact("postgresql://u:secret@h/x?bogus=1 '") == "postgresql://<unparsable url>"
