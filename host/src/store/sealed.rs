//! Every sealed value in the database, named by what it belongs to: which
//! keys are in use, and re-sealing under a new key (key rotation).

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Store, StoreError};
use crate::crypto::{Binding, Sealed};

/// Where a sealed value is stored, which is also what its ciphertext is
/// bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedSlot {
    Credentials { integration_id: String },
    RefreshToken { integration_id: String },
    OAuthApp { provider: String, base_url: String },
    OAuthVerifier { state_hash: String },
    Webhook { id: String },
    InboundWebhook { integration_id: String },
}

impl SealedSlot {
    pub fn binding(&self) -> Binding<'_> {
        match self {
            Self::Credentials { integration_id } => Binding::Credentials(integration_id),
            Self::RefreshToken { integration_id } => Binding::RefreshToken(integration_id),
            Self::OAuthApp { provider, base_url } => Binding::OAuthApp { provider, base_url },
            Self::OAuthVerifier { state_hash } => Binding::OAuthVerifier(state_hash),
            Self::Webhook { id } => Binding::Webhook(id),
            Self::InboundWebhook { integration_id } => Binding::InboundWebhook(integration_id),
        }
    }

    /// What kind of secret this is, in words, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Credentials { .. } => "integration credentials",
            Self::RefreshToken { .. } => "refresh tokens",
            Self::OAuthApp { .. } => "OAuth client secrets",
            Self::OAuthVerifier { .. } => "OAuth verifiers in flight",
            Self::Webhook { .. } => "webhook signing secrets",
            Self::InboundWebhook { .. } => "inbound webhook tokens",
        }
    }
}

pub struct SealedValue {
    pub slot: SealedSlot,
    pub sealed: Sealed,
}

/// Every sealed column: the table, the columns naming the row, and the
/// column prefix of the (key id, nonce, ciphertext) triple.
const SEALED_COLUMNS: [(&str, &str, &str); 6] = [
    ("integrations", "id", "secret"),
    ("integrations", "id", "refresh"),
    ("oauth_apps", "provider, base_url", "secret"),
    ("oauth_states", "state_hash", "verifier"),
    ("webhooks", "id", "secret"),
    ("inbound_webhooks", "integration_id", "secret"),
];

fn slot_of<R: Row>(index: usize, row: &R) -> Result<SealedSlot, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text = |i| row.try_get::<String, _>(i);
    Ok(match index {
        0 => SealedSlot::Credentials { integration_id: text(0)? },
        1 => SealedSlot::RefreshToken { integration_id: text(0)? },
        2 => SealedSlot::OAuthApp { provider: text(0)?, base_url: text(1)? },
        3 => SealedSlot::OAuthVerifier { state_hash: text(0)? },
        4 => SealedSlot::Webhook { id: text(0)? },
        _ => SealedSlot::InboundWebhook { integration_id: text(0)? },
    })
}

/// The table, row condition and column prefix of a slot, with the values
/// naming its row (bound from `$5` on).
fn place(slot: &SealedSlot) -> (&'static str, &'static str, &'static str, Vec<&str>) {
    match slot {
        SealedSlot::Credentials { integration_id } => ("integrations", "id = $5", "secret", vec![integration_id]),
        SealedSlot::RefreshToken { integration_id } => ("integrations", "id = $5", "refresh", vec![integration_id]),
        SealedSlot::OAuthApp { provider, base_url } => {
            ("oauth_apps", "provider = $5 AND base_url = $6", "secret", vec![provider, base_url])
        }
        SealedSlot::OAuthVerifier { state_hash } => ("oauth_states", "state_hash = $5", "verifier", vec![state_hash]),
        SealedSlot::Webhook { id } => ("webhooks", "id = $5", "secret", vec![id]),
        SealedSlot::InboundWebhook { integration_id } => {
            ("inbound_webhooks", "integration_id = $5", "secret", vec![integration_id])
        }
    }
}

