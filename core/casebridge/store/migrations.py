"""The store's schema for every backend, from one list of versioned migrations.

Each :class:`Migration` holds SQL shared by the dialects, written with a few placeholders
(:data:`DIALECTS` fills them: ``{time}`` a time column, ``{serial}`` an auto-numbered primary
key, ``{bool}``, ``{true}``, ``{false}``, ``{bytes}`` a binary column), plus SQL only one
dialect runs, for what differs in kind rather than in spelling. A backend applies, in
version order, those it has not recorded in its ``schema_version`` table
(:mod:`casebridge.store.sqlite.migrate`, :mod:`casebridge.pgstore.migrate`).

Versions never change once released: a database records the numbers it applied, and a
new change is a new version at the end. History the dialects do not share is kept as it
was: PostgreSQL's first version already held the job heads that SQLite got in version 2,
so version 2 is SQLite's alone.

Conventions of the schema: SQLite times are UTC ISO-8601 text with microseconds and
"+00:00" (fixed width, so text order is time order), PostgreSQL's are ``timestamptz``.
Lists and mappings are canonical JSON text in both, so values compare exactly alike (plugin
state's compare-and-put compares that text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DIALECTS", "MIGRATIONS", "Dialect", "Migration", "load_migrations"]

Dialect = Literal["sqlite", "postgres"]

DIALECTS: dict[Dialect, dict[str, str]] = {
    "sqlite": {
        "time": "TEXT",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bool": "INTEGER",
        "true": "1",
        "false": "0",
        "bytes": "BLOB",
    },
    "postgres": {
        "time": "TIMESTAMPTZ",
        "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "bool": "BOOLEAN",
        "true": "TRUE",
        "false": "FALSE",
        "bytes": "BYTEA",
    },
}


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: ``sql`` for every dialect (with placeholders), then the SQL of
    ``sqlite`` or ``postgres`` for that dialect only. A dialect with nothing to run still
    records the version, so both count versions alike."""

    version: int
    name: str
    sql: str = ""
    sqlite: str = ""
    postgres: str = ""

    def script(self, dialect: Dialect) -> str:
        """The SQL ``dialect`` runs for this version (possibly empty)."""
        try:
            words = DIALECTS[dialect]
        except KeyError:
            raise ValueError(f"unknown SQL dialect {dialect!r}: sqlite or postgres") from None
        own = self.sqlite if dialect == "sqlite" else self.postgres
        try:
            shared = self.sql.format_map(words)
        except (KeyError, ValueError, IndexError) as exc:
            raise RuntimeError(
                f"migration {self.version} ({self.name}) has a bad placeholder: {exc}") from None
        return "\n".join(part for part in (shared.strip(), own.strip()) if part)


_INITIAL = """
CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    crm_id      TEXT NOT NULL DEFAULT '',
    created_at  {time} NOT NULL,
    updated_at  {time} NOT NULL
);

-- One address belongs to one contact; position keeps the contact's own order.
CREATE TABLE contact_addresses (
    kind        TEXT NOT NULL CHECK (kind IN ('email', 'phone')),
    address     TEXT NOT NULL,
    contact_id  TEXT NOT NULL REFERENCES contacts (id),
    position    INTEGER NOT NULL,
    PRIMARY KEY (kind, address)
);
CREATE INDEX contact_addresses_by_contact ON contact_addresses (contact_id, kind, position);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    channel          TEXT NOT NULL,
    contact_id       TEXT NOT NULL REFERENCES contacts (id),
    status           TEXT NOT NULL,
    channel_address  TEXT NOT NULL DEFAULT '',
    subject          TEXT NOT NULL DEFAULT '',
    case_crm         TEXT,
    case_id          TEXT,
    case_number      TEXT NOT NULL DEFAULT '',
    case_url         TEXT NOT NULL DEFAULT '',
    created_at       {time} NOT NULL,
    updated_at       {time} NOT NULL,
    last_message_at  {time}
);
CREATE INDEX sessions_by_contact ON sessions (contact_id, channel, channel_address, status);
CREATE INDEX sessions_by_case ON sessions (case_crm, case_id);
CREATE INDEX sessions_by_update ON sessions (updated_at, id);
CREATE INDEX sessions_by_status ON sessions (status, updated_at, id);

-- seq is the arrival order. external_id is NULL when the channel gave none, so such
-- messages never collide on (channel, external_id).
CREATE TABLE messages (
    seq            {serial},
    id             TEXT NOT NULL UNIQUE,
    channel        TEXT NOT NULL,
    external_id    TEXT,
    session_id     TEXT NOT NULL DEFAULT '',
    direction      TEXT NOT NULL,
    author         TEXT NOT NULL,
    sender         TEXT NOT NULL,
    recipients     TEXT NOT NULL,
    text           TEXT NOT NULL,
    original_text  TEXT NOT NULL,
    html           TEXT NOT NULL,
    subject        TEXT NOT NULL,
    sender_name    TEXT NOT NULL,
    attachments    TEXT NOT NULL,
    thread_refs    TEXT NOT NULL,
    sent_at        {time} NOT NULL,
    received_at    {time} NOT NULL,
    trace_id       TEXT NOT NULL,
    notes          TEXT NOT NULL,
    meta           TEXT NOT NULL,
    UNIQUE (channel, external_id)
);
CREATE INDEX messages_by_session ON messages (session_id, seq);

CREATE TABLE dropped_inbounds (
    seq          {serial},
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    sender       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    received_at  {time} NOT NULL,
    recorded_at  {time} NOT NULL,
    UNIQUE (channel, external_id)
);

CREATE TABLE crm_writes (
    key         TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('case', 'activity', 'attachment')),
    crm         TEXT NOT NULL,
    crm_id      TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL DEFAULT 'intent' CHECK (state IN ('intent', 'written')),
    attempts    INTEGER NOT NULL DEFAULT 1,
    created_at  {time} NOT NULL,
    updated_at  {time} NOT NULL,
    UNIQUE (session_id, message_id, kind)
);

CREATE TABLE crm_events (
    crm         TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    claimed_at  {time} NOT NULL,
    PRIMARY KEY (crm, event_id)
);

CREATE TABLE plugin_state (
    plugin      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  {time} NOT NULL,
    PRIMARY KEY (plugin, key)
);

-- The outbox. max_attempts NULL means the runner's policy decides.
CREATE TABLE jobs (
    id            {serial},
    kind          TEXT NOT NULL,
    key           TEXT NOT NULL UNIQUE,
    order_key     TEXT NOT NULL DEFAULT '',
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER,
    run_at        {time} NOT NULL,
    lease_until   {time},
    worker_id     TEXT NOT NULL DEFAULT '',
    last_error    TEXT NOT NULL DEFAULT '',
    trace_id      TEXT NOT NULL DEFAULT '',
    created_at    {time} NOT NULL,
    updated_at    {time} NOT NULL
);
CREATE INDEX jobs_by_order ON jobs (order_key, state, id) WHERE order_key <> '';
"""

