//! GitLab OAuth 2.0 connector. Verifies an access token with `Authorization:
//! Bearer` against `/oauth/token/info` (scopes, expiry) and `/api/v4/user`;
//! runs GitLab's authorization-code flow (`/oauth/authorize`, `/oauth/token`
//! with grant types `authorization_code` and `refresh_token`) for the host.

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use gatehouse_plugin::{
    AuthMethod, Connection, Connector, CredentialPresentation, Credentials, FieldKind, Manifest, OAuthClient,
    OAuthError, OAuthSettings, ProviderError, SyncPage, TokenGrant, Verification, VerifyError, field, http, oauth,
    register, unix_to_rfc3339,
};
use gitlab_common as gitlab;
use serde::Deserialize;

pub struct GitlabOauth;

const AUTHORIZE_PATH: &str = "/oauth/authorize";
const TOKEN_PATH: &str = "/oauth/token";
/// Least privilege that still passes the scope rule.
const REQUESTED_SCOPE: &str = "read_api";

/// Doorkeeper's token info; GitLab sends `scope` and newer versions also
/// `scopes`, plus `expires_in`: the seconds that REMAIN at the time of the
/// answer (null for tokens that do not expire). Its `created_at` is when the
/// token was issued, so `created_at + expires_in` is not the expiry.
#[derive(Deserialize)]
struct TokenInfo {
    scope: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    expires_in: Option<i64>,
    expires_in_seconds: Option<i64>,
}

impl TokenInfo {
    fn scopes(&self) -> Vec<String> {
        self.scopes.clone().or_else(|| self.scope.clone()).unwrap_or_default()
    }

    /// The expiry: the time of the answer plus the remaining seconds.
    fn expires_at(&self, answered_at: i64) -> Option<String> {
        let remaining = self.expires_in.or(self.expires_in_seconds)?;
        Some(unix_to_rfc3339(answered_at + remaining))
    }
}

/// When GitLab answered: its `Date` header, which GitLab always sends, is the
/// time of the answer on the clock that decides when the token dies, and
/// does not depend on how long the answer took to reach us. Without a usable
/// `Date`, the sandbox's wall clock (WASI) stands in.
fn answered_at(response: &http::Response) -> i64 {
    response.header("date").and_then(parse_http_date).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    })
}

/// Unix seconds of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the
/// form HTTP servers send (RFC 9110 section 5.6.7).
fn parse_http_date(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_weekday, day, month, year, clock, "GMT"] = parts.as_slice() else { return None };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = clock.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

impl Connector for GitlabOauth {
    fn manifest() -> Manifest {
        Manifest {
            id: "gitlab-oauth".into(),
            name: "Connect using OAuth v2".into(),
            vendor: gitlab::VENDOR.into(),
            auth_method: AuthMethod::Oauth2,
            description: format!(
                "OAuth 2.0 is a standardized authorization protocol that enables third-party applications to access user data without revealing user credentials. It is extensively utilized for user-endorsed communications with third-party APIs. {}",
                gitlab::DESCRIPTION_SUFFIX
            ),
            notes: vec![
                "Connect with GitLab to authorize Gatehouse in your browser; Gatehouse then refreshes the access token before it expires.".into(),
                "Or provide the access token you received from GitLab following successful authorization; it is verified automatically on input. A pasted token cannot be refreshed: reconnect before it expires.".into(),
            ],
            fields: vec![
                gatehouse_plugin::Field {
                    help: Some("The OAuth access token GitLab issued to your application (scope read_api or api).".into()),
                    ..field("access_token", "Access Token", FieldKind::Secret, true)
                },
                gitlab::base_url_field(),
            ],
            required_scopes: gitlab::required_scopes(),
            required_scopes_rule: gitlab::SCOPE_RULE,
            version: env!("CARGO_PKG_VERSION").into(),
            oauth: Some(OAuthSettings {
                authorize_path: AUTHORIZE_PATH.into(),
                token_path: TOKEN_PATH.into(),
                scopes: vec![REQUESTED_SCOPE.into()],
                url_field: "base_url".into(),
                token_field: "access_token".into(),
            }),
            credential_presentation: Some(CredentialPresentation {
                header: "authorization".into(),
                value: "Bearer {access_token}".into(),
            }),
            actions: gitlab::actions::definitions(),
            sync_models: gitlab::syncs::definitions(),
            inbound_webhook: Some(gitlab::syncs::inbound_webhook()),
        }
    }

    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError> {
        let token = credentials.require("access_token")?;
        let base_url = credentials.get("base_url").unwrap_or(gitlab::DEFAULT_BASE_URL);
        let bearer = format!("Bearer {token}");
        let auth = ("authorization", bearer.as_str());

        let response = http::get(&format!("{base_url}/oauth/token/info"), &[auth, ("accept", "application/json")])?;
        if !response.is_success() {
            return Err(gitlab::refusal(&response));
        }
        let info: TokenInfo = response.json().ok_or_else(gitlab::not_gitlab)?;
        let scopes = info.scopes();
        let expires_at = info.expires_at(answered_at(&response));

        let (account, _bot) = gitlab::fetch_user(base_url, auth)?;
        gitlab::check_scopes(&scopes, Some(account.clone()))?;
        Ok(Verification { account, scopes, expires_at, token_kind: "oauth".into() })
    }

