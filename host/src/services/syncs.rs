//! Syncs: mirroring a connection's data into the store, page by page, on a
//! schedule. The host owns time, storage, scheduling and retries; the
//! connector only answers `syncs.run(model, checkpoint, run-started-at)`
//! with a bounded page. Each page's records and checkpoint commit in one
//! transaction under a lease held in the database, so at most one process
//! runs a (connection, model) at a time and a crash resumes from the last
//! committed page. Records are validated against the model's schema and
//! stored with a content hash, so unchanged ones are not re-emitted; a
//! completed run of a full model deletes what it did not see. The change
//! feed reads records in commit order.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore};

use crate::{
    clock::now,
    context::{self, Target},
    crypto::Binding,
    error::AppError,
    runtime::model::{ProviderError, SyncModel, SyncPage},
    services::{
        integrations::{InUse, Integrations},
        shared::Shared,
        webhooks::Webhooks,
    },
    store::syncs::{Finish, Holder, NewDelivery, Page, RecordRow, SyncRow, Totals},
};

#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    /// How often the scheduler looks for due syncs; zero: never (this
    /// process only serves the API).
    pub poll: Duration,
    /// Syncs this process runs at once.
    pub concurrency: usize,
    /// How long a lease lasts without a committed page.
    pub lease: Duration,
    /// A failed run is tried again after this long (or its interval, if
    /// shorter).
    pub retry_after_failure: Duration,
    /// Pause a connection's sync when the provider's remaining budget
    /// falls to this many requests.
    pub pause_below_remaining: u64,
}

/// Pages one run may take before the host stops it as runaway.
const MAX_PAGES_PER_RUN: usize = 100_000;
/// When the provider says 429 without saying how long to wait.
const DEFAULT_RATE_LIMIT_PAUSE: i64 = 60;

/// A sync as the API shows it.
pub struct SyncStatus {
    pub row: SyncRow,
    pub model: SyncModel,
    pub records: i64,
}

/// What a connection registers at its provider.
pub struct InboundSetup {
    pub url: String,
    pub token: secrecy::SecretString,
    pub webhook: crate::runtime::model::InboundWebhook,
}

/// What a provider's webhook did.
pub struct Received {
    /// A redelivery of an event already handled.
    pub duplicate: bool,
    /// The models whose syncs it made due.
    pub models: Vec<String>,
}

/// A page of the change feed.
pub struct FeedPage {
    pub records: Vec<RecordRow>,
    pub next_cursor: i64,
}

