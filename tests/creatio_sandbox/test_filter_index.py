"""The sandbox's equality indexes narrow a $filter without changing its answer: after any mix
of inserts, updates, deletes and rolled-back batches, a filtered GET returns exactly the rows
(in the same order) that evaluating the filter on every row finds."""

from __future__ import annotations

from typing import Any

from casebridge_creatio.sandbox.candidates import candidate_ids
from casebridge_creatio.sandbox.engine import ODataEngine
from casebridge_creatio.sandbox.evaluate import bind_filter, evaluate
from casebridge_creatio.sandbox.query import parse_filter
from casebridge_creatio.sandbox.schema import ENTITIES
from casebridge_creatio.sandbox.store import Store
from hypothesis import given, settings
from hypothesis import strategies as st

CONTACTS = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(1, 5)]
CASES = [f"00000000-0000-0000-0000-0000000000c{i}" for i in range(1, 7)]
STATUSES = ["5e5e0000-0000-0000-0000-000000000001", "5e5e0000-0000-0000-0000-000000000002"]
EMAILS = ["a@example.com", "A@Example.COM", "b@example.com", "", None]

contact_rows = st.builds(
    lambda i, email: {"Id": CONTACTS[i], "Email": email, "Name": f"C{i}"},
    st.integers(0, len(CONTACTS) - 1), st.sampled_from(EMAILS))
case_rows = st.builds(
    lambda i, contact, status, subject: {"Id": CASES[i], "ContactId": contact,
                                         "StatusId": status, "Subject": subject},
    st.integers(0, len(CASES) - 1), st.sampled_from([*CONTACTS, None]),
    st.sampled_from([*STATUSES, None]), st.sampled_from(["Printer", "printer", "Other"]))
operations = st.lists(st.one_of(
    st.tuples(st.just("put"), st.just("Contact"), contact_rows),
    st.tuples(st.just("put"), st.just("Case"), case_rows),
    st.tuples(st.just("delete"), st.just("Contact"), st.sampled_from(CONTACTS)),
    st.tuples(st.just("delete"), st.just("Case"), st.sampled_from(CASES)),
    st.tuples(st.just("mark"), st.just(""), st.none()),
    st.tuples(st.just("rollback"), st.just(""), st.none()),
), max_size=30)

atoms = st.one_of(
    st.sampled_from(EMAILS[:3]).map(lambda e: f"Contact/Email eq '{e}'"),
    st.sampled_from(CONTACTS).map(lambda c: f"ContactId eq {c}"),
    st.sampled_from(STATUSES).map(lambda s: f"StatusId eq {s}"),
    st.sampled_from(CASES).map(lambda c: f"Id eq {c}"),
    st.sampled_from(["Printer", "Other"]).map(lambda s: f"Subject eq '{s}'"),
    st.sampled_from(["Printer", "Other"]).map(lambda s: f"Subject ne '{s}'"),
    st.just("ContactId eq null"),
    st.just("contains(Contact/Email, 'example')"),
)
filters = st.recursive(atoms, lambda inner: st.one_of(
    st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
    st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
    inner.map(lambda a: f"not ({a})"),
), max_leaves=5)


def apply(store: Store, ops: list[tuple[str, str, Any]]) -> None:
    marks: list[int] = []
    for kind, entity, value in ops:
        if kind == "put":
            store.put(entity, dict(value))
        elif kind == "delete":
            store.delete(entity, value)
        elif kind == "mark":
            marks.append(store.mark())
        elif marks:
            store.rollback_to(marks.pop())


def scanned(engine: ODataEngine, text: str) -> list[str]:
    entity = ENTITIES["Case"]
    expr = parse_filter(text)
    bind_filter(expr, entity)
    return [r["Id"] for r in engine.store.rows("Case")
            if evaluate(expr, r, entity, engine._resolve) is True]


def served(engine: ODataEngine, text: str) -> list[str]:
    reply = engine.handle("GET", "Case", {"$filter": text, "$select": "Id"}, None,
                          actor="a", service_root="http://sandbox/0/odata")
    assert reply.status == 200, reply.body
    return [r["Id"] for r in reply.body["value"]]


@settings(max_examples=300, deadline=None)
@given(operations, st.lists(filters, min_size=1, max_size=4), operations)
def test_indexed_filter_matches_a_full_scan(before: list, texts: list[str], after: list) -> None:
    engine = ODataEngine(Store())
    apply(engine.store, before)
    # The first query builds the indexes; the later changes must keep them current.
    for text in texts:
        assert served(engine, text) == scanned(engine, text)
    apply(engine.store, after)
    for text in texts:
        assert served(engine, text) == scanned(engine, text)


def test_equality_on_a_navigation_narrows_to_the_matching_rows() -> None:
    store = Store()
    for n in range(200):
        store.put("Contact", {"Id": f"00000000-0000-0000-0000-{n:012d}",
                              "Email": f"c{n}@example.com"})
        store.put("Case", {"Id": f"00000000-0000-0000-0001-{n:012d}",
                           "ContactId": f"00000000-0000-0000-0000-{n:012d}",
                           "StatusId": STATUSES[n % 2]})
    expr = parse_filter(f"(Contact/Email eq 'C7@EXAMPLE.COM' or ContactId eq "
                        f"00000000-0000-0000-0000-000000000009) and StatusId eq {STATUSES[1]}")
    bind_filter(expr, ENTITIES["Case"])
    assert candidate_ids(expr, ENTITIES["Case"], store) == {
        "00000000-0000-0000-0001-000000000007", "00000000-0000-0000-0001-000000000009"}
    # Something the indexes cannot answer falls back to a scan.
    unindexed = parse_filter("contains(Subject, 'x') or ContactId eq null")
    bind_filter(unindexed, ENTITIES["Case"])
    assert candidate_ids(unindexed, ENTITIES["Case"], store) is None


def test_a_reloaded_store_keeps_table_order(tmp_path) -> None:
    path = tmp_path / "sandbox.db"
    store = Store(path)
    for i in (3, 1, 2):
        store.put("Contact", {"Id": CONTACTS[i], "Email": "same@example.com"})
    store.close()
    engine = ODataEngine(Store(path))
    reply = engine.handle("GET", "Contact", {"$filter": "Email eq 'same@example.com'"}, None,
                          actor="a", service_root="http://sandbox/0/odata")
    assert [r["Id"] for r in reply.body["value"]] == [CONTACTS[3], CONTACTS[1], CONTACTS[2]]
