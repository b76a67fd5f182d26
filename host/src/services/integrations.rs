//! Integration lifecycle: turns API requests into connector calls and store
//! writes — verify, connect (idempotent per account), rotate, re-verify,
//! disconnect — and opens a connection for use by the proxy, actions and
//! syncs. Provider-agnostic: it knows fields by kind, not by name.

use std::{collections::BTreeMap, sync::Arc};

use secrecy::{ExposeSecret, SecretString};
use sqlx::types::Json;
use url::Url;

use crate::{
    clock::Timestamp,
    context::{self, Target},
    crypto::Binding,
    error::AppError,
    registry::ReloadReport,
    runtime::{
        Plugin,
        model::{Connection, Credentials, FieldKind, Verification, VerifyError},
    },
    services::{
        grants::{Grants, Refreshed},
        shared::{Shared, token_hint},
        verifier::{Verdict, base_url_text},
    },
    store::{Checked, IntegrationRow, Status, Verified},
};

/// Audit actions of the credential changes made here.
const REPLACE: &str = "integration.replace";
const ROTATE: &str = "integration.rotate";

pub struct Integrations {
    shared: Arc<Shared>,
    grants: Arc<Grants>,
}

impl Integrations {
    pub(super) fn new(shared: Arc<Shared>, grants: Arc<Grants>) -> Self {
        Self { shared, grants }
    }

    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.shared.plugins()
    }

    pub fn plugin(&self, id: &str) -> Result<Arc<Plugin>, AppError> {
        self.shared.plugin(id)
    }

    /// The connector of a stored integration, or `provider_unavailable`.
    pub fn plugin_of(&self, row: &IntegrationRow) -> Result<Arc<Plugin>, AppError> {
        self.shared.plugin_of(row)
    }

    /// Files of the plugins directory refused now, and why.
    pub fn refused_plugins(&self) -> Vec<(String, String)> {
        self.shared.registry.refused()
    }

    /// Re-reads the plugins directory; each connector loaded or unloaded
    /// goes into the audit log.
    pub async fn reload_plugins(&self) -> anyhow::Result<ReloadReport> {
        let report = self.shared.registry.reload(&self.shared.runtime).await?;
        for id in &report.loaded {
            self.shared.audit("connector.load", Target::connector(id), "ok").await;
        }
        for id in &report.unloaded {
            self.shared.audit("connector.unload", Target::connector(id), "ok").await;
        }
        Ok(report)
    }

    /// `POST /providers/{id}/verify`: stores nothing.
    pub async fn verify(&self, provider: &str, raw: BTreeMap<String, String>) -> Result<Verdict, AppError> {
        let plugin = self.plugin(provider)?;
        let verifier = &self.shared.verifier;
        let (credentials, base_url) = verifier.prepare(&plugin, raw)?;
        verifier.verify(&plugin, &credentials, base_url.as_ref()).await
    }

    /// Verifies and stores. Returns the row and whether it is new; the same
    /// account on the same base URL replaces the existing credentials.
    pub async fn connect(
        &self,
        provider: &str,
        raw: BTreeMap<String, String>,
        label: Option<String>,
    ) -> Result<(IntegrationRow, bool), AppError> {
        let result = self.connect_verified(provider, raw, label).await;
        if let Err(e) = &result {
            let target = Target { provider: self.shared.known_provider(provider), ..Target::provider(provider) };
            self.shared.audit_failure("integration.connect", target, e).await;
        }
        result
    }

    async fn connect_verified(
        &self,
        provider: &str,
        raw: BTreeMap<String, String>,
        label: Option<String>,
    ) -> Result<(IntegrationRow, bool), AppError> {
        let plugin = self.plugin(provider)?;
        let verifier = &self.shared.verifier;
        let (credentials, base_url) = verifier.prepare(&plugin, raw)?;
        let verification =
            verifier.verify(&plugin, &credentials, base_url.as_ref()).await?.map_err(AppError::Verify)?;
        self.store_verified(&plugin, &credentials, base_url.as_ref(), &verification, label, None).await
    }

    /// Stores verified credentials (and a refresh token, from the OAuth
    /// flow) as a new integration, or over the one of the same account.
    pub(super) async fn store_verified(
        &self,
        plugin: &Plugin,
        credentials: &Credentials,
        base_url: Option<&Url>,
        verification: &Verification,
        label: Option<String>,
        refresh_token: Option<&SecretString>,
    ) -> Result<(IntegrationRow, bool), AppError> {
        let store = &self.shared.store;
        let provider = plugin.manifest.id.as_str();
        let base_url = base_url_text(base_url);
        let account_id = &verification.account.id;
        if let Some(existing) = store.find_account(provider, &base_url, account_id).await? {
            let row =
                self.replace(&existing.id, plugin, credentials, verification, label, refresh_token, REPLACE).await?;
            return Ok((row, false));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = Timestamp::now();
        let row = IntegrationRow {
            id: id.clone(),
            provider: provider.to_string(),
            label: label.clone(),
            status: Status::Connected,
            base_url: base_url.clone(),
            account_id: account_id.clone(),
            account: Json(verification.account.clone()),
            scopes: Json(verification.scopes.clone()),
            missing_scopes: Json(Vec::new()),
            token_kind: Some(verification.token_kind.clone()),
            token_hint: token_hint(plugin, credentials),
            token_expires_at: expiry(verification),
            created_at: now,
            updated_at: now,
            last_verified_at: Some(now),
            last_error: None,
            secret: self.seal_credentials(&id, credentials),
            refresh: refresh_token.map(|t| self.shared.key.seal(Binding::RefreshToken(&id), t.expose_secret())),
        };
        let audit = context::audit_entry("integration.connect", Target::integration(&id, provider), "ok");
        if store.insert(&row, &audit).await? {
            return Ok((row, true));
        }
        // Another request connected the same account meanwhile: update it.
        let existing = store.find_account(provider, &base_url, account_id).await?.ok_or_else(removed)?;
        let row = self.replace(&existing.id, plugin, credentials, verification, label, refresh_token, REPLACE).await?;
        Ok((row, false))
    }

    /// Writes verified credentials over integration `id`, under its lock.
    /// `refresh_token` replaces the stored one (None: not refreshable).
    /// `action` names the change in the audit log.
    #[allow(clippy::too_many_arguments)]
    async fn replace(
        &self,
        id: &str,
        plugin: &Plugin,
        credentials: &Credentials,
        v: &Verification,
        label: Option<String>,
        refresh_token: Option<&SecretString>,
        action: &str,
    ) -> Result<IntegrationRow, AppError> {
        let _guard = self.shared.lock(id).await;
        let verified = Verified {
            label,
            account: v.account.clone(),
            scopes: v.scopes.clone(),
            token_kind: v.token_kind.clone(),
            token_hint: token_hint(plugin, credentials),
            token_expires_at: expiry(v),
            secret: self.seal_credentials(id, credentials),
            refresh: refresh_token.map(|t| self.shared.key.seal(Binding::RefreshToken(id), t.expose_secret())),
        };
        let audit = context::audit_entry(action, Target::integration(id, &plugin.manifest.id), "ok");
        self.shared.store.replace_credentials(id, &verified, &audit).await?.ok_or_else(removed)
    }

    fn seal_credentials(&self, id: &str, credentials: &Credentials) -> crate::crypto::Sealed {
        self.shared.key.seal(Binding::Credentials(id), credentials.to_json().expose_secret())
    }

    pub async fn list(&self) -> Result<Vec<IntegrationRow>, AppError> {
        Ok(self.shared.store.list().await?)
    }

    pub async fn get(&self, id: &str) -> Result<IntegrationRow, AppError> {
        self.shared.integration(id).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), AppError> {
        let guard = self.shared.lock(id).await;
        let provider = self.shared.store.get(id).await?.map(|row| row.provider).unwrap_or_default();
        let audit = context::audit_entry("integration.disconnect", Target::integration(id, &provider), "ok");
        let deleted = self.shared.store.delete(id, &audit).await?;
        drop(guard);
        if deleted {
            Ok(())
        } else {
            let e = AppError::NotFound(format!("No integration {id}; it may already be disconnected."));
            self.shared.audit_failure("integration.disconnect", Target::integration(id, &provider), &e).await;
            Err(e)
        }
    }

    /// Re-checks stored credentials. A verdict updates the status and is
    /// answered with the row; a failure to reach the provider marks it
    /// `unreachable` and is returned as the error. Only what the check
    /// learnt is written: never the credentials it read.
    pub async fn reverify(&self, id: &str) -> Result<IntegrationRow, AppError> {
        let _guard = self.shared.lock(id).await;
        let row = self.get(id).await?;
        // An access token about to expire is refreshed before it is used.
        let row = match self.grants.refresh_if_due(row).await? {
            Refreshed::Failed(row) => return Ok(row),
            Refreshed::Current(row) | Refreshed::Renewed(row) => row,
        };
        let plugin = self.plugin_of(&row)?;
        let credentials = self.shared.open_credentials(&row)?;
        let base_url = self.shared.stored_base_url(&plugin, &credentials)?;
        let outcome = self.shared.verifier.verify(&plugin, &credentials, base_url.as_ref()).await;
        let (checked, result) = match outcome {
            Ok(Ok(v)) => (
                Checked {
                    status: Status::Connected,
                    scopes: Some((v.scopes.clone(), Vec::new())),
                    token: Some((v.token_kind.clone(), expiry(&v))),
                    account: Some(v.account),
                    verified: true,
                    last_error: None,
                },
                Ok(()),
            ),
            Ok(Err(verdict)) => (
                Checked {
                    status: status_of(&verdict),
                    scopes: match &verdict {
                        VerifyError::InsufficientScope { scopes, missing_scopes, .. } => {
                            Some((scopes.clone(), missing_scopes.clone()))
                        }
                        _ => None,
                    },
                    token: None,
                    account: None,
                    verified: true,
                    last_error: Some(AppError::Verify(verdict).problem()),
                },
                Ok(()),
            ),
            Err(e) => {
                let status = if matches!(e, AppError::Verify(_) | AppError::EgressDenied(_)) {
                    Status::Unreachable
                } else {
                    row.status
                };
                let checked = Checked {
                    status,
                    scopes: None,
                    token: None,
                    account: None,
                    verified: false,
                    last_error: Some(e.problem()),
                };
                (checked, Err(e))
            }
        };
        let updated = self.shared.store.record_check(id, &checked).await?.ok_or_else(removed)?;
        result.map(|()| updated)
    }

    /// Replaces the credentials of an integration with ones for the same
    /// account. Fields left out keep their stored value.
    pub async fn rotate(&self, id: &str, raw: BTreeMap<String, String>) -> Result<IntegrationRow, AppError> {
        let result = self.rotate_verified(id, raw).await;
        if let Err(e) = &result {
            let provider = self.shared.store.get(id).await.ok().flatten().map(|r| r.provider).unwrap_or_default();
            self.shared.audit_failure(ROTATE, Target::integration(id, &provider), e).await;
        }
        result
    }

    async fn rotate_verified(&self, id: &str, raw: BTreeMap<String, String>) -> Result<IntegrationRow, AppError> {
        let row = self.get(id).await?;
        let plugin = self.plugin_of(&row)?;
        let stored = self.shared.open_credentials(&row)?;
        let mut merged = raw;
        for field in plugin.manifest.fields.iter().filter(|f| f.kind != FieldKind::Secret) {
            if !merged.contains_key(&field.key)
                && let Some(v) = stored.get(&field.key)
            {
                merged.insert(field.key.clone(), v.to_string());
            }
        }
        let verifier = &self.shared.verifier;
        let (credentials, base_url) = verifier.prepare(&plugin, merged)?;
        if base_url_text(base_url.as_ref()) != row.base_url {
            return Err(AppError::Validation(format!(
                "The base URL of an integration cannot change (it is {}); connect a new integration instead.",
                row.base_url
            )));
        }
        let verification =
            verifier.verify(&plugin, &credentials, base_url.as_ref()).await?.map_err(AppError::Verify)?;
        if verification.account.id != row.account_id {
            let current = &row.account.username;
            return Err(AppError::AccountMismatch(format!(
                "The new token belongs to {:?}, but this integration is connected to {current:?}; use a token of {current:?}, or connect the other account as a new integration.",
                verification.account.username
            )));
        }
        // A pasted token replaces an OAuth grant: its refresh token is dropped.
        self.replace(id, &plugin, &credentials, &verification, None, None, ROTATE).await
    }

    /// Opens a connection for use by the proxy, an action or a sync. An
    /// access token due for refresh is refreshed first (under the
    /// integration's lock, so concurrent uses spend the refresh token once).
    pub async fn for_use(&self, id: &str) -> Result<InUse, AppError> {
        let mut row = self.get(id).await?;
        if self.grants.due_for_refresh(&row) {
            let _guard = self.shared.lock(id).await;
            row = match self.grants.refresh_if_due(self.get(id).await?).await? {
                Refreshed::Current(row) | Refreshed::Renewed(row) | Refreshed::Failed(row) => row,
            };
        }
        self.in_use(row)
    }

    /// After the provider refused `used`'s credential: refreshes once if
    /// the integration can be refreshed (or takes the credentials another
    /// use refreshed meanwhile). None when there is nothing newer to try.
    pub async fn refresh_after_rejection(&self, used: &IntegrationRow) -> Result<Option<InUse>, AppError> {
        if used.refresh.is_none() {
            return Ok(None);
        }
        let _guard = self.shared.lock(&used.id).await;
        let current = self.get(&used.id).await?;
        if current.secret.ciphertext != used.secret.ciphertext {
            return Ok(Some(self.in_use(current)?));
        }
        match self.grants.renew(current).await? {
            Refreshed::Renewed(row) => Ok(Some(self.in_use(row)?)),
            Refreshed::Current(_) | Refreshed::Failed(_) => Ok(None),
        }
    }

    fn in_use(&self, row: IntegrationRow) -> Result<InUse, AppError> {
        let plugin = self.plugin_of(&row)?;
        let credentials = self.shared.open_credentials(&row)?;
        let base_url = self.shared.stored_base_url(&plugin, &credentials)?.ok_or_else(|| {
            AppError::ProxyUnsupported(format!(
                "The connector {} has no base URL field, so Gatehouse cannot tell where its API is.",
                plugin.manifest.id
            ))
        })?;
        // No resolution here: every request resolves through the egress
        // client's resolver, which refuses a forbidden address itself, and a
        // lookup per proxied request would double the DNS traffic.
        Ok(InUse { row, plugin, credentials, base_url })
    }
}

