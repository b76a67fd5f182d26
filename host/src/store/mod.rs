//! Persistence: the database — the SQLite file in the data dir (WAL), or a
//! PostgreSQL database that several processes share — with its migrations
//! (one directory per backend, applied at start), holding
//! integrations with their sealed credentials and refresh tokens, OAuth
//! applications, authorizations in flight, server settings; connect
//! sessions (`sessions`); sync state and
//! mirrored records (`syncs`), outgoing webhooks (`webhooks`), every sealed
//! value at once for key rotation (`sealed`), API keys (`api_keys`) and the
//! audit log (`audit`), whose entries changes write in their own
//! transaction.

/// Runs `$body` with `$pool` bound to the pool of the backend in use; the
/// body is compiled once per backend, so one query text (in the portable
/// subset: `$1` placeholders, `RETURNING`, `ON CONFLICT`) serves both.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

/// Writes the audit entry `$entry` on `$conn`, inside the caller's
/// transaction.
macro_rules! write_audit {
    ($conn:expr, $entry:expr) => {{
        let entry: &$crate::store::audit::AuditEntry = $entry;
        sqlx::query($crate::store::audit::INSERT)
            .bind(entry.at)
            .bind(entry.at.unix())
            .bind(&entry.actor_kind)
            .bind(&entry.actor_id)
            .bind(&entry.actor_name)
            .bind(&entry.action)
            .bind(&entry.target_kind)
            .bind(&entry.target_id)
            .bind(&entry.provider)
            .bind(&entry.outcome)
            .bind(&entry.address)
            .bind(&entry.request_id)
            .execute($conn)
            .await?;
    }};
}

/// Runs `$query` (an `UPDATE … RETURNING *`) in a transaction of `$pool`
/// and, when it changed a row, writes `$audit` in the same transaction.
/// Evaluates to the row, as a `Result`.
macro_rules! audited {
    ($pool:expr, $query:expr, $audit:expr) => {{
        let mut tx = $pool.begin().await?;
        let row = $query.fetch_optional(&mut *tx).await?;
        if row.is_some() {
            write_audit!(&mut *tx, $audit);
        }
        tx.commit().await?;
        Ok(row)
    }};
}

/// Runs a statement in a transaction of `$pool` and, when it changed a
/// row, writes `$audit` in the same transaction. Evaluates to whether it
/// changed one, as a `Result`.
macro_rules! audited_change {
    ($pool:expr, $query:expr, $audit:expr) => {{
        let mut tx = $pool.begin().await?;
        let changed = $query.execute(&mut *tx).await?.rows_affected() > 0;
        if changed {
            write_audit!(&mut *tx, $audit);
        }
        tx.commit().await?;
        Ok::<bool, StoreError>(changed)
    }};
}

/// Enqueues one webhook delivery on the transaction `$tx`.
macro_rules! insert_delivery {
    ($tx:expr, $delivery:expr, $now_text:expr, $now_unix:expr) => {{
        let d: &$crate::store::syncs::NewDelivery = $delivery;
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload_json, status, next_attempt_at,
                created_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
        )
        .bind(&d.id)
        .bind(&d.webhook_id)
        .bind(&d.event_type)
        .bind(&d.payload_json)
        .bind($now_unix)
        .bind($now_text)
        .execute(&mut *$tx)
        .await?;
    }};
}

pub mod api_keys;
pub mod audit;
pub mod sealed;
pub mod sessions;
pub mod syncs;
pub mod webhooks;

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    PgPool, Row, SqlitePool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use sqlx::types::Json;

use crate::{
    clock::Timestamp,
    crypto::Sealed,
    problem::Problem,
    runtime::model::{Account, ReachItem, TokenReach},
};
use audit::AuditEntry;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL scheme {0:?}: use sqlite: or postgres://")]
    UnsupportedUrl(String),
    #[error("the database has {applied} of this version's {known} migrations applied")]
    Unmigrated { applied: i64, known: usize },
    #[error("corrupt row {id}: {why}")]
    Corrupt { id: String, why: String },
    #[error("cannot make the database file {path} private (mode 0600): {source}")]
    Permissions { path: std::path::PathBuf, source: std::io::Error },
}

impl StoreError {
    /// Whether the database could not be reached or answered that it is
    /// going away (down, restarting, every connection busy, a statement
    /// cancelled by its timeout): a passing condition the pool recovers
    /// from by itself, answered `503 database_unavailable`.
    pub fn is_unavailable(&self) -> bool {
        use sqlx::Error as E;
        match self {
            Self::Database(E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed) => true,
            Self::Database(E::Protocol(_)) => true,
            Self::Database(E::Database(e)) => e.code().is_some_and(|code| {
                // PostgreSQL: connection exceptions (08…), the server
                // shutting down or starting (57P01-57P03), statement
                // timeout (57014), a deadlock or serialization failure
                // between processes (40P01, 40001: retrying succeeds).
                // SQLite: busy or locked past the timeout.
                code.starts_with("08")
                    || code.starts_with("57P")
                    || ["57014", "40P01", "40001", "5", "6"].contains(&code.as_ref())
            }),
            Self::Migrate(sqlx::migrate::MigrateError::Execute(E::Io(_) | E::PoolTimedOut)) => true,
            Self::Unmigrated { .. } => true,
            _ => false,
        }
    }
}

