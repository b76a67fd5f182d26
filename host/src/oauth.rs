//! The OAuth 2.0 client, provider-agnostic: OAuth applications per provider
//! and base URL, the authorization-code flow with PKCE (state, verifier,
//! redirect), storing the grant, and refreshing access tokens before they
//! expire — on use and from a background task. The connector supplies the
//! provider's side through `authorize-url`, `exchange-code` and
//! `refresh-token`; state, PKCE, storage and timing stay here.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

use crate::{
    crypto,
    error::AppError,
    integrations::{Integrations, base_url_text, now, problem_json},
    runtime::{
        Plugin,
        model::{OAuthClient, OAuthError, OAuthSettings, Verification},
    },
    store::{IntegrationRow, OAuthAppRow, OAuthStateRow},
};

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

/// Where to send the user's browser, and until when the state is good.
pub struct Authorization {
    pub url: String,
    pub expires_at: String,
}

/// The query of the provider's redirect back to us.
#[derive(Default)]
pub struct CallbackParams {
    pub code: Option<SecretString>,
    pub state: Option<SecretString>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl Integrations {
    fn oauth_settings<'a>(&self, plugin: &'a Plugin) -> Result<&'a OAuthSettings, AppError> {
        plugin.manifest.oauth.as_ref().ok_or(AppError::OAuth(OAuthError::Unsupported))
    }

    /// The base URL to authorize against: the given one or the url field's
    /// default, checked against the egress policy.
    fn oauth_base_url(&self, plugin: &Plugin, given: Option<&str>) -> Result<Url, AppError> {
        let settings = self.oauth_settings(plugin)?;
        let default =
            plugin.manifest.fields.iter().find(|f| f.key == settings.url_field).and_then(|f| f.default.clone());
        let text = given.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).or(default).ok_or_else(|| {
            AppError::Validation(format!("The query parameter base_url is required for {}.", plugin.manifest.id))
        })?;
        self.policy.parse_base_url(&text).map_err(|e| AppError::InvalidBaseUrl(e.to_string()))
    }

    pub fn default_redirect_uri(&self, provider: &str) -> String {
        let base = self.oauth.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string());
        format!("{}/api/v1/oauth/{provider}/callback", base.unwrap_or_default())
    }

    /// Stores an application (client secret sealed). The same provider and
    /// base URL again replaces it. Returns the row and whether it is new.
    pub async fn save_oauth_app(&self, input: OAuthAppInput, source: &str) -> Result<(OAuthAppRow, bool), AppError> {
        let plugin = self.plugin(&input.provider)?;
        let base_url = base_url_text(Some(&self.oauth_base_url(&plugin, input.base_url.as_deref())?));
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
        let now = now();
        let mut row = OAuthAppRow {
            secret: self.key.seal(&app_binding(&plugin.manifest.id, &base_url), secret.as_bytes()),
            id: uuid::Uuid::new_v4().to_string(),
            provider: plugin.manifest.id.clone(),
            base_url,
            client_id,
            redirect_uri,
            source: source.to_string(),
            created_at: now.clone(),
            updated_at: now,
        };
        let (id, created_at) = self.store.upsert_oauth_app(&row).await?;
        let created = id == row.id;
        (row.id, row.created_at) = (id, created_at);
        Ok((row, created))
    }

    pub async fn oauth_apps(&self) -> Result<Vec<OAuthAppRow>, AppError> {
        Ok(self.store.oauth_apps().await?)
    }

    pub async fn oauth_app(&self, id: &str) -> Result<OAuthAppRow, AppError> {
        self.store
            .oauth_app_by_id(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("No OAuth application {id}; GET /api/v1/oauth-apps lists them.")))
    }

    pub async fn delete_oauth_app(&self, id: &str) -> Result<(), AppError> {
        if self.store.delete_oauth_app(id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("No OAuth application {id}; it may already be deleted.")))
        }
    }

    async fn oauth_client(&self, provider: &str, base_url: &str) -> Result<OAuthClient, AppError> {
        let app = self.store.oauth_app(provider, base_url).await?.ok_or_else(|| {
            AppError::OAuthNotConfigured(format!(
                "No OAuth application is configured for {provider} at {base_url}. Register one with the provider (README: OAuth applications) and add it with POST /api/v1/oauth-apps or GATEHOUSE_OAUTH_APPS."
            ))
        })?;
        let secret = self.key.open(&app_binding(&app.provider, &app.base_url), &app.secret)?;
        let secret = std::str::from_utf8(secret.expose_secret()).map_err(|_| crypto::CryptoError::Open)?;
        Ok(OAuthClient {
            client_id: app.client_id,
            client_secret: SecretString::from(secret.to_string()),
            redirect_uri: app.redirect_uri,
        })
    }

    /// Starts an authorization: a single-use state and a PKCE verifier are
    /// kept (hashed and sealed) for `oauth_state_ttl`; the answer is the
    /// provider's authorization URL.
    pub async fn authorize(
        &self,
        provider: &str,
        base_url: Option<&str>,
        label: Option<String>,
    ) -> Result<Authorization, AppError> {
        let plugin = self.plugin(provider)?;
        let settings = self.oauth_settings(&plugin)?;
        let base = self.oauth_base_url(&plugin, base_url)?;
        let base_text = base_url_text(Some(&base));
        let client = self.oauth_client(provider, &base_text).await?;
        let state = crypto::random_token();
        let verifier = crypto::random_token();
        let challenge = crypto::pkce_s256(verifier.expose_secret());
        let url = self
            .runtime
            .authorize_url(&plugin, &base, &client.client_id, &client.redirect_uri, &state, &challenge)
            .await?
            .map_err(AppError::OAuth)?;
        check_authorize_url(&url, &base, settings, state.expose_secret(), &challenge)?;
        let state_hash = crypto::sha256_hex(state.expose_secret().as_bytes());
        let expires = OffsetDateTime::now_utc() + self.oauth.oauth_state_ttl;
        self.store
            .insert_oauth_state(&OAuthStateRow {
                verifier: self.key.seal(&format!("oauth-state/{state_hash}"), verifier.expose_secret().as_bytes()),
                state_hash,
                provider: provider.to_string(),
                base_url: base_text,
                label: label.filter(|l| !l.trim().is_empty()),
                created_at: now(),
                expires_at_unix: expires.unix_timestamp(),
            })
            .await?;
        Ok(Authorization { url, expires_at: rfc3339(expires) })
    }

    /// Finishes an authorization: spends the state, exchanges the code,
    /// verifies the token through the connector and stores the grant.
    pub async fn callback(&self, provider: &str, params: CallbackParams) -> Result<(IntegrationRow, bool), AppError> {
        let start_again = format!("Start again from the settings page or GET /api/v1/oauth/{provider}/authorize.");
        let state = params.state.ok_or_else(|| {
            AppError::OAuthState(format!(
                "The callback carries no state, so it cannot be matched to an authorization. {start_again}"
            ))
        })?;
        let state_hash = crypto::sha256_hex(state.expose_secret().as_bytes());
        let pending = self.store.take_oauth_state(&state_hash).await?.ok_or_else(|| {
            AppError::OAuthState(format!(
                "The state is unknown or was already used (each authorization can be completed once). {start_again}"
            ))
        })?;
        if pending.provider != provider {
            return Err(AppError::OAuthState(format!(
                "The state belongs to an authorization for another provider. {start_again}"
            )));
        }
        if OffsetDateTime::now_utc().unix_timestamp() > pending.expires_at_unix {
            return Err(AppError::OAuthState(format!(
                "The authorization expired: it must be completed within {}. {start_again}",
                humantime::format_duration(self.oauth.oauth_state_ttl)
            )));
        }
        if let Some(error) = params.error {
            let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            let description: String = params.error_description.unwrap_or_default().chars().take(300).collect();
            let what = if error == "access_denied" {
                "Access was denied at the provider (the user declined, or the application may not have the requested scopes).".to_string()
            } else {
                format!("The provider answered the authorization with the error {error:?}.")
            };
            let description =
                if description.trim().is_empty() { String::new() } else { format!(" It said: {description}") };
            return Err(AppError::OAuthDenied(format!("{what}{description} {start_again}")));
        }
        let code = params
            .code
            .filter(|c| !c.expose_secret().is_empty())
            .ok_or_else(|| AppError::Validation(format!("The callback carries no code. {start_again}")))?;
        let plugin = self.plugin(provider)?;
        let settings = self.oauth_settings(&plugin)?;
        let base =
            self.policy.parse_base_url(&pending.base_url).map_err(|e| AppError::InvalidBaseUrl(e.to_string()))?;
        let client = self.oauth_client(provider, &pending.base_url).await?;
        let verifier = self.key.open(&format!("oauth-state/{state_hash}"), &pending.verifier)?;
        let verifier = SecretString::from(
            std::str::from_utf8(verifier.expose_secret()).map_err(|_| crypto::CryptoError::Open)?.to_string(),
        );
        let grant =
            self.runtime.exchange_code(&plugin, &base, &client, &code, &verifier).await?.map_err(AppError::OAuth)?;
        let raw = BTreeMap::from([
            (settings.url_field.clone(), pending.base_url.clone()),
            (settings.token_field.clone(), grant.access_token.expose_secret().to_string()),
        ]);
        let (credentials, base_url) = self.prepare(&plugin, raw)?;
        let verification =
            self.run_verify(&plugin, &credentials, base_url.as_ref()).await?.map_err(AppError::Verify)?;
        let verification = Verification {
            expires_at: verification.expires_at.clone().or_else(|| grant.expires_in.map(expires_in)),
            ..verification
        };
        self.store_verified(
            &plugin,
            &credentials,
            base_url.as_ref(),
            &verification,
            pending.label,
            grant.refresh_token.as_ref(),
        )
        .await
    }

    /// `POST /integrations/{id}/refresh`: refreshes now, due or not.
    pub async fn refresh(&self, id: &str) -> Result<IntegrationRow, AppError> {
        let _guard = self.lock(id).await;
        let row = self.get(id).await?;
        if row.refresh.is_none() {
            return Err(AppError::NotRefreshable(not_refreshable_sentence(&row.provider)));
        }
        match self.renew(row).await? {
            Refreshed::Current(row) | Refreshed::Renewed(row) | Refreshed::Failed(row) => Ok(row),
        }
    }

    /// Whether the row's access token expires within the refresh window and
    /// it holds a refresh token.
    pub(crate) fn due_for_refresh(&self, row: &IntegrationRow) -> bool {
        row.refresh.is_some() && expires_within(row.token_expires_at.as_deref(), self.oauth.refresh_window)
    }

    /// Refreshes when the access token expires within the refresh window.
    /// The caller holds the integration's lock.
    pub(crate) async fn refresh_if_due(&self, row: IntegrationRow) -> Result<Refreshed, AppError> {
        if row.refresh.is_none() || !expires_within(row.token_expires_at.as_deref(), self.oauth.refresh_window) {
            return Ok(Refreshed::Current(row));
        }
        self.renew(row).await
    }

    pub(crate) async fn renew(&self, row: IntegrationRow) -> Result<Refreshed, AppError> {
        let Some(spent) = row.refresh.clone() else {
            return Ok(Refreshed::Current(row));
        };
        let plugin = self.plugin_of(&row)?;
        let settings = self.oauth_settings(&plugin)?;
        let credentials = self.open_credentials(&row)?;
        let Some(base) = self.stored_base_url(&plugin, &credentials)? else {
            return Err(AppError::Validation("The integration has no base URL to refresh against.".into()));
        };
        let client = self.oauth_client(&row.provider, &row.base_url).await?;
        let refresh_token = self.open_refresh(&row.id, &spent)?;
        let outcome = self.runtime.refresh_token(&plugin, &base, &client, &refresh_token).await?;
        let now = now();
        let (updated, refreshed) = match outcome {
            Ok(grant) => {
                let mut credentials = credentials;
                credentials.insert(settings.token_field.clone(), grant.access_token.expose_secret().to_string());
                let hint = crate::integrations::token_hint(&plugin, &credentials);
                let updated = IntegrationRow {
                    status: "connected".into(),
                    token_hint: hint,
                    token_expires_at: grant.expires_in.map(expires_in),
                    scopes: if grant.scopes.is_empty() { row.scopes.clone() } else { grant.scopes.clone() },
                    updated_at: now,
                    last_error_json: None,
                    secret: self.key.seal(&row.id, credentials.to_json().expose_secret().as_bytes()),
                    // Providers that do not rotate refresh tokens keep the old one valid.
                    refresh: Some(match &grant.refresh_token {
                        Some(new) => self.seal_refresh(&row.id, new),
                        None => spent.clone(),
                    }),
                    ..row.clone()
                };
                (updated, true)
            }
            Err(OAuthError::InvalidGrant(why)) => {
                let mut problem = AppError::OAuth(OAuthError::InvalidGrant(why.clone())).problem();
                problem.detail = format!(
                    "{} The refresh token no longer works, so the access token cannot be renewed: reconnect this integration through OAuth (the settings page, or GET /api/v1/oauth/{}/authorize).",
                    why.trim_end_matches('.').to_string() + ".",
                    row.provider
                );
                let updated = IntegrationRow {
                    status: "expired".into(),
                    updated_at: now,
                    last_error_json: Some(problem_json(&problem)),
                    refresh: None,
                    ..row.clone()
                };
                (updated, false)
            }
            Err(other) => return Err(AppError::OAuth(other)),
        };
        if !self.store.update_if_refresh_unchanged(&updated, &spent).await? {
            // Another writer (a replica, or a reconnect) stored a newer
            // grant first; theirs stands.
            return Ok(Refreshed::Renewed(self.get(&row.id).await?));
        }
        Ok(if refreshed { Refreshed::Renewed(updated) } else { Refreshed::Failed(updated) })
    }

    /// One pass of the background task: refreshes what is due and forgets
    /// expired authorizations.
    pub async fn refresh_due(&self) {
        match self.store.delete_expired_oauth_states(OffsetDateTime::now_utc().unix_timestamp()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired OAuth authorizations removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove expired OAuth authorizations"),
        }
        let rows = match self.store.refreshable().await {
            Ok(rows) => rows,
            Err(e) => return tracing::warn!(error = %e, "cannot list refreshable integrations"),
        };
        for row in rows {
            if !expires_within(row.token_expires_at.as_deref(), self.oauth.refresh_window) {
                continue;
            }
            let _guard = self.lock(&row.id).await;
            // Re-read under the lock: a use may have refreshed it meanwhile.
            let row = match self.store.get(&row.id).await {
                Ok(Some(row)) => row,
                _ => continue,
            };
            let id = row.id.clone();
            match self.refresh_if_due(row).await {
                Ok(Refreshed::Renewed(_)) => tracing::info!(integration = %id, "access token refreshed"),
                Ok(Refreshed::Failed(_)) => {
                    tracing::warn!(integration = %id, "refresh token refused; integration marked expired")
                }
                Ok(Refreshed::Current(_)) => {}
                Err(e) => tracing::warn!(integration = %id, code = e.code(), "refresh failed; will retry"),
            }
        }
    }
}

