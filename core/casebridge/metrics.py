"""The bridge's metrics, exposed in the Prometheus text format by prometheus_client.

No module global: each runner makes one registry (:func:`new_registry`), passes it to
:class:`BridgeMetrics` and serves :func:`render` with ``CONTENT_TYPE`` on its metrics route.
A plugin registers its own metrics on the same registry (the AI plugin's token counters).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import disable_created_metrics

# Counters and histograms would each add a ``_created`` series that no dashboard reads.
# (The environment switch for this is read once, when prometheus_client is first imported,
# which another module may do first; this call works whenever it runs.)
disable_created_metrics()

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "BridgeMetrics",
    "CollectorRegistry",
    "Counter",
    "Gauge",
    "Histogram",
    "new_registry",
    "render",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds, from a fast local write to a slow CRM behind retries.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


def new_registry() -> CollectorRegistry:
    return CollectorRegistry()


def render(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


class BridgeMetrics:
    """The bridge's own metrics, registered on ``registry`` under the ``casebridge_`` prefix.

    Attributes are the metric names without prefix and unit suffix: ``messages_in`` is
    ``casebridge_messages_in_total``, ``job_duration`` is ``casebridge_job_duration_seconds``.
    Record with e.g. ``metrics.messages_in.labels(channel="email").inc()`` or
    ``metrics.job_duration.labels(kind="create_case").observe(seconds)``.
    """

    def __init__(self, registry: CollectorRegistry, *, prefix: str = "casebridge_") -> None:
        self.registry = registry
        p = prefix

        def counter(name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{p}{name}", help, labels, registry=registry)

        def histogram(name: str, help: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(f"{p}{name}", help, labels, registry=registry,
                             buckets=LATENCY_BUCKETS)

        self.messages_in = counter("messages_in", "Inbound messages accepted, by channel.",
                                   ("channel",))
        self.messages_dropped = counter(
            "messages_dropped",
            "Inbound messages dropped (duplicate, auto-reply, opt-out...), by channel and reason.",
            ("channel", "reason"),
        )
        self.cases_created = counter("cases_created", "Cases created in the CRM.", ("crm",))
        self.activities_appended = counter(
            "activities_appended", "Activities appended to CRM cases.", ("crm",)
        )
        self.replies_delivered = counter(
            "replies_delivered",
            "Agent replies handed to a channel, by channel and final state.",
            ("channel", "state"),
        )
        self.job_retries = counter("job_retries", "Outbox job attempts that will be retried.",
                                   ("kind",))
        self.dead_letters = counter("dead_letters", "Outbox jobs moved to the dead-letter state.",
                                    ("kind",))
        self.hook_errors = counter(
            "hook_errors",
            "Transform hook implementations that raised (their answer skipped), by hook and "
            "plugin.",
            ("hook", "plugin"),
        )
        self.job_duration = histogram(
            "job_duration_seconds", "Duration of one outbox job attempt.", ("kind",)
        )
        self.handoff_latency = histogram(
            "handoff_latency_seconds",
            "From the handoff decision to the case and its first activity written.",
        )