_INITIAL_SQLITE = """
CREATE INDEX jobs_due ON jobs (state, run_at, id);
CREATE INDEX jobs_lease ON jobs (state, lease_until);
"""

# PostgreSQL's first version already had the job heads (SQLite's version 2).
_INITIAL_POSTGRES = """
CREATE INDEX messages_by_external ON messages (channel, external_id, seq);
CREATE INDEX jobs_by_state ON jobs (state, id);
ALTER TABLE jobs ADD COLUMN is_head BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX jobs_head_due_kind ON jobs (kind, run_at, id) WHERE state = 'pending' AND is_head;
CREATE INDEX jobs_head_due ON jobs (run_at, id) WHERE state = 'pending' AND is_head;
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
"""

# Claims that do not scan the backlog. is_head marks the one job of each order key that may
# run next: its running job if any, else its lowest-id pending job. Jobs without an order
# key are always heads. Enqueue, finish (done/retry/dead) and replay keep it right in the
# same transaction, so a claim is one probe of a partial index over due pending heads plus
# one over expired leases.
_JOB_HEADS_SQLITE = """
ALTER TABLE jobs ADD COLUMN is_head INTEGER NOT NULL DEFAULT 0;

UPDATE jobs SET is_head = 1 WHERE order_key = '';

-- An existing database: each order key's running job, or else its lowest pending one.
UPDATE jobs SET is_head = 1
WHERE order_key <> '' AND state IN ('pending', 'running')
  AND id = (
      SELECT o.id FROM jobs AS o
      WHERE o.order_key = jobs.order_key AND o.state IN ('pending', 'running')
      ORDER BY CASE o.state WHEN 'running' THEN 0 ELSE 1 END, o.id
      LIMIT 1);

CREATE INDEX jobs_head_due ON jobs (run_at, id) WHERE state = 'pending' AND is_head = 1;
CREATE INDEX jobs_head_due_kind ON jobs (kind, run_at, id)
    WHERE state = 'pending' AND is_head = 1;
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
"""

# crm_events backed Store.claim_event, which nothing but its own tests called.
_DROP_CRM_EVENTS = """
DROP TABLE crm_events;
"""

# Session id prefixes (the CLI's short ids) are looked up in code point order, as on SQLite;
# the primary key follows the database's collation, so this index serves the "C" order.
_SESSION_ID_PREFIX_POSTGRES = """
CREATE INDEX sessions_by_id_c ON sessions (id COLLATE "C");
"""

# A large message text in the row's last column: only there can SQLite insert it as a
# zeroblob without building the whole value in memory (store/sqlite/large_text.py). NULL
# otherwise; PostgreSQL keeps every text in its text column.
_LARGE_TEXT_SQLITE = """
ALTER TABLE messages ADD COLUMN large_text BLOB;
"""

# Raw inbounds a transport kept with receive_later, each until its ingest job has parsed it
# (the job names the row; one sender's rows are parsed in order by the job's order key).
_RAW_INBOUNDS = """
CREATE TABLE raw_inbounds (
    id            TEXT PRIMARY KEY,
    channel       TEXT NOT NULL,
    payload       {bytes} NOT NULL,
    fields        TEXT NOT NULL,
    sender        TEXT NOT NULL,
    transport_id  TEXT NOT NULL,
    peer          TEXT NOT NULL,
    received_at   {time} NOT NULL
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _INITIAL, sqlite=_INITIAL_SQLITE, postgres=_INITIAL_POSTGRES),
    Migration(2, "job_heads", sqlite=_JOB_HEADS_SQLITE),
    Migration(3, "drop_crm_events", _DROP_CRM_EVENTS),
    Migration(4, "session_id_prefix", postgres=_SESSION_ID_PREFIX_POSTGRES),
    Migration(5, "large_text", sqlite=_LARGE_TEXT_SQLITE),
    Migration(6, "raw_inbounds", _RAW_INBOUNDS),
)


def load_migrations() -> list[Migration]:
    """The migrations in version order; RuntimeError when they are not numbered 1, 2, 3...
    without gaps or repeats."""
    versions = [m.version for m in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration versions must run 1, 2, 3... without gaps: {versions}")
    return list(MIGRATIONS)
