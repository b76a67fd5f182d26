//! Reading the audit log (paged by cursor, filtered by target and time)
//! and keeping it within its retention. Entries are written where the
//! changes are made (`Shared::audit`, and the store in the change's own
//! transaction).

use std::{sync::Arc, time::Duration};

use crate::{
    clock::Timestamp,
    error::AppError,
    services::shared::Shared,
    store::audit::{AuditEntry, AuditFilter},
};

pub struct Audit {
    shared: Arc<Shared>,
    /// Entries older than this are pruned (zero: kept for ever).
    retention: Duration,
}

/// One page of entries and where the next one starts.
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// The `seq` to pass as the next cursor (the last entry's, or the
    /// cursor given when the page is empty).
    pub next_cursor: i64,
}

/// A query of the log, as the API takes it.
#[derive(Default)]
pub struct AuditQuery<'a> {
    pub cursor: Option<&'a str>,
    pub limit: Option<u32>,
    pub target_id: Option<String>,
    pub target_kind: Option<String>,
    pub action: Option<String>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

impl Audit {
    pub(super) fn new(shared: Arc<Shared>, retention: Duration) -> Self {
        Self { shared, retention }
    }

    pub async fn page(&self, q: AuditQuery<'_>) -> Result<AuditPage, AppError> {
        // An empty cursor (`?cursor=`) is the first page, as with no cursor.
        let after = match q.cursor.map(str::trim).filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
                AppError::Validation("cursor is not valid; pass the next_cursor of an earlier page.".into())
            })?,
        };
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(AppError::Validation("limit must be between 1 and 1000.".into()));
        }
        let time = |name: &str, text: Option<&str>| {
            text.map(|t| {
                Timestamp::parse(t).map(Timestamp::unix).ok_or_else(|| {
                    AppError::Validation(format!("{name} must be an RFC 3339 time such as 2026-11-28T10:00:00Z."))
                })
            })
            .transpose()
        };
        let filter = AuditFilter {
            after,
            target_id: q.target_id,
            target_kind: q.target_kind,
            action: q.action,
            since: time("since", q.since)?,
            until: time("until", q.until)?,
            limit: i64::from(limit),
        };
        let entries = self.shared.store.audit(&filter).await?;
        let next_cursor = entries.last().map_or(after, |e| e.seq);
        Ok(AuditPage { entries, next_cursor })
    }

    /// Drops entries past the retention; returns how many.
    pub async fn prune(&self) -> Result<u64, AppError> {
        if self.retention.is_zero() {
            return Ok(0);
        }
        let before = Timestamp::now().unix() - i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX);
        Ok(self.shared.store.prune_audit(before).await?)
    }

    /// Prunes at start and then every hour.
    pub async fn prune_in_background(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "audit entries past the retention removed"),
                Err(e) => tracing::warn!(code = %e.code(), "cannot prune the audit log"),
            }
        }
    }
}
