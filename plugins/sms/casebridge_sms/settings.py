"""``[plugins.sms]``: the provider, our numbers, the keyword answers and the limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from casebridge.plugin import Secret

from casebridge_sms.phones import normalize
from casebridge_sms.sandbox import DEFAULT_ACCOUNT_SID

INBOUND_PATH = "/webhooks/sms/inbound"
STATUS_PATH = "/webhooks/sms/status"

SANDBOX_TOKEN = Secret("sandbox-token", "sandbox default")


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """``[plugins.sms]``.

    ``provider`` "twilio" talks to ``base_url`` (Twilio or any Twilio-compatible provider)
    with ``account_sid`` / ``auth_token``; "sandbox" starts the in-process sandbox provider
    on 127.0.0.1 (``sandbox_port``, 0 picks a free one) with fixed default credentials.
    ``numbers`` are our E.164 numbers (read with ``default_region`` when written without a
    country code); an inbound webhook is ours when its ``To`` is one of them or it carries
    ``messaging_service_sid``. ``public_base_url`` overrides ``[bridge] public_url`` for the
    signature check (behind a reverse proxy). Replies needing more than ``max_segments``
    parts are refused, not cut; inbound bodies over ``max_body_chars`` are refused.
    ``download_media`` fetches MMS media (at most ``max_media_bytes`` each) into the bridge's
    data folder; otherwise media stay referenced by URL. ``answer_keywords`` sends
    ``opt_out_confirmation``, ``opt_in_confirmation`` and ``help_text`` in answer to STOP,
    START and HELP; turn it off when the provider answers them itself without saying so in
    the webhook (Twilio's default opt-out handling without Advanced Opt-Out; with Advanced
    Opt-Out the webhook carries ``OptOutType`` and the bridge never answers a second time).
    """

    provider: Literal["twilio", "sandbox"] = "twilio"
    base_url: str = "https://api.twilio.com"
    account_sid: str = ""
    auth_token: Secret | None = None
    numbers: list[str] = field(default_factory=list)
    messaging_service_sid: str = ""
    default_region: str = "US"
    public_base_url: str = ""
    smart_encoding: bool = True
    max_segments: int = 10
    opt_out_confirmation: str = (
        "You are unsubscribed and will get no more messages from us. Reply START to "
        "subscribe again."
    )
    opt_in_confirmation: str = (
        "You are subscribed again. Reply STOP to unsubscribe, HELP for help."
    )
    help_text: str = (
        "Customer support: reply with your question and we will answer. Reply STOP to "
        "unsubscribe."
    )
    answer_keywords: bool = True
    max_body_chars: int = 1600
    sandbox_port: int = 0
    download_media: bool = False
    max_media_bytes: int = 5_000_000

    def __post_init__(self) -> None:
        if len(self.default_region) != 2 or not self.default_region.isalpha():
            raise ValueError(
                f"default_region must be a two-letter country code, got {self.default_region!r}"
            )
        numbers = []
        for number in self.numbers:
            try:
                numbers.append(normalize(number, self.default_region))
            except ValueError as exc:
                raise ValueError(f"numbers: {exc}") from None
        object.__setattr__(self, "numbers", list(dict.fromkeys(numbers)))
        if not self.numbers and not self.messaging_service_sid:
            raise ValueError(
                "set numbers (our E.164 numbers) or messaging_service_sid: inbound messages "
                "are matched, and replies sent, by one of them"
            )
        for name in ("base_url", "public_base_url"):
            url = getattr(self, name)
            if url and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http(s) URL, got {url!r}")
        if self.provider == "twilio":
            if not self.account_sid:
                raise ValueError('account_sid is required with provider = "twilio"')
            if not self.auth_token:
                raise ValueError('auth_token is required with provider = "twilio"')
        for name in ("max_segments", "max_body_chars", "max_media_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.sandbox_port <= 65535:
            raise ValueError(f"sandbox_port must be 0 to 65535, got {self.sandbox_port}")
        for name in ("opt_out_confirmation", "opt_in_confirmation", "help_text"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty (the keyword needs an answer)")

    @property
    def sid(self) -> str:
        """The account SID to use (the sandbox's default when none is set)."""
        return self.account_sid or DEFAULT_ACCOUNT_SID

    @property
    def token(self) -> Secret:
        """The auth token to use (the sandbox's default when none is set)."""
        return self.auth_token or SANDBOX_TOKEN