/// Where an integration stands, as its last check found it. Stored and
/// served under the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, poem_openapi::Enum)]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum Status {
    Connected,
    /// The provider refused or revoked the token.
    Invalid,
    /// The token, or the refresh token that renews it, expired.
    Expired,
    InsufficientScope,
    /// The provider could not be asked.
    Unreachable,
    /// The integration's connector is not loaded: shown, never stored.
    ProviderUnavailable,
    /// Connected, and the token expires within the warning window: shown,
    /// never stored.
    Expiring,
}

/// An integration as stored. Non-secret fields are plain columns; the
/// credentials are only ever here sealed.
#[derive(Clone, sqlx::FromRow)]
pub struct IntegrationRow {
    pub id: String,
    pub provider: String,
    pub label: Option<String>,
    pub status: Status,
    pub base_url: String,
    pub account_id: String,
    #[sqlx(rename = "account_json")]
    pub account: Json<Account>,
    #[sqlx(rename = "scopes_json")]
    pub scopes: Json<Vec<String>>,
    #[sqlx(rename = "missing_scopes_json")]
    pub missing_scopes: Json<Vec<String>>,
    pub token_kind: Option<String>,
    pub token_hint: Option<String>,
    pub token_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_verified_at: Option<Timestamp>,
    #[sqlx(rename = "last_error_json")]
    pub last_error: Option<Json<Problem>>,
    #[sqlx(flatten, try_from = "SecretColumns")]
    pub secret: Sealed,
    /// The sealed refresh token, when the integration can be refreshed.
    #[sqlx(flatten, try_from = "RefreshColumns")]
    pub refresh: Option<Sealed>,
    /// What the credential reaches, when its connector can tell.
    #[sqlx(rename = "reach_json")]
    pub reach: Option<Json<TokenReach>>,
    /// The part of the provider the connection is limited to.
    #[sqlx(rename = "scope_json")]
    pub scope: Option<Json<ReachItem>>,
    /// The expiry an `integration.expiring` event was sent for.
    pub expiry_notified_for: Option<Timestamp>,
    /// Set while a rotation has not stored its new credential.
    pub rotation_started_at: Option<Timestamp>,
    /// Whose connection it is: the consuming system's end user (None:
    /// connected with the API key for no end user) and organization tag.
    #[sqlx(flatten)]
    pub owner: Owner,
}

/// The end user a connection belongs to, as the consuming system named
/// them, and its organization (tenant) tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Owner {
    pub end_user_id: Option<String>,
    pub end_user_name: Option<String>,
    pub end_user_email: Option<String>,
    pub organization: Option<String>,
}

/// The credentials' sealed triple as stored.
#[derive(sqlx::FromRow)]
struct SecretColumns {
    secret_key_id: String,
    secret_nonce: Vec<u8>,
    secret_ciphertext: Vec<u8>,
}

impl From<SecretColumns> for Sealed {
    fn from(c: SecretColumns) -> Self {
        Sealed { key_id: c.secret_key_id, nonce: c.secret_nonce, ciphertext: c.secret_ciphertext }
    }
}

/// The refresh token's sealed triple as stored: all NULL when there is none.
#[derive(sqlx::FromRow)]
struct RefreshColumns {
    refresh_key_id: Option<String>,
    refresh_nonce: Option<Vec<u8>>,
    refresh_ciphertext: Option<Vec<u8>>,
}

impl From<RefreshColumns> for Option<Sealed> {
    fn from(c: RefreshColumns) -> Self {
        Some(Sealed { key_id: c.refresh_key_id?, nonce: c.refresh_nonce?, ciphertext: c.refresh_ciphertext? })
    }
}

/// What a successful verification (connect, reconnect, rotate) writes:
/// credentials and what was learnt from them change together.
pub struct Verified {
    pub label: Option<String>,
    pub account: Account,
    pub scopes: Vec<String>,
    pub token_kind: String,
    pub token_hint: Option<String>,
    pub token_expires_at: Option<Timestamp>,
    pub secret: Sealed,
    pub refresh: Option<Sealed>,
    /// None keeps what was stored (the connector could not tell).
    pub reach: Option<TokenReach>,
}

/// What a re-check learnt, without touching the credentials: another
/// writer may have refreshed them while the check ran.
pub struct Checked {
    pub status: Status,
    /// Replaced when the provider named the account again.
    pub account: Option<Account>,
    /// Replaced (scopes, missing scopes) when the provider told them.
    pub scopes: Option<(Vec<String>, Vec<String>)>,
    /// Replaced when the provider verified the token.
    pub token: Option<(String, Option<Timestamp>)>,
    /// Set when the provider answered (a verdict), not on a transport failure.
    pub verified: bool,
    pub last_error: Option<Problem>,
    /// Replaced when the connector told.
    pub reach: Option<TokenReach>,
}

/// What a refresh produced, written only while the spent refresh token is
/// still the stored one.
pub enum Refresh {
    Renewed {
        token_hint: Option<String>,
        token_expires_at: Option<Timestamp>,
        scopes: Option<Vec<String>>,
        secret: Sealed,
        refresh: Sealed,
    },
    /// The refresh token was refused: the integration is `expired` and
    /// holds no refresh token any more.
    Refused { last_error: Problem },
}

