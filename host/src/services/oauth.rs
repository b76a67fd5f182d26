//! The OAuth 2.0 authorization-code flow with PKCE, provider-agnostic:
//! a single-use state and a verifier kept (hashed and sealed) while the
//! user is at the provider, the provider's authorization URL checked, the
//! code exchanged and the grant verified and stored. The connector supplies
//! the provider's side through `authorize-url` and `exchange-code`.

use std::{collections::BTreeMap, sync::Arc};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{
    clock::Timestamp,
    crypto::{self, Binding},
    error::AppError,
    runtime::model::{OAuthSettings, Verification},
    services::{
        Shared,
        grants::{Grants, expires_in},
        integrations::Integrations,
        verifier::base_url_text,
    },
    store::{IntegrationRow, OAuthStateRow},
};

/// Where to send the user's browser, and until when the state is good.
pub struct Authorization {
    pub url: String,
    pub expires_at: Timestamp,
}

/// The query of the provider's redirect back to us.
#[derive(Default)]
pub struct CallbackParams {
    pub code: Option<SecretString>,
    pub state: Option<SecretString>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

pub struct OAuthFlow {
    shared: Arc<Shared>,
    grants: Arc<Grants>,
    integrations: Arc<Integrations>,
}

impl OAuthFlow {
    pub(super) fn new(shared: Arc<Shared>, grants: Arc<Grants>, integrations: Arc<Integrations>) -> Self {
        Self { shared, grants, integrations }
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
        let plugin = self.shared.plugin(provider)?;
        let settings = self.grants.settings(&plugin)?;
        let base = self.grants.base_url(&plugin, base_url)?;
        let base_text = base_url_text(Some(&base));
        let client = self.grants.client(provider, &base_text).await?;
        let state = crypto::random_token();
        let verifier = crypto::random_token();
        let challenge = crypto::pkce_s256(verifier.expose_secret());
        let url = self
            .shared
            .runtime
            .authorize_url(&plugin, &base, &client.client_id, &client.redirect_uri, &state, &challenge)
            .await?
            .map_err(AppError::OAuth)?;
        check_authorize_url(&url, &base, settings, state.expose_secret(), &challenge)?;
        let state_hash = crypto::sha256_hex(state.expose_secret().as_bytes());
        let expires = Timestamp::now().after(self.grants.config().oauth_state_ttl);
        self.shared
            .store
            .insert_oauth_state(&OAuthStateRow {
                verifier: self.shared.key.seal(Binding::OAuthVerifier(&state_hash), verifier.expose_secret()),
                state_hash,
                provider: provider.to_string(),
                base_url: base_text,
                label: label.filter(|l| !l.trim().is_empty()),
                created_at: Timestamp::now(),
                expires_at_unix: expires.unix(),
            })
            .await?;
        Ok(Authorization { url, expires_at: expires })
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
        let pending = self.shared.store.take_oauth_state(&state_hash).await?.ok_or_else(|| {
            AppError::OAuthState(format!(
                "The state is unknown or was already used (each authorization can be completed once). {start_again}"
            ))
        })?;
        if pending.provider != provider {
            return Err(AppError::OAuthState(format!(
                "The state belongs to an authorization for another provider. {start_again}"
            )));
        }
        if Timestamp::now().unix() > pending.expires_at_unix {
            return Err(AppError::OAuthState(format!(
                "The authorization expired: it must be completed within {}. {start_again}",
                humantime::format_duration(self.grants.config().oauth_state_ttl)
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
        let plugin = self.shared.plugin(provider)?;
        let settings = self.grants.settings(&plugin)?;
        let verifier = &self.shared.verifier;
        let base =
            verifier.policy().parse_base_url(&pending.base_url).map_err(|e| AppError::InvalidBaseUrl(e.to_string()))?;
        let client = self.grants.client(provider, &pending.base_url).await?;
        let pkce_verifier = self.shared.key.open(Binding::OAuthVerifier(&state_hash), &pending.verifier)?;
        let grant = self
            .shared
            .runtime
            .exchange_code(&plugin, &base, &client, &code, &pkce_verifier)
            .await?
            .map_err(AppError::OAuth)?;
        let raw = BTreeMap::from([
            (settings.url_field.clone(), pending.base_url.clone()),
            (settings.token_field.clone(), grant.access_token.expose_secret().to_string()),
        ]);
        let (credentials, base_url) = verifier.prepare(&plugin, raw)?;
        let verification =
            verifier.verify(&plugin, &credentials, base_url.as_ref()).await?.map_err(AppError::Verify)?;
        let verification = Verification {
            expires_at: verification.expires_at.clone().or_else(|| grant.expires_in.map(|s| expires_in(s).to_string())),
            ..verification
        };
        self.integrations
            .store_verified(
                &plugin,
                &credentials,
                base_url.as_ref(),
                &verification,
                pending.label,
                grant.refresh_token.as_ref(),
            )
            .await
    }
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
