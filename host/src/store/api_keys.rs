//! API keys as stored: a name, a role and the SHA-256 of the key (the key
//! itself is shown once and never kept). Revoking sets `revoked_at`; the row
//! stays so the audit log keeps naming who acted.

use super::{Store, StoreError, audit::AuditEntry};
use crate::clock::Timestamp;

/// What a key may do. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, sqlx::Type, poem_openapi::Enum, serde::Serialize)]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read integrations, providers, syncs, records; proxy GET.
    Reader,
    /// Also connect, verify, rotate, refresh, disconnect, run actions and syncs.
    Operator,
    /// Everything, including API keys, OAuth applications, webhooks, connectors and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reader" => Ok(Self::Reader),
            "operator" => Ok(Self::Operator),
            "admin" => Ok(Self::Admin),
            _ => Err(format!("unknown role {s:?}: use admin, operator or reader")),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub key_sha256: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// Inserts a key on `$conn` (inside the caller's transaction); whether it
/// was stored (false: a key in use has this name).
macro_rules! insert_key {
    ($conn:expr, $row:expr) => {{
        let done = sqlx::query(
            "INSERT INTO api_keys (id, name, role, key_sha256, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)
         ON CONFLICT DO NOTHING",
        )
        .bind(&$row.id)
        .bind(&$row.name)
        .bind($row.role)
        .bind(&$row.key_sha256)
        .bind($row.created_at)
        .execute($conn)
        .await?;
        done.rows_affected() == 1
    }};
}

impl Store {
    /// The key in use whose hash is `sha256`; a revoked key is not found.
    pub async fn api_key_by_hash(&self, sha256: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM api_keys WHERE key_sha256 = $1 AND revoked_at IS NULL")
                .bind(sha256)
                .fetch_optional(pool)
                .await?)
        })
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM api_keys ORDER BY created_at, name").fetch_all(pool).await?)
        })
    }

    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM api_keys WHERE id = $1").bind(id).fetch_optional(pool).await?)
        })
    }

    /// How many keys were ever stored, revoked ones included.
    pub async fn api_keys_ever(&self) -> Result<i64, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(pool).await?)
        })
    }

    /// Stores a new key with its audit entry; false when a key in use
    /// already has this name.
    pub async fn insert_api_key(&self, row: &ApiKeyRow, audit: &AuditEntry) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = insert_key!(&mut *tx, row);
            if done {
                write_audit!(&mut *tx, audit);
            }
            tx.commit().await?;
            Ok(done)
        })
    }

    /// Stores the first key only if no key was ever stored (two servers
    /// starting at once agree on one); returns whether this call stored it.
    pub async fn insert_first_api_key(&self, row: &ApiKeyRow, audit: &AuditEntry) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let none: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM api_keys)").fetch_one(&mut *tx).await?;
            let done = none && insert_key!(&mut *tx, row);
            if done {
                write_audit!(&mut *tx, audit);
            }
            tx.commit().await?;
            Ok(done)
        })
    }

    /// Revokes a key in use, with its audit entry; None when there is no
    /// such key in use.
    pub async fn revoke_api_key(&self, id: &str, audit: &AuditEntry) -> Result<Option<ApiKeyRow>, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<ApiKeyRow> =
                sqlx::query_as("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING *")
                    .bind(Timestamp::now())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if row.is_some() {
                write_audit!(&mut *tx, audit);
            }
            tx.commit().await?;
            Ok(row)
        })
    }
}