pub struct Syncs {
    shared: Arc<Shared>,
    integrations: Arc<Integrations>,
    webhooks: Arc<Webhooks>,
    settings: SyncSettings,
    /// This process's name in leases.
    owner: String,
    wake: Notify,
    slots: Arc<Semaphore>,
    /// (integration, component hash) pairs whose sync rows exist, so the
    /// scheduler does not write them again every pass; a reloaded
    /// connector (another hash) is looked at again.
    ensured: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Syncs {
    pub(super) fn new(
        shared: Arc<Shared>,
        integrations: Arc<Integrations>,
        webhooks: Arc<Webhooks>,
        settings: SyncSettings,
    ) -> Self {
        Self {
            shared,
            integrations,
            webhooks,
            settings,
            owner: format!("gatehouse-{}", uuid::Uuid::new_v4()),
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            ensured: Default::default(),
        }
    }

    /// The connection's syncs, one per model its connector offers.
    pub async fn list(&self, id: &str) -> Result<Vec<SyncStatus>, AppError> {
        let row = self.integrations.get(id).await?;
        let plugin = self.shared.plugin(&row.provider)?;
        let models = &plugin.manifest.sync_models;
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        self.shared.store.ensure_syncs(id, &names, now().0).await?;
        let mut out = Vec::new();
        for row in self.shared.store.syncs(id).await? {
            let Some(model) = models.iter().find(|m| m.name == row.model) else { continue };
            let records = self.shared.store.record_count(id, &row.model).await?;
            out.push(SyncStatus { model: model.clone(), records, row });
        }
        Ok(out)
    }

    pub async fn status(&self, id: &str, model: &str) -> Result<SyncStatus, AppError> {
        let all = self.list(id).await?;
        let known: Vec<String> = all.iter().map(|s| s.model.name.clone()).collect();
        all.into_iter().find(|s| s.model.name == model).ok_or_else(|| {
            AppError::NotFound(if known.is_empty() {
                "This connection's connector offers no syncs.".into()
            } else {
                format!("No sync model of that name; this connection offers: {}.", known.join(", "))
            })
        })
    }

    /// Enables, disables or reschedules one model's sync.
    pub async fn configure(
        &self,
        id: &str,
        model: &str,
        enabled: Option<bool>,
        interval: Option<Option<u32>>,
    ) -> Result<SyncStatus, AppError> {
        self.status(id, model).await?;
        if let Some(Some(seconds)) = interval
            && !(10..=30 * 86_400).contains(&seconds)
        {
            return Err(AppError::Validation(
                "interval_seconds must be between 10 and 2592000 (30 days); null goes back to the connector's default."
                    .into(),
            ));
        }
        self.shared.store.configure_sync(id, model, enabled, interval.map(|i| i.map(i64::from))).await?;
        let provider = self.shared.store.get(id).await?.map(|r| r.provider).unwrap_or_default();
        self.shared.audit("sync.configure", Target::integration(id, &provider), "ok").await;
        self.wake.notify_one();
        self.status(id, model).await
    }

    /// Makes the sync due now and wakes the scheduler.
    pub async fn run_now(&self, id: &str, model: &str) -> Result<SyncStatus, AppError> {
        let status = self.status(id, model).await?;
        if !status.row.enabled {
            return Err(AppError::Validation(format!(
                "The sync of {model} is disabled; enable it first (PATCH …/syncs/{model} with {{\"enabled\": true}})."
            )));
        }
        self.shared.store.request_sync_run(id, model, now().0).await?;
        self.wake.notify_one();
        self.status(id, model).await
    }

    /// Starts the model over: no checkpoint, no interrupted run; due now.
    pub async fn reset(&self, id: &str, model: &str) -> Result<SyncStatus, AppError> {
        self.status(id, model).await?;
        if !self.shared.store.reset_sync(id, model, now().0).await? {
            return Err(AppError::Validation(format!(
                "The sync of {model} is running; reset it after the run (GET …/syncs shows its state)."
            )));
        }
        self.wake.notify_one();
        self.status(id, model).await
    }

    /// Gives the connection a URL and a new secret token for the provider's
    /// webhooks (replacing an earlier token).
    pub async fn enable_inbound(&self, id: &str) -> Result<InboundSetup, AppError> {
        let row = self.integrations.get(id).await?;
        let plugin = self.shared.plugin(&row.provider)?;
        let Some(webhook) = plugin.manifest.inbound_webhook.clone() else {
            return Err(AppError::NotFound(format!(
                "The connector {} does not take webhooks from its provider; its syncs run on their interval.",
                plugin.manifest.id
            )));
        };
        let token = crate::crypto::random_token();
        let sealed = self.shared.key.seal(Binding::InboundWebhook(id), secrecy::ExposeSecret::expose_secret(&token));
        let audit = context::audit_entry("inbound_webhook.enable", Target::integration(id, &row.provider), "ok");
        self.shared.store.set_inbound_secret(id, &sealed, &now().1, &audit).await?;
        let base = self.shared.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string());
        Ok(InboundSetup { url: format!("{}/api/v1/hooks/{id}", base.unwrap_or_default()), token, webhook })
    }

