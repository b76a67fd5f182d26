//! Integration lifecycle: turns API requests into connector calls and store
//! writes — verify (with what the credential reaches), connect (idempotent
//! per account), replace the credentials, regenerate them at the provider,
//! limit the connection to one scope, re-verify, disconnect — and opens a
//! connection for use by the proxy, actions and syncs. Provider-agnostic:
//! it knows fields by kind, not by name.

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
        Connector,
        model::{Connection, Credentials, FieldKind, ReachItem, RotateError, TokenReach, Verification, VerifyError},
    },
    services::{
        grants::{Grants, Refreshed},
        sessions::Access,
        shared::{Shared, token_hint},
        verifier::{Verdict, base_url_text, connection_of},
        webhooks::{ConnectionEvent, Webhooks},
    },
    store::{Checked, IntegrationRow, Owner, Status, Store, Verified},
};

/// Audit actions of the credential changes made here.
const REPLACE: &str = "integration.replace";
const ROTATE: &str = "integration.rotate";

pub struct Integrations {
    shared: Arc<Shared>,
    grants: Arc<Grants>,
    webhooks: Arc<Webhooks>,
}

impl Integrations {
    pub(super) fn new(shared: Arc<Shared>, grants: Arc<Grants>, webhooks: Arc<Webhooks>) -> Self {
        Self { shared, grants, webhooks }
    }

    /// Integration `id` if `scope` may see it. Another end user's
    /// connection answers exactly as a missing one, so ids cannot be probed.
    pub async fn owned(&self, access: &Access, id: &str) -> Result<IntegrationRow, AppError> {
        let row = self.shared.integration(id).await?;
        if access.admits(&row) { Ok(row) } else { Err(self.shared.no_integration(id)) }
    }

    /// Tells the consuming system about an end user's connection.
    pub(super) async fn event(&self, kind: ConnectionEvent, row: &IntegrationRow) {
        if row.owner.end_user_id.is_some() {
            self.webhooks.connection_event(kind, event_data(row)).await;
        }
    }

    /// Tells the consuming system that an end user's attempt to connect failed.
    pub(super) async fn failed_attempt(&self, owner: &Owner, provider: &str, error: &AppError) {
        if owner.end_user_id.is_none() {
            return;
        }
        let problem = error.problem();
        let data = serde_json::json!({
            "integration_id": null,
            "provider": provider,
            "end_user": end_user_json(owner),
            "organization": owner.organization,
            "error": {"code": problem.code, "detail": problem.detail},
        });
        self.webhooks.connection_event(ConnectionEvent::Failed, data).await;
    }

    pub fn plugins(&self) -> Vec<Arc<Connector>> {
        self.shared.plugins()
    }

    /// Readiness: the database answers with every migration of this
    /// version applied; answers the backend's name and how many connectors
    /// are loaded (they are, before the server listens).
    pub async fn ready(&self) -> Result<(&'static str, usize), AppError> {
        self.shared.store.ready().await?;
        Ok((self.shared.store.backend(), self.shared.plugins().len()))
    }

    pub fn plugin(&self, id: &str) -> Result<Arc<Connector>, AppError> {
        self.shared.plugin(id)
    }

