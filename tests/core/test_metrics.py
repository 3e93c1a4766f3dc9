from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field

import pytest
from casebridge.metrics import (
    CONTENT_TYPE,
    BridgeMetrics,
    Counter,
    Histogram,
    Registry,
)
from hypothesis import given
from hypothesis import strategies as st

# A small, independent parser of the text exposition format 0.0.4.

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass
class Family:
    help: str = ""
    type: str = ""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)


def _parse_labels(text: str, pos: int) -> tuple[dict[str, str], int]:
    labels: dict[str, str] = {}
    assert text[pos] == "{"
    pos += 1
    while text[pos] != "}":
        match = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(text, pos)
        assert match, f"label name expected at {pos}: {text!r}"
        name = match.group()
        pos = match.end()
        assert text[pos : pos + 2] == '="', text
        pos += 2
        value = []
        while text[pos] != '"':
            if text[pos] == "\\":
                value.append(_UNESCAPE[text[pos + 1]])
                pos += 2
            else:
                assert text[pos] != "\n"
                value.append(text[pos])
                pos += 1
        pos += 1
        assert name not in labels
        labels[name] = "".join(value)
        if text[pos] == ",":
            pos += 1
    return labels, pos + 1


def _family_of(sample: str, families: dict[str, Family]) -> str:
    if sample in families:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and families.get(base, Family()).type == "histogram":
            return base
    raise AssertionError(f"sample {sample} has no TYPE line before it")


def parse(text: str) -> dict[str, Family]:
    assert text == "" or text.endswith("\n")
    families: dict[str, Family] = {}
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            families.setdefault(name, Family()).help = re.sub(
                r"\\(.)", lambda m: {"n": "\n", "\\": "\\"}[m.group(1)], help_text
            )
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in {"counter", "gauge", "histogram"}
            families.setdefault(name, Family()).type = kind
        else:
            match = _NAME.match(line)
            assert match, line
            labels: dict[str, str] = {}
            pos = match.end()
            if line[pos] == "{":
                labels, pos = _parse_labels(line, pos)
            assert line[pos] == " ", line
            raw = line[pos + 1 :]
            value = {"+Inf": math.inf, "-Inf": -math.inf}.get(raw)
            value = float(raw) if value is None else value
            family = families[_family_of(match.group(), families)]
            key = (match.group(), frozenset(labels.items()))
            assert key not in family.samples, f"duplicate sample {key}"
            family.samples[key] = value
    return families


def sample(families: dict[str, Family], name: str, **labels: str) -> float:
    family = families[_family_of(name, families)]
    return family.samples[(name, frozenset(labels.items()))]


def test_counter_and_gauge_render() -> None:
    registry = Registry()
    hits = registry.counter("hits_total", "Hits.\nSecond line with \\ backslash", ["path"])
    hits.labels("/a").inc()
    hits.labels(path="/a").inc(2)
    hits.labels("/b").inc(0.5)
    depth = registry.gauge("queue_depth", "Jobs waiting.")
    depth.set(7)
    depth.dec(2)
    depth.inc()
    text = registry.render()
    assert text.startswith("# HELP hits_total Hits.\\nSecond line with \\\\ backslash\n")
    assert "# TYPE hits_total counter\n" in text
    assert 'hits_total{path="/a"} 3\n' in text
    families = parse(text)
    assert families["hits_total"].help == "Hits.\nSecond line with \\ backslash"
    assert sample(families, "hits_total", path="/a") == 3
    assert sample(families, "hits_total", path="/b") == 0.5
    assert families["queue_depth"].type == "gauge"
    assert sample(families, "queue_depth") == 6


def test_unlabelled_metric_reports_zero_and_labelled_reports_nothing_yet() -> None:
    registry = Registry()
    registry.counter("plain_total", "Plain.")
    registry.counter("by_kind_total", "By kind.", ["kind"])
    families = parse(registry.render())
    assert sample(families, "plain_total") == 0
    assert families["by_kind_total"].samples == {}
    assert families["by_kind_total"].type == "counter"