/// Stores the applications given by configuration (`GATEHOUSE_OAUTH_APPS`).
pub async fn load_configured_apps(integrations: &Integrations, json: &str) -> anyhow::Result<()> {
    let apps: Vec<OAuthAppInput> = serde_json::from_str(json).map_err(|e| {
        anyhow::anyhow!(
            "GATEHOUSE_OAUTH_APPS is not a JSON array of {{provider, base_url, client_id, client_secret, redirect_uri?}} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    for app in apps {
        let provider = app.provider.clone();
        let (row, _) = integrations
            .save_oauth_app(app, "config")
            .await
            .map_err(|e| anyhow::anyhow!("OAuth application for {provider}: {}", e.detail()))?;
        tracing::info!(provider = %row.provider, base_url = %row.base_url, "OAuth application configured");
    }
    Ok(())
}

/// Refreshes access tokens before they expire, every `every`.
pub async fn refresh_in_background(integrations: Arc<Integrations>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        integrations.refresh_due().await;
    }
}

pub fn not_refreshable_sentence(provider: &str) -> String {
    format!(
        "This integration holds no refresh token: its access token was pasted, or the provider refused the last refresh. Reconnect it through OAuth (the settings page, or GET /api/v1/oauth/{provider}/authorize) to have it refreshed."
    )
}

/// The connector's URL must stay on the base URL's origin and authorize
/// endpoint and carry our state and challenge: a connector cannot send the
/// user to another site or drop PKCE.
fn check_authorize_url(
    url: &str,
    base: &Url,
    settings: &OAuthSettings,
    state: &str,
    challenge: &str,
) -> Result<(), AppError> {
    let broken = |why: &str| {
        AppError::Plugin(crate::runtime::CallError::Failed(format!("the connector's authorization URL {why}")))
    };
    let parsed = Url::parse(url).map_err(|_| broken("is not a URL"))?;
    if parsed.origin() != base.origin() {
        return Err(broken("is not on the base URL's origin"));
    }
    let expected_path = format!("{}{}", base.path().trim_end_matches('/'), settings.authorize_path);
    if parsed.path() != expected_path {
        return Err(broken("is not the declared authorize endpoint"));
    }
    let query: BTreeMap<_, _> = parsed.query_pairs().collect();
    if query.get("state").map(|s| s.as_ref()) != Some(state)
        || query.get("code_challenge").map(|s| s.as_ref()) != Some(challenge)
    {
        return Err(broken("does not carry the state and the PKCE challenge"));
    }
    Ok(())
}

/// What an application's sealed secret is bound to: its unique key, so a
/// replacement written over an existing row still opens.
fn app_binding(provider: &str, base_url: &str) -> String {
    format!("oauth-app/{provider}/{base_url}")
}

use crate::clock::rfc3339;

fn expires_in(seconds: u32) -> String {
    rfc3339(OffsetDateTime::now_utc() + Duration::from_secs(u64::from(seconds)))
}

/// Whether an RFC 3339 expiry is within `window` from now (or past).
/// Unknown or unparsable expiries are not due.
fn expires_within(expires_at: Option<&str>, window: Duration) -> bool {
    let Some(at) = expires_at.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()) else {
        return false;
    };
    at - OffsetDateTime::now_utc() <= window
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_when_within_the_window() {
        let soon = expires_in(60);
        let later = expires_in(3600);
        assert!(expires_within(Some(&soon), Duration::from_secs(300)));
        assert!(!expires_within(Some(&later), Duration::from_secs(300)));
        assert!(expires_within(Some("2020-01-01T00:00:00Z"), Duration::from_secs(300)));
        assert!(!expires_within(None, Duration::from_secs(300)));
        assert!(!expires_within(Some("2027-01-01"), Duration::from_secs(300)));
    }
}