/// An OAuth application registered with a provider for one base URL.
#[derive(Clone, sqlx::FromRow)]
pub struct OAuthAppRow {
    pub id: String,
    pub provider: String,
    pub base_url: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub source: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[sqlx(flatten, try_from = "SecretColumns")]
    pub secret: Sealed,
}

/// An authorization started and not yet spent.
#[derive(sqlx::FromRow)]
pub struct OAuthStateRow {
    pub state_hash: String,
    pub provider: String,
    pub base_url: String,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub expires_at_unix: i64,
    #[sqlx(flatten, try_from = "VerifierColumns")]
    pub verifier: Sealed,
    /// SHA-256 of the browser binding the callback must present, if any.
    pub browser_hash: Option<String>,
    /// The connect session that started it, if any.
    pub session_id: Option<String>,
}

/// An authorization's sealed PKCE verifier as stored.
#[derive(sqlx::FromRow)]
struct VerifierColumns {
    verifier_key_id: String,
    verifier_nonce: Vec<u8>,
    verifier_ciphertext: Vec<u8>,
}

impl From<VerifierColumns> for Sealed {
    fn from(c: VerifierColumns) -> Self {
        Sealed { key_id: c.verifier_key_id, nonce: c.verifier_nonce, ciphertext: c.verifier_ciphertext }
    }
}

/// The connection pool of the backend in use.
#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

