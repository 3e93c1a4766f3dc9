"""The bridge's metrics as a Prometheus server reads them from /metrics."""

from __future__ import annotations

from casebridge.metrics import CONTENT_TYPE, BridgeMetrics, Counter, new_registry, render
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, parsed by prometheus_client's own reader."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, frozenset(labels.items()))]


def test_bridge_metrics_render_with_their_names_labels_and_types() -> None:
    registry = new_registry()
    metrics = BridgeMetrics(registry)
    metrics.messages_in.labels(channel="email").inc()
    metrics.messages_dropped.labels(channel="sms", reason="opt-out").inc()
    metrics.cases_created.labels(crm="creatio").inc()
    metrics.activities_appended.labels(crm="creatio").inc(3)
    metrics.replies_delivered.labels(channel="email", state="sent").inc()
    metrics.job_retries.labels(kind="create_case").inc()
    metrics.dead_letters.labels(kind="deliver_reply").inc()
    metrics.hook_errors.labels(hook="summarize", plugin="ai").inc()
    metrics.job_duration.labels(kind="create_case").observe(0.2)
    metrics.handoff_latency.observe(1.5)
    text = render(registry)
    assert value(text, "casebridge_messages_in_total", channel="email") == 1
    assert value(text, "casebridge_messages_dropped_total", channel="sms", reason="opt-out") == 1
    assert value(text, "casebridge_activities_appended_total", crm="creatio") == 3
    assert value(text, "casebridge_replies_delivered_total", channel="email", state="sent") == 1
    assert value(text, "casebridge_hook_errors_total", hook="summarize", plugin="ai") == 1
    assert value(text, "casebridge_job_duration_seconds_count", kind="create_case") == 1
    assert value(text, "casebridge_job_duration_seconds_bucket", kind="create_case",
                 le="0.25") == 1
    assert value(text, "casebridge_handoff_latency_seconds_sum") == 1.5
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["casebridge_job_duration_seconds"] == "histogram"
    assert families["casebridge_cases_created"] == "counter"
    # No _created series: nobody graphs them, and they double the exposition.
    assert not [s for s in samples(text) if s[0].endswith("_created")]
    assert CONTENT_TYPE.startswith("text/plain; version=")


def test_registries_are_independent_and_plugins_add_their_own() -> None:
    one, two = new_registry(), new_registry()
    BridgeMetrics(one).messages_in.labels(channel="sms").inc()
    BridgeMetrics(two)
    tokens = Counter("casebridge_ai_tokens", "Tokens.", ("kind",), registry=two)
    tokens.labels(kind="summary").inc(812)
    assert 'channel="sms"' in render(one) and 'channel="sms"' not in render(two)
    assert value(render(two), "casebridge_ai_tokens_total", kind="summary") == 812
    assert "casebridge_ai_tokens" not in render(one)


@given(st.lists(st.floats(min_value=0, max_value=400), max_size=30))
def test_job_durations_are_counted_cumulatively(durations: list[float]) -> None:
    registry = new_registry()
    histogram = BridgeMetrics(registry).job_duration
    for seconds in durations:
        histogram.labels(kind="reply").observe(seconds)
    text = render(registry)
    if not durations:
        return
    for bound in ("0.1", "1.0", "30.0", "+Inf"):
        expected = sum(d <= float(bound) for d in durations)
        assert value(text, "casebridge_job_duration_seconds_bucket", kind="reply",
                     le=bound) == expected


@given(st.text(min_size=1, max_size=40))
def test_any_label_value_round_trips(label: str) -> None:
    registry = new_registry()
    BridgeMetrics(registry).messages_dropped.labels(channel="email", reason=label).inc()
    assert value(render(registry), "casebridge_messages_dropped_total", channel="email",
                 reason=label) == 1
