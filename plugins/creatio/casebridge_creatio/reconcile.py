"""The reconciliation poll: what a lost business-process call would have told the bridge.

Creatio documents no retries for *Call web service*, so every ``reconcile_interval`` seconds
the plugin reads the activities added to tracked cases (the cases of handed-off sessions)
since a watermark kept in the store, and enqueues the reps' replies among them as reply jobs.
It also notices tracked cases that reached a final status. Both jobs are idempotent by key
(``reply:creatio:<activity id>``, ``closed:creatio:<case id>``), so overlapping with the
webhook is harmless.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from casebridge.plugin import CrmEvent, PluginContext, utcnow

from . import odata
from .odata import Guid
from .settings import MESSAGE_TYPE_INCOMING
from .webhook import ignore_reason, reply_from_activity, reply_type_ids

if TYPE_CHECKING:
    from .operations import CreatioOperations

log = logging.getLogger("casebridge.creatio")

STATE_KEY = "reconcile_watermark"
# Activities committed slightly out of CreatedOn order must not slip under the watermark.
OVERLAP = timedelta(minutes=2)
_CASES_PER_QUERY = 40
_PAGE = 200
_CREATIO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?"
)


def parse_creatio_datetime(text: str) -> datetime:
    """A Creatio timestamp (``2024-05-01T10:00:00.1234567Z``, up to 7 fractional digits,
    ``Z``, an offset or none meaning UTC) as an aware UTC datetime; ValueError otherwise."""
    match = _CREATIO_TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Creatio timestamp")
    day, clock, fraction, zone = match.groups()
    micro = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z") else zone
    if len(offset) == 5:
        offset = f"{offset[:3]}:{offset[3:]}"
    return datetime.fromisoformat(f"{day}T{clock}.{micro}{offset}").astimezone(UTC)


def next_watermark(current: datetime, seen: Sequence[str]) -> datetime:
    """The newest of ``current`` and the CreatedOn values seen (unparsable ones skipped)."""
    newest = current
    for text in seen:
        try:
            newest = max(newest, parse_creatio_datetime(text))
        except ValueError:
            continue
    return newest


@dataclass(frozen=True, slots=True)
class PollResult:
    cases: int
    activities: int
    replies: int
    closed: int


class Reconciler:
    """One poll at a time over the tracked cases. ``operations`` gives the live
    :class:`CreatioOperations` (the client may be built lazily)."""

    def __init__(
        self,
        context: PluginContext,
        operations: Callable[[], Awaitable[CreatioOperations]],
    ) -> None:
        self.context = context
        self._operations = operations
        # Activities already judged by this runner; the job keys make a repeat harmless
        # anyway, this only saves reading them back again inside the overlap.
        self._judged: set[str] = set()

    async def tracked_cases(self) -> list[str]:
        """Case ids of the handed-off sessions linked to Creatio, newest first, unique."""
        return [case for case in await self.context.tracked_cases() if odata.is_guid(case)]

    async def poll_once(self) -> PollResult:
        """Read what changed on the tracked cases since the watermark and enqueue it."""
        started = utcnow()
        stored = await self.context.state.get(STATE_KEY)
        watermark = _load(stored) or started
        cases = await self.tracked_cases()
        if not cases:
            await self._advance(stored, watermark)
            return PollResult(0, 0, 0, 0)
        ops = await self._operations()
        closed = await self._closed_cases(ops, cases)
        name = self.context.name
        events = [CrmEvent("case_closed", name, case_id) for case_id in closed]
        rows = await self._activities_since(ops, cases, watermark - OVERLAP)
        types = reply_type_ids(ops.settings.sms_activity_type_id)
        marker_column = ops.settings.marker_column
        replies = 0
        for row in rows:
            activity_id = str(row.get("Id") or "").lower()
            if not odata.is_guid(activity_id) or activity_id in self._judged:
                continue
            mark = str(row.get(marker_column) or "") if marker_column else ""
            direction = str(row.get("MessageTypeId") or "").lower()
            if mark.startswith("casebridge:") or direction == MESSAGE_TYPE_INCOMING:
                self._judged.add(activity_id)
                continue
            activity = await ops.read_activity(activity_id)
            self._judged.add(activity_id)
            if activity is None or ignore_reason(activity, types):
                continue
            reply = reply_from_activity(activity, name)
            if reply is not None:
                # Replies to one case go out in the order the reps wrote them.
                events.append(CrmEvent("agent_reply", name, reply.case_id, reply))
                replies += 1
        if events:
            await self.context.report_crm_events(events)
        newest = next_watermark(watermark, [str(r.get("CreatedOn") or "") for r in rows])
        await self._advance(stored, newest)
        if replies or closed:
            log.info("Creatio reconciliation: %d reply(ies) and %d closed case(s) found",
                     replies, len(closed))
        return PollResult(len(cases), len(rows), replies, len(closed))

    async def _advance(self, stored: Any, watermark: datetime) -> None:
        value = watermark.isoformat()
        if value != stored:
            # Another runner sharing the store may have moved it: theirs is as good as ours.
            await self.context.state.compare_and_put(STATE_KEY, stored, value)

    async def _activities_since(
        self, ops: CreatioOperations, cases: list[str], since: datetime
    ) -> list[dict[str, Any]]:
        columns = ["Id", "CaseId", "CreatedOn", "MessageTypeId"]
        if ops.settings.marker_column:
            columns.append(ops.settings.marker_column)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(cases), _CASES_PER_QUERY):
            chunk = [Guid(c) for c in cases[start : start + _CASES_PER_QUERY]]
            where = odata.any_of("CaseId", chunk) & odata.gt("CreatedOn", since)
            skip = 0
            while True:
                page = await ops.client.query(
                    "Activity", filter=where, select=columns, orderby=["CreatedOn", "Id"],
                    top=_PAGE, skip=skip or None,
                )
                rows += page
                if len(page) < _PAGE:
                    break
                skip += _PAGE
        return rows

    async def _closed_cases(self, ops: CreatioOperations, cases: list[str]) -> list[str]:
        closed: list[str] = []
        for start in range(0, len(cases), _CASES_PER_QUERY):
            chunk = [Guid(c) for c in cases[start : start + _CASES_PER_QUERY]]
            rows = await ops.client.query(
                "Case", filter=odata.any_of("Id", chunk), select=["Id", "StatusId"],
                top=len(chunk),
            )
            for row in rows:
                status = str(row.get("StatusId") or "")
                if status and not await ops.statuses.is_open(status):
                    closed.append(str(row["Id"]).lower())
        return closed


def _load(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
