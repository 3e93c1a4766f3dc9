-- casebridge store, version 1.
-- Times are UTC ISO-8601 text with microseconds and "+00:00" (fixed width, so text order is
-- time order). Lists and mappings are JSON text. Kept to SQL a PostgreSQL port can mirror.

CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    crm_id      TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
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
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_message_at  TEXT
);
CREATE INDEX sessions_by_contact ON sessions (contact_id, channel, channel_address, status);
CREATE INDEX sessions_by_case ON sessions (case_crm, case_id);
CREATE INDEX sessions_by_update ON sessions (updated_at, id);
CREATE INDEX sessions_by_status ON sessions (status, updated_at, id);

-- seq is the arrival order. external_id is NULL when the channel gave none, so such
-- messages never collide on (channel, external_id).
CREATE TABLE messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
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
    sent_at        TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    trace_id       TEXT NOT NULL,
    notes          TEXT NOT NULL,
    meta           TEXT NOT NULL,
    UNIQUE (channel, external_id)
);
CREATE INDEX messages_by_session ON messages (session_id, seq);

CREATE TABLE dropped_inbounds (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    sender       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    recorded_at  TEXT NOT NULL,
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
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (session_id, message_id, kind)
);

CREATE TABLE crm_events (
    crm         TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    PRIMARY KEY (crm, event_id)
);

CREATE TABLE plugin_state (
    plugin      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
);

-- The outbox. max_attempts NULL means the runner's policy decides.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    key           TEXT NOT NULL UNIQUE,
    order_key     TEXT NOT NULL DEFAULT '',
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER,
    run_at        TEXT NOT NULL,
    lease_until   TEXT,
    worker_id     TEXT NOT NULL DEFAULT '',
    last_error    TEXT NOT NULL DEFAULT '',
    trace_id      TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, run_at, id);
CREATE INDEX jobs_lease ON jobs (state, lease_until);
CREATE INDEX jobs_by_order ON jobs (order_key, state, id) WHERE order_key <> '';
