//! Connect sessions as stored: one row per session, found by the SHA-256
//! of its token (the token itself is never stored), revoked by setting
//! `revoked_at`, forgotten a day after they expire.

use sqlx::types::Json;

use super::{Store, StoreError};

/// A connect session: which end user it acts for, which connectors it may
/// use, until when.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub token_hash: String,
    pub end_user_id: String,
    pub end_user_name: Option<String>,
    pub end_user_email: Option<String>,
    pub organization: Option<String>,
    /// None: every loaded connector.
    #[sqlx(rename = "providers_json")]
    pub providers: Option<Json<Vec<String>>>,
    pub created_at: String,
    pub expires_at: String,
    pub expires_at_unix: i64,
    pub revoked_at: Option<String>,
}

/// How long an expired or revoked session is kept, so that its token is
/// answered `session_expired` / `session_revoked` rather than `unauthorized`.
const KEEP_AFTER_EXPIRY_SECONDS: i64 = 86_400;

impl Store {
    /// Stores a new session and forgets those expired for more than a day.
    pub async fn insert_session(&self, s: &SessionRow, now_unix: i64) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM connect_sessions WHERE expires_at_unix < $1")
                .bind(now_unix - KEEP_AFTER_EXPIRY_SECONDS)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO connect_sessions (id, token_hash, end_user_id, end_user_name, end_user_email, organization,
                    providers_json, created_at, expires_at, expires_at_unix, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&s.id)
            .bind(&s.token_hash)
            .bind(&s.end_user_id)
            .bind(&s.end_user_name)
            .bind(&s.end_user_email)
            .bind(&s.organization)
            .bind(&s.providers)
            .bind(&s.created_at)
            .bind(&s.expires_at)
            .bind(s.expires_at_unix)
            .bind(&s.revoked_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn session_by_token_hash(&self, token_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM connect_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(pool)
                .await?)
        })
    }

    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM connect_sessions WHERE id = $1").bind(id).fetch_optional(pool).await?)
        })
    }

    /// Revokes a session (once: a second revocation keeps the first time).
    /// None when there is no such session.
    pub async fn revoke_session(&self, id: &str, now: &str) -> Result<Option<SessionRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("UPDATE connect_sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING *")
                .bind(now)
                .bind(id)
                .fetch_optional(pool)
                .await?)
        })
    }
}
