"""EmailSettings: defaults, normalization, inconsistent combinations, recipient policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from casebridge.secrets import Secret
from casebridge_email.settings import EmailSettings, RelaySettings

SECRET = Secret("s3cret-value", "literal")


def test_defaults_are_consistent_and_report_what_is_missing() -> None:
    s = EmailSettings()
    assert (s.listen_host, s.listen_port) == ("127.0.0.1", 2525)
    assert s.relay is None
    assert len(s.missing()) == 3
    ok = EmailSettings(support_addresses=["Support@Example.com"], reply_token_secret=SECRET)
    assert ok.missing() == ()
    assert ok.support_addresses == ["support@example.com"]
    assert (ok.sender_address, ok.our_message_id_domain) == ("support@example.com", "example.com")


def test_recipient_policy() -> None:
    s = EmailSettings(support_addresses=["support@example.com"], support_domains=["help.example"])
    assert s.accepts("support@example.com")
    assert s.accepts("<SUPPORT+abc@Example.com>")
    assert s.accepts("anyone@help.example")
    assert not s.accepts("sales@example.com")
    assert not s.accepts("support@example.com.evil.example")
    assert not s.accepts("support@evil.example")
    assert not s.accepts("@help.example")
    assert not s.accepts("nobody")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"support_addresses": ["support+x@example.com"]}, "plus tag"),
        ({"support_addresses": ["nobody"]}, "not a plain e-mail address"),
        ({"support_domains": ["a@b"]}, "not a domain"),
        ({"listen_port": 70000}, "listen_port"),
        ({"max_message_bytes": 0}, "max_message_bytes"),
        ({"max_attachment_bytes": 30 * 2**20}, "larger than max_message_bytes"),
        ({"tls_cert": "cert.pem"}, "tls_cert and tls_key"),
        ({"require_starttls": True}, "require_starttls"),
        ({"auth_username": "fwd"}, "auth_username and auth_password"),
        ({"require_auth": True}, "require_auth needs auth_username"),
        (
            {
                "require_auth": True,
                "auth_username": "u",
                "auth_password": SECRET,
                "listen_host": "0.0.0.0",
            },
            "non-loopback",
        ),
        ({"rate_limit_seconds": 0}, "rate_limit_seconds"),
    ],
)
def test_inconsistent_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmailSettings(**kwargs)  # type: ignore[arg-type]


def test_auth_is_fine_on_loopback_or_with_tls() -> None:
    EmailSettings(require_auth=True, auth_username="u", auth_password=SECRET, listen_host="::1")
    EmailSettings(
        require_auth=True,
        auth_username="u",
        auth_password=SECRET,
        listen_host="0.0.0.0",
        tls_cert="c.pem",
        tls_key="k.pem",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "relay.port"),
        ({"host": " "}, "relay.host"),
        ({"username": "u"}, "go together"),
        ({"password": SECRET}, "go together"),
        ({"timeout": 0}, "timeout"),
        ({"ca_file": "ca.pem"}, "ca_file"),
    ],
)
def test_relay_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RelaySettings(**kwargs)  # type: ignore[arg-type]


def test_secrets_never_show() -> None:
    s = EmailSettings(reply_token_secret=SECRET, relay=RelaySettings(username="u", password=SECRET))
    assert "s3cret-value" not in repr(s) and "s3cret-value" not in str(s)


def test_builds_from_toml_with_the_core_loader(tmp_path: Path) -> None:
    config = pytest.importorskip("casebridge.config")
    import tomllib

    table = tomllib.loads(
        """
        support_addresses = ["support@example.com"]
        reply_token_secret = "tok"
        max_attachments = 3
        [relay]
        host = "smtp.example.com"
        port = 587
        tls = "starttls"
        username = "bridge"
        password = "pw"
        """
    )
    s = config.build(EmailSettings, table, path=tmp_path / "c.toml", where="plugins.email")
    assert s.relay.tls == "starttls" and s.relay.password.reveal() == "pw"
    assert s.max_attachments == 3