    /// The connector of a stored integration, or `provider_unavailable`.
    pub fn plugin_of(&self, row: &IntegrationRow) -> Result<Arc<Connector>, AppError> {
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

    /// `POST /providers/{id}/verify`: stores nothing. A valid credential
    /// comes with what it reaches, when the connector can tell.
    pub async fn verify(
        &self,
        access: &Access,
        provider: &str,
        raw: BTreeMap<String, String>,
    ) -> Result<(Verdict, Option<TokenReach>), AppError> {
        access.check_provider(provider)?;
        let plugin = self.plugin(provider)?;
        let verifier = &self.shared.verifier;
        let (credentials, base_url) = verifier.prepare(&plugin, raw)?;
        verifier.verify_with_reach(&plugin, &credentials, base_url.as_ref()).await
    }

    /// Verifies and stores. Returns the row and whether it is new; the same
    /// account on the same base URL replaces the existing credentials.
    /// A session connects for its own end user; the API key for the end
    /// user (and organization) it names, or for none.
    pub async fn connect(
        &self,
        access: &Access,
        provider: &str,
        raw: BTreeMap<String, String>,
        label: Option<String>,
        owner: Owner,
    ) -> Result<(IntegrationRow, bool), AppError> {
        access.check_provider(provider)?;
        let owner = access.owner_for_connect(owner)?;
        let plugin = self.plugin(provider)?;
        let result = async {
            let verifier = &self.shared.verifier;
            let (credentials, base_url) = verifier.prepare(&plugin, raw)?;
            let (verdict, reach) = verifier.verify_with_reach(&plugin, &credentials, base_url.as_ref()).await?;
            let verification = verdict.map_err(AppError::Verify)?;
            self.store_verified(&plugin, &credentials, base_url.as_ref(), &verification, reach, label, None, &owner)
                .await
        }
        .await;
        if let Err(e) = &result {
            if access.is_session() {
                self.failed_attempt(&owner, provider, e).await;
            }
            let target = Target { provider: self.shared.known_provider(provider), ..Target::provider(provider) };
            self.shared.audit_failure("integration.connect", target, e).await;
        }
        result
    }

    /// Stores verified credentials (and a refresh token, from the OAuth
    /// flow) as a new integration of `owner`, or over the one of the same
    /// account when it is `owner`'s; another end user's is not touched
    /// (`account_in_use`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_verified(
        &self,
        plugin: &Connector,
        credentials: &Credentials,
        base_url: Option<&Url>,
        verification: &Verification,
        reach: Option<TokenReach>,
        label: Option<String>,
        refresh_token: Option<&SecretString>,
        owner: &Owner,
    ) -> Result<(IntegrationRow, bool), AppError> {
        let store = &self.shared.store;
        let provider = plugin.manifest.id.as_str();
        let base_url = base_url_text(base_url);
        let account_id = &verification.account.id;
        if let Some(existing) = store.find_account(provider, &base_url, account_id).await? {
            check_same_owner(&existing, owner)?;
            let row = self
                .replace(&existing.id, plugin, credentials, verification, reach.clone(), label, refresh_token, REPLACE)
                .await?;
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
            reach: reach.clone().map(Json),
            scope: None,
            expiry_notified_for: None,
            rotation_started_at: None,
            owner: owner.clone(),
        };
        let audit = context::audit_entry("integration.connect", Target::integration(&id, provider), "ok");
        if store.insert(&row, &audit).await? {
            self.event(ConnectionEvent::Created, &row).await;
            return Ok((row, true));
        }
        // Another request connected the same account meanwhile: update it.
        let existing = store.find_account(provider, &base_url, account_id).await?.ok_or_else(removed)?;
        check_same_owner(&existing, owner)?;
        let row =
            self.replace(&existing.id, plugin, credentials, verification, reach, label, refresh_token, REPLACE).await?;
        Ok((row, false))
    }

