//! Persistence: the SQLite database (WAL, migrations at start) holding
//! integrations with their sealed credentials and refresh tokens, OAuth
//! applications, authorizations in flight, server settings; sync state and
//! mirrored records (`syncs`), outgoing webhooks (`webhooks`).

pub mod syncs;
pub mod webhooks;

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    Row, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous},
};

use crate::crypto::Sealed;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: only sqlite: URLs are supported in this version")]
    UnsupportedUrl(String),
    #[error("corrupt row {id}: {why}")]
    Corrupt { id: String, why: String },
}

/// An integration as stored. Non-secret fields are plain columns; the
/// credentials are only ever here sealed.
#[derive(Clone)]
pub struct IntegrationRow {
    pub id: String,
    pub provider: String,
    pub label: Option<String>,
    pub status: String,
    pub base_url: String,
    pub account_id: String,
    pub account_json: String,
    pub scopes: Vec<String>,
    pub missing_scopes: Vec<String>,
    pub token_kind: Option<String>,
    pub token_hint: Option<String>,
    pub token_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_verified_at: Option<String>,
    pub last_error_json: Option<String>,
    pub secret: Sealed,
    /// The sealed refresh token, when the integration can be refreshed.
    pub refresh: Option<Sealed>,
}

/// An OAuth application registered with a provider for one base URL.
#[derive(Clone)]
pub struct OAuthAppRow {
    pub id: String,
    pub provider: String,
    pub base_url: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
    pub secret: Sealed,
}

/// An authorization started and not yet spent.
pub struct OAuthStateRow {
    pub state_hash: String,
    pub provider: String,
    pub base_url: String,
    pub label: Option<String>,
    pub created_at: String,
    pub expires_at_unix: i64,
    pub verifier: Sealed,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database and runs migrations.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        let options = match database_url {
            None => SqliteConnectOptions::new().filename(data_dir.join("gatehouse.db")),
            Some(url) if url.starts_with("sqlite:") => SqliteConnectOptions::from_str(url)?,
            Some(url) => {
                let scheme = url.split(':').next().unwrap_or_default().to_string();
                return Err(StoreError::UnsupportedUrl(scheme));
            }
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Zero freed pages so an erased secret's ciphertext does not linger.
        .pragma("secure_delete", "on")
        .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = ?").bind(key).fetch_optional(&self.pool).await?)
    }

