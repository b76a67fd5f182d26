//! Outgoing webhooks: the consuming system registers a URL and gets a
//! signing secret once; when a sync changes something (or fails) a JSON
//! event is POSTed, signed as the Standard Webhooks specification says
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
//! HMAC-SHA256 of "id.timestamp.body">`), and retried with backoff. Every
//! attempt is in the delivery log. End users' connections being created,
//! failing and being deleted are events too.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::{
    clock::now,
    context::{self, Target},
    crypto::{Binding, CryptoError},
    error::AppError,
    services::shared::Shared,
    store::webhooks::{Attempted, DeliveryRow, WebhookRow},
};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 8;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Webhooks {
    shared: Arc<Shared>,
    client: reqwest::Client,
    /// Delay before the first retry; each later one waits five times longer.
    first_retry: Duration,
    wake: Notify,
}

impl Webhooks {
    pub(super) fn new(shared: Arc<Shared>, first_retry: Duration) -> anyhow::Result<Self> {
        // The consuming system is the operator's own, often on an internal
        // network, so the connectors' egress policy does not apply; redirects
        // are not followed, so a signed event goes only where it was sent.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(DELIVERY_TIMEOUT)
            .no_proxy()
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { shared, client, first_retry, wake: Notify::new() })
    }

    /// Registers a URL; answers the row and the secret, shown this once.
    pub async fn create(&self, url: &str) -> Result<(WebhookRow, SecretString), AppError> {
        let parsed = url::Url::parse(url.trim()).map_err(|_| {
            AppError::Validation(
                "url must be an absolute http(s) URL such as https://app.example.com/hooks/gatehouse.".into(),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() || parsed.fragment().is_some() {
            return Err(AppError::Validation("url must be an absolute http(s) URL without a fragment.".into()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(AppError::Validation(
                "url must not carry a user name or password; events are signed instead.".into(),
            ));
        }
        let mut raw = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let secret = SecretString::from(format!("whsec_{}", STANDARD.encode(raw)));
        let id = uuid::Uuid::new_v4().to_string();
        let row = WebhookRow {
            secret: self.shared.key.seal(Binding::Webhook(&id), secret.expose_secret()),
            id,
            url: parsed.to_string(),
            created_at: now().1,
        };
        let audit = context::audit_entry("webhook.create", Target::webhook(Some(&row.id)), "ok");
        self.shared.store.insert_webhook(&row, &audit).await?;
        Ok((row, secret))
    }

    pub async fn list(&self) -> Result<Vec<WebhookRow>, AppError> {
        Ok(self.shared.store.webhooks().await?)
    }

    pub async fn ids(&self) -> Result<Vec<String>, AppError> {
        Ok(self.list().await?.into_iter().map(|w| w.id).collect())
    }

    pub async fn delete(&self, id: &str) -> Result<(), AppError> {
        let audit = context::audit_entry("webhook.delete", Target::webhook(Some(id)), "ok");
        if self.shared.store.delete_webhook(id, &audit).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("No webhook {id}; GET /api/v1/webhooks lists them.")))
        }
    }

    pub async fn deliveries(&self, id: &str, limit: i64) -> Result<Vec<DeliveryRow>, AppError> {
        if self.shared.store.webhook(id).await?.is_none() {
            return Err(AppError::NotFound(format!("No webhook {id}; GET /api/v1/webhooks lists them.")));
        }
        Ok(self.shared.store.deliveries(id, limit).await?)
    }

    /// Tells every webhook about a connection of an end user: created,
    /// failed (a connect, an authorization or a re-check that did not
    /// succeed) or deleted. A failure to queue is logged, never the
    /// caller's error: the connection itself did change.
    pub async fn connection_event(&self, kind: ConnectionEvent, data: serde_json::Value) {
        let (now_unix, now_text) = now();
        let payload = serde_json::json!({"type": kind.as_str(), "timestamp": now_text, "data": data}).to_string();
        match self.shared.store.enqueue_event(kind.as_str(), &payload, &now_text, now_unix).await {
            Ok(()) => self.wake(),
            Err(e) => tracing::warn!(error = %e, event = kind.as_str(), "cannot queue a webhook event"),
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers due events until the process stops.
    pub async fn deliver_in_background(self: Arc<Self>, poll: Duration) {
        loop {
            self.deliver_due().await;
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    async fn deliver_due(&self) {
        let (now, _) = now();
        let claimed = match self.shared.store.claim_deliveries(now, now + 60, 32).await {
            Ok(claimed) => claimed,
            Err(e) => return tracing::warn!(error = %e, "cannot read due webhook deliveries"),
        };
        for (delivery, webhook) in claimed {
            let attempt = self.attempt(&delivery, &webhook).await;
            if let Err(e) = self.shared.store.record_attempt(&delivery.id, &attempt).await {
                tracing::warn!(error = %e, "cannot record a webhook attempt");
            }
        }
    }

    async fn attempt(&self, delivery: &DeliveryRow, webhook: &WebhookRow) -> Attempted {
        let (now, now_text) = now();
        let result = match self.secret(webhook) {
            Ok(secret) => {
                let timestamp = now.to_string();
                let signature = sign(&secret, &delivery.id, &timestamp, &delivery.payload_json);
                self.client
                    .post(&webhook.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &delivery.id)
                    .header("webhook-timestamp", &timestamp)
                    .header("webhook-signature", signature)
                    .body(delivery.payload_json.clone())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.without_url().to_string())
            }
            Err(e) => Err(format!("the signing secret cannot be opened: {e}")),
        };
        let attempts = delivery.attempts + 1;
        match result {
            Ok(code) if (200..300).contains(&code) => Attempted {
                status: "delivered",
                next_attempt_at: now,
                status_code: Some(code),
                error: None,
                delivered_at: Some(now_text),
            },
            outcome => {
                let (code, error) = match outcome {
                    Ok(code) => (Some(code), Some(format!("the receiver answered {code}"))),
                    Err(e) => (None, Some(e)),
                };
                let give_up = attempts >= MAX_ATTEMPTS;
                let wait = self.first_retry.as_secs().max(1) as i64 * 5_i64.pow((attempts - 1).min(6) as u32);
                Attempted {
                    status: if give_up { "failed" } else { "pending" },
                    next_attempt_at: now + wait,
                    status_code: code,
                    error,
                    delivered_at: None,
                }
            }
        }
    }

    fn secret(&self, webhook: &WebhookRow) -> Result<Vec<u8>, CryptoError> {
        let text = self.shared.key.open(Binding::Webhook(&webhook.id), &webhook.secret)?;
        STANDARD.decode(text.expose_secret().trim_start_matches("whsec_")).map_err(|_| CryptoError::Open)
    }
}

/// What happened to an end user's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEvent {
    Created,
    Failed,
    Deleted,
}

impl ConnectionEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "connection.created",
            Self::Failed => "connection.failed",
            Self::Deleted => "connection.deleted",
        }
    }
}

/// `v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>`.
pub fn sign(secret: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
