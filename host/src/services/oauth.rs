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
    runtime::model::{OAuthClient, OAuthSettings, Verification},
    services::{
        grants::{Grants, expires_in},
        integrations::Integrations,
        sessions::{Access, Sessions, session_of},
        shared::Shared,
        verifier::base_url_text,
    },
    store::{IntegrationRow, OAuthStateRow, Owner},
};

/// Longest label an authorization accepts, as the connect body does.
const MAX_LABEL_LEN: usize = 200;

/// Where to send the user's browser, and until when the state is good.
pub struct Authorization {
    pub url: String,
    pub expires_at: Timestamp,
    /// The cookie that binds the flow to the browser that started it.
    pub browser_cookie: Option<BrowserCookie>,
}

/// A cookie named after the state, so flows started in one browser at
/// once do not overwrite each other's.
pub struct BrowserCookie {
    pub name: String,
    pub value: SecretString,
}

/// The cookie that carries the browser binding of the flow whose state is
/// `state`.
pub fn browser_cookie_name(state: &str) -> String {
    format!("gatehouse_oauth_{}", &crypto::sha256_hex(state.as_bytes())[..16])
}

/// The query of the provider's redirect back to us.
#[derive(Default)]
pub struct CallbackParams {
    pub code: Option<SecretString>,
    pub state: Option<SecretString>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The value of the state's browser cookie, when the browser sent it.
    pub browser: Option<SecretString>,
}

/// How a callback ended, and for which connect session (whose page the
/// browser goes back to), if the flow was started from one.
pub struct CallbackOutcome {
    pub session_id: Option<String>,
    pub result: Result<(IntegrationRow, bool), AppError>,
}

pub struct OAuthFlow {
    shared: Arc<Shared>,
    grants: Arc<Grants>,
    integrations: Arc<Integrations>,
    sessions: Arc<Sessions>,
}

impl OAuthFlow {
    pub(super) fn new(
        shared: Arc<Shared>,
        grants: Arc<Grants>,
        integrations: Arc<Integrations>,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self { shared, grants, integrations, sessions }
    }

    /// Starts an authorization: a single-use state and a PKCE verifier are
    /// kept (hashed and sealed) for `oauth_state_ttl`; the answer is the
    /// provider's authorization URL.
    pub async fn authorize(
        &self,
        access: &Access,
        provider: &str,
        base_url: Option<&str>,
        label: Option<String>,
        bind_browser: bool,
    ) -> Result<Authorization, AppError> {
        let label = label.map(|l| l.trim().to_string()).filter(|l| !l.is_empty());
        if label.as_ref().is_some_and(|l| l.chars().count() > MAX_LABEL_LEN) {
            return Err(AppError::Validation(format!("The label is longer than {MAX_LABEL_LEN} characters.")));
        }
        access.check_provider(provider)?;
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
        check_authorize_url(&url, &base, settings, &client, state.expose_secret(), &challenge)?;
        let state_hash = crypto::sha256_hex(state.expose_secret().as_bytes());
        let browser_cookie = bind_browser
            .then(|| BrowserCookie { name: browser_cookie_name(state.expose_secret()), value: crypto::random_token() });
        let expires = Timestamp::now().after(self.grants.config().oauth_state_ttl);
        self.shared
            .store
            .insert_oauth_state(&OAuthStateRow {
                verifier: self.shared.key.seal(Binding::OAuthVerifier(&state_hash), verifier.expose_secret()),
                state_hash,
                provider: provider.to_string(),
                base_url: base_text,
                label,
                created_at: Timestamp::now(),
                expires_at_unix: expires.unix(),
                browser_hash: browser_cookie.as_ref().map(|c| crypto::sha256_hex(c.value.expose_secret().as_bytes())),
                session_id: access.session_id().map(str::to_string),
            })
            .await?;
        Ok(Authorization { url, expires_at: expires, browser_cookie })
    }

    /// Finishes an authorization: spends the state, exchanges the code,
    /// verifies the token through the connector and stores the grant.
    /// A flow started from a connect session connects for the session's
    /// end user (a revoked session's flow is refused) and reports a failure
    /// to the consuming system.
    pub async fn callback(&self, provider: &str, mut params: CallbackParams) -> CallbackOutcome {
        let start_again = format!("Start again from the settings page or GET /api/v1/oauth/{provider}/authorize.");
        let pending = match self.take_state(&mut params, &start_again).await {
            Ok(pending) => pending,
            Err(e) => return CallbackOutcome { session_id: None, result: Err(e) },
        };
        let session_id = pending.session_id.clone();
        let owner = match &session_id {
            None => Ok(Owner::default()),
            Some(id) => match self.sessions.by_id(id).await {
                Ok(Some(row)) if row.revoked_at.is_some() => Err(AppError::SessionRevoked),
                Ok(Some(row)) => Ok(session_of(row).owner),
                Ok(None) => Err(AppError::SessionExpired),
                Err(e) => Err(e),
            },
        };
        let result = match owner {
            Ok(owner) => {
                let result = self.finish(provider, params, pending, &start_again, &owner).await;
                if let Err(e) = &result {
                    self.integrations.failed_attempt(&owner, provider, e).await;
                }
                result
            }
            Err(e) => Err(e),
        };
        CallbackOutcome { session_id, result }
    }

