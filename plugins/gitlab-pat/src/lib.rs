//! GitLab Personal Access Token connector: `PRIVATE-TOKEN` against
//! `/api/v4/personal_access_tokens/self` (scopes, expiry, state) and
//! `/api/v4/user` (the account). Group and project access tokens are
//! access tokens of a bot user and work the same way. It tells what a
//! token reaches (`/personal_access_tokens/self/associations`) and rotates
//! a token in place (`POST /personal_access_tokens/self/rotate`).

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use gatehouse_plugin::{
    AuthMethod, Connection, Connector, CredentialPresentation, Credentials, FieldKind, Manifest, ProviderError,
    ReachItem, RotateError, Rotated, ScopeProblem, ScopeVerdict, SyncPage, TokenReach, Verification, VerifyError,
    field, http, http::Request, register,
};
use gitlab_common as gitlab;
use serde::Deserialize;

pub struct GitlabPat;

#[derive(Deserialize)]
struct TokenSelf {
    #[serde(default)]
    revoked: bool,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    scopes: Vec<String>,
    expires_at: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

/// GitLab's answer to a rotation: the new token and its expiry.
#[derive(Deserialize)]
struct RotatedToken {
    token: String,
    expires_at: Option<String>,
}

/// The longest lifetime GitLab gives a token, in days.
const MAX_LIFETIME_DAYS: i64 = 365;
/// What GitLab gives a rotated token when asked for no expiry.
const DEFAULT_LIFETIME_DAYS: i64 = 7;

fn yes() -> bool {
    true
}

impl Connector for GitlabPat {
    fn manifest() -> Manifest {
        Manifest {
            id: "gitlab-pat".into(),
            name: "Connect using Personal Access Tokens (PAT)".into(),
            vendor: gitlab::VENDOR.into(),
            auth_method: AuthMethod::PersonalAccessToken,
            description: format!(
                "Personal Access Tokens (PAT) act as an alternative to traditional password-based authentication methods for accessing GitLab. They offer enhanced security since they can be regenerated and managed with ease. {}",
                gitlab::DESCRIPTION_SUFFIX
            ),
            notes: vec![
                "A PAT has access to only a single organization in GitLab. Please make sure you enter the correct PAT here."
                    .into(),
            ],
            fields: vec![
                gatehouse_plugin::Field {
                    placeholder: Some("glpat-…".into()),
                    help: Some("Create one in GitLab under User settings > Access tokens with the read_api or api scope.".into()),
                    ..field("token", "Personal Access Token (PAT)", FieldKind::Secret, true)
                },
                gitlab::base_url_field(),
            ],
            required_scopes: gitlab::required_scopes(),
            required_scopes_rule: gitlab::SCOPE_RULE,
            version: env!("CARGO_PKG_VERSION").into(),
            oauth: None,
            credential_presentation: Some(CredentialPresentation {
                header: "private-token".into(),
                value: "{token}".into(),
            }),
            actions: gitlab::actions::definitions(),
            sync_models: gitlab::syncs::definitions(),
            inbound_webhook: Some(gitlab::syncs::inbound_webhook()),
        }
    }

    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError> {
        let token = credentials.require("token")?;
        let base_url = credentials.get("base_url").unwrap_or(gitlab::DEFAULT_BASE_URL);
        let auth = ("private-token", token);

        let response = http::get(
            &format!("{base_url}/api/v4/personal_access_tokens/self"),
            &[auth, ("accept", "application/json")],
        )?;
        if !response.is_success() {
            return Err(gitlab::refusal(&response));
        }
        let info: TokenSelf = response.json().ok_or_else(gitlab::not_gitlab)?;
        check_state(&info)?;

        let (account, bot) = gitlab::fetch_user(base_url, auth)?;
        gitlab::check_scopes(&info.scopes, Some(account.clone()))?;
        Ok(Verification {
            account,
            scopes: info.scopes,
            expires_at: info.expires_at,
            token_kind: if bot { "bot".into() } else { "personal".into() },
        })
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

    fn describe(connection: &Connection) -> Result<TokenReach, ProviderError> {
        gitlab::reach::describe(connection, false)
    }

    fn check_path(
        scope: &ReachItem,
        method: &str,
        path: &str,
        connection: &Connection,
    ) -> Result<ScopeVerdict, ProviderError> {
        gitlab::reach::check_path(scope, method, path, connection)
    }

    /// `POST /personal_access_tokens/self/rotate`, with the host presenting
    /// the stored token. GitLab revokes it as soon as it answers with the
    /// new one. Asked for no expiry, GitLab would give the new token a
    /// week, so the old token's lifetime is kept (GitLab's limit: a year).
    fn rotate(connection: &Connection) -> Result<Rotated, RotateError> {
        let current = Request::get(connection.url("/api/v4/personal_access_tokens/self"))
            .header("accept", "application/json")
            .authenticated()
            .send()
            .map_err(|e| RotateError::Provider(e.into()))?;
        let info: TokenSelf = current.decode().map_err(RotateError::Provider)?;
        let expires_at = rotated_expiry(&info, &today(&current));
        let body = match &expires_at {
            Some(date) => serde_json::json!({ "expires_at": date }),
            None => serde_json::json!({}),
        };
        let response = Request::post(connection.url("/api/v4/personal_access_tokens/self/rotate"))
            .header("accept", "application/json")
            .json(&body)
            .authenticated()
            .send()
            .map_err(|e| RotateError::Provider(e.into()))?;
        if response.status == 403 {
            return Err(RotateError::InsufficientScope(ScopeProblem {
                account: None,
                scopes: info.scopes.clone(),
                missing_scopes: vec!["api".into(), "self_rotate".into()],
                detail: format!(
                    "GitLab refused to rotate the token: it has the scopes [{}], and rotating itself needs api or self_rotate. Create a token with one of them in GitLab (User settings > Access tokens), or regenerate this one there and replace it in Gatehouse.",
                    info.scopes.join(", ")
                ),
            }));
        }
        let new: RotatedToken = response.decode().map_err(RotateError::Provider)?;
        Ok(Rotated { credentials: vec![("token".into(), new.token)], expires_at: new.expires_at })
    }
}

/// Today's date (UTC) as GitLab's `Date` header tells it, the connector
/// having no trustworthy clock of its own.
fn today(response: &http::Response) -> Option<String> {
    let date = response.header("date")?;
    // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
    let parts: Vec<&str> = date.split_whitespace().collect();
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| Some(m) == parts.get(2))?
        + 1;
    let (day, year) = (parts.get(1)?.parse::<u32>().ok()?, parts.get(3)?.parse::<i64>().ok()?);
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

/// The expiry to ask for: `today` plus the old token's lifetime in days
/// (creation to expiry), at least a day and at most GitLab's year; GitLab's
/// default week when the old token's dates are unknown.
fn rotated_expiry(info: &TokenSelf, today: &Option<String>) -> Option<String> {
    let days_of = |date: &str| -> Option<i64> {
        let date = date.get(..10)?;
        gatehouse_plugin::rfc3339_to_unix(&format!("{date}T00:00:00Z")).map(|(secs, _)| secs.div_euclid(86_400))
    };
    let today = days_of(today.as_deref()?)?;
    let lifetime = match (info.created_at.as_deref().and_then(days_of), info.expires_at.as_deref().and_then(days_of)) {
        (Some(created), Some(expires)) => (expires - created).clamp(1, MAX_LIFETIME_DAYS),
        _ => DEFAULT_LIFETIME_DAYS,
    };
    let expiry = gatehouse_plugin::unix_to_rfc3339((today + lifetime) * 86_400);
    Some(expiry[..10].to_string())
}

fn check_state(info: &TokenSelf) -> Result<(), VerifyError> {
    if info.revoked {
        return Err(VerifyError::TokenRevoked("GitLab says the token was revoked".into()));
    }
    if !info.active {
        return Err(VerifyError::TokenExpired(format!(
            "GitLab says the token is no longer active (expiry date {})",
            info.expires_at.as_deref().unwrap_or("unknown")
        )));
    }
    Ok(())
}

register!(GitlabPat, actions, syncs, reach, rotation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_matches_the_product_page() {
        let m = GitlabPat::manifest();
        assert_eq!(m.id, "gitlab-pat");
        assert_eq!(m.fields[0].label, "Personal Access Token (PAT)");
        assert_eq!(m.fields[1].default.as_deref(), Some("https://gitlab.com"));
        assert_eq!(
            m.notes,
            [
                "A PAT has access to only a single organization in GitLab. Please make sure you enter the correct PAT here."
            ]
        );
        let presentation = m.credential_presentation.expect("actions need the host to present the credential");
        assert_eq!((presentation.header.as_str(), presentation.value.as_str()), ("private-token", "{token}"));
        let actions: Vec<String> = m.actions.iter().map(|a| a.name.clone()).collect();
        assert_eq!(actions, ["create-issue", "add-merge-request-note", "list-projects"]);
        let models: Vec<String> = m.sync_models.iter().map(|s| s.name.clone()).collect();
        assert_eq!(models, ["groups", "projects", "issues", "merge_requests"]);
        let connection =
            Connection { base_url: "https://gitlab.com".into(), account_id: "1".into(), settings: vec![], scope: None };
        let unknown = GitlabPat::run_action("delete-everything", "{}", &connection);
        assert!(matches!(unknown, Err(ProviderError::Unsupported(_))));
        let unknown = GitlabPat::run_sync("pipelines", None, "2026-11-26T10:00:00Z", &connection);
        assert!(matches!(unknown, Err(ProviderError::Unsupported(_))));
    }

    #[test]
    fn a_rotated_token_keeps_the_old_lifetime_within_a_year() {
        let info = |created: &str, expires: &str| TokenSelf {
            revoked: false,
            active: true,
            scopes: vec![],
            expires_at: Some(expires.into()),
            created_at: Some(created.into()),
        };
        let day = Some("2026-11-26".to_string());
        assert_eq!(
            rotated_expiry(&info("2026-01-01T00:00:00.000Z", "2026-01-31"), &day).as_deref(),
            Some("2026-12-26")
        );
        assert_eq!(
            rotated_expiry(&info("2020-01-01T00:00:00.000Z", "2029-01-01"), &day).as_deref(),
            Some("2027-11-26")
        );
        let unknown = TokenSelf { created_at: None, ..info("x", "2026-01-31") };
        assert_eq!(rotated_expiry(&unknown, &day).as_deref(), Some("2026-12-03"));
        let response = http::Response {
            status: 200,
            headers: vec![("date".into(), "Thu, 26 Nov 2026 15:00:00 GMT".into())],
            body: vec![],
        };
        assert_eq!(today(&response).as_deref(), Some("2026-11-26"));
    }

    #[test]
    fn token_state() {
        let parse = |s: &str| serde_json::from_str::<TokenSelf>(s).unwrap();
        assert!(check_state(&parse(r#"{"revoked":false,"active":true,"scopes":["api"]}"#)).is_ok());
        assert!(matches!(check_state(&parse(r#"{"revoked":true,"active":false}"#)), Err(VerifyError::TokenRevoked(_))));
        assert!(matches!(
            check_state(&parse(r#"{"revoked":false,"active":false,"expires_at":"2020-01-01"}"#)),
            Err(VerifyError::TokenExpired(_))
        ));
    }
}
