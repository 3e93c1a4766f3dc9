"""Mail that must never start a session, open a case or get an answer, and a per-sender rate
limit. Answering an auto-reply or a bounce is how mail loops start (RFC 3834)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from .mime import ParsedEmail

# Local parts of senders that are machines by convention, compared without "-", "_" and ".".
MACHINE_SENDERS = frozenset(
    {"mailerdaemon", "postmaster", "noreply", "donotreply", "dontreply", "bounce", "bounces"}
)
BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})


def loop_reason(
    parsed: ParsedEmail, *, our_domains: Sequence[str], envelope_from: str | None = None
) -> str | None:
    """Why this message must not reach a session, or None when it is an ordinary message.

    ``our_domains`` are the domains of our own Message-IDs (and our support domains): mail
    carrying one of our Message-IDs is our own mail coming back. ``envelope_from`` is the SMTP
    MAIL FROM when known; the null sender ("") is used only by bounces and auto-replies.
    A List-Id naming one of ``our_domains`` is our own group forwarding to us, not a list.
    """
    auto = parsed.auto_submitted.split(";", 1)[0].strip()
    if auto and auto != "no":
        return f"auto-submitted message (Auto-Submitted: {auto})"
    if parsed.x_autoreply:
        return "auto-reply (X-Autoreply header)"
    if parsed.x_autorespond:
        return "auto-reply (X-Autorespond header)"
    if parsed.precedence in BULK_PRECEDENCE:
        return f"bulk mail (Precedence: {parsed.precedence})"
    if parsed.content_type == "multipart/report":
        return "delivery status notification (multipart/report)"
    if parsed.x_failed_recipients:
        return "delivery status notification (X-Failed-Recipients header)"
    if envelope_from == "" or parsed.return_path in ("<>", "<<>>"):
        return "null sender (bounces and auto-replies use it)"
    local = parsed.from_addr.rpartition("@")[0].split("+", 1)[0]
    base = local.replace("-", "").replace("_", "").replace(".", "")
    if base in MACHINE_SENDERS or base.startswith(("noreply", "donotreply", "mailerdaemon")):
        return f"sent by a machine address ({parsed.from_addr})"
    domains = {d.lower().strip(".") for d in our_domains if d}
    msgid_domain = parsed.message_id.rpartition("@")[2].lower().rstrip(">")
    if "@" in parsed.message_id and msgid_domain in domains:
        return f"our own message came back (Message-ID domain {msgid_domain})"
    if parsed.list_id and not _names_our_domain(parsed.list_id, domains):
        return f"mailing list traffic (List-Id: {parsed.list_id})"
    return None


def _names_our_domain(list_id: str, domains: set[str]) -> bool:
    # List-Id: "Support <support.example.com>"; Google Groups use the group address with "."
    ident = list_id.rpartition("<")[2].rstrip(">").strip().lower()
    return any(ident == d or ident.endswith("." + d) for d in domains)


class SenderRateLimiter:
    """At most ``max_messages`` per sender within any ``per_seconds`` window (sliding log).

    Memory is bounded: at most ``max_senders`` senders are tracked; the least recently seen
    are forgotten first, and senders whose window has passed are dropped as they are found.
    ``clock`` returns seconds (monotonic) and is injectable for tests.
    """

    def __init__(
        self,
        max_messages: int,
        per_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_senders: int = 10_000,
    ) -> None:
        if max_messages < 1 or per_seconds <= 0 or max_senders < 1:
            raise ValueError("max_messages, per_seconds and max_senders must be positive")
        self._max = max_messages
        self._window = per_seconds
        self._clock = clock
        self._max_senders = max_senders
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, sender: str) -> bool:
        """Record an attempt by ``sender`` and say whether it is within the limit.

        Refused attempts are not counted, so a sender that keeps trying is let through again
        as soon as its earlier messages leave the window.
        """
        key = sender.strip().lower()
        now = self._clock()
        times = self._seen.pop(key, None) or deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        allowed = len(times) < self._max
        if allowed:
            times.append(now)
        if times:
            self._seen[key] = times
        self._evict(now)
        return allowed

    def __len__(self) -> int:
        return len(self._seen)

    def _evict(self, now: float) -> None:
        while len(self._seen) > self._max_senders:
            self._seen.popitem(last=False)
        # The oldest entries come first; drop those whose newest attempt left the window.
        while self._seen:
            key, times = next(iter(self._seen.items()))
            if times[-1] > now - self._window:
                break
            del self._seen[key]