    pub async fn disable_inbound(&self, id: &str) -> Result<(), AppError> {
        let row = self.integrations.get(id).await?;
        let audit = context::audit_entry("inbound_webhook.disable", Target::integration(id, &row.provider), "ok");
        if self.shared.store.delete_inbound(id, &audit).await? {
            Ok(())
        } else {
            Err(AppError::NotFound("This connection has no inbound webhook.".into()))
        }
    }

    /// A webhook from the provider: the token is checked in constant time,
    /// a repeated delivery is dropped, and the syncs of the models the
    /// event names are made due. Answers the models it made due.
    pub async fn receive(&self, id: &str, header: impl Fn(&str) -> Option<String>) -> Result<Received, AppError> {
        let refused = || AppError::Unauthorized;
        let row = self.integrations.get(id).await.map_err(|_| refused())?;
        let plugin = self.shared.plugin(&row.provider).map_err(|_| refused())?;
        let (Some(webhook), Some(sealed)) =
            (plugin.manifest.inbound_webhook.as_ref(), self.shared.store.inbound_secret(id).await?)
        else {
            return Err(refused());
        };
        let expected = self.shared.key.open(Binding::InboundWebhook(id), &sealed)?;
        let presented = header(&webhook.token_header).unwrap_or_default();
        let expected = secrecy::ExposeSecret::expose_secret(&expected);
        if !crate::crypto::constant_time_eq(
            &crate::crypto::sha256_hex(presented.as_bytes()),
            &crate::crypto::sha256_hex(expected.as_bytes()),
        ) {
            return Err(refused());
        }
        let (now, _) = now();
        if let Some(key) =
            webhook.idempotency_header.as_deref().and_then(&header).filter(|k| !k.is_empty() && k.len() <= 200)
            && !self.shared.store.first_delivery(id, &key, now, now - 7 * 86_400).await?
        {
            return Ok(Received { duplicate: true, models: Vec::new() });
        }
        let event = header(&webhook.event_header).unwrap_or_default();
        let mut models: Vec<String> =
            webhook.events.iter().filter(|(e, _)| e.eq_ignore_ascii_case(&event)).map(|(_, m)| m.clone()).collect();
        models.dedup();
        for model in &models {
            self.shared.store.request_sync_run(id, model, now).await?;
        }
        if !models.is_empty() {
            self.wake.notify_one();
        }
        Ok(Received { duplicate: false, models })
    }

