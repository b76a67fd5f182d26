//! OAuth grants, provider-agnostic: the OAuth applications registered per
//! provider and base URL, and renewing access tokens with their refresh
//! tokens before they expire — on use and from a background task. The
//! connector supplies the provider's side through `refresh-token`; timing,
//! storage and the one-use rule of refresh tokens stay here.

use std::{sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{
    clock::Timestamp,
    config::OAuthConfig,
    context::{self, Target},
    crypto::Binding,
    error::AppError,
    runtime::{
        Connector,
        model::{OAuthClient, OAuthError, OAuthSettings},
    },
    services::{
        shared::{Shared, token_hint},
        verifier::base_url_text,
    },
    store::{IntegrationRow, OAuthAppRow, Refresh},
};

const REFRESH: &str = "integration.refresh";

/// How long a claim to spend a refresh token lasts: longer than a refresh
/// takes (the connector call's deadline), so a live claim is not taken
/// over; a dead process's is, after this.
const REFRESH_CLAIM_SECONDS: i64 = 60;

/// What another process's refresh of `row` ended with, as if this one had
/// made it (as when another writer stores first).
fn others_outcome(row: IntegrationRow) -> Refreshed {
    if row.refresh.is_none() { Refreshed::Failed(row) } else { Refreshed::Renewed(row) }
}

/// Whether `row` holds other tokens than the ones a refresh started from.
fn renewed_since(row: &IntegrationRow, spent: &crate::crypto::Sealed, secret_seen: &[u8]) -> bool {
    row.refresh.as_ref().is_none_or(|r| r.ciphertext != spent.ciphertext) || row.secret.ciphertext != secret_seen
}

/// What a refresh check did.
pub enum Refreshed {
    /// Nothing to do: not refreshable, or not due.
    Current(IntegrationRow),
    /// New tokens are stored.
    Renewed(IntegrationRow),
    /// The provider refused the refresh token; the row is now `expired`.
    Failed(IntegrationRow),
}

/// An OAuth application as submitted (API or configuration).
#[derive(serde::Deserialize)]
pub struct OAuthAppInput {
    pub provider: String,
    pub base_url: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: Option<String>,
}

pub struct Grants {
    shared: Arc<Shared>,
    config: OAuthConfig,
}

impl Grants {
    pub(super) fn new(shared: Arc<Shared>, config: OAuthConfig) -> Self {
        Self { shared, config }
    }

    pub(super) fn config(&self) -> &OAuthConfig {
        &self.config
    }

    pub(super) fn settings<'a>(&self, plugin: &'a Connector) -> Result<&'a OAuthSettings, AppError> {
        plugin.manifest.oauth.as_ref().ok_or(AppError::OAuth(OAuthError::Unsupported))
    }

    /// The base URL to authorize against: the given one or the url field's
    /// default, checked against the egress policy.
    pub(super) fn base_url(&self, plugin: &Connector, given: Option<&str>) -> Result<Url, AppError> {
        let settings = self.settings(plugin)?;
        let default =
            plugin.manifest.fields.iter().find(|f| f.key == settings.url_field).and_then(|f| f.default.clone());
        let text = given.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).or(default).ok_or_else(|| {
            AppError::Validation(format!("The query parameter base_url is required for {}.", plugin.manifest.id))
        })?;
        self.shared.verifier.policy().parse_base_url(&text).map_err(|e| AppError::InvalidBaseUrl(e.to_string()))
    }

    /// Whether browsers reach this server over HTTPS (cookies are then
    /// marked `Secure`).
    pub fn public_url_is_https(&self) -> bool {
        self.shared.public_url.as_ref().is_some_and(|u| u.scheme() == "https")
    }

    pub fn default_redirect_uri(&self, provider: &str) -> String {
        let base = self.shared.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string());
        format!("{}/api/v1/oauth/{provider}/callback", base.unwrap_or_default())
    }

    /// Stores an application (client secret sealed). The same provider and
    /// base URL again replaces it. Returns the row and whether it is new.
    pub async fn save_app(&self, input: OAuthAppInput, source: &str) -> Result<(OAuthAppRow, bool), AppError> {
        let provider = input.provider.clone();
        let result = self.store_app(input, source).await;
        if let Err(e) = &result {
            let target =
                Target { provider: self.shared.known_provider(&provider), ..Target::oauth_app(None, &provider) };
            self.shared.audit_failure("oauth_app.save", target, e).await;
        }
        result
    }

    async fn store_app(&self, input: OAuthAppInput, source: &str) -> Result<(OAuthAppRow, bool), AppError> {
        let plugin = self.shared.plugin(&input.provider)?;
        let base_url = base_url_text(Some(&self.base_url(&plugin, input.base_url.as_deref())?));
        let client_id = input.client_id.trim().to_string();
        if client_id.is_empty() || client_id.len() > 512 {
            return Err(AppError::Validation("client_id is required (at most 512 characters).".into()));
        }
        let secret = input.client_secret.expose_secret().trim();
        if secret.is_empty() || secret.len() > 4096 {
            return Err(AppError::Validation("client_secret is required (at most 4096 characters).".into()));
        }
        let redirect_uri = match input.redirect_uri.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
            Some(uri) => {
                let parsed = Url::parse(&uri).map_err(|_| {
                    AppError::Validation(
                        "redirect_uri must be an absolute http(s) URL; leave it out for the default.".into(),
                    )
                })?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.fragment().is_some() {
                    return Err(AppError::Validation(
                        "redirect_uri must be an absolute http(s) URL without a fragment.".into(),
                    ));
                }
                uri
            }
            None => self.default_redirect_uri(&plugin.manifest.id),
        };
        let provider = plugin.manifest.id.as_str();
        let now = Timestamp::now();
        let mut row = OAuthAppRow {
            secret: self.shared.key.seal(Binding::OAuthApp { provider, base_url: &base_url }, secret),
            id: uuid::Uuid::new_v4().to_string(),
            provider: provider.to_string(),
            base_url,
            client_id,
            redirect_uri,
            source: source.to_string(),
            created_at: now,
            updated_at: now,
        };
        let audit = context::audit_entry("oauth_app.save", Target::oauth_app(None, provider), "ok");
        let (id, created_at) = self.shared.store.upsert_oauth_app(&row, &audit).await?;
        let created = id == row.id;
        (row.id, row.created_at) = (id, created_at);
        Ok((row, created))
    }

    pub async fn apps(&self) -> Result<Vec<OAuthAppRow>, AppError> {
        Ok(self.shared.store.oauth_apps().await?)
    }

    pub async fn app(&self, id: &str) -> Result<OAuthAppRow, AppError> {
        self.shared
            .store
            .oauth_app_by_id(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("No OAuth application {id}; GET /api/v1/oauth-apps lists them.")))
    }

    pub async fn delete_app(&self, id: &str) -> Result<(), AppError> {
        let provider = self.shared.store.oauth_app_by_id(id).await?.map(|a| a.provider).unwrap_or_default();
        let target = Target::oauth_app(Some(id), &provider);
        let audit = context::audit_entry("oauth_app.delete", target.clone(), "ok");
        if self.shared.store.delete_oauth_app(id, &audit).await? {
            Ok(())
        } else {
            let e = AppError::NotFound(format!("No OAuth application {id}; it may already be deleted."));
            self.shared.audit_failure("oauth_app.delete", target, &e).await;
            Err(e)
        }
    }

    /// The application for a provider and base URL, its secret opened.
    pub(super) async fn client(&self, provider: &str, base_url: &str) -> Result<OAuthClient, AppError> {
        let app = self.shared.store.oauth_app(provider, base_url).await?.ok_or_else(|| {
            AppError::OAuthNotConfigured(format!(
                "No OAuth application is configured for {provider} at {base_url}. Register one with the provider (README: OAuth applications) and add it with POST /api/v1/oauth-apps or GATEHOUSE_OAUTH_APPS."
            ))
        })?;
        let binding = Binding::OAuthApp { provider: &app.provider, base_url: &app.base_url };
        let client_secret = self.shared.key.open(binding, &app.secret)?;
        Ok(OAuthClient { client_id: app.client_id, client_secret, redirect_uri: app.redirect_uri })
    }

    /// `POST /integrations/{id}/refresh`: refreshes now, due or not.
    pub async fn refresh(&self, id: &str) -> Result<IntegrationRow, AppError> {
        let _guard = self.shared.lock(id).await;
        let row = self.shared.integration(id).await?;
        if row.refresh.is_none() {
            return Err(AppError::NotRefreshable(not_refreshable_sentence(&row.provider)));
        }
        match self.renew(row).await? {
            Refreshed::Current(row) | Refreshed::Renewed(row) | Refreshed::Failed(row) => Ok(row),
        }
    }

    /// Whether the row's access token expires within the refresh window and
    /// it holds a refresh token.
    pub fn due_for_refresh(&self, row: &IntegrationRow) -> bool {
        row.refresh.is_some() && row.token_expires_at.is_some_and(|at| at.within(self.config.refresh_window))
    }

    /// Refreshes when the access token expires within the refresh window.
    /// The caller holds the integration's lock.
    pub(super) async fn refresh_if_due(&self, row: IntegrationRow) -> Result<Refreshed, AppError> {
        if !self.due_for_refresh(&row) {
            return Ok(Refreshed::Current(row));
        }
        self.renew(row).await
    }

    /// Spends the refresh token. The caller holds the integration's lock.
    /// Every attempt is in the audit log and the metrics, whatever its end.
    pub(super) async fn renew(&self, row: IntegrationRow) -> Result<Refreshed, AppError> {
        let target = Target::integration(&row.id, &row.provider);
        let result = self.spend(row).await;
        let outcome = match &result {
            Ok(Refreshed::Renewed(_)) => "ok",
            Ok(Refreshed::Failed(_)) => "invalid_grant",
            Ok(Refreshed::Current(_)) => return result,
            Err(e) => e.code().as_str(),
        };
        crate::metrics::oauth_refresh(outcome);
        if let Err(e) = &result {
            self.shared.audit_failure(REFRESH, target, e).await;
        }
        result
    }

    /// Spends the refresh token once across every process sharing the
    /// database: a claim in the database (compare-and-swap on the stored
    /// token, with an expiry) picks the one that asks the provider; the
    /// others wait for its outcome and take it. A claimant that dies is
    /// taken over when its claim expires.
    async fn spend(&self, mut row: IntegrationRow) -> Result<Refreshed, AppError> {
        let Some(spent) = row.refresh.clone() else {
            return Ok(Refreshed::Current(row));
        };
        let store = &self.shared.store;
        let seen = row.secret.ciphertext.clone();
        loop {
            let now = Timestamp::now().unix();
            if store.claim_refresh(&row.id, &spent, now, now + REFRESH_CLAIM_SECONDS).await? {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            row = self.shared.integration(&row.id).await?;
            if renewed_since(&row, &spent, &seen) {
                return Ok(others_outcome(row));
            }
        }
        // Claimed: unless another process renewed it between our read and
        // the claim (a provider that keeps refresh tokens leaves the same
        // one stored).
        let fresh = self.shared.integration(&row.id).await?;
        if renewed_since(&fresh, &spent, &seen) {
            store.release_refresh(&fresh.id, &spent).await?;
            return Ok(others_outcome(fresh));
        }
        let id = fresh.id.clone();
        let result = self.spend_claimed(fresh, spent.clone()).await;
        if result.is_err()
            && let Err(e) = store.release_refresh(&id, &spent).await
        {
            tracing::warn!(integration = %id, error = %e, "cannot release the refresh claim; it expires by itself");
        }
        result
    }

    /// Asks the provider for new tokens and stores them; the caller holds
    /// the claim on `spent`.
    async fn spend_claimed(&self, row: IntegrationRow, spent: crate::crypto::Sealed) -> Result<Refreshed, AppError> {
        let plugin = self.shared.plugin_of(&row)?;
        let settings = self.settings(&plugin)?;
        let credentials = self.shared.open_credentials(&row)?;
        let Some(base) = self.shared.stored_base_url(&plugin, &credentials)? else {
            return Err(AppError::Validation("The integration has no base URL to refresh against.".into()));
        };
        let client = self.client(&row.provider, &row.base_url).await?;
        let refresh_token = self.shared.key.open(Binding::RefreshToken(&row.id), &spent)?;
        let outcome = self.shared.runtime.refresh_token(&plugin, &base, &client, &refresh_token).await?;
        let key = &self.shared.key;
        let change = match outcome {
            Ok(grant) => {
                let mut credentials = credentials;
                credentials.insert(settings.token_field.clone(), grant.access_token.expose_secret().to_string());
                Refresh::Renewed {
                    token_hint: token_hint(&plugin, &credentials),
                    token_expires_at: grant.expires_in.map(expires_in),
                    scopes: (!grant.scopes.is_empty()).then(|| grant.scopes.clone()),
                    secret: key.seal(Binding::Credentials(&row.id), credentials.to_json().expose_secret()),
                    // Providers that do not rotate refresh tokens keep the old one valid.
                    refresh: match &grant.refresh_token {
                        Some(new) => key.seal(Binding::RefreshToken(&row.id), new.expose_secret()),
                        None => spent.clone(),
                    },
                }
            }
            Err(OAuthError::InvalidGrant(why)) => {
                let mut last_error = AppError::OAuth(OAuthError::InvalidGrant(why.clone())).problem();
                last_error.detail = format!(
                    "{}. The refresh token no longer works, so the access token cannot be renewed: reconnect this integration through OAuth (the settings page, or GET /api/v1/oauth/{}/authorize).",
                    why.trim_end_matches('.'),
                    row.provider
                );
                Refresh::Refused { last_error }
            }
            Err(other) => return Err(AppError::OAuth(other)),
        };
        let outcome = if matches!(change, Refresh::Renewed { .. }) { "ok" } else { "invalid_grant" };
        let audit = context::audit_entry(REFRESH, Target::integration(&row.id, &row.provider), outcome);
        match self.shared.store.store_refresh(&row.id, &spent, &change, &audit).await? {
            Some(stored) if matches!(change, Refresh::Renewed { .. }) => Ok(Refreshed::Renewed(stored)),
            Some(stored) => Ok(Refreshed::Failed(stored)),
            // Another writer (a replica, or a reconnect) stored a newer grant
            // first; theirs stands.
            None => match self.shared.store.get(&row.id).await? {
                Some(current) => Ok(Refreshed::Renewed(current)),
                None => Err(AppError::NotFound("The integration was disconnected meanwhile.".into())),
            },
        }
    }

    /// One pass of the background task: refreshes what is due and forgets
    /// expired authorizations.
    pub async fn refresh_due(&self) {
        let store = &self.shared.store;
        match store.delete_expired_oauth_states(Timestamp::now().unix()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired OAuth authorizations removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove expired OAuth authorizations"),
        }
        let rows = match store.refreshable().await {
            Ok(rows) => rows,
            Err(e) => return tracing::warn!(error = %e, "cannot list refreshable integrations"),
        };
        for row in rows.into_iter().filter(|row| self.due_for_refresh(row)) {
            let _guard = self.shared.lock(&row.id).await;
            // Re-read under the lock: a use may have refreshed it meanwhile.
            let Ok(Some(row)) = store.get(&row.id).await else { continue };
            let id = row.id.clone();
            match self.refresh_if_due(row).await {
                Ok(Refreshed::Renewed(_)) => tracing::info!(integration = %id, "access token refreshed"),
                Ok(Refreshed::Failed(_)) => {
                    tracing::warn!(integration = %id, "refresh token refused; integration marked expired")
                }
                Ok(Refreshed::Current(_)) => {}
                Err(e) => tracing::warn!(integration = %id, code = %e.code(), "refresh failed; will retry"),
            }
        }
    }

    /// Refreshes access tokens before they expire, every `every`.
    pub async fn refresh_in_background(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh_due().await;
        }
    }

    /// Stores the applications given by configuration (`GATEHOUSE_OAUTH_APPS`).
    pub async fn load_configured_apps(&self, json: &str) -> anyhow::Result<()> {
        let apps: Vec<OAuthAppInput> = serde_json::from_str(json).map_err(|e| {
            anyhow::anyhow!(
                "GATEHOUSE_OAUTH_APPS is not a JSON array of {{provider, base_url, client_id, client_secret, redirect_uri?}} (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        for app in apps {
            let provider = app.provider.clone();
            let (row, _) = self
                .save_app(app, "config")
                .await
                .map_err(|e| anyhow::anyhow!("OAuth application for {provider}: {}", e.detail()))?;
            tracing::info!(provider = %row.provider, base_url = %row.base_url, "OAuth application configured");
        }
        Ok(())
    }
}

pub fn not_refreshable_sentence(provider: &str) -> String {
    format!(
        "This integration holds no refresh token: its access token was pasted, or the provider refused the last refresh. Reconnect it through OAuth (the settings page, or GET /api/v1/oauth/{provider}/authorize) to have it refreshed."
    )
}

/// The expiry of a token that lives `seconds` from now.
pub(super) fn expires_in(seconds: u32) -> Timestamp {
    Timestamp::now().after(Duration::from_secs(u64::from(seconds)))
}