    /// Spends the state of a callback.
    async fn take_state(&self, params: &mut CallbackParams, start_again: &str) -> Result<OAuthStateRow, AppError> {
        let state = params.state.take().ok_or_else(|| {
            AppError::OAuthState(format!(
                "The callback carries no state, so it cannot be matched to an authorization. {start_again}"
            ))
        })?;
        let state_hash = crypto::sha256_hex(state.expose_secret().as_bytes());
        self.shared.store.take_oauth_state(&state_hash).await?.ok_or_else(|| {
            AppError::OAuthState(format!(
                "The state is unknown or was already used (each authorization can be completed once). {start_again}"
            ))
        })
    }

    async fn finish(
        &self,
        provider: &str,
        params: CallbackParams,
        pending: OAuthStateRow,
        start_again: &str,
        owner: &Owner,
    ) -> Result<(IntegrationRow, bool), AppError> {
        let state_hash = pending.state_hash.clone();
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
        if let Some(expected) = &pending.browser_hash {
            let presented =
                params.browser.as_ref().map(|b| crypto::sha256_hex(b.expose_secret().as_bytes())).unwrap_or_default();
            if !crypto::constant_time_eq(&presented, expected) {
                return Err(AppError::OAuthState(format!(
                    "This authorization was started in another browser (or its cookie was blocked); finish it in the browser that started it. {start_again}"
                )));
            }
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
        let (verdict, reach) = verifier.verify_with_reach(&plugin, &credentials, base_url.as_ref()).await?;
        let verification = verdict.map_err(AppError::Verify)?;
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
                reach,
                pending.label,
                grant.refresh_token.as_ref(),
                owner,
            )
            .await
    }
}

/// The connector builds the authorization URL, so it is checked as a
/// hostile one would be: on the base URL's origin and declared endpoint,
/// for this application and redirect URI, the code flow with our state and
/// S256 challenge, no scope beyond the manifest's, and each parameter once
/// (a provider may read the second of two).
fn check_authorize_url(
    url: &str,
    base: &Url,
    settings: &OAuthSettings,
    client: &OAuthClient,
    state: &str,
    challenge: &str,
) -> Result<(), AppError> {
    let broken = |why: &str| {
        AppError::Connector(crate::runtime::CallError::Failed(format!("the connector's authorization URL {why}")))
    };
    let parsed = Url::parse(url).map_err(|_| broken("is not a URL"))?;
    if parsed.origin() != base.origin() {
        return Err(broken("is not on the base URL's origin"));
    }
    let expected_path = format!("{}{}", base.path().trim_end_matches('/'), settings.authorize_path);
    if parsed.path() != expected_path {
        return Err(broken("is not the declared authorize endpoint"));
    }
    let mut query = BTreeMap::new();
    for (name, value) in parsed.query_pairs() {
        if query.insert(name.to_string(), value.to_string()).is_some() {
            return Err(broken(&format!("repeats the parameter {name:?}")));
        }
    }
    let expected = [
        ("client_id", client.client_id.as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("response_type", "code"),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in expected {
        if query.get(name).map(String::as_str) != Some(value) {
            return Err(broken(&format!("does not carry the expected {name}")));
        }
    }
    if let Some(scope) = query.get("scope")
        && let Some(extra) =
            scope.split([' ', '+']).filter(|s| !s.is_empty()).find(|s| !settings.scopes.iter().any(|m| m == s))
    {
        return Err(broken(&format!("asks for the scope {extra:?}, which the manifest does not declare")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_authorization_url_is_refused() {
        let base = Url::parse("https://git.example.com/gl").unwrap();
        let settings = OAuthSettings {
            authorize_path: "/oauth/authorize".into(),
            token_path: "/oauth/token".into(),
            scopes: vec!["api".into(), "read_user".into()],
            url_field: "base_url".into(),
            token_field: "token".into(),
        };
        let client = OAuthClient {
            client_id: "app".into(),
            client_secret: SecretString::from("s"),
            redirect_uri: "https://gh.example.com/cb".into(),
        };
        let good = "https://git.example.com/gl/oauth/authorize?client_id=app&redirect_uri=https%3A%2F%2Fgh.example.com%2Fcb&response_type=code&state=st&code_challenge=ch&code_challenge_method=S256&scope=api+read_user";
        check_authorize_url(good, &base, &settings, &client, "st", "ch").unwrap();
        let swaps = [
            ("client_id=app", "client_id=evil"),
            ("redirect_uri=https%3A%2F%2Fgh.example.com%2Fcb", "redirect_uri=https%3A%2F%2Fevil.example%2Fcb"),
            ("response_type=code", "response_type=token"),
            ("code_challenge_method=S256", "code_challenge_method=plain"),
            ("scope=api+read_user", "scope=api+sudo"),
            ("state=st", "state=st&state=other"),
            ("client_id=app&", ""),
            ("https://git.example.com/gl/", "https://evil.example/gl/"),
            ("/oauth/authorize", "/oauth/other"),
        ];
        for (from, to) in swaps {
            let url = good.replacen(from, to, 1);
            assert!(check_authorize_url(&url, &base, &settings, &client, "st", "ch").is_err(), "{url}");
        }
    }
}
