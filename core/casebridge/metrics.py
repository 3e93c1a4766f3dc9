"""Counters, gauges and histograms rendered in the Prometheus text format (version 0.0.4).

No dependency and no module global: each runner makes one :class:`Registry`, passes it to
:class:`BridgeMetrics` (the bridge's own metrics) and serves ``registry.render()`` with
``CONTENT_TYPE`` on its metrics route. Updates take a lock, so worker threads may record too.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "BridgeMetrics",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds, from a fast local write to a slow CRM behind retries.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


class _CounterChild:
    __slots__ = ("_lock", "value")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (zero or more) to the counter."""
        if not amount >= 0:
            raise ValueError(f"a counter only goes up; got inc({amount!r})")
        with self._lock:
            self.value += amount


class _GaugeChild:
    __slots__ = ("_lock", "value")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.value = 0.0

    def set(self, value: float) -> None:
        with self._lock:
            self.value = float(value)

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self.value += amount

    def dec(self, amount: float = 1) -> None:
        with self._lock:
            self.value -= amount


class _HistogramChild:
    __slots__ = ("_lock", "bounds", "counts", "sum")

    def __init__(self, lock: threading.Lock, bounds: tuple[float, ...]) -> None:
        self._lock = lock
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation (a duration in seconds, for the latency histograms)."""
        if math.isnan(value):
            raise ValueError("cannot observe NaN")
        index = bisect.bisect_left(self.bounds, value)  # first bucket with value <= bound
        with self._lock:
            self.counts[index] += 1
            self.sum += value


_Child = TypeVar("_Child", _CounterChild, _GaugeChild, _HistogramChild)


class _Metric(Generic[_Child]):
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        labelnames = tuple(labelnames)
        for label in labelnames:
            if not _LABEL_RE.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} on metric {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label name on metric {name}: {labelnames}")
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], _Child] = {}

    def _new_child(self) -> _Child:
        raise NotImplementedError

    def labels(self, *values: object, **named: object) -> _Child:
        """The series for these label values, given in order or by name (values become str)."""
        if values and named:
            raise ValueError(f"{self.name}: give label values in order or by name, not both")
        if named:
            if set(named) != set(self.labelnames):
                raise ValueError(
                    f"{self.name} takes labels {list(self.labelnames)}, got {sorted(named)}"
                )
            values = tuple(named[label] for label in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(
                f"{self.name} takes labels {list(self.labelnames)}, got {len(values)} value(s)"
            )
        key = tuple(str(value) for value in values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._new_child()
        return child

    def _unlabelled(self) -> _Child:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {list(self.labelnames)}: use .labels()")
        return self.labels()

    def _series(self) -> list[tuple[tuple[tuple[str, str], ...], _Child]]:
        if not self.labelnames and not self._children:
            self.labels()  # an unlabelled metric is reported as zero before its first update
        with self._lock:
            items = sorted(self._children.items())
        return [(tuple(zip(self.labelnames, key, strict=True)), child) for key, child in items]

    def _samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self._samples())


class Counter(_Metric[_CounterChild]):
    """A value that only goes up. Without labels, call :meth:`inc` on the counter itself."""

    kind = "counter"

    def _new_child(self) -> _CounterChild:
        return _CounterChild(self._lock)

    def inc(self, amount: float = 1) -> None:
        self._unlabelled().inc(amount)

    def _samples(self) -> list[str]:
        return [
            f"{self.name}{_label_text(pairs)} {_format_value(child.value)}"
            for pairs, child in self._series()
        ]


class Gauge(_Metric[_GaugeChild]):
    """A value that goes up and down (queue depth, open sessions)."""

    kind = "gauge"

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild(self._lock)

    def set(self, value: float) -> None:
        self._unlabelled().set(value)

    def inc(self, amount: float = 1) -> None:
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._unlabelled().dec(amount)

    def _samples(self) -> list[str]:
        return [
            f"{self.name}{_label_text(pairs)} {_format_value(child.value)}"
            for pairs, child in self._series()
        ]


class Histogram(_Metric[_HistogramChild]):
    """Observations counted into fixed, cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labelnames)
        if "le" in self.labelnames:
            raise ValueError(f"histogram {name} cannot have a label named 'le'")
        bounds = tuple(float(b) for b in buckets if not math.isinf(b))
        if not bounds or any(math.isnan(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram {name} needs strictly increasing buckets, got {buckets}")
        self.buckets = bounds

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self._lock, self.buckets)

    def observe(self, value: float) -> None:
        self._unlabelled().observe(value)

    def _samples(self) -> list[str]:
        lines: list[str] = []
        for pairs, child in self._series():
            with self._lock:
                counts, total = list(child.counts), child.sum
            cumulative = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += count
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(f"{self.name}_bucket{_label_text((*pairs, ('le', le)))} {cumulative}")
            lines.append(f"{self.name}_sum{_label_text(pairs)} {_format_value(total)}")
            lines.append(f"{self.name}_count{_label_text(pairs)} {cumulative}")
        return lines


_M = TypeVar("_M", bound=_Metric[Any])


class Registry:
    """The metrics of one runner, rendered together. Names must be unique."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric[Any]] = {}
        self._lock = threading.Lock()

    def register(self, metric: _M) -> _M:
        """Add ``metric`` and return it; raises ValueError when its name is taken."""
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self.register(Gauge(name, help, labelnames))

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return self.register(Histogram(name, help, labelnames, buckets))

    def render(self) -> str:
        """Every metric in the text exposition format 0.0.4, in registration order."""
        with self._lock:
            metrics = list(self._metrics.values())
        return "".join(metric.render() for metric in metrics)


class BridgeMetrics:
    """The bridge's own metrics, registered on ``registry`` under the ``casebridge_`` prefix.

    Attributes are the metric names without prefix and unit suffix: ``messages_in`` is
    ``casebridge_messages_in_total``, ``job_duration`` is ``casebridge_job_duration_seconds``.
    Record with e.g. ``metrics.messages_in.labels(channel="email").inc()`` or
    ``metrics.job_duration.labels(kind="create_case").observe(seconds)``.
    """

    def __init__(self, registry: Registry, *, prefix: str = "casebridge_") -> None:
        self.registry = registry
        p = prefix
        self.messages_in = registry.counter(
            f"{p}messages_in_total", "Inbound messages accepted, by channel.", ["channel"]
        )
        self.messages_dropped = registry.counter(
            f"{p}messages_dropped_total",
            "Inbound messages dropped (duplicate, auto-reply, opt-out...), by channel and reason.",
            ["channel", "reason"],
        )
        self.cases_created = registry.counter(
            f"{p}cases_created_total", "Cases created in the CRM.", ["crm"]
        )
        self.activities_appended = registry.counter(
            f"{p}activities_appended_total", "Activities appended to CRM cases.", ["crm"]
        )
        self.replies_delivered = registry.counter(
            f"{p}replies_delivered_total",
            "Agent replies handed to a channel, by channel and final state.",
            ["channel", "state"],
        )
        self.job_retries = registry.counter(
            f"{p}job_retries_total", "Outbox job attempts that will be retried.", ["kind"]
        )
        self.dead_letters = registry.counter(
            f"{p}dead_letters_total", "Outbox jobs moved to the dead-letter state.", ["kind"]
        )
        self.job_duration = registry.histogram(
            f"{p}job_duration_seconds", "Duration of one outbox job attempt.", ["kind"]
        )
        self.handoff_latency = registry.histogram(
            f"{p}handoff_latency_seconds",
            "From the handoff decision to the case and its first activity written.",
        )
        self.ai_tokens = registry.counter(
            f"{p}ai_tokens_total", "Tokens spent on AI calls, by kind.", ["kind"]
        )