/// How the pool talks to the database: size and time limits, the same for
/// both backends where they apply.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections at most, per process.
    pub max_connections: u32,
    /// How long a request waits for a free connection (or for a database
    /// that is down) before it answers `database_unavailable`.
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout`: a statement running longer is
    /// cancelled (SQLite statements are local and not limited).
    pub statement_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self { max_connections: 8, acquire_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(30) }
    }
}

/// Which backend a database URL names.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Whether `pool` is PostgreSQL's, for the few statements whose dialects
/// differ (the macro bodies are compiled once per backend).
fn is_postgres<DB: sqlx::Database>(_pool: &sqlx::Pool<DB>) -> bool {
    DB::NAME == <sqlx::Postgres as sqlx::Database>::NAME
}

impl Store {
    /// Opens the database with the default pool options.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(database_url, data_dir, &PoolOptions::default()).await
    }

    /// Opens (creating if needed) the database and runs migrations: the
    /// SQLite file in the data dir unless `database_url` names another
    /// SQLite file or a PostgreSQL database. The SQLite file and its WAL
    /// and shared-memory files are made 0600 (they hold account names,
    /// emails, labels and errors in plain text).
    pub async fn open_with(
        database_url: Option<&str>,
        data_dir: &Path,
        limits: &PoolOptions,
    ) -> Result<Self, StoreError> {
        let options = match database_url {
            None => SqliteConnectOptions::new().filename(data_dir.join("gatehouse.db")),
            Some(url) if url.starts_with("sqlite:") => SqliteConnectOptions::from_str(url)?,
            Some(url) if is_postgres_url(url) => return Self::open_postgres(url, limits).await,
            Some(url) => {
                let scheme = url.split(':').next().unwrap_or_default().to_string();
                return Err(StoreError::UnsupportedUrl(scheme));
            }
        };
        let in_memory = database_url.is_some_and(|url| url.contains(":memory:") || url.contains("mode=memory"));
        if !in_memory {
            private_database_files(options.get_filename())?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit (a rotated refresh token already spent at the
            // provider, a new credential) reaches the disk before it is
            // acknowledged; NORMAL in WAL mode may lose the last commits on
            // power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Zero freed pages so an erased secret's ciphertext does not linger.
            .pragma("secure_delete", "on")
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(limits.max_connections)
            .acquire_timeout(limits.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlite_migrator().run(&pool).await?;
        Ok(Self { pool: Pool::Sqlite(pool) })
    }

    /// PostgreSQL, shared by every process of a deployment. Migrations take
    /// an advisory lock, so processes starting at once apply them once.
    async fn open_postgres(url: &str, limits: &PoolOptions) -> Result<Self, StoreError> {
        let timeout = limits.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(url)?
            .options([("statement_timeout", timeout.as_str())])
            .application_name("gatehouse");
        let pool = PgPoolOptions::new()
            .max_connections(limits.max_connections)
            .acquire_timeout(limits.acquire_timeout)
            .connect_with(options)
            .await?;
        postgres_migrator().run(&pool).await?;
        Ok(Self { pool: Pool::Postgres(pool) })
    }

    /// `sqlite` or `postgres`, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Whether the database answers and every migration this version
    /// knows is applied (readiness).
    pub async fn ready(&self) -> Result<(), StoreError> {
        let (applied, known): (i64, usize) = with_pool!(self, pool => {
            let applied = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?;
            let known = if is_postgres(pool) { postgres_migrator() } else { sqlite_migrator() }.iter().count();
            (applied, known)
        });
        if applied < known as i64 {
            return Err(StoreError::Unmigrated { applied, known });
        }
        Ok(())
    }

    /// What `PRAGMA synchronous` is on the pool's connections (2: FULL);
    /// None on PostgreSQL, whose durability is the server's setting.
    pub async fn synchronous(&self) -> Result<Option<i64>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => Ok(Some(sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await?)),
            Pool::Postgres(_) => Ok(None),
        }
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(pool).await?)
        })
    }

    /// Sets a setting only if unset; returns whether this call set it, so two
    /// replicas starting at once agree on one value.
    pub async fn init_setting(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn list(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM integrations ORDER BY created_at, id").fetch_all(pool).await?)
        })
    }

    /// Integrations of one end user and/or organization (None: any).
    pub async fn list_owned(
        &self,
        end_user_id: Option<&str>,
        organization: Option<&str>,
    ) -> Result<Vec<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT * FROM integrations WHERE ($1 IS NULL OR end_user_id = $1) AND ($2 IS NULL OR organization = $2)
                 ORDER BY created_at, id",
            )
            .bind(end_user_id)
            .bind(organization)
            .fetch_all(pool)
            .await?)
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM integrations WHERE id = $1").bind(id).fetch_optional(pool).await?)
        })
    }

    pub async fn find_account(
        &self,
        provider: &str,
        base_url: &str,
        account_id: &str,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM integrations WHERE provider = $1 AND base_url = $2 AND account_id = $3")
                .bind(provider)
                .bind(base_url)
                .bind(account_id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Inserts a new row, or — when the same account is already connected —
    /// leaves it alone and returns false; the caller then updates it.
    pub async fn insert(&self, row: &IntegrationRow, audit: &AuditEntry) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "INSERT INTO integrations (id, provider, label, status, base_url, account_id, account_json, scopes_json,
                    missing_scopes_json, token_kind, token_hint, token_expires_at, created_at, updated_at, last_verified_at,
                    last_error_json, secret_key_id, secret_nonce, secret_ciphertext, refresh_key_id, refresh_nonce,
                    refresh_ciphertext, reach_json, end_user_id, end_user_name, end_user_email, organization)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)
                 ON CONFLICT (provider, base_url, account_id) DO NOTHING",
            )
            .bind(&row.id)
            .bind(&row.provider)
            .bind(&row.label)
            .bind(row.status)
            .bind(&row.base_url)
            .bind(&row.account_id)
            .bind(&row.account)
            .bind(&row.scopes)
            .bind(&row.missing_scopes)
            .bind(&row.token_kind)
            .bind(&row.token_hint)
            .bind(row.token_expires_at)
            .bind(row.created_at)
            .bind(row.updated_at)
            .bind(row.last_verified_at)
            .bind(&row.last_error)
            .bind(&row.secret.key_id)
            .bind(&row.secret.nonce)
            .bind(&row.secret.ciphertext)
            .bind(row.refresh.as_ref().map(|r| &r.key_id))
            .bind(row.refresh.as_ref().map(|r| &r.nonce))
            .bind(row.refresh.as_ref().map(|r| &r.ciphertext))
            .bind(&row.reach)
            .bind(&row.owner.end_user_id)
            .bind(&row.owner.end_user_name)
            .bind(&row.owner.end_user_email)
            .bind(&row.owner.organization)
            .execute(&mut *tx)
            .await?;
            let inserted = done.rows_affected() == 1;
            if inserted {
                write_audit!(&mut *tx, audit);
            }
            tx.commit().await?;
            Ok(inserted)
        })
    }

    /// Stores newly verified credentials over an integration's, with what
    /// their verification said, in one statement. Returns the row as stored.
    pub async fn replace_credentials(
        &self,
        id: &str,
        v: &Verified,
        audit: &AuditEntry,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
        let query = sqlx::query_as(
            "UPDATE integrations SET label = COALESCE($1, label), status = 'connected', account_id = $2, account_json = $3,
                scopes_json = $4, missing_scopes_json = '[]', token_kind = $5, token_hint = $6, token_expires_at = $7,
                updated_at = $8, last_verified_at = $9, last_error_json = NULL, secret_key_id = $10, secret_nonce = $11,
                secret_ciphertext = $12, refresh_key_id = $13, refresh_nonce = $14, refresh_ciphertext = $15, refresh_claimed_until = NULL,
                reach_json = COALESCE($16, reach_json), rotation_started_at = NULL
             WHERE id = $17 RETURNING *",
        )
        .bind(&v.label)
        .bind(&v.account.id)
        .bind(Json(&v.account))
        .bind(Json(&v.scopes))
        .bind(&v.token_kind)
        .bind(&v.token_hint)
        .bind(v.token_expires_at)
        .bind(Timestamp::now())
        .bind(Timestamp::now())
        .bind(&v.secret.key_id)
        .bind(&v.secret.nonce)
        .bind(&v.secret.ciphertext)
        .bind(v.refresh.as_ref().map(|r| &r.key_id))
        .bind(v.refresh.as_ref().map(|r| &r.nonce))
        .bind(v.refresh.as_ref().map(|r| &r.ciphertext))
        .bind(v.reach.as_ref().map(Json))
        .bind(id);
        audited!(pool, query, audit)
        })
    }

    /// Records what a re-check learnt. The credentials are not written, so a
    /// refresh stored while the check ran stands.
    pub async fn record_check(&self, id: &str, c: &Checked) -> Result<Option<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            let now = Timestamp::now();
            let (scopes, missing) = c.scopes.as_ref().map(|(s, m)| (Json(s), Json(m))).unzip();
            let (token_kind, expires_at) = c.token.as_ref().map(|(k, e)| (k, *e)).unzip();
            Ok(sqlx::query_as(
                "UPDATE integrations SET status = $1, account_json = COALESCE($2, account_json),
                    scopes_json = COALESCE($3, scopes_json), missing_scopes_json = COALESCE($4, missing_scopes_json),
                    token_kind = COALESCE($5, token_kind),
                    token_expires_at = CASE WHEN $6 THEN $7 ELSE token_expires_at END,
                    last_verified_at = CASE WHEN $8 THEN $9 ELSE last_verified_at END,
                    last_error_json = $10, updated_at = $11, reach_json = COALESCE($12, reach_json)
                 WHERE id = $13 RETURNING *",
            )
            .bind(c.status)
            .bind(c.account.as_ref().map(Json))
            .bind(scopes)
            .bind(missing)
            .bind(token_kind)
            .bind(c.token.is_some())
            .bind(expires_at.flatten())
            .bind(c.verified)
            .bind(now)
            .bind(c.last_error.as_ref().map(Json))
            .bind(now)
            .bind(c.reach.as_ref().map(Json))
            .bind(id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Writes a refresh's outcome only while the stored refresh token is
    /// still `spent`: a refresh token is used once, so whoever stores first
    /// wins and a second writer learns it lost (None) instead of
    /// overwriting the new pair.
    pub async fn store_refresh(
        &self,
        id: &str,
        spent: &Sealed,
        outcome: &Refresh,
        audit: &AuditEntry,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        let now = Timestamp::now();
        with_pool!(self, pool => {
        let query = match outcome {
            Refresh::Renewed { token_hint, token_expires_at, scopes, secret, refresh } => sqlx::query_as(
                "UPDATE integrations SET status = 'connected', token_hint = $1, token_expires_at = $2,
                    scopes_json = COALESCE($3, scopes_json), updated_at = $4, last_error_json = NULL,
                    secret_key_id = $5, secret_nonce = $6, secret_ciphertext = $7,
                    refresh_key_id = $8, refresh_nonce = $9, refresh_ciphertext = $10, refresh_claimed_until = NULL
                 WHERE id = $11 AND refresh_ciphertext = $12 RETURNING *",
            )
            .bind(token_hint)
            .bind(token_expires_at)
            .bind(scopes.as_ref().map(Json))
            .bind(now)
            .bind(&secret.key_id)
            .bind(&secret.nonce)
            .bind(&secret.ciphertext)
            .bind(&refresh.key_id)
            .bind(&refresh.nonce)
            .bind(&refresh.ciphertext),
            Refresh::Refused { last_error } => sqlx::query_as(
                "UPDATE integrations SET status = 'expired', updated_at = $1, last_error_json = $2,
                    refresh_key_id = NULL, refresh_nonce = NULL, refresh_ciphertext = NULL,
                    refresh_claimed_until = NULL
                 WHERE id = $3 AND refresh_ciphertext = $4 RETURNING *",
            )
            .bind(now)
            .bind(Json(last_error)),
        };
        audited!(pool, query.bind(id).bind(&spent.ciphertext), audit)
        })
    }

    /// Claims, until `until`, the right to spend the stored refresh token
    /// `spent` (compare-and-swap in one statement): of several processes
    /// that find a token due at once, one asks the provider. False: another
    /// holds a live claim, or the token is no longer the stored one.
    pub async fn claim_refresh(&self, id: &str, spent: &Sealed, now: i64, until: i64) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE integrations SET refresh_claimed_until = $1
                 WHERE id = $2 AND refresh_ciphertext = $3
                   AND (refresh_claimed_until IS NULL OR refresh_claimed_until < $4)",
            )
            .bind(until)
            .bind(id)
            .bind(&spent.ciphertext)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Gives up a claim whose refresh did not reach the provider's verdict
    /// (unreachable, timeout), so the next attempt need not wait for it.
    pub async fn release_refresh(&self, id: &str, spent: &Sealed) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE integrations SET refresh_claimed_until = NULL WHERE id = $1 AND refresh_ciphertext = $2")
                .bind(id)
                .bind(&spent.ciphertext)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Limits the connection to `scope` (None: everything its credential
    /// reaches), with the reach the choice was checked against.
    pub async fn set_scope(
        &self,
        id: &str,
        scope: Option<&ReachItem>,
        reach: Option<&TokenReach>,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as(
                "UPDATE integrations SET scope_json = $1, reach_json = COALESCE($2, reach_json), updated_at = $3
                 WHERE id = $4 RETURNING *",
            )
            .bind(scope.map(Json))
            .bind(reach.map(Json))
            .bind(Timestamp::now())
            .bind(id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Records that a rotation is about to ask the provider for a new
    /// credential. Written before the provider is asked, so a crash between
    /// its answer and the store leaves a trace the API shows.
    pub async fn begin_rotation(&self, id: &str) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query("UPDATE integrations SET rotation_started_at = $1 WHERE id = $2")
                .bind(Timestamp::now())
                .bind(id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// The provider did not issue a new credential: nothing changed.
    pub async fn abandon_rotation(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE integrations SET rotation_started_at = NULL WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Stores the credential a rotation produced, in one statement: the
    /// sealed secret, its hint and expiry, status connected, rotation done.
    pub async fn store_rotation(
        &self,
        id: &str,
        secret: &Sealed,
        token_hint: Option<&str>,
        token_expires_at: Option<Timestamp>,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            let now = Timestamp::now();
            Ok(sqlx::query_as(
                "UPDATE integrations SET status = 'connected', token_hint = $1, token_expires_at = $2, updated_at = $3,
                    last_error_json = NULL, secret_key_id = $4, secret_nonce = $5, secret_ciphertext = $6,
                    rotation_started_at = NULL
                 WHERE id = $7 RETURNING *",
            )
            .bind(token_hint)
            .bind(token_expires_at)
            .bind(now)
            .bind(&secret.key_id)
            .bind(&secret.nonce)
            .bind(&secret.ciphertext)
            .bind(id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Integrations whose credential has an expiry, for the expiry watch.
    pub async fn with_expiry(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM integrations WHERE token_expires_at IS NOT NULL ORDER BY id")
                .fetch_all(pool)
                .await?)
        })
    }

    /// Marks `expires_at` as announced and enqueues `deliveries`, in one
    /// transaction and only if that expiry was not announced yet: one
    /// event per expiry, even with several processes watching.
    pub async fn announce_expiry(
        &self,
        id: &str,
        expires_at: Timestamp,
        deliveries: &[syncs::NewDelivery],
    ) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE integrations SET expiry_notified_for = $1
                 WHERE id = $2 AND token_expires_at = $1 AND (expiry_notified_for IS NULL OR expiry_notified_for != $1)",
            )
            .bind(expires_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            let (now_unix, now_text) = crate::clock::now();
            for d in deliveries {
                insert_delivery!(tx, d, &now_text, now_unix);
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Deletes the row; the sealed secret goes with it (SQLite's
    /// `secure_delete` zeroes the freed pages; PostgreSQL keeps the dead
    /// row's bytes until `VACUUM` reclaims them).
    pub async fn delete(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        with_pool!(self, pool => audited_change!(pool, sqlx::query("DELETE FROM integrations WHERE id = $1").bind(id), audit))
    }

    /// Integrations holding a refresh token, for the refresh task.
    pub async fn refreshable(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM integrations WHERE refresh_ciphertext IS NOT NULL ORDER BY id")
                .fetch_all(pool)
                .await?)
        })
    }

    pub async fn oauth_apps(&self) -> Result<Vec<OAuthAppRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM oauth_apps ORDER BY provider, base_url").fetch_all(pool).await?)
        })
    }

    pub async fn oauth_app(&self, provider: &str, base_url: &str) -> Result<Option<OAuthAppRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM oauth_apps WHERE provider = $1 AND base_url = $2")
                .bind(provider)
                .bind(base_url)
                .fetch_optional(pool)
                .await?)
        })
    }

    pub async fn oauth_app_by_id(&self, id: &str) -> Result<Option<OAuthAppRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM oauth_apps WHERE id = $1").bind(id).fetch_optional(pool).await?)
        })
    }

    /// Inserts, or replaces the application of the same provider and base
    /// URL (keeping its id and created_at), in one statement. Returns the
    /// stored id and created_at: the row's own when it is new.
    pub async fn upsert_oauth_app(
        &self,
        app: &OAuthAppRow,
        audit: &AuditEntry,
    ) -> Result<(String, Timestamp), StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "INSERT INTO oauth_apps (id, provider, base_url, client_id, redirect_uri, source, created_at, updated_at,
                    secret_key_id, secret_nonce, secret_ciphertext) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
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
            .bind(app.created_at)
            .bind(app.updated_at)
            .bind(&app.secret.key_id)
            .bind(&app.secret.nonce)
            .bind(&app.secret.ciphertext)
            .fetch_one(&mut *tx)
            .await?;
            let id: String = row.try_get("id")?;
            let audit = AuditEntry { target_id: Some(id.clone()), ..audit.clone() };
            write_audit!(&mut *tx, &audit);
            tx.commit().await?;
            Ok((id, row.try_get("created_at")?))
        })
    }

    pub async fn delete_oauth_app(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        with_pool!(self, pool => audited_change!(pool, sqlx::query("DELETE FROM oauth_apps WHERE id = $1").bind(id), audit))
    }

    pub async fn insert_oauth_state(&self, state: &OAuthStateRow) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO oauth_states (state_hash, provider, base_url, label, created_at, expires_at_unix,
                    verifier_key_id, verifier_nonce, verifier_ciphertext, browser_hash, session_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&state.state_hash)
            .bind(&state.provider)
            .bind(&state.base_url)
            .bind(&state.label)
            .bind(state.created_at)
            .bind(state.expires_at_unix)
            .bind(&state.verifier.key_id)
            .bind(&state.verifier.nonce)
            .bind(&state.verifier.ciphertext)
            .bind(&state.browser_hash)
            .bind(&state.session_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Removes and returns a state in one statement: a state is spent by
    /// the first callback that presents it, even when two arrive at once.
    pub async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthStateRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("DELETE FROM oauth_states WHERE state_hash = $1 RETURNING *")
                .bind(state_hash)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Forgets authorizations that expired unused.
    pub async fn delete_expired_oauth_states(&self, now_unix: i64) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM oauth_states WHERE expires_at_unix < $1")
                .bind(now_unix)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    pub async fn close(&self) {
        with_pool!(self, pool => {
            pool.close().await;
        })
    }
}

fn sqlite_migrator() -> &'static Migrator {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
    &MIGRATOR
}

fn postgres_migrator() -> &'static Migrator {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
    &MIGRATOR
}

/// Creates the database file 0600 before SQLite does (SQLite gives its WAL
/// and shared-memory files the database file's mode), and narrows files an
/// earlier version left 0644.
fn private_database_files(db: &Path) -> Result<(), StoreError> {
    let wrap = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Permissions { path, source }
    };
    crate::files::create_private_file(db).map_err(wrap(db))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = Path::new(&name);
        crate::files::make_private(path).map_err(wrap(path))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A connected integration with a dummy sealed secret.
    pub(crate) fn row(id: &str) -> IntegrationRow {
        let now = Timestamp::parse("2026-11-26T10:00:00Z").unwrap();
        IntegrationRow {
            id: id.into(),
            provider: "p".into(),
            label: None,
            status: Status::Connected,
            base_url: "https://example.com".into(),
            account_id: "1".into(),
            account: Json(Account {
                id: "1".into(),
                username: "u".into(),
                name: None,
                email: None,
                web_url: None,
                avatar_url: None,
            }),
            scopes: Json(vec!["api".into()]),
            missing_scopes: Json(vec![]),
            token_kind: None,
            token_hint: None,
            token_expires_at: None,
            created_at: now,
            updated_at: now,
            last_verified_at: None,
            last_error: None,
            secret: Sealed { key_id: "k".into(), nonce: vec![0; 12], ciphertext: vec![1, 2, 3] },
            refresh: Some(Sealed { key_id: "k".into(), nonce: vec![0; 12], ciphertext: vec![9] }),
            reach: None,
            scope: None,
            expiry_notified_for: None,
            rotation_started_at: None,
            owner: Owner::default(),
        }
    }

    fn sealed(byte: u8) -> Sealed {
        Sealed { key_id: "k".into(), nonce: vec![0; 12], ciphertext: vec![byte] }
    }

    /// Every existing SQLite database recorded these versions and
    /// checksums when it applied them; a changed or renumbered one would
    /// make it refuse to start. (The files moved to migrations/sqlite
    /// unchanged when PostgreSQL came.)
    #[test]
    fn released_sqlite_migrations_keep_their_versions_and_checksums() {
        let released = [
            (
                20261124000001,
                "ddab906cf64dd0e8d885c46ed1c231401e53b7bbd55d64f0933f6b1b8803966b6bfff8f6c4897035c7edb42a277a7006",
            ),
            (
                20261125000001,
                "35d72ea21b541021bde0170ee381b3ba62768339ae31c883acc1da57c45443da2cd8b35fafb7432ea41e0a5ed76d9e1b",
            ),
            (
                20261126000001,
                "5da4a04c2346d7426e1fd0a63b22c94a0a87e38afab30df5802ce35476b1a9ff6a032626bcbc1498fe24e41310a7c306",
            ),
            (
                20261127000001,
                "f87d97b8d30af37b2682a78af188573cac5cad2c88241353cb2d001b2a6cbe57e6e46213bcfa330cb35538d382ce93fb",
            ),
            (
                20261128000001,
                "ceca8385c546e31f8de5d70f3a8acd43f333c53c8afc205a48272638a40201e18bf4722478722c561db1cdd4d71475fb",
            ),
            (
                20261129000001,
                "22401c06836110965b691625b4eba59fdde407ded5c72f0cf3b498ab5a84080af136a8742f824f213a14f78a8c13d948",
            ),
            (
                20261130000001,
                "0d93c75ab778498e330f082dd421632f7d8787726ecc111c5d0e369ec47d3a63240905c590a8027cb1b8c553c174264a",
            ),
        ];
        let known: Vec<(i64, String)> = sqlite_migrator()
            .iter()
            .map(|m| (m.version, m.checksum.iter().map(|b| format!("{b:02x}")).collect()))
            .collect();
        for (version, checksum) in released {
            assert!(known.contains(&(version, checksum.to_string())), "migration {version} changed");
        }
        // Both backends know the same versions from the first PostgreSQL one on.
        let postgres: Vec<i64> = postgres_migrator().iter().map(|m| m.version).collect();
        let sqlite_since: Vec<i64> = known.iter().map(|k| k.0).filter(|v| *v >= postgres[0]).collect();
        assert_eq!(postgres, sqlite_since);
    }

    #[test]
    fn an_unreachable_database_is_told_from_a_failing_one() {
        let unavailable = [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ];
        for e in unavailable {
            assert!(StoreError::Database(e).is_unavailable());
        }
        assert!(StoreError::Unmigrated { applied: 7, known: 8 }.is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Corrupt { id: "a".into(), why: "b".into() }.is_unavailable());
    }

    #[tokio::test]
    async fn a_postgres_url_that_answers_nothing_is_unavailable() {
        let limits = PoolOptions { acquire_timeout: Duration::from_millis(500), ..PoolOptions::default() };
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://gatehouse@127.0.0.1:{port}/gatehouse");
        let Err(e) = Store::open_with(Some(&url), dir.path(), &limits).await else { panic!("opened") };
        assert!(e.is_unavailable(), "{e}");
        let Err(e) = Store::open(Some("mysql://localhost/db"), dir.path()).await else { panic!("opened") };
        assert!(matches!(e, StoreError::UnsupportedUrl(ref s) if s == "mysql"), "{e}");
    }

    #[tokio::test]
    async fn commits_are_synced_and_the_files_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        assert_eq!(store.synchronous().await.unwrap(), Some(2), "synchronous=FULL");
        store.insert(&row("a"), &audit::tests::entry()).await.unwrap();
        #[cfg(unix)]
        for name in ["gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }

    #[tokio::test]
    async fn a_row_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        let mut written = row("a");
        written.last_error = Some(Json(crate::error::AppError::NotFound("gone".into()).problem()));
        assert!(store.insert(&written, &audit::tests::entry()).await.unwrap());
        let read = store.get("a").await.unwrap().unwrap();
        assert_eq!(read.status, Status::Connected);
        assert_eq!(read.account.0, written.account.0);
        assert_eq!(read.scopes.0, vec!["api".to_string()]);
        assert_eq!(read.created_at, written.created_at);
        assert_eq!(read.last_error.unwrap().0.code, "not_found");
        assert_eq!(read.refresh.unwrap().ciphertext, vec![9]);
        // The same account again is not a second row.
        assert!(!store.insert(&row("b"), &audit::tests::entry()).await.unwrap());
    }

    #[tokio::test]
    async fn a_check_never_writes_credentials_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        store.insert(&row("a"), &audit::tests::entry()).await.unwrap();
        // A refresh lands while a re-verify is running…
        let renewed = Refresh::Renewed {
            token_hint: None,
            token_expires_at: None,
            scopes: None,
            secret: sealed(7),
            refresh: sealed(8),
        };
        assert!(store.store_refresh("a", &sealed(9), &renewed, &audit::tests::entry()).await.unwrap().is_some());
        // …then the re-verify records its verdict: the new pair stands.
        let checked = Checked {
            status: Status::Invalid,
            account: None,
            scopes: None,
            token: None,
            verified: true,
            last_error: None,
            reach: None,
        };
        let after = store.record_check("a", &checked).await.unwrap().unwrap();
        assert_eq!(after.status, Status::Invalid);
        assert_eq!(after.secret.ciphertext, vec![7]);
        assert_eq!(after.refresh.unwrap().ciphertext, vec![8]);
        assert!(after.last_verified_at.is_some());
    }

    #[tokio::test]
    async fn an_expiry_is_announced_once_and_a_new_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        let mut written = row("a");
        let first = Timestamp::parse("2026-12-01T00:00:00Z").unwrap();
        written.token_expires_at = Some(first);
        store.insert(&written, &audit::tests::entry()).await.unwrap();
        assert!(store.announce_expiry("a", first, &[]).await.unwrap());
        assert!(!store.announce_expiry("a", first, &[]).await.unwrap(), "the same expiry twice");
        assert_eq!(store.get("a").await.unwrap().unwrap().expiry_notified_for, Some(first));
        // Not an expiry the row has (it changed meanwhile): nothing.
        let other = Timestamp::parse("2027-01-01T00:00:00Z").unwrap();
        assert!(!store.announce_expiry("a", other, &[]).await.unwrap());
        let rotated = store.store_rotation("a", &sealed(5), Some("abcd"), Some(other)).await.unwrap().unwrap();
        assert_eq!((rotated.token_expires_at, rotated.rotation_started_at), (Some(other), None));
        assert!(store.announce_expiry("a", other, &[]).await.unwrap(), "a new expiry is announced again");
    }

    #[tokio::test]
    async fn a_rotation_in_flight_is_visible_until_it_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        store.insert(&row("a"), &audit::tests::entry()).await.unwrap();
        assert!(store.begin_rotation("a").await.unwrap());
        assert!(store.get("a").await.unwrap().unwrap().rotation_started_at.is_some());
        store.abandon_rotation("a").await.unwrap();
        assert!(store.get("a").await.unwrap().unwrap().rotation_started_at.is_none());
        assert!(store.begin_rotation("a").await.unwrap());
        let stored = store.store_rotation("a", &sealed(6), None, None).await.unwrap().unwrap();
        assert!(stored.rotation_started_at.is_none());
        assert_eq!(stored.secret.ciphertext, vec![6]);
        assert!(!store.begin_rotation("gone").await.unwrap());
    }

    #[tokio::test]
    async fn a_spent_refresh_token_loses_the_race() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        store.insert(&row("a"), &audit::tests::entry()).await.unwrap();
        let renewed = |b| Refresh::Renewed {
            token_hint: None,
            token_expires_at: None,
            scopes: Some(vec!["read_api".into()]),
            secret: sealed(b),
            refresh: sealed(b + 1),
        };
        assert!(store.store_refresh("a", &sealed(9), &renewed(10), &audit::tests::entry()).await.unwrap().is_some());
        // A second writer that spent the same refresh token learns it lost.
        assert!(store.store_refresh("a", &sealed(9), &renewed(20), &audit::tests::entry()).await.unwrap().is_none());
        let refused = Refresh::Refused { last_error: crate::error::AppError::NotFound("x".into()).problem() };
        let expired = store.store_refresh("a", &sealed(11), &refused, &audit::tests::entry()).await.unwrap().unwrap();
        assert_eq!(expired.status, Status::Expired);
        assert!(expired.refresh.is_none());
        assert_eq!(expired.secret.ciphertext, vec![10]);
        assert_eq!(expired.scopes.0, vec!["read_api".to_string()]);
    }
}