/// A connection ready to be used: its row (refreshed first when its access
/// token was due), its connector, its opened credentials and base URL.
pub struct InUse {
    pub row: IntegrationRow,
    pub plugin: Arc<Plugin>,
    pub credentials: Credentials,
    pub base_url: Url,
}

impl InUse {
    /// What an action or sync may know of the connection: never a secret.
    pub fn connection(&self) -> Connection {
        let settings = self
            .plugin
            .manifest
            .fields
            .iter()
            .filter(|f| f.kind != FieldKind::Secret)
            .filter_map(|f| self.credentials.get(&f.key).map(|v| (f.key.clone(), v.to_string())))
            .collect();
        Connection { base_url: base_url_text(Some(&self.base_url)), account_id: self.row.account_id.clone(), settings }
    }
}

fn removed() -> AppError {
    AppError::NotFound("The integration was disconnected meanwhile; connect it again.".into())
}

pub fn status_of(verdict: &VerifyError) -> Status {
    match verdict {
        VerifyError::InvalidToken(_) | VerifyError::TokenRevoked(_) => Status::Invalid,
        VerifyError::TokenExpired(_) => Status::Expired,
        VerifyError::InsufficientScope { .. } => Status::InsufficientScope,
        _ => Status::Unreachable,
    }
}

/// The connector's expiry, when it gave a time Gatehouse can read.
pub(super) fn expiry(v: &Verification) -> Option<Timestamp> {
    let text = v.expires_at.as_deref()?;
    let parsed = Timestamp::parse(text);
    if parsed.is_none() {
        tracing::warn!(expires_at = text, "the connector's token expiry is not RFC 3339; it is not stored");
    }
    parsed
}