    /// Records changed after `cursor`, in commit order.
    pub async fn feed(
        &self,
        id: &str,
        model: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
        modified_after: Option<OffsetDateTime>,
    ) -> Result<FeedPage, AppError> {
        self.integrations.get(id).await?;
        let after = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                AppError::Validation(
                    "cursor is not one this API gave out; start without one to read from the beginning.".into(),
                )
            })?,
        };
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(AppError::Validation("limit must be between 1 and 1000.".into()));
        }
        let modified_after = modified_after.map(OffsetDateTime::unix_timestamp);
        let records = self.shared.store.feed(id, model, after, modified_after, i64::from(limit)).await?;
        let next_cursor = records.last().map(|r| r.seq).unwrap_or(after);
        Ok(FeedPage { records, next_cursor })
    }

    /// The scheduler: claims due syncs and runs them, at most
    /// `concurrency` at once in this process.
    pub async fn run_scheduler(self: Arc<Self>) {
        if self.settings.poll.is_zero() {
            return;
        }
        loop {
            if let Err(e) = self.clone().schedule_once().await {
                tracing::warn!(code = %e.code(), "sync scheduling failed; will retry");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    async fn schedule_once(self: Arc<Self>) -> Result<(), AppError> {
        let (now, _) = now();
        let mut current = std::collections::HashSet::new();
        for row in self.integrations.list(&super::sessions::Access::ApiKey, None, None).await? {
            let Ok(plugin) = self.shared.plugin(&row.provider) else { continue };
            let key = (row.id.clone(), plugin.sha256.clone());
            let known = self.ensured.lock().expect("not poisoned").contains(&key);
            if !known && !plugin.manifest.sync_models.is_empty() {
                let names: Vec<String> = plugin.manifest.sync_models.iter().map(|m| m.name.clone()).collect();
                self.shared.store.ensure_syncs(&row.id, &names, now).await?;
            }
            current.insert(key);
        }
        // Forget disconnected integrations and replaced connectors.
        *self.ensured.lock().expect("not poisoned") = current;
        let free = self.slots.available_permits() as i64;
        if free == 0 {
            return Ok(());
        }
        for (id, model) in self.shared.store.due_syncs(now, free).await? {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else { break };
            let (now, now_text) = self::now();
            let run_id = uuid::Uuid::new_v4().to_string();
            let claimant = self.holder(&id, &model, &run_id, now, &now_text);
            let claimed = self.shared.store.claim_sync(&claimant).await?;
            if let Some(row) = claimed {
                let this = self.clone();
                tokio::spawn(async move {
                    this.run(row).await;
                    drop(permit);
                });
            }
        }
        Ok(())
    }

    /// One run (or the rest of one a dead process left), page by page,
    /// until it completes, fails, pauses or loses its lease.
    async fn run(&self, row: SyncRow) {
        let (Some(run_id), Some(run_started_at)) = (row.run_id.clone(), row.run_started_at.clone()) else {
            return;
        };
        let id = row.integration_id.clone();
        let model_name = row.model.clone();
        let mut checkpoint = row.checkpoint.clone();
        let mut refreshed = false;
        // The run's totals so far: each page's metrics are the difference.
        let mut counted = (row.run_added, row.run_updated, row.run_deleted);
        tracing::info!(integration = %id, model = %model_name, "sync run started");
        for _ in 0..MAX_PAGES_PER_RUN {
            let (now, now_text) = now();
            let holder = self.holder(&id, &model_name, &run_id, now, &now_text);
            let in_use = match self.integrations.for_use(&id).await {
                Ok(in_use) => in_use,
                Err(e) => return self.fail(&holder, &e, None).await,
            };
            let Some(model) = in_use.plugin.manifest.sync_models.iter().find(|m| m.name == model_name).cloned() else {
                let e = AppError::NotFound(format!("The connector no longer offers the sync model {model_name}."));
                return self.fail(&holder, &e, None).await;
            };
            let outcome = self
                .shared
                .runtime
                .run_sync(
                    &in_use.plugin,
                    &model_name,
                    checkpoint.as_deref(),
                    &run_started_at,
                    &in_use.connection(),
                    &in_use.credentials,
                    &in_use.base_url,
                )
                .await;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(busy @ crate::runtime::CallError::Busy(..)) => {
                    // The host is saturated, not the connection: pause
                    // briefly instead of failing for a whole retry delay.
                    let e = AppError::Connector(busy);
                    let until = now + i64::from(e.problem().retry_after.unwrap_or(1));
                    return self.fail(&holder, &e, Some(until)).await;
                }
                Err(e) => return self.fail(&holder, &AppError::Connector(e), None).await,
            };
            let page = match outcome.page {
                Ok(page) => page,
                Err(ProviderError::RateLimited(after)) => {
                    let until = now + after.map(i64::from).unwrap_or(DEFAULT_RATE_LIMIT_PAUSE);
                    let e = AppError::Provider(ProviderError::RateLimited(after));
                    return self.fail(&holder, &e, Some(until)).await;
                }
                Err(ProviderError::Unauthorized(_)) if !refreshed => {
                    refreshed = true;
                    match self.integrations.refresh_after_rejection(&in_use.row).await {
                        Ok(Some(_)) => continue,
                        _ => {
                            let e = AppError::Provider(ProviderError::Unauthorized(
                                "The provider refused the stored credential".into(),
                            ));
                            return self.fail(&holder, &e, None).await;
                        }
                    }
                }
                Err(e) => return self.fail(&holder, &AppError::Provider(e), None).await,
            };
            let records = match checked_records(&in_use, &model, &page) {
                Ok(records) => records,
                Err(e) => return self.fail(&holder, &e, None).await,
            };
            let finish = (!page.has_more).then(|| Finish {
                detect_deletions: !model.incremental,
                next_run_at: now + self.interval(&row, &model),
            });
            // Only the page that ends the run enqueues events.
            let webhooks = if finish.is_some() { self.webhooks.ids().await.unwrap_or_default() } else { Vec::new() };
            let provider = in_use.row.provider.clone();
            let committed = self
                .shared
                .store
                .commit_page(
                    &holder,
                    &Page { records, deleted: page.deleted.clone(), checkpoint: page.checkpoint.clone() },
                    finish.as_ref(),
                    |totals| {
                        if totals.changed() {
                            completed_deliveries(&webhooks, &id, &provider, &model_name, &totals, &now_text)
                        } else {
                            Vec::new()
                        }
                    },
                )
                .await;
            if let Ok(Some(totals)) = &committed {
                let delta = |now: i64, before: i64| u64::try_from(now - before).unwrap_or(0);
                crate::metrics::sync_records(
                    &provider,
                    &model_name,
                    delta(totals.added, counted.0),
                    delta(totals.updated, counted.1),
                    delta(totals.deleted, counted.2),
                );
                counted = (totals.added, totals.updated, totals.deleted);
            }
            match committed {
                Ok(Some(totals)) if finish.is_some() => {
                    crate::metrics::sync_run(&provider, &model_name, "completed");
                    tracing::info!(
                        integration = %id, model = %model_name, added = totals.added, updated = totals.updated,
                        deleted = totals.deleted, "sync run completed"
                    );
                    self.webhooks.wake();
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::info!(integration = %id, model = %model_name, "sync lease lost; another process or a disconnect took it");
                    return;
                }
                Err(e) => return self.fail(&holder, &AppError::Store(e), None).await,
            }
            checkpoint = page.checkpoint;
            // The provider says its budget is nearly spent: pause until it
            // resets instead of running into 429s.
            if let Some(budget) = outcome.budget
                && budget.remaining <= self.settings.pause_below_remaining
            {
                let until = budget.reset_at.filter(|r| *r > now).unwrap_or(now + DEFAULT_RATE_LIMIT_PAUSE);
                let e = AppError::Provider(ProviderError::RateLimited(Some((until - now) as u32)));
                let (now, now_text) = self::now();
                let holder = Holder { now_text: &now_text, now_unix: now, ..holder };
                return self.fail(&holder, &e, Some(until)).await;
            }
        }
        let (now, now_text) = now();
        let holder = self.holder(&id, &model_name, &run_id, now, &now_text);
        let e = AppError::Connector(crate::runtime::CallError::Failed(format!(
            "the sync of {model_name} did not end after {MAX_PAGES_PER_RUN} pages"
        )));
        self.fail(&holder, &e, None).await
    }

    /// This process holding `run_id` of (`id`, `model`) at `now`, its lease
    /// running one lease period from then.
    fn holder<'a>(&'a self, id: &'a str, model: &'a str, run_id: &'a str, now: i64, now_text: &'a str) -> Holder<'a> {
        Holder {
            integration_id: id,
            model,
            owner: &self.owner,
            run_id,
            lease_until: now + self.settings.lease.as_secs() as i64,
            now_text,
            now_unix: now,
        }
    }

    fn interval(&self, row: &SyncRow, model: &SyncModel) -> i64 {
        row.interval_seconds.unwrap_or(i64::from(model.default_interval_seconds)).max(1)
    }

    /// Ends the attempt: paused until `paused_until` (rate limit, busy host), else
    /// failed and retried later. The run and its checkpoint stay, so the
    /// next attempt continues it.
    async fn fail(&self, holder: &Holder<'_>, e: &AppError, paused_until: Option<i64>) {
        let problem = e.problem();
        let (state, next_run_at) = match paused_until {
            Some(until) => ("paused", until),
            None => ("failed", holder.now_unix + self.settings.retry_after_failure.as_secs() as i64),
        };
        tracing::warn!(
            integration = %holder.integration_id, model = %holder.model, code = %problem.code, state,
            "sync run stopped"
        );
        let error_json = serde_json::to_string(&problem).expect("a problem serialises");
        let provider = self.integrations.get(holder.integration_id).await.map(|r| r.provider).unwrap_or_default();
        crate::metrics::sync_run(&provider, holder.model, state);
        let deliveries = if paused_until.is_none() {
            let webhooks = self.webhooks.ids().await.unwrap_or_default();
            let payload = serde_json::json!({
                "type": "sync.failed",
                "timestamp": holder.now_text,
                "data": {
                    "integration_id": holder.integration_id,
                    "provider": provider,
                    "model": holder.model,
                    "error": problem,
                }
            })
            .to_string();
            NewDelivery::to_each(&webhooks, "sync.failed", payload)
        } else {
            Vec::new()
        };
        match self.shared.store.release_sync(holder, state, &error_json, next_run_at, paused_until, deliveries).await {
            Ok(_) => self.webhooks.wake(),
            Err(e) => tracing::warn!(error = %e, "cannot record the sync's failure; its lease will expire"),
        }
    }
}

