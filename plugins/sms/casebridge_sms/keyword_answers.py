"""What the bridge does with an opt-out, opt-in or help keyword received by SMS: record it
(``optout:<E.164>`` in the plugin's state) and answer it once, unless the provider already did.

Twilio's own opt-out handling answers STOP, START and HELP itself. With Advanced Opt-Out the
webhook says so (``OptOutType``), and the bridge does not answer a second time. Without it,
Twilio's answer is silent to the bridge: a confirmation of STOP is then refused with 21610
(the number is blocked), which only means Twilio confirmed; ``[plugins.sms] answer_keywords
= false`` stops the bridge answering at all.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Mapping

from casebridge.plugin import (
    AmbiguousWriteError,
    Inbound,
    PermanentError,
    PluginState,
    TransientError,
    utcnow,
)

from casebridge_sms.keywords import Keyword, classify
from casebridge_sms.provider import OPTED_OUT_CODE, ProviderRefusal, SmsProvider
from casebridge_sms.settings import SmsSettings

log = logging.getLogger(__name__)

# The webhook's OptOutType (Twilio's Advanced Opt-Out): the provider took the keyword and
# already answered it.
OPT_OUT_TYPES = {"STOP": Keyword.OPT_OUT, "START": Keyword.OPT_IN, "HELP": Keyword.HELP}


def keyword_word(body: str) -> str:
    """The keyword as the customer wrote it, upper-cased, without the punctuation around it."""
    text = unicodedata.normalize("NFKC", body)
    return "".join(ch for ch in text if ch.isalnum()).upper()[:20]


def inbound_keyword(fields: Mapping[str, str]) -> tuple[Keyword | None, bool]:
    """The keyword an inbound webhook form carries, and whether the provider took it (and
    answered it) itself: its ``OptOutType`` first, else the body read as a keyword."""
    handled = OPT_OUT_TYPES.get(fields.get("OptOutType", "").strip().upper())
    if handled is not None:
        return handled, True
    return classify(fields.get("Body", "")), False


class KeywordAnswers:
    """Records keywords in ``state`` and answers them through ``provider()``, sending from
    the number or service ``sender(ours)`` names."""

    def __init__(
        self,
        state: PluginState,
        settings: SmsSettings,
        provider: Callable[[], SmsProvider],
        sender: Callable[[str], dict[str, str]],
    ) -> None:
        self.state = state
        self.settings = settings
        self.provider = provider
        self.sender = sender

    async def handle(
        self,
        keyword: Keyword,
        sid: str,
        customer: str,
        ours: str,
        body: str,
        *,
        provider_answered: bool = False,
    ) -> Inbound:
        """Record an opt-out or opt-in and answer the keyword, unless the provider already
        did or ``answer_keywords`` is off. The inbound is dropped, with the reason."""
        settings, state = self.settings, self.state
        word = keyword_word(body)
        if keyword is Keyword.OPT_OUT:
            await state.put(f"optout:{customer}", {"at": utcnow().isoformat(), "message_sid": sid})
            answer, dropped = settings.opt_out_confirmation, f"opt-out keyword {word}"
        elif keyword is Keyword.OPT_IN:
            await state.delete(f"optout:{customer}")
            answer, dropped = settings.opt_in_confirmation, f"opt-in keyword {word}"
        else:
            answer, dropped = settings.help_text, f"help keyword {word}"
        if provider_answered:
            dropped += " (answered by the provider)"
        elif settings.answer_keywords:
            await self._answer_once(sid, customer, ours, answer)
        return Inbound(None, dropped=dropped)

    async def _answer_once(self, sid: str, to: str, ours: str, text: str) -> None:
        """Send the keyword answer for inbound ``sid``, once however often the provider
        retries the webhook. A failed answer is logged, not raised: the keyword itself is
        already recorded, which is what matters. One attempt: the customer is not kept
        waiting on the webhook while a provider outage is retried."""
        state = self.state
        key = f"keyword:{sid}"
        claim = {"at": utcnow().isoformat()}
        if not await state.compare_and_put(key, None, claim):
            return
        try:
            sent = await self.provider().send(to, text, **self.sender(ours))
        except AmbiguousWriteError as exc:
            log.warning("keyword answer for %s may not have been sent: %s", sid, exc)
            return
        except ProviderRefusal as exc:
            if exc.code != OPTED_OUT_CODE:
                await state.delete(key)
                log.warning("keyword answer for %s not sent: %s", sid, exc)
                return
            # The provider's own opt-out handling blocks the number and has sent its own
            # confirmation: ours is not needed, and a retried webhook must not try again.
            log.info(
                "keyword answer for %s left to the provider, which blocks %s as opted out", sid, to
            )
            await state.put(key, {**claim, "provider_answered": True})
            return
        except (TransientError, PermanentError) as exc:
            # Nothing went out: let a retried webhook try again.
            await state.delete(key)
            log.warning("keyword answer for %s not sent: %s", sid, exc)
            return
        await state.put(key, {**claim, "sid": sent.sid})
