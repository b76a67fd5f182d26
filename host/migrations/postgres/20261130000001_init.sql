-- The PostgreSQL schema, equal to the SQLite one after its migrations up to
-- this version (host/migrations/sqlite); later migrations come in pairs of
-- the same version, one per backend. Differences: BYTEA for sealed values,
-- BIGINT for every integer (Rust reads them as i64), BOOLEAN flags, JSONB for
-- the JSON columns read as typed values (the ones read as text stay TEXT),
-- identity columns for SQLite's AUTOINCREMENT and implicit rowid, and
-- COLLATE "C" on columns lists are ordered by, so they sort as in SQLite
-- whatever the database's locale.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Integrations: one connected account per provider and base URL, the
-- credentials and refresh token sealed (AES-256-GCM, bound to the id).
CREATE TABLE integrations (
    id                  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    provider            TEXT NOT NULL,
    label               TEXT,
    status              TEXT NOT NULL,
    base_url            TEXT NOT NULL DEFAULT '',
    account_id          TEXT NOT NULL,
    account_json        JSONB NOT NULL,
    scopes_json         JSONB NOT NULL DEFAULT '[]',
    missing_scopes_json JSONB NOT NULL DEFAULT '[]',
    token_kind          TEXT,
    token_hint          TEXT,
    token_expires_at    TEXT,
    created_at          TEXT COLLATE "C" NOT NULL,
    updated_at          TEXT NOT NULL,
    last_verified_at    TEXT,
    last_error_json     JSONB,
    secret_key_id       TEXT NOT NULL,
    secret_nonce        BYTEA NOT NULL,
    secret_ciphertext   BYTEA NOT NULL,
    refresh_key_id      TEXT,
    refresh_nonce       BYTEA,
    refresh_ciphertext  BYTEA,
    reach_json          JSONB,
    scope_json          JSONB,
    expiry_notified_for TEXT,
    rotation_started_at TEXT,
    end_user_id         TEXT,
    end_user_name       TEXT,
    end_user_email      TEXT,
    organization        TEXT,
    UNIQUE (provider, base_url, account_id)
);
CREATE INDEX integrations_by_end_user ON integrations (end_user_id, organization);

CREATE TABLE oauth_apps (
    id                TEXT PRIMARY KEY NOT NULL,
    provider          TEXT COLLATE "C" NOT NULL,
    base_url          TEXT COLLATE "C" NOT NULL,
    client_id         TEXT NOT NULL,
    redirect_uri      TEXT NOT NULL,
    source            TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    secret_key_id     TEXT NOT NULL,
    secret_nonce      BYTEA NOT NULL,
    secret_ciphertext BYTEA NOT NULL,
    UNIQUE (provider, base_url)
);

-- Authorizations in flight: any process may complete one another started.
CREATE TABLE oauth_states (
    state_hash          TEXT PRIMARY KEY NOT NULL,
    provider            TEXT NOT NULL,
    base_url            TEXT NOT NULL,
    label               TEXT,
    created_at          TEXT NOT NULL,
    expires_at_unix     BIGINT NOT NULL,
    verifier_key_id     TEXT NOT NULL,
    verifier_nonce      BYTEA NOT NULL,
    verifier_ciphertext BYTEA NOT NULL,
    browser_hash        TEXT,
    session_id          TEXT
);

CREATE TABLE syncs (
    integration_id   TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    model            TEXT COLLATE "C" NOT NULL,
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    interval_seconds BIGINT,
    state            TEXT NOT NULL DEFAULT 'idle',
    checkpoint       TEXT,
    run_id           TEXT,
    run_started_at   TEXT,
    run_added        BIGINT NOT NULL DEFAULT 0,
    run_updated      BIGINT NOT NULL DEFAULT 0,
    run_deleted      BIGINT NOT NULL DEFAULT 0,
    run_cursor       BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    next_run_at      BIGINT NOT NULL,
    paused_until     BIGINT,
    last_started_at  TEXT,
    last_finished_at TEXT,
    last_added       BIGINT NOT NULL DEFAULT 0,
    last_updated     BIGINT NOT NULL DEFAULT 0,
    last_deleted     BIGINT NOT NULL DEFAULT 0,
    last_error_json  TEXT,
    PRIMARY KEY (integration_id, model)
);

CREATE TABLE records (
    integration_id     TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    model              TEXT NOT NULL,
    external_id        TEXT COLLATE "C" NOT NULL,
    data_json          TEXT NOT NULL,
    content_hash       TEXT NOT NULL,
    action             TEXT NOT NULL,
    seq                BIGINT NOT NULL,
    first_seen_at      TEXT NOT NULL,
    last_modified_at   TEXT NOT NULL,
    last_modified_unix BIGINT NOT NULL,
    seen_run           TEXT,
    PRIMARY KEY (integration_id, model, external_id)
);
CREATE UNIQUE INDEX records_by_seq ON records (seq);
CREATE INDEX records_feed ON records (integration_id, model, seq);
CREATE INDEX records_feed_all_models ON records (integration_id, seq);

-- Taking the next value locks the row until commit, so the values follow
-- commit order across every process.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('records', 0);

CREATE TABLE webhooks (
    id                TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    url               TEXT NOT NULL,
    created_at        TEXT COLLATE "C" NOT NULL,
    secret_key_id     TEXT NOT NULL,
    secret_nonce      BYTEA NOT NULL,
    secret_ciphertext BYTEA NOT NULL
);

CREATE TABLE webhook_deliveries (
    -- Named as SQLite's implicit rowid: the insertion order queries break
    -- ties with.
    rowid            BIGINT GENERATED ALWAYS AS IDENTITY,
    id               TEXT PRIMARY KEY NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type       TEXT NOT NULL,
    payload_json     TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_expires_at BIGINT,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       TEXT COLLATE "C" NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, created_at);

CREATE TABLE inbound_webhooks (
    integration_id    TEXT PRIMARY KEY NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    created_at        TEXT NOT NULL,
    secret_key_id     TEXT NOT NULL,
    secret_nonce      BYTEA NOT NULL,
    secret_ciphertext BYTEA NOT NULL
);

CREATE TABLE inbound_deliveries (
    integration_id  TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    received_unix   BIGINT NOT NULL,
    PRIMARY KEY (integration_id, idempotency_key)
);

CREATE TABLE connect_sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    end_user_id     TEXT NOT NULL,
    end_user_name   TEXT,
    end_user_email  TEXT,
    organization    TEXT,
    providers_json  JSONB,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    expires_at_unix BIGINT NOT NULL,
    revoked_at      TEXT
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'reader')),
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

CREATE TABLE audit_log (
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at          TEXT NOT NULL,
    at_unix     BIGINT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    actor_name  TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT,
    provider    TEXT,
    outcome     TEXT NOT NULL,
    address     TEXT,
    request_id  TEXT
);
CREATE INDEX audit_log_target ON audit_log (target_id, seq);
CREATE INDEX audit_log_at ON audit_log (at_unix);
