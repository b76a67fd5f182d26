//! Sync state, mirrored records and the change feed. Every page of a run is
//! one transaction: its records, its checkpoint and the lease renewal
//! commit together or not at all, and only while this process still holds
//! the lease, so a crash resumes from the last committed page and a page is
//! never counted twice.

use sqlx::Row;

use super::{Store, StoreError};

/// One (connection, model) as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SyncRow {
    pub integration_id: String,
    pub model: String,
    pub enabled: bool,
    pub interval_seconds: Option<i64>,
    pub state: String,
    pub checkpoint: Option<String>,
    pub run_id: Option<String>,
    pub run_started_at: Option<String>,
    pub run_added: i64,
    pub run_updated: i64,
    pub run_deleted: i64,
    pub run_cursor: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub next_run_at: i64,
    pub paused_until: Option<i64>,
    pub last_started_at: Option<String>,
    pub last_finished_at: Option<String>,
    pub last_added: i64,
    pub last_updated: i64,
    pub last_deleted: i64,
    pub last_error_json: Option<String>,
}

/// A mirrored record, as the change feed serves it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordRow {
    pub model: String,
    pub external_id: String,
    pub data_json: String,
    pub action: String,
    pub seq: i64,
    pub first_seen_at: String,
    pub last_modified_at: String,
}

/// What a page brings: records (id, JSON text, content hash) and ids the
/// provider said were deleted.
pub struct Page {
    pub records: Vec<(String, String, String)>,
    pub deleted: Vec<String>,
    pub checkpoint: Option<String>,
}

/// Who commits the page and until when its lease then runs.
pub struct Holder<'a> {
    pub integration_id: &'a str,
    pub model: &'a str,
    pub owner: &'a str,
    pub run_id: &'a str,
    pub lease_until: i64,
    pub now_text: &'a str,
    pub now_unix: i64,
}

/// How a run ends with its last page.
pub struct Finish {
    /// Records the run did not see are deleted (non-incremental models).
    pub detect_deletions: bool,
    pub next_run_at: i64,
}

/// The run's totals after a page.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub added: i64,
    pub updated: i64,
    pub deleted: i64,
    /// The feed position before the run's first change.
    pub cursor: i64,
}

impl Totals {
    pub fn changed(&self) -> bool {
        self.added + self.updated + self.deleted > 0
    }
}

/// A webhook delivery to enqueue with the commit that caused it.
pub struct NewDelivery {
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub payload_json: String,
}

impl NewDelivery {
    /// One delivery of the same event to each of `webhooks`.
    pub fn to_each(webhooks: &[String], event_type: &str, payload_json: String) -> Vec<Self> {
        webhooks
            .iter()
            .map(|w| Self {
                id: uuid::Uuid::new_v4().to_string(),
                webhook_id: w.clone(),
                event_type: event_type.into(),
                payload_json: payload_json.clone(),
            })
            .collect()
    }
}