impl Store {
    /// How many sealed values each key id seals.
    pub async fn key_ids_in_use(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        with_pool!(self, pool => {
            let union = SEALED_COLUMNS
                .iter()
                .map(|(table, _, prefix)| {
                    format!("SELECT {prefix}_key_id AS key_id FROM {table} WHERE {prefix}_key_id IS NOT NULL")
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            let rows = sqlx::query(&format!("SELECT key_id, COUNT(*) AS n FROM ({union}) AS sealed GROUP BY key_id"))
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| Ok((r.try_get("key_id")?, r.try_get::<i64, _>("n")? as u64))).collect()
        })
    }

    /// Every sealed value, with where it is stored.
    pub async fn sealed_values(&self) -> Result<Vec<SealedValue>, StoreError> {
        with_pool!(self, pool => {
            let mut out = Vec::new();
            for (index, (table, names, prefix)) in SEALED_COLUMNS.iter().enumerate() {
                let rows = sqlx::query(&format!(
                    "SELECT {names}, {prefix}_key_id, {prefix}_nonce, {prefix}_ciphertext FROM {table}
                     WHERE {prefix}_key_id IS NOT NULL"
                ))
                .fetch_all(pool)
                .await?;
                for row in &rows {
                    let sealed = Sealed {
                        key_id: row.try_get(format!("{prefix}_key_id").as_str())?,
                        nonce: row.try_get(format!("{prefix}_nonce").as_str())?,
                        ciphertext: row.try_get(format!("{prefix}_ciphertext").as_str())?,
                    };
                    out.push(SealedValue { slot: slot_of(index, row)?, sealed });
                }
            }
            Ok(out)
        })
    }

    /// Replaces sealed values with their re-sealed forms in one transaction,
    /// each only while it still holds the ciphertext that was read (a value
    /// changed meanwhile keeps its newer form). Returns how many were
    /// replaced. SQLite's WAL is then checkpointed and truncated, so the old
    /// ciphertexts do not linger in it.
    pub async fn reseal(&self, changes: &[(&SealedValue, Sealed)]) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut replaced = 0;
            for (value, new) in changes {
                let (table, condition, prefix, names) = place(&value.slot);
                let sql = format!(
                    "UPDATE {table} SET {prefix}_key_id = $1, {prefix}_nonce = $2, {prefix}_ciphertext = $3
                     WHERE {condition} AND {prefix}_ciphertext = $4"
                );
                let mut query = sqlx::query(&sql)
                    .bind(&new.key_id)
                    .bind(&new.nonce)
                    .bind(&new.ciphertext)
                    .bind(&value.sealed.ciphertext);
                for name in names {
                    query = query.bind(name);
                }
                replaced += query.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            if !super::is_postgres(pool) {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
            }
            Ok(replaced)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::row;

    fn sealed(key_id: &str, byte: u8) -> Sealed {
        Sealed { key_id: key_id.into(), nonce: vec![0; 12], ciphertext: vec![byte] }
    }

    #[tokio::test]
    async fn every_sealed_column_is_listed_counted_and_resealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        store.insert(&row("a"), &crate::store::audit::tests::entry()).await.unwrap();
        let w = crate::store::webhooks::WebhookRow {
            id: "w".into(),
            url: "https://example.com/hook".into(),
            created_at: "2026-11-26T10:00:00Z".into(),
            secret: sealed("k", 4),
        };
        store.insert_webhook(&w, &crate::store::audit::tests::entry()).await.unwrap();
        store
            .set_inbound_secret("a", &sealed("old", 5), "2026-11-26T10:00:00Z", &crate::store::audit::tests::entry())
            .await
            .unwrap();
        let now = crate::clock::Timestamp::parse("2026-11-26T10:00:00Z").unwrap();
        let app = crate::store::OAuthAppRow {
            id: "app".into(),
            provider: "p".into(),
            base_url: "https://example.com".into(),
            client_id: "c".into(),
            redirect_uri: "https://gatehouse.example.com/cb".into(),
            source: "api".into(),
            created_at: now,
            updated_at: now,
            secret: sealed("k", 2),
        };
        store.upsert_oauth_app(&app, &crate::store::audit::tests::entry()).await.unwrap();
        let state = crate::store::OAuthStateRow {
            state_hash: "h".into(),
            provider: "p".into(),
            base_url: "https://example.com".into(),
            label: None,
            created_at: now,
            expires_at_unix: i64::MAX,
            verifier: sealed("k", 3),
            browser_hash: None,
            session_id: None,
        };
        store.insert_oauth_state(&state).await.unwrap();

        let in_use = store.key_ids_in_use().await.unwrap();
        assert_eq!(in_use, BTreeMap::from([("k".into(), 5), ("old".into(), 1)]));
        let values = store.sealed_values().await.unwrap();
        let kinds: Vec<_> = values.iter().map(|v| v.slot.kind()).collect();
        assert_eq!(
            kinds,
            [
                "integration credentials",
                "refresh tokens",
                "OAuth client secrets",
                "OAuth verifiers in flight",
                "webhook signing secrets",
                "inbound webhook tokens"
            ]
        );

        let changes: Vec<_> = values.iter().map(|v| (v, sealed("new", v.sealed.ciphertext[0] + 100))).collect();
        // A value changed since it was read keeps its newer form.
        store
            .set_inbound_secret("a", &sealed("old", 6), "2026-11-26T10:00:00Z", &crate::store::audit::tests::entry())
            .await
            .unwrap();
        assert_eq!(store.reseal(&changes).await.unwrap(), 5);
        let in_use = store.key_ids_in_use().await.unwrap();
        assert_eq!(in_use, BTreeMap::from([("new".into(), 5), ("old".into(), 1)]));
        assert_eq!(store.oauth_app("p", "https://example.com").await.unwrap().unwrap().secret.ciphertext, vec![102]);
        assert_eq!(store.take_oauth_state("h").await.unwrap().unwrap().verifier.ciphertext, vec![103]);
        let a = store.get("a").await.unwrap().unwrap();
        assert_eq!((a.secret.ciphertext, a.refresh.unwrap().ciphertext), (vec![101], vec![109]));
        assert_eq!(store.webhook("w").await.unwrap().unwrap().secret.key_id, "new");
        assert_eq!(store.inbound_secret("a").await.unwrap().unwrap().ciphertext, vec![6]);
    }
}
