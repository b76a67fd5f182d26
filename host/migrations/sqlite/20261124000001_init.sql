-- Integrations: one connected account per provider and base URL.
CREATE TABLE integrations (
    id                TEXT PRIMARY KEY NOT NULL,
    provider          TEXT NOT NULL,
    label             TEXT,
    status            TEXT NOT NULL,
    base_url          TEXT NOT NULL DEFAULT '',
    account_id        TEXT NOT NULL,
    account_json      TEXT NOT NULL,
    scopes_json       TEXT NOT NULL DEFAULT '[]',
    missing_scopes_json TEXT NOT NULL DEFAULT '[]',
    token_kind        TEXT,
    token_hint        TEXT,
    token_expires_at  TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_verified_at  TEXT,
    last_error_json   TEXT,
    -- AES-256-GCM over the credentials JSON, bound to id and key id.
    secret_key_id     TEXT NOT NULL,
    secret_nonce      BLOB NOT NULL,
    secret_ciphertext BLOB NOT NULL,
    UNIQUE (provider, base_url, account_id)
);

-- Server settings such as the API key hash.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