/// Inserts or updates one record on `$tx` for `$holder`'s run; evaluates
/// to Some(action) when it changed.
macro_rules! upsert_record {
    ($tx:expr, $holder:expr, $external_id:expr, $data:expr, $hash:expr, $seq:expr) => {{
        let holder: &Holder<'_> = $holder;
        let external_id: &str = $external_id;
        let existing: Option<(String, String)> = sqlx::query_as(
            "SELECT content_hash, action FROM records WHERE integration_id = $1 AND model = $2 AND external_id = $3",
        )
        .bind(holder.integration_id)
        .bind(holder.model)
        .bind(external_id)
        .fetch_optional(&mut *$tx)
        .await?;
        let action: Option<&'static str> = match &existing {
            None => Some("added"),
            // Unchanged: only remember that this run saw it.
            Some((old, action)) if old == $hash && action != "deleted" => None,
            // Back after a deletion: new again for the consumer.
            Some((_, action)) if action == "deleted" => Some("added"),
            Some(_) => Some("updated"),
        };
        match action {
            None => {
                sqlx::query(
                    "UPDATE records SET seen_run = $1 WHERE integration_id = $2 AND model = $3 AND external_id = $4",
                )
                .bind(holder.run_id)
                .bind(holder.integration_id)
                .bind(holder.model)
                .bind(external_id)
                .execute(&mut *$tx)
                .await?;
            }
            Some(action) => {
                sqlx::query(
                    "INSERT INTO records (integration_id, model, external_id, data_json, content_hash, action, seq,
                        first_seen_at, last_modified_at, last_modified_unix, seen_run)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)
                     ON CONFLICT (integration_id, model, external_id) DO UPDATE SET data_json = excluded.data_json,
                        content_hash = excluded.content_hash, action = excluded.action, seq = excluded.seq,
                        last_modified_at = excluded.last_modified_at, last_modified_unix = excluded.last_modified_unix,
                        seen_run = excluded.seen_run",
                )
                .bind(holder.integration_id)
                .bind(holder.model)
                .bind(external_id)
                .bind($data)
                .bind($hash)
                .bind(action)
                .bind($seq)
                .bind(holder.now_text)
                .bind(holder.now_unix)
                .bind(holder.run_id)
                .execute(&mut *$tx)
                .await?;
            }
        }
        action
    }};
}

/// Marks one record deleted on `$tx`; evaluates to the rows changed.
macro_rules! mark_deleted {
    ($tx:expr, $holder:expr, $external_id:expr, $seq:expr) => {{
        let holder: &Holder<'_> = $holder;
        sqlx::query(
            "UPDATE records SET action = 'deleted', seq = $1, last_modified_at = $2, last_modified_unix = $3
             WHERE integration_id = $4 AND model = $5 AND external_id = $6 AND action != 'deleted'",
        )
        .bind($seq)
        .bind(holder.now_text)
        .bind(holder.now_unix)
        .bind(holder.integration_id)
        .bind(holder.model)
        .bind($external_id)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
    }};
}