    /// Sets a setting only if unset; returns whether this call set it, so two
    /// replicas starting at once agree on one value.
    pub async fn init_setting(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn list(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM integrations ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn get(&self, id: &str) -> Result<Option<IntegrationRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM integrations WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn find_account(
        &self,
        provider: &str,
        base_url: &str,
        account_id: &str,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM integrations WHERE provider = ? AND base_url = ? AND account_id = ?")
            .bind(provider)
            .bind(base_url)
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Inserts a new row, or — when the same account is already connected —
    /// leaves it alone and returns false; the caller then updates it.
    pub async fn insert(&self, row: &IntegrationRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO integrations (id, provider, label, status, base_url, account_id, account_json, scopes_json,
                missing_scopes_json, token_kind, token_hint, token_expires_at, created_at, updated_at, last_verified_at,
                last_error_json, secret_key_id, secret_nonce, secret_ciphertext, refresh_key_id, refresh_nonce,
                refresh_ciphertext)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (provider, base_url, account_id) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.provider)
        .bind(&row.label)
        .bind(&row.status)
        .bind(&row.base_url)
        .bind(&row.account_id)
        .bind(&row.account_json)
        .bind(json(&row.scopes))
        .bind(json(&row.missing_scopes))
        .bind(&row.token_kind)
        .bind(&row.token_hint)
        .bind(&row.token_expires_at)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .bind(&row.last_verified_at)
        .bind(&row.last_error_json)
        .bind(&row.secret.key_id)
        .bind(&row.secret.nonce)
        .bind(&row.secret.ciphertext)
        .bind(row.refresh.as_ref().map(|r| &r.key_id))
        .bind(row.refresh.as_ref().map(|r| &r.nonce))
        .bind(row.refresh.as_ref().map(|r| &r.ciphertext))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces everything but id, provider, base URL and created_at in one
    /// statement, so credentials and what was learnt from them change together.
    pub async fn update(&self, row: &IntegrationRow) -> Result<bool, StoreError> {
        update_row(&self.pool, row, None).await
    }

    /// Deletes the row; the sealed secret goes with it (`secure_delete` zeroes
    /// the freed pages).
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM integrations WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Integrations holding a refresh token, for the refresh task.
    pub async fn refreshable(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM integrations WHERE refresh_ciphertext IS NOT NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Writes a refreshed row only if its refresh token is still `spent`:
    /// a refresh token is used once, so whoever stored first wins and a
    /// second writer learns it lost instead of overwriting the new pair.
    pub async fn update_if_refresh_unchanged(&self, row: &IntegrationRow, spent: &Sealed) -> Result<bool, StoreError> {
        update_row(&self.pool, row, Some(spent)).await
    }

    pub async fn oauth_apps(&self) -> Result<Vec<OAuthAppRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM oauth_apps ORDER BY provider, base_url").fetch_all(&self.pool).await?;
        rows.iter().map(app_from_row).collect()
    }

    pub async fn oauth_app(&self, provider: &str, base_url: &str) -> Result<Option<OAuthAppRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM oauth_apps WHERE provider = ? AND base_url = ?")
            .bind(provider)
            .bind(base_url)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    pub async fn oauth_app_by_id(&self, id: &str) -> Result<Option<OAuthAppRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM oauth_apps WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// Inserts, or replaces the application of the same provider and base
    /// URL (keeping its id and created_at), in one statement. Returns the
    /// stored id and created_at: the row's own when it is new.
    pub async fn upsert_oauth_app(&self, app: &OAuthAppRow) -> Result<(String, String), StoreError> {
        let row = sqlx::query(
            "INSERT INTO oauth_apps (id, provider, base_url, client_id, redirect_uri, source, created_at, updated_at,
                secret_key_id, secret_nonce, secret_ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (provider, base_url) DO UPDATE SET client_id = excluded.client_id,
                redirect_uri = excluded.redirect_uri, source = excluded.source, updated_at = excluded.updated_at,
                secret_key_id = excluded.secret_key_id, secret_nonce = excluded.secret_nonce,
                secret_ciphertext = excluded.secret_ciphertext
             RETURNING id, created_at",
        )
        .bind(&app.id)
        .bind(&app.provider)
        .bind(&app.base_url)
        .bind(&app.client_id)
        .bind(&app.redirect_uri)
        .bind(&app.source)
        .bind(&app.created_at)
        .bind(&app.updated_at)
        .bind(&app.secret.key_id)
        .bind(&app.secret.nonce)
        .bind(&app.secret.ciphertext)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("id")?, row.try_get("created_at")?))
    }

    pub async fn delete_oauth_app(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM oauth_apps WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_oauth_state(&self, state: &OAuthStateRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, provider, base_url, label, created_at, expires_at_unix,
                verifier_key_id, verifier_nonce, verifier_ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&state.state_hash)
        .bind(&state.provider)
        .bind(&state.base_url)
        .bind(&state.label)
        .bind(&state.created_at)
        .bind(state.expires_at_unix)
        .bind(&state.verifier.key_id)
        .bind(&state.verifier.nonce)
        .bind(&state.verifier.ciphertext)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes and returns a state in one statement: a state is spent by
    /// the first callback that presents it, even when two arrive at once.
    pub async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthStateRow>, StoreError> {
        let row = sqlx::query("DELETE FROM oauth_states WHERE state_hash = ? RETURNING *")
            .bind(state_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(OAuthStateRow {
                state_hash: row.try_get("state_hash")?,
                provider: row.try_get("provider")?,
                base_url: row.try_get("base_url")?,
                label: row.try_get("label")?,
                created_at: row.try_get("created_at")?,
                expires_at_unix: row.try_get("expires_at_unix")?,
                verifier: Sealed {
                    key_id: row.try_get("verifier_key_id")?,
                    nonce: row.try_get("verifier_nonce")?,
                    ciphertext: row.try_get("verifier_ciphertext")?,
                },
            })
        })
        .transpose()
    }

    /// Forgets authorizations that expired unused.
    pub async fn delete_expired_oauth_states(&self, now_unix: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oauth_states WHERE expires_at_unix < ?")
            .bind(now_unix)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The statement behind `update`; with `spent`, it only writes while the
/// stored refresh token is still that one (one statement, so atomic).
async fn update_row(pool: &SqlitePool, row: &IntegrationRow, spent: Option<&Sealed>) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE integrations SET label = ?, status = ?, account_id = ?, account_json = ?, scopes_json = ?,
            missing_scopes_json = ?, token_kind = ?, token_hint = ?, token_expires_at = ?, updated_at = ?,
            last_verified_at = ?, last_error_json = ?, secret_key_id = ?, secret_nonce = ?, secret_ciphertext = ?,
            refresh_key_id = ?, refresh_nonce = ?, refresh_ciphertext = ?
         WHERE id = ? AND (? IS NULL OR refresh_ciphertext = ?)",
    )
    .bind(&row.label)
    .bind(&row.status)
    .bind(&row.account_id)
    .bind(&row.account_json)
    .bind(json(&row.scopes))
    .bind(json(&row.missing_scopes))
    .bind(&row.token_kind)
    .bind(&row.token_hint)
    .bind(&row.token_expires_at)
    .bind(&row.updated_at)
    .bind(&row.last_verified_at)
    .bind(&row.last_error_json)
    .bind(&row.secret.key_id)
    .bind(&row.secret.nonce)
    .bind(&row.secret.ciphertext)
    .bind(row.refresh.as_ref().map(|r| &r.key_id))
    .bind(row.refresh.as_ref().map(|r| &r.nonce))
    .bind(row.refresh.as_ref().map(|r| &r.ciphertext))
    .bind(&row.id)
    .bind(spent.map(|s| &s.ciphertext))
    .bind(spent.map(|s| &s.ciphertext))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn json(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serialises")
}

fn from_row(row: &SqliteRow) -> Result<IntegrationRow, StoreError> {
    let id: String = row.try_get("id")?;
    let list = |column: &str| -> Result<Vec<String>, StoreError> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { id: id.clone(), why: format!("{column}: {e}") })
    };
    Ok(IntegrationRow {
        provider: row.try_get("provider")?,
        label: row.try_get("label")?,
        status: row.try_get("status")?,
        base_url: row.try_get("base_url")?,
        account_id: row.try_get("account_id")?,
        account_json: row.try_get("account_json")?,
        scopes: list("scopes_json")?,
        missing_scopes: list("missing_scopes_json")?,
        token_kind: row.try_get("token_kind")?,
        token_hint: row.try_get("token_hint")?,
        token_expires_at: row.try_get("token_expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_verified_at: row.try_get("last_verified_at")?,
        last_error_json: row.try_get("last_error_json")?,
        secret: Sealed {
            key_id: row.try_get("secret_key_id")?,
            nonce: row.try_get("secret_nonce")?,
            ciphertext: row.try_get("secret_ciphertext")?,
        },
        refresh: match row.try_get::<Option<Vec<u8>>, _>("refresh_ciphertext")? {
            Some(ciphertext) => Some(Sealed {
                key_id: row.try_get("refresh_key_id")?,
                nonce: row.try_get("refresh_nonce")?,
                ciphertext,
            }),
            None => None,
        },
        id,
    })
}

fn app_from_row(row: &SqliteRow) -> Result<OAuthAppRow, StoreError> {
    Ok(OAuthAppRow {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        base_url: row.try_get("base_url")?,
        client_id: row.try_get("client_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        source: row.try_get("source")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        secret: Sealed {
            key_id: row.try_get("secret_key_id")?,
            nonce: row.try_get("secret_nonce")?,
            ciphertext: row.try_get("secret_ciphertext")?,
        },
    })
}
