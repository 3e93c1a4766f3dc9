-- casebridge store on PostgreSQL, version 1: the SQLite schema (versions 1 and 2) in
-- PostgreSQL types. Times are timestamptz; lists and mappings stay JSON text so values
-- compare exactly as on SQLite (plugin state's compare-and-put compares canonical text).

CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    crm_id      TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

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
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    last_message_at  TIMESTAMPTZ
);
CREATE INDEX sessions_by_contact ON sessions (contact_id, channel, channel_address, status);
CREATE INDEX sessions_by_case ON sessions (case_crm, case_id);
CREATE INDEX sessions_by_update ON sessions (updated_at, id);
CREATE INDEX sessions_by_status ON sessions (status, updated_at, id);

CREATE TABLE messages (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    sent_at        TIMESTAMPTZ NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    trace_id       TEXT NOT NULL,
    notes          TEXT NOT NULL,
    meta           TEXT NOT NULL,
    UNIQUE (channel, external_id)
);
CREATE INDEX messages_by_session ON messages (session_id, seq);
CREATE INDEX messages_by_external ON messages (channel, external_id, seq);

CREATE TABLE dropped_inbounds (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    sender       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL,
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
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (session_id, message_id, kind)
);

CREATE TABLE crm_events (
    crm         TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (crm, event_id)
);

CREATE TABLE plugin_state (
    plugin      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (plugin, key)
);

-- The outbox; is_head as in SQLite migration 0002 (one head per order key).
CREATE TABLE jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT NOT NULL,
    key           TEXT NOT NULL UNIQUE,
    order_key     TEXT NOT NULL DEFAULT '',
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER,
    run_at        TIMESTAMPTZ NOT NULL,
    lease_until   TIMESTAMPTZ,
    worker_id     TEXT NOT NULL DEFAULT '',
    last_error    TEXT NOT NULL DEFAULT '',
    trace_id      TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    is_head       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_order ON jobs (order_key, state, id) WHERE order_key <> '';
CREATE INDEX jobs_head_due_kind ON jobs (kind, run_at, id) WHERE state = 'pending' AND is_head;
CREATE INDEX jobs_head_due ON jobs (run_at, id) WHERE state = 'pending' AND is_head;
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
