-- Named API keys with a role. Only the SHA-256 of a key is stored; a
-- revoked key keeps its row (so the audit log can still name it) and is
-- refused from the moment `revoked_at` is set.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'reader')),
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
-- A name is unique among the keys in use (a revoked key's name may be reused).
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- The key an earlier version generated at first start becomes the `admin` key.
INSERT INTO api_keys (id, name, role, key_sha256, created_at)
SELECT lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2)
        || '-a' || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
    'admin', 'admin', value, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
FROM settings WHERE key = 'api_key_sha256';
DELETE FROM settings WHERE key = 'api_key_sha256';

-- The audit log: one row per change to credentials or configuration (and
-- per refused attempt), never holding a secret. `seq` orders it and is the
-- paging cursor; `at_unix` serves time filters and retention.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    at_unix INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT,
    provider TEXT,
    outcome TEXT NOT NULL,
    address TEXT,
    request_id TEXT
);
CREATE INDEX audit_log_target ON audit_log (target_id, seq);
CREATE INDEX audit_log_at ON audit_log (at_unix);