    /// Writes verified credentials over integration `id`, under its lock.
    /// `refresh_token` replaces the stored one (None: not refreshable).
    /// `action` names the change in the audit log.
    #[allow(clippy::too_many_arguments)]
    async fn replace(
        &self,
        id: &str,
        plugin: &Connector,
        credentials: &Credentials,
        v: &Verification,
        reach: Option<TokenReach>,
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
            reach,
        };
        let audit = context::audit_entry(action, Target::integration(id, &plugin.manifest.id), "ok");
        self.shared.store.replace_credentials(id, &verified, &audit).await?.ok_or_else(removed)
    }

    fn seal_credentials(&self, id: &str, credentials: &Credentials) -> crate::crypto::Sealed {
        self.shared.key.seal(Binding::Credentials(id), credentials.to_json().expose_secret())
    }

    /// The integrations `scope` may see, narrowed to an end user and/or
    /// organization.
    pub async fn list(
        &self,
        access: &Access,
        end_user_id: Option<String>,
        organization: Option<String>,
    ) -> Result<Vec<IntegrationRow>, AppError> {
        let (end_user_id, organization) = access.list_filter(end_user_id, organization)?;
        let rows = self.shared.store.list_owned(end_user_id.as_deref(), organization.as_deref()).await?;
        Ok(rows.into_iter().filter(|r| access.admits(r)).collect())
    }

    pub async fn get(&self, id: &str) -> Result<IntegrationRow, AppError> {
        self.shared.integration(id).await
    }

    pub async fn delete(&self, access: &Access, id: &str) -> Result<(), AppError> {
        let row = match self.owned(access, id).await {
            Ok(row) => row,
            Err(e) => {
                self.shared.audit_failure("integration.disconnect", Target::integration(id, ""), &e).await;
                return Err(e);
            }
        };
        let guard = self.shared.lock(id).await;
        let provider = self.shared.store.get(id).await?.map(|row| row.provider).unwrap_or_default();
        let audit = context::audit_entry("integration.disconnect", Target::integration(id, &provider), "ok");
        let deleted = self.shared.store.delete(id, &audit).await?;
        drop(guard);
        if deleted {
            self.event(ConnectionEvent::Deleted, &row).await;
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
    pub async fn reverify(&self, access: &Access, id: &str) -> Result<IntegrationRow, AppError> {
        self.owned(access, id).await?;
        let _guard = self.shared.lock(id).await;
        let row = self.get(id).await?;
        let was_connected = row.status == Status::Connected;
        // An access token about to expire is refreshed before it is used.
        let row = match self.grants.refresh_if_due(row).await? {
            Refreshed::Failed(row) => return Ok(row),
            Refreshed::Current(row) | Refreshed::Renewed(row) => row,
        };
        let plugin = self.plugin_of(&row)?;
        let credentials = self.shared.open_credentials(&row)?;
        let base_url = self.shared.stored_base_url(&plugin, &credentials)?;
        let (outcome, reach) =
            match self.shared.verifier.verify_with_reach(&plugin, &credentials, base_url.as_ref()).await {
                Ok((verdict, reach)) => (Ok(verdict), reach),
                Err(e) => (Err(e), None),
            };
        let (checked, result) = match outcome {
            Ok(Ok(v)) => (
                Checked {
                    status: Status::Connected,
                    scopes: Some((v.scopes.clone(), Vec::new())),
                    token: Some((v.token_kind.clone(), expiry(&v))),
                    account: Some(v.account),
                    verified: true,
                    last_error: None,
                    reach,
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
                    reach: None,
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
                    reach: None,
                };
                (checked, Err(e))
            }
        };
        let updated = self.shared.store.record_check(id, &checked).await?.ok_or_else(removed)?;
        if was_connected && updated.status != Status::Connected {
            self.event(ConnectionEvent::Failed, &updated).await;
        }
        result.map(|()| updated)
    }

    /// Replaces the credentials of an integration with ones for the same
    /// account. Fields left out keep their stored value.
    pub async fn rotate(
        &self,
        access: &Access,
        id: &str,
        raw: BTreeMap<String, String>,
    ) -> Result<IntegrationRow, AppError> {
        let result = self.rotate_verified(access, id, raw).await;
        if let Err(e) = &result {
            let provider = self.shared.store.get(id).await.ok().flatten().map(|r| r.provider).unwrap_or_default();
            self.shared.audit_failure(ROTATE, Target::integration(id, &provider), e).await;
        }
        result
    }

    async fn rotate_verified(
        &self,
        access: &Access,
        id: &str,
        raw: BTreeMap<String, String>,
    ) -> Result<IntegrationRow, AppError> {
        let row = self.owned(access, id).await?;
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
        let (verdict, reach) = verifier.verify_with_reach(&plugin, &credentials, base_url.as_ref()).await?;
        let verification = verdict.map_err(AppError::Verify)?;
        if verification.account.id != row.account_id {
            let current = &row.account.username;
            return Err(AppError::AccountMismatch(format!(
                "The new token belongs to {:?}, but this integration is connected to {current:?}; use a token of {current:?}, or connect the other account as a new integration.",
                verification.account.username
            )));
        }
        // A pasted token replaces an OAuth grant: its refresh token is dropped.
        self.replace(id, &plugin, &credentials, &verification, reach, None, None, ROTATE).await
    }

    /// Limits the connection to one of the scopes its credential reaches
    /// (`scope`: an id or path from `reach.top_level`, or the item a group or
    /// project credential is bound to), or lifts the limit (None). What the
    /// credential reaches is asked again, so the choice is checked against
    /// the provider's answer of now.
    pub async fn set_scope(&self, caller: &Access, id: &str, scope: Option<&str>) -> Result<IntegrationRow, AppError> {
        self.owned(caller, id).await?;
        let _guard = self.shared.lock(id).await;
        let row = self.get(id).await?;
        let plugin = self.plugin_of(&row)?;
        let Some(scope) = scope.map(str::trim) else {
            let row = self.shared.store.set_scope(id, None, None).await?.ok_or_else(removed)?;
            self.resync(id).await;
            return Ok(row);
        };
        if !plugin.has_reach() {
            return Err(AppError::ScopeUnsupported(format!(
                "The connector {} cannot tell what a credential reaches, so its connections cannot be limited to one scope.",
                plugin.manifest.id
            )));
        }
        let in_use = self.in_use(row)?;
        let connection = in_use.connection_unscoped();
        let reach =
            match self.shared.runtime.describe(&plugin, &connection, &in_use.credentials, &in_use.base_url).await? {
                Some(Ok(reach)) => reach,
                Some(Err(e)) => return Err(AppError::Provider(e)),
                None => {
                    return Err(AppError::ScopeUnsupported(
                        "The connector cannot tell what the credential reaches.".into(),
                    ));
                }
            };
        let choices: Vec<&ReachItem> = reach.top_level.iter().chain(reach.bound_to.as_ref()).collect();
        let Some(chosen) = choices.iter().find(|i| i.id == scope || i.path.eq_ignore_ascii_case(scope)) else {
            let names: Vec<&str> = choices.iter().map(|i| i.path.as_str()).collect();
            return Err(AppError::ScopeNotReached(if names.is_empty() {
                "The token reaches no group the connection could be limited to.".into()
            } else {
                format!(
                    "The token does not reach that scope; choose one of: {} (GET /api/v1/integrations/{id} lists them under reach.top_level).",
                    names.join(", ")
                )
            }));
        };
        let chosen = (*chosen).clone();
        let row = self.shared.store.set_scope(id, Some(&chosen), Some(&reach)).await?.ok_or_else(removed)?;
        self.resync(id).await;
        Ok(row)
    }

    /// After the scope changed, every sync reads everything again, so what
    /// now lies outside is removed from the mirror and what lies inside is
    /// read. A run in progress holds its lease and finishes under the old
    /// scope; its sync is started over once the lease is let go (else the
    /// finished run would schedule the next one an interval later, and
    /// records outside the new scope would stay mirrored until then).
    async fn resync(&self, id: &str) {
        let store = self.shared.store.clone();
        let reset = |store: Store, id: String| async move {
            if let Err(e) = store.reset_syncs(&id, Timestamp::now().unix()).await {
                tracing::warn!(integration = %id, error = %e, "cannot start the syncs over after a scope change");
            }
        };
        reset(store.clone(), id.to_string()).await;
        let id = id.to_string();
        tokio::spawn(async move {
            // A lease outlives its run by at most the call deadline; stop
            // waiting after ten minutes whatever happens.
            for _ in 0..1200 {
                match store.leased_syncs(&id, Timestamp::now().unix()).await {
                    Ok(0) => break,
                    Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                    Err(_) => return,
                }
            }
            reset(store, id).await;
        });
    }

    /// `POST /integrations/{id}/rotate`: the provider issues a new
    /// credential in place of the stored one, through the connector's
    /// `rotation` export, and the new one is sealed and stored.
    ///
    /// The order matters because the provider revokes the old credential
    /// as soon as it issues the new one, so after its answer the new
    /// credential is the only one that works. Before asking, the row is
    /// marked (`rotation_started_at`), which also proves the database takes
    /// writes. After the answer, the new credential is sealed and stored in
    /// one statement before anything else is tried (no verification first:
    /// a failure there must not lose it); a failed write is retried, and if
    /// it still fails the answer is `rotation_incomplete`, the mark stays
    /// and the server log says so, so the loss is never silent. Only then
    /// is the new credential verified, which updates status, scopes, expiry
    /// and reach.
    pub async fn regenerate(&self, caller: &Access, id: &str) -> Result<IntegrationRow, AppError> {
        self.owned(caller, id).await?;
        let _guard = self.shared.lock(id).await;
        let row = self.get(id).await?;
        let plugin = self.plugin_of(&row)?;
        if !plugin.can_rotate() {
            return Err(AppError::RotationUnsupported(format!(
                "The connector {} cannot have the provider issue a new token; create a new one at the provider and send it with PUT /api/v1/integrations/{id}/credentials.",
                plugin.manifest.id
            )));
        }
        let in_use = self.in_use(row)?;
        let connection = in_use.connection();
        if !self.shared.store.begin_rotation(id).await? {
            return Err(removed());
        }
        let answer = self.shared.runtime.rotate(&plugin, &connection, &in_use.credentials, &in_use.base_url).await;
        let rotated = match answer {
            Ok(Some(Ok(rotated))) => rotated,
            other => {
                self.shared.store.abandon_rotation(id).await?;
                return Err(match other {
                    Ok(None) => AppError::RotationUnsupported("The connector does not export rotation.".into()),
                    Ok(Some(Err(RotateError::NotRotatable(s)))) => AppError::RotationUnsupported(s),
                    Ok(Some(Err(RotateError::InsufficientScope { scopes, missing_scopes, detail }))) => {
                        AppError::Verify(VerifyError::InsufficientScope {
                            account: None,
                            scopes,
                            missing_scopes,
                            detail,
                        })
                    }
                    Ok(Some(Err(RotateError::Provider(e)))) => AppError::Provider(e),
                    Err(e) => AppError::Connector(e),
                    Ok(Some(Ok(_))) => unreachable!("matched above"),
                });
            }
        };
        let mut credentials = in_use.credentials.clone();
        for (key, value) in &rotated.credentials {
            let secret_field = plugin.manifest.fields.iter().any(|f| &f.key == key && f.kind == FieldKind::Secret);
            if !secret_field || value.expose_secret().trim().is_empty() {
                tracing::error!(connector = %plugin.manifest.id, field = %key, integration = %id,
                    "the connector's rotation answered a field that is not one of its secret fields, or an empty one; the provider may already have revoked the stored token");
                return Err(AppError::Connector(crate::runtime::CallError::Failed(format!(
                    "the connector's rotation answered the field {key:?}, which is not one of its secret fields (or is empty); the provider may already have revoked the stored token, so check the integration and replace its token if it no longer works"
                ))));
            }
            credentials.insert(key.clone(), value.expose_secret().to_string());
        }
        let sealed = self.seal_credentials(id, &credentials);
        let hint = token_hint(&plugin, &credentials);
        let expires_at = rotated.expires_at.as_deref().and_then(Timestamp::parse_expiry);
        let mut stored = None;
        for attempt in 0..3u32 {
            match self.shared.store.store_rotation(id, &sealed, hint.as_deref(), expires_at).await {
                Ok(row) => {
                    stored = Some(row);
                    break;
                }
                Err(e) => {
                    tracing::error!(integration = %id, attempt, error = %e, "cannot store the rotated token");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        let Some(stored) = stored else {
            return Err(AppError::RotationIncomplete(
                "The provider issued a new token and revoked the old one, but Gatehouse could not store the new one (the database failed; see the server log). Create a new token at the provider and send it with PUT /api/v1/integrations/{id}/credentials.".replace("{id}", id),
            ));
        };
        stored.ok_or_else(removed)?;
        drop(_guard);
        // The new credential is stored; what it is now is learnt by a
        // re-verification (status, scopes, expiry, reach).
        self.reverify(caller, id).await
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

    pub(super) fn in_use(&self, row: IntegrationRow) -> Result<InUse, AppError> {
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
    pub plugin: Arc<Connector>,
    pub credentials: Credentials,
    pub base_url: Url,
}

impl InUse {
    /// What an action or sync may know of the connection: never a secret.
    pub fn connection(&self) -> Connection {
        let scope = self.row.scope.as_ref().map(|s| s.0.clone());
        connection_of(&self.plugin, &self.credentials, &self.base_url, &self.row.account_id, scope)
    }

    /// The connection as if it were not limited to a scope, to ask what
    /// its credential reaches in full.
    fn connection_unscoped(&self) -> Connection {
        connection_of(&self.plugin, &self.credentials, &self.base_url, &self.row.account_id, None)
    }
}

/// Reconnecting an account updates it only for the end user it belongs to.
fn check_same_owner(existing: &IntegrationRow, owner: &Owner) -> Result<(), AppError> {
    if existing.owner.end_user_id == owner.end_user_id {
        return Ok(());
    }
    Err(AppError::AccountInUse(
        "This account is already connected for another end user (or for none), and an account is connected once per provider and base URL; disconnect it there first, or use another account.".into(),
    ))
}

/// What a connection event tells about the connection: never a secret.
fn event_data(row: &IntegrationRow) -> serde_json::Value {
    serde_json::json!({
        "integration_id": row.id,
        "provider": row.provider,
        "status": poem_openapi::types::ToJSON::to_json(&row.status),
        "account": {"id": row.account.id, "username": row.account.username},
        "end_user": end_user_json(&row.owner),
        "organization": row.owner.organization,
        "last_error": row.last_error.as_ref().map(|e| serde_json::json!({"code": e.code, "detail": e.detail})),
    })
}

fn end_user_json(owner: &Owner) -> serde_json::Value {
    serde_json::json!({"id": owner.end_user_id, "name": owner.end_user_name, "email": owner.end_user_email})
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
    let parsed = Timestamp::parse_expiry(text);
    if parsed.is_none() {
        tracing::warn!(
            expires_at = text,
            "the connector's token expiry is not an RFC 3339 date or date-time; it is not stored"
        );
    }
    parsed
}
