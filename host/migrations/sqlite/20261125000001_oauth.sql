-- OAuth 2.0: refresh tokens beside the credentials, registered client
-- applications per provider and base URL, and authorizations in flight.

-- AES-256-GCM over the refresh token, bound to "<id>/refresh" and key id.
-- NULL when the integration cannot be refreshed (pasted token, or the
-- provider refused the refresh token).
ALTER TABLE integrations ADD COLUMN refresh_key_id TEXT;
ALTER TABLE integrations ADD COLUMN refresh_nonce BLOB;
ALTER TABLE integrations ADD COLUMN refresh_ciphertext BLOB;

CREATE TABLE oauth_apps (
    id                TEXT PRIMARY KEY NOT NULL,
    provider          TEXT NOT NULL,
    base_url          TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    redirect_uri      TEXT NOT NULL,
    -- 'api' or 'config'
    source            TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    -- The client secret, sealed, bound to provider and base URL.
    secret_key_id     TEXT NOT NULL,
    secret_nonce      BLOB NOT NULL,
    secret_ciphertext BLOB NOT NULL,
    UNIQUE (provider, base_url)
);

-- One row per authorization started and not yet spent. The state itself is
-- not stored, only its SHA-256; the PKCE verifier is sealed, bound to it.
CREATE TABLE oauth_states (
    state_hash          TEXT PRIMARY KEY NOT NULL,
    provider            TEXT NOT NULL,
    base_url            TEXT NOT NULL,
    label               TEXT,
    created_at          TEXT NOT NULL,
    expires_at_unix     INTEGER NOT NULL,
    verifier_key_id     TEXT NOT NULL,
    verifier_nonce      BLOB NOT NULL,
    verifier_ciphertext BLOB NOT NULL
);
