-- Syncs: per connection and model, the schedule, the lease that lets one
-- process at a time run it, the checkpoint of the last committed page and
-- what the last run did. Records: the mirrored data with a content hash,
-- and `seq`, the commit order the change feed reads. Webhooks: where to
-- tell the consuming system that a sync changed something, and the
-- delivery log.

CREATE TABLE syncs (
    integration_id   TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    model            TEXT NOT NULL,
    enabled          INTEGER NOT NULL DEFAULT 1,
    -- NULL: the model's default interval from the manifest.
    interval_seconds INTEGER,
    -- idle | running | failed | paused
    state            TEXT NOT NULL DEFAULT 'idle',
    -- Where the next page starts; opaque, the connector's.
    checkpoint       TEXT,
    -- The run in progress (NULL when none): its pages share the id, so a
    -- run taken over after a crash continues where the last page ended.
    run_id           TEXT,
    run_started_at   TEXT,
    run_added        INTEGER NOT NULL DEFAULT 0,
    run_updated      INTEGER NOT NULL DEFAULT 0,
    run_deleted      INTEGER NOT NULL DEFAULT 0,
    -- The feed position before the run's first change.
    run_cursor       INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    next_run_at      INTEGER NOT NULL,
    paused_until     INTEGER,
    last_started_at  TEXT,
    last_finished_at TEXT,
    last_added       INTEGER NOT NULL DEFAULT 0,
    last_updated     INTEGER NOT NULL DEFAULT 0,
    last_deleted     INTEGER NOT NULL DEFAULT 0,
    last_error_json  TEXT,
    PRIMARY KEY (integration_id, model)
);

CREATE TABLE records (
    integration_id   TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    model            TEXT NOT NULL,
    external_id      TEXT NOT NULL,
    data_json        TEXT NOT NULL,
    content_hash     TEXT NOT NULL,
    -- added | updated | deleted: the last change
    action           TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    first_seen_at    TEXT NOT NULL,
    last_modified_at TEXT NOT NULL,
    last_modified_unix INTEGER NOT NULL,
    -- The last run that saw the record, for deletion detection.
    seen_run         TEXT,
    PRIMARY KEY (integration_id, model, external_id)
);
CREATE UNIQUE INDEX records_by_seq ON records (seq);
CREATE INDEX records_feed ON records (integration_id, model, seq);
CREATE INDEX records_feed_all_models ON records (integration_id, seq);

-- Monotonic counters; taking the next value is the first write of a page's
-- transaction, so the values follow commit order.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('records', 0);

CREATE TABLE webhooks (
    id                TEXT PRIMARY KEY NOT NULL,
    url               TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    -- The signing secret, sealed, bound to the webhook id.
    secret_key_id     TEXT NOT NULL,
    secret_nonce      BLOB NOT NULL,
    secret_ciphertext BLOB NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type       TEXT NOT NULL,
    payload_json     TEXT NOT NULL,
    -- pending | delivered | failed
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_expires_at INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

-- Provider webhooks in: one secret token per connection that asked for
-- one (sealed, bound to the integration), and the idempotency keys seen
-- (a redelivery of one event triggers nothing).
CREATE TABLE inbound_webhooks (
    integration_id    TEXT PRIMARY KEY NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    created_at        TEXT NOT NULL,
    secret_key_id     TEXT NOT NULL,
    secret_nonce      BLOB NOT NULL,
    secret_ciphertext BLOB NOT NULL
);

CREATE TABLE inbound_deliveries (
    integration_id   TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    idempotency_key  TEXT NOT NULL,
    received_unix    INTEGER NOT NULL,
    PRIMARY KEY (integration_id, idempotency_key)
);
