//! Expiry ahead of time: a connected integration whose credential expires
//! within the warning window (`--expiry-warning`) and that Gatehouse cannot
//! refresh itself is shown as `expiring`
//! with a sentence naming the date, and a background watch sends every
//! webhook one `integration.expiring` event per expiry (a new credential
//! with a new expiry is announced again when its own window opens).

use std::{sync::Arc, time::Duration};

use crate::{
    clock::Timestamp,
    error::AppError,
    services::{shared::Shared, webhooks::Webhooks},
    store::{IntegrationRow, Status, syncs::NewDelivery},
};

pub struct Expiry {
    shared: Arc<Shared>,
    webhooks: Arc<Webhooks>,
    window: Duration,
}

impl Expiry {
    pub(super) fn new(shared: Arc<Shared>, webhooks: Arc<Webhooks>, window: Duration) -> Self {
        Self { shared, webhooks, window }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether `row` is connected with a credential that expires within the
    /// window (and has not expired yet: then a check says `expired`). A
    /// refreshable credential is renewed before it expires, so its short
    /// life is no warning.
    pub fn is_expiring(&self, row: &IntegrationRow) -> bool {
        row.status == Status::Connected
            && row.refresh.is_none()
            && row.token_expires_at.is_some_and(|at| at.unix() > Timestamp::now().unix() && at.within(self.window))
    }

    /// The sentence shown with an `expiring` integration.
    pub fn warning(&self, row: &IntegrationRow) -> Option<String> {
        let at = row.token_expires_at.filter(|_| self.is_expiring(row))?;
        let days = (at.unix() - Timestamp::now().unix()).div_euclid(86_400);
        let when = match days {
            0 => "within a day".to_string(),
            1 => "in 1 day".to_string(),
            n => format!("in {n} days"),
        };
        let date = at.to_string();
        Some(format!(
            "The token expires at {date} ({when}); regenerate it (POST /api/v1/integrations/{}/rotate, where the connector can) or replace it with a new one before then.",
            row.id
        ))
    }

    /// Sends the events due now; answers how many integrations were
    /// announced.
    pub async fn announce_due(&self) -> Result<usize, AppError> {
        let rows = self.shared.store.with_expiry().await?;
        let webhooks = self.webhooks.ids().await?;
        let mut announced = 0;
        for row in rows.iter().filter(|r| self.is_expiring(r)) {
            let Some(expires_at) = row.token_expires_at else { continue };
            if row.expiry_notified_for == Some(expires_at) {
                continue;
            }
            let deliveries = expiring_deliveries(&webhooks, row, expires_at);
            if self.shared.store.announce_expiry(&row.id, expires_at, &deliveries).await? {
                announced += 1;
            }
        }
        if announced > 0 {
            self.webhooks.wake();
        }
        Ok(announced)
    }

    /// Looks for expiring credentials every `interval` until the process stops.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        loop {
            if let Err(e) = self.announce_due().await {
                tracing::warn!(error = %e, "cannot check for expiring credentials");
            }
            tokio::time::sleep(interval).await;
        }
    }
}

fn expiring_deliveries(webhooks: &[String], row: &IntegrationRow, expires_at: Timestamp) -> Vec<NewDelivery> {
    let payload = serde_json::json!({
        "type": "integration.expiring",
        "timestamp": Timestamp::now().to_string(),
        "data": {
            "integration_id": row.id,
            "provider": row.provider,
            "label": row.label,
            "account": row.account.0.username,
            "token_expires_at": expires_at.to_string(),
            "integration_url": format!("/api/v1/integrations/{}", row.id),
        }
    })
    .to_string();
    NewDelivery::to_each(webhooks, "integration.expiring", payload)
}
