//! Outgoing webhooks and their delivery log. Deliveries are claimed through
//! a lease with an expiry (one statement; on PostgreSQL `FOR UPDATE SKIP
//! LOCKED`), so each attempt is made by one process, and a dead process's
//! claims are taken over once their lease has run out.

use super::{SecretColumns, Store, StoreError, audit::AuditEntry, syncs::NewDelivery};
use crate::crypto::Sealed;

#[derive(Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub created_at: String,
    #[sqlx(flatten, try_from = "SecretColumns")]
    pub secret: Sealed,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub payload_json: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

/// How an attempt ended.
pub struct Attempted {
    pub status: &'static str,
    pub next_attempt_at: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub delivered_at: Option<String>,
}

impl Store {
    /// Queues one event for every registered webhook, in one transaction.
    pub async fn enqueue_event(
        &self,
        event_type: &str,
        payload_json: &str,
        now_text: &str,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM webhooks").fetch_all(&mut *tx).await?;
            for delivery in NewDelivery::to_each(&ids, event_type, payload_json.to_string()) {
                insert_delivery!(tx, &delivery, now_text, now_unix);
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn insert_webhook(&self, w: &WebhookRow, audit: &AuditEntry) -> Result<(), StoreError> {
        with_pool!(self, pool => {
        let query = sqlx::query(
            "INSERT INTO webhooks (id, url, created_at, secret_key_id, secret_nonce, secret_ciphertext)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&w.id)
        .bind(&w.url)
        .bind(&w.created_at)
        .bind(&w.secret.key_id)
        .bind(&w.secret.nonce)
        .bind(&w.secret.ciphertext);
        audited_change!(pool, query, audit)?;
        Ok(())
        })
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM webhooks ORDER BY created_at, id").fetch_all(pool).await?)
        })
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM webhooks WHERE id = $1").bind(id).fetch_optional(pool).await?)
        })
    }

    /// Deletes the webhook; its secret and delivery log go with it.
    pub async fn delete_webhook(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        with_pool!(self, pool => audited_change!(pool, sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id), audit))
    }

    /// Takes up to `limit` due deliveries for this process until
    /// `lease_until`.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<(DeliveryRow, WebhookRow)>, StoreError> {
        with_pool!(self, pool => {
            // A read first: with nothing due, the poll takes no write lock.
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1
                   AND (lease_expires_at IS NULL OR lease_expires_at < $1) LIMIT 1",
            )
            .bind(now)
            .fetch_optional(pool)
            .await?;
            if due.is_none() {
                return Ok(Vec::new());
            }
            // PostgreSQL: rows another process is claiming right now are
            // skipped rather than waited for (SQLite has one writer anyway).
            let sql = format!(
                "UPDATE webhook_deliveries SET lease_expires_at = $1
                 WHERE id IN (SELECT id FROM webhook_deliveries
                              WHERE status = 'pending' AND next_attempt_at <= $2
                                AND (lease_expires_at IS NULL OR lease_expires_at < $2)
                              ORDER BY next_attempt_at LIMIT $3{})
                 RETURNING id, webhook_id, event_type, payload_json, status, attempts, next_attempt_at,
                           last_status_code, last_error, created_at, delivered_at",
                if super::is_postgres(pool) { " FOR UPDATE SKIP LOCKED" } else { "" }
            );
            let claimed: Vec<DeliveryRow> = sqlx::query_as(&sql)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::new();
            for d in claimed {
                if let Some(w) = self.webhook(&d.webhook_id).await? {
                    out.push((d, w));
                }
            }
            Ok(out)
        })
    }

    pub async fn record_attempt(&self, id: &str, a: &Attempted) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2,
                    last_status_code = $3, last_error = $4, delivered_at = $5, lease_expires_at = NULL
                 WHERE id = $6",
            )
            .bind(a.status)
            .bind(a.next_attempt_at)
            .bind(a.status_code.map(i64::from))
            .bind(&a.error)
            .bind(&a.delivered_at)
            .bind(id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The newest deliveries of a webhook first.
    pub async fn deliveries(&self, webhook_id: &str, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT id, webhook_id, event_type, payload_json, status, attempts, next_attempt_at, last_status_code,
                        last_error, created_at, delivered_at
                 FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at DESC, rowid DESC LIMIT $2",
            )
            .bind(webhook_id)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }
}

impl Store {
    /// Sets (or replaces) a connection's inbound webhook token.
    pub async fn set_inbound_secret(
        &self,
        integration_id: &str,
        secret: &Sealed,
        now: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        with_pool!(self, pool => {
        let query = sqlx::query(
            "INSERT INTO inbound_webhooks (integration_id, created_at, secret_key_id, secret_nonce, secret_ciphertext)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (integration_id) DO UPDATE SET created_at = excluded.created_at,
                secret_key_id = excluded.secret_key_id, secret_nonce = excluded.secret_nonce,
                secret_ciphertext = excluded.secret_ciphertext",
        )
        .bind(integration_id)
        .bind(now)
        .bind(&secret.key_id)
        .bind(&secret.nonce)
        .bind(&secret.ciphertext);
        audited_change!(pool, query, audit)?;
        Ok(())
        })
    }

    pub async fn inbound_secret(&self, integration_id: &str) -> Result<Option<Sealed>, StoreError> {
        with_pool!(self, pool => {
            let row: Option<SecretColumns> = sqlx::query_as("SELECT * FROM inbound_webhooks WHERE integration_id = $1")
                .bind(integration_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(Sealed::from))
        })
    }

    pub async fn delete_inbound(&self, integration_id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
        let query = sqlx::query("DELETE FROM inbound_webhooks WHERE integration_id = $1").bind(integration_id);
        audited_change!(pool, query, audit)
        })
    }

    /// Remembers an idempotency key; false when it was seen before. Keys
    /// older than `forget_before` are dropped on the way.
    pub async fn first_delivery(
        &self,
        integration_id: &str,
        key: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM inbound_deliveries WHERE received_unix < $1")
                .bind(forget_before)
                .execute(pool)
                .await?;
            let done = sqlx::query(
                "INSERT INTO inbound_deliveries (integration_id, idempotency_key, received_unix) VALUES ($1, $2, $3)
                 ON CONFLICT (integration_id, idempotency_key) DO NOTHING",
            )
            .bind(integration_id)
            .bind(key)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