impl Store {
    /// Makes sure every (integration, model) has a row; new ones are due now.
    pub async fn ensure_syncs(&self, integration_id: &str, models: &[String], now: i64) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            for model in models {
                sqlx::query(
                    "INSERT INTO syncs (integration_id, model, next_run_at) VALUES ($1, $2, $3)
                     ON CONFLICT (integration_id, model) DO NOTHING",
                )
                .bind(integration_id)
                .bind(model)
                .bind(now)
                .execute(pool)
                .await?;
            }
            Ok(())
        })
    }

    pub async fn syncs(&self, integration_id: &str) -> Result<Vec<SyncRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM syncs WHERE integration_id = $1 ORDER BY model")
                .bind(integration_id)
                .fetch_all(pool)
                .await?)
        })
    }

    pub async fn sync(&self, integration_id: &str, model: &str) -> Result<Option<SyncRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as("SELECT * FROM syncs WHERE integration_id = $1 AND model = $2")
                .bind(integration_id)
                .bind(model)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Changes what the operator controls; `interval` Some(None) goes back
    /// to the manifest's default.
    pub async fn configure_sync(
        &self,
        integration_id: &str,
        model: &str,
        enabled: Option<bool>,
        interval: Option<Option<i64>>,
    ) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE syncs SET enabled = COALESCE($1, enabled),
                    interval_seconds = CASE WHEN $2 THEN $3 ELSE interval_seconds END
                 WHERE integration_id = $4 AND model = $5",
            )
            .bind(enabled)
            .bind(interval.is_some())
            .bind(interval.flatten())
            .bind(integration_id)
            .bind(model)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Makes the sync due now (a run in progress or a rate-limit pause is
    /// not interrupted).
    pub async fn request_sync_run(&self, integration_id: &str, model: &str, now: i64) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query("UPDATE syncs SET next_run_at = $1 WHERE integration_id = $2 AND model = $3")
                .bind(now)
                .bind(integration_id)
                .bind(model)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Forgets the checkpoint and any interrupted run, so the next run reads
    /// everything again (records stay; unchanged ones are not emitted
    /// again). False while a process holds the lease.
    pub async fn reset_sync(&self, integration_id: &str, model: &str, now: i64) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE syncs SET checkpoint = NULL, run_id = NULL, run_started_at = NULL, run_added = 0,
                    run_updated = 0, run_deleted = 0, run_cursor = NULL, state = 'idle', last_error_json = NULL,
                    paused_until = NULL, next_run_at = $1
                 WHERE integration_id = $2 AND model = $3 AND (lease_expires_at IS NULL OR lease_expires_at < $1)",
            )
            .bind(now)
            .bind(integration_id)
            .bind(model)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Starts every sync of an integration over (as `reset_sync` does one),
    /// except runs a live process holds; answers how many were reset.
    pub async fn reset_syncs(&self, integration_id: &str, now: i64) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE syncs SET checkpoint = NULL, run_id = NULL, run_started_at = NULL, run_added = 0,
                    run_updated = 0, run_deleted = 0, run_cursor = NULL, state = 'idle', last_error_json = NULL,
                    paused_until = NULL, next_run_at = $1
                 WHERE integration_id = $2 AND (lease_expires_at IS NULL OR lease_expires_at < $1)",
            )
            .bind(now)
            .bind(integration_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// How many of an integration's syncs a live process is running now.
    pub async fn leased_syncs(&self, integration_id: &str, now: i64) -> Result<i64, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM syncs WHERE integration_id = $1 AND lease_expires_at >= $2")
                .bind(integration_id)
                .bind(now)
                .fetch_one(pool)
                .await?)
        })
    }

    /// Syncs that are due and not leased by a live process.
    pub async fn due_syncs(&self, now: i64, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT integration_id, model FROM syncs
                 WHERE enabled AND next_run_at <= $1
                   AND (lease_expires_at IS NULL OR lease_expires_at < $1)
                   AND (paused_until IS NULL OR paused_until <= $1)
                 ORDER BY next_run_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| Ok((r.try_get("integration_id")?, r.try_get("model")?))).collect()
        })
    }

    /// Takes the lease of a due sync in one statement (so two processes
    /// cannot both win) and starts a run, or continues the one a dead
    /// process left (same run id, its checkpoint). None: someone else holds
    /// it, or it is not due.
    /// `claimant.run_id` is the id a new run gets.
    pub async fn claim_sync(&self, claimant: &Holder<'_>) -> Result<Option<SyncRow>, StoreError> {
        with_pool!(self, pool => {
            // PostgreSQL: a row another process is claiming or committing
            // to right now is skipped, not waited for.
            let sql = format!(
                "UPDATE syncs SET lease_owner = $1, lease_expires_at = $2, state = 'running', paused_until = NULL,
                    last_started_at = CASE WHEN run_id IS NULL THEN $3 ELSE last_started_at END,
                    run_started_at = CASE WHEN run_id IS NULL THEN $3 ELSE run_started_at END,
                    run_added = CASE WHEN run_id IS NULL THEN 0 ELSE run_added END,
                    run_updated = CASE WHEN run_id IS NULL THEN 0 ELSE run_updated END,
                    run_deleted = CASE WHEN run_id IS NULL THEN 0 ELSE run_deleted END,
                    run_cursor = CASE WHEN run_id IS NULL THEN NULL ELSE run_cursor END,
                    run_id = COALESCE(run_id, $4)
                 WHERE integration_id = $5 AND model = $6 AND enabled AND next_run_at <= $7
                   AND (lease_expires_at IS NULL OR lease_expires_at < $7)
                   AND (paused_until IS NULL OR paused_until <= $7){}
                 RETURNING *",
                if super::is_postgres(pool) {
                    " AND (integration_id, model) IN (SELECT integration_id, model FROM syncs
                        WHERE integration_id = $5 AND model = $6 FOR UPDATE SKIP LOCKED)"
                } else {
                    ""
                }
            );
            Ok(sqlx::query_as(&sql)
            .bind(claimant.owner)
            .bind(claimant.lease_until)
            .bind(claimant.now_text)
            .bind(claimant.run_id)
            .bind(claimant.integration_id)
            .bind(claimant.model)
            .bind(claimant.now_unix)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Commits one page: records, checkpoint and lease in one transaction,
    /// only while `holder` still holds the lease of this run. With `finish`,
    /// the run ends: deletions detected, state idle, the next run scheduled,
    /// and `deliveries` (made from the run's totals) enqueued in the same
    /// transaction. None: the lease was lost (disconnected, taken over).
    pub async fn commit_page(
        &self,
        holder: &Holder<'_>,
        page: &Page,
        finish: Option<&Finish>,
        deliveries: impl FnOnce(Totals) -> Vec<NewDelivery>,
    ) -> Result<Option<Totals>, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // PostgreSQL: the connection's row first, as a disconnect
            // (which deletes it, then its syncs and records) takes them, so
            // the two wait for each other instead of deadlocking.
            if super::is_postgres(pool) {
                sqlx::query("SELECT id FROM integrations WHERE id = $1 FOR KEY SHARE")
                    .bind(holder.integration_id)
                    .execute(&mut *tx)
                    .await?;
            }
            // Taking the counter first makes this transaction the writer at
            // once, so sequence numbers follow commit order.
            let upper = page.records.len() as i64 + page.deleted.len() as i64 + 1;
            let last: i64 =
                sqlx::query_scalar("UPDATE counters SET value = value + $1 WHERE name = 'records' RETURNING value")
                    .bind(upper)
                    .fetch_one(&mut *tx)
                    .await?;
            let mut next_seq = last - upper + 1;
            // An UPDATE rather than a SELECT: on PostgreSQL it locks the
            // row until commit, so no other process can claim the sync
            // between this check and the commit.
            let held: Option<SyncRow> = sqlx::query_as(
                "UPDATE syncs SET lease_owner = lease_owner
                 WHERE integration_id = $1 AND model = $2 AND lease_owner = $3 AND run_id = $4 RETURNING *",
            )
            .bind(holder.integration_id)
            .bind(holder.model)
            .bind(holder.owner)
            .bind(holder.run_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(held) = held else {
                return Ok(None);
            };
            let mut totals = Totals {
                added: held.run_added,
                updated: held.run_updated,
                deleted: held.run_deleted,
                cursor: held.run_cursor.unwrap_or(next_seq - 1),
            };
            for (external_id, data, hash) in &page.records {
                let change = upsert_record!(tx, holder, external_id, data, hash, next_seq);
                match change {
                    Some("added") => totals.added += 1,
                    Some(_) => totals.updated += 1,
                    None => continue,
                }
                next_seq += 1;
            }
            for external_id in &page.deleted {
                if mark_deleted!(tx, holder, external_id, next_seq) > 0 {
                    totals.deleted += 1;
                    next_seq += 1;
                }
            }
            if let Some(finish) = finish
                && finish.detect_deletions
            {
                // Every record this (completed) run did not see, one sequence
                // number each, in a stable order.
                let gone: Vec<String> = sqlx::query_scalar(
                    "SELECT external_id FROM records WHERE integration_id = $1 AND model = $2 AND action != 'deleted'
                       AND (seen_run IS NULL OR seen_run != $3) ORDER BY external_id",
                )
                .bind(holder.integration_id)
                .bind(holder.model)
                .bind(holder.run_id)
                .fetch_all(&mut *tx)
                .await?;
                if !gone.is_empty() {
                    let more = gone.len() as i64;
                    let last: i64 =
                        sqlx::query_scalar("UPDATE counters SET value = value + $1 WHERE name = 'records' RETURNING value")
                            .bind(more)
                            .fetch_one(&mut *tx)
                            .await?;
                    next_seq = last - more + 1;
                    for external_id in &gone {
                        mark_deleted!(tx, holder, external_id, next_seq);
                        next_seq += 1;
                        totals.deleted += 1;
                    }
                }
            }
            match finish {
                None => {
                    sqlx::query(
                        "UPDATE syncs SET checkpoint = $1, run_added = $2, run_updated = $3, run_deleted = $4, run_cursor = $5,
                            lease_expires_at = $6, last_error_json = NULL
                         WHERE integration_id = $7 AND model = $8",
                    )
                    .bind(&page.checkpoint)
                    .bind(totals.added)
                    .bind(totals.updated)
                    .bind(totals.deleted)
                    .bind(totals.cursor)
                    .bind(holder.lease_until)
                    .bind(holder.integration_id)
                    .bind(holder.model)
                    .execute(&mut *tx)
                    .await?;
                }
                Some(finish) => {
                    sqlx::query(
                        "UPDATE syncs SET checkpoint = $1, state = 'idle', run_id = NULL, run_started_at = NULL,
                            run_added = 0, run_updated = 0, run_deleted = 0, run_cursor = NULL,
                            lease_owner = NULL, lease_expires_at = NULL, next_run_at = $2, last_finished_at = $3,
                            last_added = $4, last_updated = $5, last_deleted = $6, last_error_json = NULL
                         WHERE integration_id = $7 AND model = $8",
                    )
                    .bind(&page.checkpoint)
                    .bind(finish.next_run_at)
                    .bind(holder.now_text)
                    .bind(totals.added)
                    .bind(totals.updated)
                    .bind(totals.deleted)
                    .bind(holder.integration_id)
                    .bind(holder.model)
                    .execute(&mut *tx)
                    .await?;
                    for d in deliveries(totals) {
                        insert_delivery!(tx, &d, holder.now_text, holder.now_unix);
                    }
                }
            }
            tx.commit().await?;
            Ok(Some(totals))
        })
    }

    /// Ends a run attempt without a page: `state` is `failed` or `paused`.
    /// The run id and checkpoint stay, so the next attempt continues the
    /// same run. Deliveries (a failure event) are enqueued with it.
    #[allow(clippy::too_many_arguments)]
    pub async fn release_sync(
        &self,
        holder: &Holder<'_>,
        state: &str,
        error_json: &str,
        next_run_at: i64,
        paused_until: Option<i64>,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE syncs SET state = $1, last_error_json = $2, next_run_at = $3, paused_until = $4,
                    lease_owner = NULL, lease_expires_at = NULL, last_finished_at = $5
                 WHERE integration_id = $6 AND model = $7 AND lease_owner = $8 AND run_id = $9",
            )
            .bind(state)
            .bind(error_json)
            .bind(next_run_at)
            .bind(paused_until)
            .bind(holder.now_text)
            .bind(holder.integration_id)
            .bind(holder.model)
            .bind(holder.owner)
            .bind(holder.run_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                for d in &deliveries {
                    insert_delivery!(tx, d, holder.now_text, holder.now_unix);
                }
            }
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Records in commit order after `after_seq`, for one model or all.
    pub async fn feed(
        &self,
        integration_id: &str,
        model: Option<&str>,
        after_seq: i64,
        modified_after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RecordRow>, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT model, external_id, data_json, action, seq, first_seen_at, last_modified_at FROM records
                 WHERE integration_id = $1 AND ($2 IS NULL OR model = $2) AND seq > $3
                   AND ($4 IS NULL OR last_modified_unix > $4)
                 ORDER BY seq LIMIT $5",
            )
            .bind(integration_id)
            .bind(model)
            .bind(after_seq)
            .bind(modified_after)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Records held for a connection and model (deleted ones excepted).
    pub async fn record_count(&self, integration_id: &str, model: &str) -> Result<i64, StoreError> {
        with_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM records WHERE integration_id = $1 AND model = $2 AND action != 'deleted'",
            )
            .bind(integration_id)
            .bind(model)
            .fetch_one(pool)
            .await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_integration(dir: &std::path::Path) -> Store {
        let store = Store::open(None, dir).await.unwrap();
        let row = crate::store::tests::row("i1");
        assert!(store.insert(&row, &crate::store::audit::tests::entry()).await.unwrap());
        store.ensure_syncs("i1", &["items".into()], 0).await.unwrap();
        store
    }

    fn holder<'a>(owner: &'a str, run_id: &'a str, now: i64) -> Holder<'a> {
        Holder {
            integration_id: "i1",
            model: "items",
            owner,
            run_id,
            lease_until: now + 60,
            now_text: "2026-11-26T10:00:00Z",
            now_unix: now,
        }
    }

    fn page(ids: &[(&str, &str)], checkpoint: &str) -> Page {
        Page {
            records: ids.iter().map(|(id, data)| (id.to_string(), data.to_string(), format!("h-{data}"))).collect(),
            deleted: vec![],
            checkpoint: Some(checkpoint.into()),
        }
    }

    #[tokio::test]
    async fn one_lease_pages_commit_once_and_a_full_run_deletes_what_it_missed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_integration(dir.path()).await;
        let a = holder("a", "run-1", 100);
        let claimed = store.claim_sync(&a).await.unwrap().expect("due and free");
        assert_eq!(claimed.run_id.as_deref(), Some("run-1"));
        // A second process cannot take it while the lease runs.
        assert!(store.claim_sync(&holder("b", "run-x", 101)).await.unwrap().is_none());

        let t = store.commit_page(&a, &page(&[("1", "a"), ("2", "b")], "p2"), None, |_| vec![]).await.unwrap();
        assert_eq!((t.unwrap().added, t.unwrap().updated), (2, 0));
        let finish = Finish { detect_deletions: true, next_run_at: 200 };
        let t = store.commit_page(&a, &page(&[("3", "c")], "end"), Some(&finish), |_| vec![]).await.unwrap().unwrap();
        assert_eq!((t.added, t.deleted), (3, 0));
        let row = store.sync("i1", "items").await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.run_id, row.checkpoint.as_deref()), ("idle", None, Some("end")));

        // The next run: 1 unchanged, 2 changed, 3 gone.
        store.request_sync_run("i1", "items", 150).await.unwrap();
        let b = holder("b", "run-2", 150);
        store.claim_sync(&b).await.unwrap().expect("due again");
        let t = store
            .commit_page(&b, &page(&[("1", "a"), ("2", "b2")], "end"), Some(&finish), |_| vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!((t.added, t.updated, t.deleted), (0, 1, 1));
        let feed = store.feed("i1", Some("items"), t.cursor, None, 10).await.unwrap();
        let changes: Vec<(&str, &str)> = feed.iter().map(|r| (r.external_id.as_str(), r.action.as_str())).collect();
        assert_eq!(changes, [("2", "updated"), ("3", "deleted")], "only this run's changes follow its cursor");
        assert_eq!(store.record_count("i1", "items").await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_page_after_the_lease_is_lost_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_integration(dir.path()).await;
        let a = Holder { lease_until: 110, ..holder("a", "run-1", 100) };
        store.claim_sync(&a).await.unwrap().unwrap();
        // A dies; after its lease, b takes over the same run.
        let b = holder("b", "run-new", 120);
        let taken = store.claim_sync(&b).await.unwrap().unwrap();
        assert_eq!(taken.run_id.as_deref(), Some("run-1"), "the run continues, not restarts");
        assert!(store.commit_page(&a, &page(&[("1", "a")], "p"), None, |_| vec![]).await.unwrap().is_none());
        assert_eq!(store.record_count("i1", "items").await.unwrap(), 0);
        let b = holder("b", "run-1", 121);
        assert!(store.commit_page(&b, &page(&[("1", "a")], "p"), None, |_| vec![]).await.unwrap().is_some());
        assert_eq!(store.record_count("i1", "items").await.unwrap(), 1);
        // Disconnecting takes the records and the sync with it.
        assert!(store.delete("i1", &crate::store::audit::tests::entry()).await.unwrap());
        assert!(store.sync("i1", "items").await.unwrap().is_none());
        assert_eq!(store.record_count("i1", "items").await.unwrap(), 0);
    }
}
