//! What every service shares, built once at start: the loaded connectors,
//! the sandbox, the store, the master key, the verifier and the
//! per-integration locks. Its fields are private to the services layer, so
//! the API reaches the store, the key or the sandbox only through a service.

use std::sync::Arc;

use url::Url;

use crate::{
    context::{self, Target},
    crypto::{Binding, CryptoError, MasterKey},
    error::AppError,
    locks::{KeyedGuard, KeyedLocks},
    registry::Registry,
    runtime::{
        Connector, Runtime,
        model::{Credentials, FieldKind},
    },
    services::verifier::Verifier,
    store::{IntegrationRow, Store},
};

/// The parts every service shares, built once at start.
pub struct Shared {
    pub(super) runtime: Arc<Runtime>,
    pub(super) registry: Registry,
    pub(super) store: Store,
    pub(super) key: MasterKey,
    pub(super) verifier: Verifier,
    /// Where browsers and providers reach this server (redirect URIs,
    /// inbound webhook URLs).
    pub(super) public_url: Option<Url>,
    /// One lock per integration: a refresh, re-verify or rotation runs
    /// alone in this process. Across processes sharing a database, the
    /// database's claim decides who spends a refresh token (grants.rs).
    pub(super) locks: KeyedLocks,
}

impl Shared {
    pub(super) fn plugins(&self) -> Vec<Arc<Connector>> {
        self.registry.all()
    }

    pub(super) fn plugin(&self, id: &str) -> Result<Arc<Connector>, AppError> {
        // The detail does not echo `id`: a pasted secret may be in it.
        self.registry.get(id).ok_or_else(|| {
            AppError::NotFound(format!(
                "No such provider is loaded; GET /api/v1/providers lists the available ones ({}).",
                self.plugins().iter().map(|p| p.manifest.id.clone()).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// `provider` when it is a loaded connector's id, for an audit entry:
    /// a name a caller sent that matches none is not written down (a
    /// pasted secret may be in it).
    pub(super) fn known_provider(&self, provider: &str) -> Option<String> {
        self.registry.get(provider).map(|p| p.manifest.id.clone())
    }

    /// The connector of a stored integration; `provider_unavailable` when it
    /// is no longer loaded (the credentials stay stored until it is back).
    pub(super) fn plugin_of(&self, row: &IntegrationRow) -> Result<Arc<Connector>, AppError> {
        self.registry.get(&row.provider).ok_or_else(|| AppError::ProviderUnavailable(row.provider.clone()))
    }

    pub(super) async fn lock(&self, id: &str) -> KeyedGuard {
        self.locks.lock(id).await
    }

    /// The stored integration `id`, or `not_found`.
    pub(super) async fn integration(&self, id: &str) -> Result<IntegrationRow, AppError> {
        self.store.get(id).await?.ok_or_else(|| self.no_integration(id))
    }

    /// The answer for an integration that does not exist, or that the
    /// caller may not see: the same, so ids cannot be probed.
    pub(super) fn no_integration(&self, id: &str) -> AppError {
        AppError::NotFound(format!("No integration {id}; GET /api/v1/integrations lists them."))
    }

    /// Records an event in the audit log alone (the generic hook: changes
    /// that live in the database write their entry in their own
    /// transaction instead). A failure to write is logged, not answered: the
    /// event already happened.
    pub(super) async fn audit(&self, action: &str, target: Target, outcome: &str) {
        let entry = context::audit_entry(action, target, outcome);
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!(error = %e, action, "cannot write the audit log");
        }
    }

    /// Records a change that was refused or failed, with its error code.
    pub(super) async fn audit_failure(&self, action: &str, target: Target, error: &AppError) {
        self.audit(action, target, error.code().as_str()).await
    }

    pub(super) fn open_credentials(&self, row: &IntegrationRow) -> Result<Credentials, AppError> {
        let text = self.key.open(Binding::Credentials(&row.id), &row.secret)?;
        Ok(Credentials::from_json(secrecy::ExposeSecret::expose_secret(&text)).map_err(|_| CryptoError::Open)?)
    }

    /// The base URL stored in the credentials, re-checked with today's
    /// policy: a URL allowed when connected may have been refused since.
    pub(super) fn stored_base_url(
        &self,
        plugin: &Connector,
        credentials: &Credentials,
    ) -> Result<Option<Url>, AppError> {
        let Some(field) = plugin.manifest.fields.iter().find(|f| f.kind == FieldKind::Url) else {
            return Ok(None);
        };
        let Some(value) = credentials.get(&field.key) else {
            return Ok(None);
        };
        self.verifier.policy().parse_base_url(value).map(Some).map_err(|e| AppError::InvalidBaseUrl(e.to_string()))
    }
}

/// At most the last 4 characters of the first secret field, and nothing
/// for short values, where 4 characters would be too much of it.
pub(super) fn token_hint(plugin: &Connector, credentials: &Credentials) -> Option<String> {
    let field = plugin.manifest.fields.iter().find(|f| f.kind == FieldKind::Secret)?;
    let value = credentials.get(&field.key)?;
    let chars: Vec<char> = value.chars().collect();
    (chars.len() >= 16).then(|| chars[chars.len() - 4..].iter().collect())
}
