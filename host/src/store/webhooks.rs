//! Outgoing webhooks and their delivery log. Deliveries are claimed through
//! a lease (one statement), so each attempt is made by one process.

use sqlx::Row;

use super::{
    Store, StoreError,
    audit::AuditEntry,
    syncs::{NewDelivery, insert_delivery},
};
use crate::crypto::Sealed;

#[derive(Clone)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub created_at: String,
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

fn webhook_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<WebhookRow, StoreError> {
    Ok(WebhookRow {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        created_at: row.try_get("created_at")?,
        secret: Sealed {
            key_id: row.try_get("secret_key_id")?,
            nonce: row.try_get("secret_nonce")?,
            ciphertext: row.try_get("secret_ciphertext")?,
        },
    })
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
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM webhooks").fetch_all(&mut *tx).await?;
        for delivery in NewDelivery::to_each(&ids, event_type, payload_json.to_string()) {
            insert_delivery(&mut tx, &delivery, now_text, now_unix).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_webhook(&self, w: &WebhookRow, audit: &AuditEntry) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO webhooks (id, url, created_at, secret_key_id, secret_nonce, secret_ciphertext)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&w.id)
        .bind(&w.url)
        .bind(&w.created_at)
        .bind(&w.secret.key_id)
        .bind(&w.secret.nonce)
        .bind(&w.secret.ciphertext);
        self.audited_change(query, audit).await?;
        Ok(())
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM webhooks ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(webhook_from_row).collect()
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// Deletes the webhook; its secret and delivery log go with it.
    pub async fn delete_webhook(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        self.audited_change(sqlx::query("DELETE FROM webhooks WHERE id = ?").bind(id), audit).await
    }

    /// Takes up to `limit` due deliveries for this process until
    /// `lease_until`.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<(DeliveryRow, WebhookRow)>, StoreError> {
        // A read first: with nothing due, the poll takes no write lock.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?1
               AND (lease_expires_at IS NULL OR lease_expires_at < ?1) LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let claimed: Vec<DeliveryRow> = sqlx::query_as(
            "UPDATE webhook_deliveries SET lease_expires_at = ?1
             WHERE id IN (SELECT id FROM webhook_deliveries
                          WHERE status = 'pending' AND next_attempt_at <= ?2
                            AND (lease_expires_at IS NULL OR lease_expires_at < ?2)
                          ORDER BY next_attempt_at LIMIT ?3)
             RETURNING id, webhook_id, event_type, payload_json, status, attempts, next_attempt_at,
                       last_status_code, last_error, created_at, delivered_at",
        )
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for d in claimed {
            if let Some(w) = self.webhook(&d.webhook_id).await? {
                out.push((d, w));
            }
        }
        Ok(out)
    }

    pub async fn record_attempt(&self, id: &str, a: &Attempted) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?,
                last_status_code = ?, last_error = ?, delivered_at = ?, lease_expires_at = NULL
             WHERE id = ?",
        )
        .bind(a.status)
        .bind(a.next_attempt_at)
        .bind(a.status_code.map(i64::from))
        .bind(&a.error)
        .bind(&a.delivered_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest deliveries of a webhook first.
    pub async fn deliveries(&self, webhook_id: &str, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, webhook_id, event_type, payload_json, status, attempts, next_attempt_at, last_status_code,
                    last_error, created_at, delivered_at
             FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
        )
        .bind(webhook_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
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
        let query = sqlx::query(
            "INSERT INTO inbound_webhooks (integration_id, created_at, secret_key_id, secret_nonce, secret_ciphertext)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (integration_id) DO UPDATE SET created_at = excluded.created_at,
                secret_key_id = excluded.secret_key_id, secret_nonce = excluded.secret_nonce,
                secret_ciphertext = excluded.secret_ciphertext",
        )
        .bind(integration_id)
        .bind(now)
        .bind(&secret.key_id)
        .bind(&secret.nonce)
        .bind(&secret.ciphertext);
        self.audited_change(query, audit).await?;
        Ok(())
    }

    pub async fn inbound_secret(&self, integration_id: &str) -> Result<Option<Sealed>, StoreError> {
        let row = sqlx::query("SELECT * FROM inbound_webhooks WHERE integration_id = ?")
            .bind(integration_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Sealed {
                key_id: row.try_get("secret_key_id")?,
                nonce: row.try_get("secret_nonce")?,
                ciphertext: row.try_get("secret_ciphertext")?,
            })
        })
        .transpose()
    }

    pub async fn delete_inbound(&self, integration_id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let query = sqlx::query("DELETE FROM inbound_webhooks WHERE integration_id = ?").bind(integration_id);
        self.audited_change(query, audit).await
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
        sqlx::query("DELETE FROM inbound_deliveries WHERE received_unix < ?")
            .bind(forget_before)
            .execute(&self.pool)
            .await?;
        let done = sqlx::query(
            "INSERT INTO inbound_deliveries (integration_id, idempotency_key, received_unix) VALUES (?, ?, ?)
             ON CONFLICT (integration_id, idempotency_key) DO NOTHING",
        )
        .bind(integration_id)
        .bind(key)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
