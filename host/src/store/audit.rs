//! The audit log as stored: who changed which credential or setting, when,
//! from where, and how it ended. Entries of a change are written in the
//! change's own transaction (`write_audit!`), so no change is stored
//! without its entry; failed attempts are written alone. Nothing secret is
//! ever in an entry: ids, names, action and outcome codes only.

use sqlx::QueryBuilder;

use super::{Store, StoreError};
use crate::clock::Timestamp;

/// One entry, as written and as read back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    /// Order of writing; the paging cursor. 0 before it is written.
    pub seq: i64,
    pub at: Timestamp,
    /// `api_key`, `cli`, `system` or `anonymous` (a route that needs no key).
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    /// `integration.connect`, `api_key.revoke`, …
    pub action: String,
    /// `integration`, `oauth_app`, `api_key`, `connector`, `webhook`, …
    pub target_kind: String,
    pub target_id: Option<String>,
    pub provider: Option<String>,
    /// `ok`, or the error code it ended with.
    pub outcome: String,
    /// The caller's address, when it came over the network.
    pub address: Option<String>,
    pub request_id: Option<String>,
}

/// The statement `write_audit!` runs: an entry is written inside the
/// transaction of the change it records.
pub(super) const INSERT: &str =
    "INSERT INTO audit_log (at, at_unix, actor_kind, actor_id, actor_name, action, target_kind,
    target_id, provider, outcome, address, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Which entries to read.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// Entries after this `seq` (the cursor of the previous page).
    pub after: i64,
    pub target_id: Option<String>,
    pub target_kind: Option<String>,
    pub action: Option<String>,
    /// At or after this time (unix seconds).
    pub since: Option<i64>,
    /// Before this time (unix seconds).
    pub until: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// Writes one entry alone (a failed attempt, or an event outside the
    /// database such as a connector loaded).
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await?;
            write_audit!(&mut *conn, entry);
            Ok(())
        })
    }

    /// Entries in the order they were written, oldest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        with_pool!(self, pool => {
            let mut q = QueryBuilder::new("SELECT * FROM audit_log WHERE seq > ");
            q.push_bind(filter.after);
            if let Some(id) = &filter.target_id {
                q.push(" AND target_id = ").push_bind(id.clone());
            }
            if let Some(kind) = &filter.target_kind {
                q.push(" AND target_kind = ").push_bind(kind.clone());
            }
            if let Some(action) = &filter.action {
                q.push(" AND action = ").push_bind(action.clone());
            }
            if let Some(since) = filter.since {
                q.push(" AND at_unix >= ").push_bind(since);
            }
            if let Some(until) = filter.until {
                q.push(" AND at_unix < ").push_bind(until);
            }
            q.push(" ORDER BY seq LIMIT ").push_bind(filter.limit);
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// Forgets entries older than `before_unix`; returns how many.
    pub async fn prune_audit(&self, before_unix: i64) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM audit_log WHERE at_unix < $1").bind(before_unix).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry for tests that make changes.
    pub(crate) fn entry() -> AuditEntry {
        crate::context::audit_entry("test.change", crate::context::Target::api_key(None), "ok")
    }

    #[tokio::test]
    async fn a_change_and_its_entry_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        let row = crate::store::tests::row("a");
        assert!(store.insert(&row, &entry()).await.unwrap());
        // The same account again changes nothing, and logs nothing.
        assert!(!store.insert(&crate::store::tests::row("b"), &entry()).await.unwrap());
        assert!(store.delete("a", &entry()).await.unwrap());
        assert!(!store.delete("a", &entry()).await.unwrap());
        let all = store.audit(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].seq < all[1].seq);
        assert_eq!(all[0].actor_kind, "system");
        let after = store.audit(&AuditFilter { after: all[0].seq, limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(after, vec![all[1].clone()]);
        // Retention: entries before a time go, the rest stay.
        assert_eq!(store.prune_audit(all[0].at.unix()).await.unwrap(), 0);
        assert_eq!(store.prune_audit(all[1].at.unix() + 1).await.unwrap(), 2);
    }
}
