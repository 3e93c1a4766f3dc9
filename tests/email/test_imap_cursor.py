"""The mailbox cursor and batching (pure), the mailbox settings' checks, and how the OAuth2
access token is read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from casebridge.errors import ConfigError
from casebridge.secrets import Secret
from casebridge_email.imap import access_token
from casebridge_email.imap_cursor import (
    Cursor,
    batches,
    cursor_from_state,
    pending,
    resume,
)
from casebridge_email.settings import EmailSettings, MailboxSettings
from hypothesis import given
from hypothesis import strategies as st

uidvalidities = st.integers(min_value=1, max_value=2**32 - 1)
uids = st.integers(min_value=1, max_value=10_000)
cursors = st.builds(Cursor, uidvalidities, st.integers(0, 10_000), st.booleans())


@given(cursors)
def test_a_cursor_survives_the_plugin_state(cursor: Cursor) -> None:
    assert cursor_from_state(cursor.to_state()) == cursor


@given(st.one_of(st.none(), st.integers(), st.text(), st.dictionaries(st.text(), st.text())))
def test_a_stored_value_is_a_cursor_or_a_clear_error(value: object) -> None:
    if value is None:
        assert cursor_from_state(value) is None
        return
    with pytest.raises(ValueError, match="mailbox state"):
        cursor_from_state(value)


@given(cursors, st.lists(uids))
def test_pending_is_what_lies_after_the_cursor_in_order(cursor: Cursor, found: list[int]) -> None:
    left = pending(found, cursor)
    assert left == sorted(set(left))
    assert set(left) == {u for u in found if u > cursor.last_uid}


@given(cursors, st.lists(uids))
def test_the_cursor_never_moves_backwards(cursor: Cursor, done: list[int]) -> None:
    moved = cursor
    for uid in done:
        after = moved.done_through(uid)
        assert after.last_uid == max(moved.last_uid, uid)
        assert after.uidvalidity == cursor.uidvalidity
        moved = after
    assert moved.last_uid >= cursor.last_uid


@given(cursors, uidvalidities, st.sampled_from(["unseen", "all"]))
def test_resume_continues_only_under_the_same_uidvalidity(
    stored: Cursor, uidvalidity: int, first_start: str
) -> None:
    cursor, why = resume(stored, uidvalidity, first_start)  # type: ignore[arg-type]
    if uidvalidity == stored.uidvalidity:
        assert cursor == stored
        assert why == f"resuming after UID {stored.last_uid}"
    else:
        # Old UIDs mean nothing now: the whole folder again (Message-ID dedupe drops repeats).
        assert cursor == Cursor(uidvalidity, 0, False)
        assert "UIDVALIDITY changed" in why


@given(uidvalidities)
def test_a_first_start_reads_from_the_start(uidvalidity: int) -> None:
    unseen, _ = resume(None, uidvalidity, "unseen")
    everything, _ = resume(None, uidvalidity, "all")
    assert unseen == Cursor(uidvalidity, 0, True)
    assert unseen.search_criteria() == ["UNSEEN", "UID", "1:*"]
    assert everything.search_criteria() == ["UID", "1:*"]


@given(cursors, st.integers(0, 20_000))
def test_a_finished_pass_ends_the_first_pass_and_covers_uidnext(
    cursor: Cursor, uidnext: int
) -> None:
    after = cursor.pass_finished(uidnext)
    assert not after.initial
    assert after.last_uid == max(cursor.last_uid, uidnext - 1)


@given(
    st.lists(st.tuples(uids, st.integers(0, 5000)), unique_by=lambda p: p[0]),
    st.integers(1, 20),
    st.integers(1, 20_000),
)
def test_batches_keep_order_and_bounds(
    sizes: list[tuple[int, int]], max_count: int, max_bytes: int
) -> None:
    sizes = sorted(sizes)
    cut = batches(sizes, max_count=max_count, max_bytes=max_bytes)
    assert [u for batch in cut for u in batch] == [u for u, _ in sizes]
    size_of = dict(sizes)
    for batch in cut:
        assert 1 <= len(batch) <= max_count
        total = sum(size_of[u] for u in batch)
        # Only a single message larger than the budget may exceed it, alone.
        assert total <= max_bytes or len(batch) == 1


def test_bad_cursors_and_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="uidvalidity"):
        Cursor(0)
    with pytest.raises(ValueError, match="last_uid"):
        Cursor(1, -1)
    with pytest.raises(ValueError, match="positive"):
        batches([(1, 1)], max_count=0, max_bytes=1)


# -- settings ------------------------------------------------------------------------------


def box(**extra: object) -> MailboxSettings:
    values: dict[str, object] = {
        "host": "imap.example.com",
        "username": "support@example.com",
        "password": Secret("pw", "literal"),
        **extra,
    }
    return MailboxSettings(**values)  # type: ignore[arg-type]


def test_mailbox_defaults_are_verified_tls_on_993_flagging_seen() -> None:
    mailbox = box()
    assert (mailbox.tls, mailbox.port, mailbox.after, mailbox.folder) == (
        "tls",
        993,
        "seen",
        "INBOX",
    )
    assert box(tls="starttls").port == 143
    assert mailbox.label == "support@example.com@imap.example.com:993/INBOX"
    assert "pw" not in repr(mailbox)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"password": None}, "exactly one of password"),
        ({"oauth2_token_file": "token"}, "exactly one of password"),
        ({"tls": "none"}, "only on loopback"),
        ({"host": "127.0.0.1", "tls": "none", "ca_file": "ca.pem"}, "ca_file is set"),
        ({"after": "move"}, "move_to goes with"),
        ({"move_to": "Done"}, "move_to goes with"),
        ({"after": "move", "move_to": "INBOX"}, "move_to is the folder"),
        ({"idle_seconds": 3600.0}, "idle_seconds"),
        ({"poll_seconds": 0.0}, "poll_seconds must be positive"),
        ({"port": 70000}, "not a TCP port"),
        ({"address": "nobody"}, "is no address"),
        ({"host": " "}, "host is empty"),
    ],
)
def test_mailbox_settings_name_what_is_wrong(extra: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        box(**extra)


def test_email_settings_need_some_way_for_mail_to_come_in() -> None:
    with pytest.raises(ValueError, match="no mail can come in"):
        EmailSettings(smtp_server=False)
    assert EmailSettings(smtp_server=False, mailboxes=[box()]).mailboxes
    with pytest.raises(ValueError, match="listed twice"):
        EmailSettings(mailboxes=[box(), box()])


# -- the OAuth2 token ----------------------------------------------------------------------


def test_the_token_file_is_read_at_every_login(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first-token\n")
    mailbox = box(password=None, oauth2_token_file="token")
    assert access_token(mailbox, tmp_path) == "first-token"
    (tmp_path / "token").write_text("refreshed-token\n")  # a sidecar refreshed it
    assert access_token(mailbox, tmp_path) == "refreshed-token"


def test_the_token_command_output_is_the_token(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('command-token')"]
    assert access_token(box(password=None, oauth2_token_command=command), tmp_path) == (
        "command-token"
    )


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"oauth2_token_file": "missing"}, "cannot read oauth2_token_file"),
        ({"oauth2_token_command": ["/nonexistent/refresh-token"]}, "failed"),
        (
            {
                "oauth2_token_command": [
                    sys.executable,
                    "-c",
                    "import sys; print('leaked-secret'); sys.exit(3)",
                ]
            },
            "exited with status 3",
        ),
        ({"oauth2_token_command": [sys.executable, "-c", "print()"]}, "empty token"),
    ],
)
def test_a_token_that_cannot_be_had_is_a_clear_error_without_output(
    tmp_path: Path, extra: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        access_token(box(password=None, **extra), tmp_path)
    assert "leaked-secret" not in str(caught.value)


def test_mailboxes_come_from_the_toml_with_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    from casebridge.config import build

    monkeypatch.setenv("CASEBRIDGE_IMAP_PASSWORD", "from-env")
    table = tomllib.loads(
        """
        support_addresses = ["support@example.com"]
        smtp_server = false
        [[mailboxes]]
        host = "outlook.office365.com"
        username = "support@example.com"
        password = {env = "CASEBRIDGE_IMAP_PASSWORD"}
        after = "move"
        move_to = "Processed"
        """
    )
    settings = build(EmailSettings, table, path=tmp_path / "casebridge.toml", where="plugins.email")
    (mailbox,) = settings.mailboxes
    assert mailbox.password is not None and mailbox.password.reveal() == "from-env"
    assert (mailbox.port, mailbox.move_to) == (993, "Processed")
    table["mailboxes"][0]["folder"] = 7
    with pytest.raises(ConfigError, match=r"\[plugins.email\] mailboxes\[0\].folder"):
        build(EmailSettings, table, path=tmp_path / "casebridge.toml", where="plugins.email")