    fn authorize_url(
        base_url: &str,
        client_id: &str,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
    ) -> Result<String, OAuthError> {
        Ok(oauth::authorize_url(
            &format!("{base_url}{AUTHORIZE_PATH}"),
            &[
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("response_type", "code"),
                ("state", state),
                ("scope", REQUESTED_SCOPE),
                ("code_challenge", code_challenge),
                ("code_challenge_method", "S256"),
            ],
        ))
    }

    fn exchange_code(
        base_url: &str,
        client: &OAuthClient,
        code: &str,
        code_verifier: &str,
    ) -> Result<TokenGrant, OAuthError> {
        oauth::exchange_code(&format!("{base_url}{TOKEN_PATH}"), client, code, code_verifier)
    }

    /// GitLab rotates refresh tokens: the answer carries the new one and
    /// the old one is spent.
    fn refresh_token(base_url: &str, client: &OAuthClient, refresh_token: &str) -> Result<TokenGrant, OAuthError> {
        oauth::refresh(&format!("{base_url}{TOKEN_PATH}"), client, refresh_token)
    }

    fn run_action(name: &str, input: &str, connection: &Connection) -> Result<String, ProviderError> {
        gitlab::actions::run(name, input, connection)
    }

    fn run_sync(
        model: &str,
        checkpoint: Option<&str>,
        run_started_at: &str,
        connection: &Connection,
    ) -> Result<SyncPage, ProviderError> {
        gitlab::syncs::run(model, checkpoint, run_started_at, connection)
    }

    fn describe(connection: &Connection) -> Result<gatehouse_plugin::TokenReach, ProviderError> {
        gitlab::reach::describe(connection, true)
    }

    fn check_path(
        scope: &gatehouse_plugin::ReachItem,
        method: &str,
        path: &str,
        connection: &Connection,
    ) -> Result<gatehouse_plugin::ScopeVerdict, ProviderError> {
        gitlab::reach::check_path(scope, method, path, connection)
    }
}

// No `rotation`: an OAuth token is renewed by refreshing it, and GitLab's
// self-rotation is for access tokens.
register!(GitlabOauth, oauth, actions, syncs, reach);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_matches_the_product_page() {
        let m = GitlabOauth::manifest();
        assert_eq!((m.id.as_str(), m.name.as_str()), ("gitlab-oauth", "Connect using OAuth v2"));
        assert_eq!(m.fields[0].label, "Access Token");
        assert_eq!(m.fields[1].default.as_deref(), Some("https://gitlab.com"));
        let o = m.oauth.unwrap();
        assert_eq!((o.authorize_path.as_str(), o.token_path.as_str()), ("/oauth/authorize", "/oauth/token"));
        let presentation = m.credential_presentation.expect("actions need the host to present the credential");
        assert_eq!(
            (presentation.header.as_str(), presentation.value.as_str()),
            ("authorization", "Bearer {access_token}")
        );
        let actions: Vec<String> = m.actions.iter().map(|a| a.name.clone()).collect();
        assert_eq!(actions, ["create-issue", "add-merge-request-note", "list-projects"]);
        let models: Vec<String> = m.sync_models.iter().map(|s| s.name.clone()).collect();
        assert_eq!(models, ["groups", "projects", "issues", "merge_requests"]);
        let connection =
            Connection { base_url: "https://gitlab.com".into(), account_id: "1".into(), settings: vec![], scope: None };
        let unknown = GitlabOauth::run_action("delete-everything", "{}", &connection);
        assert!(matches!(unknown, Err(ProviderError::Unsupported(_))));
        let unknown = GitlabOauth::run_sync("pipelines", None, "2026-11-26T10:00:00Z", &connection);
        assert!(matches!(unknown, Err(ProviderError::Unsupported(_))));
    }

    #[test]
    fn authorize_url_carries_pkce_and_state() {
        let url = GitlabOauth::authorize_url("https://gitlab.example.com", "app", "https://gh/cb", "st", "ch").unwrap();
        assert_eq!(
            url,
            "https://gitlab.example.com/oauth/authorize?client_id=app&redirect_uri=https%3A%2F%2Fgh%2Fcb&response_type=code&state=st&scope=read_api&code_challenge=ch&code_challenge_method=S256"
        );
    }

    fn answer(date: Option<&str>, body: &str) -> http::Response {
        let headers = date.map(|d| ("date".to_string(), d.to_string())).into_iter().collect();
        http::Response { status: 200, headers, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn expiry_is_the_time_of_the_answer_plus_the_remaining_seconds() {
        // A token issued at 1700000000 (2023-11-14T22:13:20Z) for 7200 s,
        // asked about an hour later: 3600 s remain.
        let body = r#"{"resource_owner_id":1,"scope":["api"],"expires_in":3600,"application":{"uid":"x"},"created_at":1700000000}"#;
        let response = answer(Some("Tue, 14 Nov 2023 23:13:20 GMT"), body);
        let info: TokenInfo = response.json().unwrap();
        assert_eq!(info.scopes(), ["api"]);
        assert_eq!(answered_at(&response), 1_700_003_600);
        assert_eq!(info.expires_at(answered_at(&response)).as_deref(), Some("2023-11-15T00:13:20Z"));
        let forever: TokenInfo =
            serde_json::from_str(r#"{"scope":["read_api"],"expires_in":null,"created_at":1}"#).unwrap();
        assert_eq!(forever.expires_at(1), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"), Some(1_709_164_800));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 +0000"), None);
        // No usable Date: the wall clock.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!((answered_at(&answer(None, "{}")) - now).abs() <= 5);
        assert!((answered_at(&answer(Some("yesterday"), "{}")) - now).abs() <= 5);
    }
}
