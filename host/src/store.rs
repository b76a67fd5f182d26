//! Persistence: the SQLite database (WAL, migrations at start) holding
//! integrations with their sealed credentials, and server settings.

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
                last_error_json, secret_key_id, secret_nonce, secret_ciphertext)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces everything but id, provider, base URL and created_at in one
    /// statement, so credentials and what was learnt from them change together.
    pub async fn update(&self, row: &IntegrationRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE integrations SET label = ?, status = ?, account_id = ?, account_json = ?, scopes_json = ?,
                missing_scopes_json = ?, token_kind = ?, token_hint = ?, token_expires_at = ?, updated_at = ?,
                last_verified_at = ?, last_error_json = ?, secret_key_id = ?, secret_nonce = ?, secret_ciphertext = ?
             WHERE id = ?",
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
        .bind(&row.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the row; the sealed secret goes with it (`secure_delete` zeroes
    /// the freed pages).
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM integrations WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
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
        id,
    })
}
