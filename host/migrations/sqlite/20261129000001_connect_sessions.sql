-- Connections belong to an end user of the consuming system (an id it
-- chooses, an optional name and email) and carry an optional organization
-- tag; NULL end_user_id: connected with the API key for no end user.
-- Connect sessions let one end user manage their own connections.
ALTER TABLE integrations ADD COLUMN end_user_id TEXT;
ALTER TABLE integrations ADD COLUMN end_user_name TEXT;
ALTER TABLE integrations ADD COLUMN end_user_email TEXT;
ALTER TABLE integrations ADD COLUMN organization TEXT;
CREATE INDEX integrations_by_end_user ON integrations (end_user_id, organization);

-- One row per connect session. The token itself is never stored: only its
-- SHA-256. `providers_json` NULL: every loaded connector.
CREATE TABLE connect_sessions (
    id               TEXT PRIMARY KEY NOT NULL,
    token_hash       TEXT NOT NULL UNIQUE,
    end_user_id      TEXT NOT NULL,
    end_user_name    TEXT,
    end_user_email   TEXT,
    organization     TEXT,
    providers_json   TEXT,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    expires_at_unix  INTEGER NOT NULL,
    revoked_at       TEXT
);

-- An authorization started from a session connects for its end user and
-- returns to that session's page.
ALTER TABLE oauth_states ADD COLUMN session_id TEXT;