/// Each record parsed, checked against the model's schema and hashed over
/// its canonical JSON (sorted keys), so the same content always hashes the
/// same whatever the connector's key order.
fn checked_records(
    in_use: &InUse,
    model: &SyncModel,
    page: &SyncPage,
) -> Result<Vec<(String, String, String)>, AppError> {
    let validator = in_use.plugin.record_schemas.get(&model.name);
    let plugin = &in_use.plugin.manifest.id;
    let mut out = Vec::with_capacity(page.records.len());
    for (external_id, data) in &page.records {
        if external_id.is_empty() || external_id.len() > 512 {
            return Err(AppError::Connector(crate::runtime::CallError::Failed(format!(
                "the connector {plugin} returned a {} record with an empty or overlong id",
                model.name
            ))));
        }
        let value: serde_json::Value = serde_json::from_str(data).map_err(|_| {
            AppError::Connector(crate::runtime::CallError::Failed(format!(
                "the connector {plugin} returned a {} record that is not JSON",
                model.name
            )))
        })?;
        if let Some(error) = validator.and_then(|v| v.iter_errors(&value).next()) {
            let pointer = error.instance_path().to_string();
            return Err(AppError::BadOutput {
                detail: format!(
                    "The connector {plugin} returned a {} record (id {external_id}) that does not match the model's schema at {}: {}; report it to the connector's author.",
                    model.name,
                    if pointer.is_empty() { "the top level" } else { &pointer },
                    error.masked()
                ),
                pointer,
            });
        }
        let canonical = value.to_string();
        let hash = crate::crypto::sha256_hex(canonical.as_bytes());
        out.push((external_id.clone(), canonical, hash));
    }
    Ok(out)
}

fn completed_deliveries(
    webhooks: &[String],
    integration_id: &str,
    provider: &str,
    model: &str,
    totals: &Totals,
    now_text: &str,
) -> Vec<NewDelivery> {
    let payload = serde_json::json!({
        "type": "sync.completed",
        "timestamp": now_text,
        "data": {
            "integration_id": integration_id,
            "provider": provider,
            "model": model,
            "added": totals.added,
            "updated": totals.updated,
            "deleted": totals.deleted,
            "cursor": totals.cursor.to_string(),
            "records_url": format!(
                "/api/v1/integrations/{integration_id}/records?model={model}&cursor={}", totals.cursor
            ),
        }
    })
    .to_string();
    NewDelivery::to_each(webhooks, "sync.completed", payload)
}