def test_histogram_buckets_sum_count() -> None:
    registry = Registry()
    latency = registry.histogram("op_seconds", "Op time.", ["op"], buckets=[0.1, 1, 10])
    for value in (0.05, 0.1, 0.5, 3, 100):
        latency.labels(op="x").observe(value)
    text = registry.render()
    assert 'op_seconds_bucket{op="x",le="+Inf"} 5\n' in text
    families = parse(text)
    assert families["op_seconds"].type == "histogram"
    assert sample(families, "op_seconds_bucket", op="x", le="0.1") == 2  # le is inclusive
    assert sample(families, "op_seconds_bucket", op="x", le="1.0") == 3
    assert sample(families, "op_seconds_bucket", op="x", le="10.0") == 4
    assert sample(families, "op_seconds_bucket", op="x", le="+Inf") == 5
    assert sample(families, "op_seconds_count", op="x") == 5
    assert sample(families, "op_seconds_sum", op="x") == pytest.approx(103.65)


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=50))
def test_histogram_is_cumulative(values: list[float]) -> None:
    registry = Registry()
    hist = registry.histogram("h_seconds", "H.")
    for value in values:
        hist.observe(value)
    families = parse(registry.render())
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in families["h_seconds"].samples.items()
        if name == "h_seconds_bucket"
    )
    counts = [count for _, count in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == len(values) == sample(families, "h_seconds_count")
    for bound, count in buckets:
        assert count == sum(1 for v in values if v <= bound)
    assert sample(families, "h_seconds_sum") == pytest.approx(sum(values))


label_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.text(alphabet='\\"\n{},= ab', max_size=20)


@given(st.lists(label_values, min_size=1, max_size=5, unique=True), label_values)
def test_label_values_round_trip(first: list[str], second: str) -> None:
    registry = Registry()
    counter = registry.counter("odd_total", "Odd labels.", ["a", "b"])
    for number, value in enumerate(first, start=1):
        counter.labels(value, second).inc(number)
    text = registry.render()
    assert text.count("\n") == 2 + len(first)  # a newline in a value never breaks a line
    families = parse(text)
    for number, value in enumerate(first, start=1):
        assert sample(families, "odd_total", a=value, b=second) == number


@given(st.text(max_size=80))
def test_help_round_trip(help_text: str) -> None:
    registry = Registry()
    registry.gauge("g", help_text)
    assert parse(registry.render())["g"].help == help_text


def test_bridge_metrics_render() -> None:
    registry = Registry()
    metrics = BridgeMetrics(registry)
    metrics.messages_in.labels(channel="email").inc()
    metrics.messages_dropped.labels(channel="sms", reason="opt-out").inc()
    metrics.cases_created.labels(crm="creatio").inc()
    metrics.activities_appended.labels(crm="creatio").inc(3)
    metrics.replies_delivered.labels(channel="email", state="sent").inc()
    metrics.job_retries.labels(kind="create_case").inc()
    metrics.dead_letters.labels(kind="deliver_reply").inc()
    metrics.job_duration.labels(kind="create_case").observe(0.2)
    metrics.handoff_latency.observe(1.5)
    metrics.ai_tokens.labels(kind="summarize").inc(812)
    families = parse(registry.render())
    assert sample(families, "casebridge_messages_in_total", channel="email") == 1
    assert (
        sample(families, "casebridge_messages_dropped_total", channel="sms", reason="opt-out") == 1
    )
    assert sample(families, "casebridge_activities_appended_total", crm="creatio") == 3
    assert (
        sample(families, "casebridge_replies_delivered_total", channel="email", state="sent") == 1
    )
    assert families["casebridge_job_duration_seconds"].type == "histogram"
    assert sample(families, "casebridge_job_duration_seconds_count", kind="create_case") == 1
    assert sample(families, "casebridge_handoff_latency_seconds_sum") == 1.5
    assert sample(families, "casebridge_ai_tokens_total", kind="summarize") == 812
    assert sample(families, "casebridge_cases_created_total", crm="creatio") == 1
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_registries_are_independent() -> None:
    one, two = Registry(), Registry()
    BridgeMetrics(one).messages_in.labels(channel="sms").inc()
    BridgeMetrics(two)
    assert 'channel="sms"' in one.render()
    assert 'channel="sms"' not in two.render()


def test_mistakes_are_named() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "C.", ["kind"])
    with pytest.raises(ValueError, match="already registered"):
        registry.counter("c_total", "Again.")
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("x").inc(-1)
    with pytest.raises(ValueError, match=r"takes labels \['kind'\]"):
        counter.labels()
    with pytest.raises(ValueError, match=r"takes labels \['kind'\]"):
        counter.labels(channel="x")
    with pytest.raises(ValueError, match=r"use \.labels"):
        counter.inc()
    with pytest.raises(ValueError, match="invalid metric name"):
        Counter("bad-name", "x")
    with pytest.raises(ValueError, match="invalid label name"):
        Counter("ok", "x", ["__reserved"])
    with pytest.raises(ValueError, match="'le'"):
        Histogram("h", "x", ["le"])
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram("h", "x", buckets=[1, 1, 2])


def test_concurrent_increments_are_not_lost() -> None:
    registry = Registry()
    counter = registry.counter("n_total", "N.")

    def work() -> None:
        for _ in range(2000):
            counter.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sample(parse(registry.render()), "n_total") == 8000
