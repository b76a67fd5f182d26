//! What both GitLab connectors know about GitLab: the base URL field, the
//! scope rule, the `/api/v4/user` shape, how GitLab says no, the actions
//! ([`actions`]), the sync models ([`syncs`]) and what a token reaches
//! ([`reach`]).

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

pub mod actions;
pub mod reach;
pub mod syncs;

use gatehouse_plugin::{
    Account, Connection, Field, FieldKind, ScopeProblem, ScopeRule, VerifyError, field,
    http::{self, Response},
    missing_scopes,
};
use serde::Deserialize;

pub const VENDOR: &str = "GitLab";
pub const DEFAULT_BASE_URL: &str = "https://gitlab.com";
pub const SCOPE_RULE: ScopeRule = ScopeRule::AnyOf;

/// A token needs one of these to read through the API.
pub fn required_scopes() -> Vec<String> {
    vec!["api".into(), "read_api".into()]
}

pub const DESCRIPTION_SUFFIX: &str = "Gatehouse verifies the token with GitLab, stores it encrypted and re-verifies it on request. A token needs the api or read_api scope.";

pub fn base_url_field() -> Field {
    Field {
        default: Some(DEFAULT_BASE_URL.into()),
        placeholder: Some("https://gitlab.example.com".into()),
        help: Some("Leave the default for GitLab.com; enter your instance's URL for self-hosted GitLab.".into()),
        ..field("base_url", "GitLab Base URL", FieldKind::Url, false)
    }
}

#[derive(Deserialize)]
struct User {
    id: serde_json::Value,
    username: String,
    name: Option<String>,
    email: Option<String>,
    public_email: Option<String>,
    web_url: Option<String>,
    avatar_url: Option<String>,
    #[serde(default)]
    bot: bool,
}

/// The account behind the token, and whether it is a bot user (the user
/// of a group or project access token).
pub fn fetch_user(base_url: &str, auth: (&str, &str)) -> Result<(Account, bool), VerifyError> {
    let response = http::get(&format!("{base_url}/api/v4/user"), &[auth, ("accept", "application/json")])?;
    if !response.is_success() {
        return Err(refusal(&response));
    }
    let (account, bot) = parse_user(&response)?;
    VERIFIED_USER.set(Some(VerifiedUser {
        base_url: base_url.trim_end_matches('/').to_string(),
        id: account.id.clone(),
        username: account.username.clone(),
        bot,
    }));
    Ok((account, bot))
}

/// The user the last verify read. The host asks what a credential reaches
/// in the instance that has just verified it, so `reach` can use this
/// instead of reading `/user` again; an instance serves one credential, so
/// it never holds another's.
struct VerifiedUser {
    base_url: String,
    id: String,
    username: String,
    bot: bool,
}

thread_local! {
    // A component instance has one thread; natively, each test thread its own.
    static VERIFIED_USER: std::cell::RefCell<Option<VerifiedUser>> = const { std::cell::RefCell::new(None) };
}

/// The username and bot flag of the connection's account, if this instance
/// has just verified it.
pub(crate) fn verified_user(connection: &Connection) -> Option<(String, bool)> {
    VERIFIED_USER.with_borrow(|seen| {
        seen.as_ref()
            .filter(|u| u.base_url == connection.base_url.trim_end_matches('/') && u.id == connection.account_id)
            .map(|u| (u.username.clone(), u.bot))
    })
}

pub fn parse_user(response: &Response) -> Result<(Account, bool), VerifyError> {
    let user: User = response.json().ok_or_else(not_gitlab)?;
    let id = match user.id {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s,
        _ => return Err(not_gitlab()),
    };
    let account = Account {
        id,
        username: user.username,
        name: user.name,
        email: user.email.or(user.public_email).filter(|e| !e.is_empty()),
        web_url: user.web_url,
        avatar_url: user.avatar_url,
    };
    Ok((account, user.bot))
}

/// `insufficient-scope` when the granted scopes satisfy neither `api` nor
/// `read_api`.
pub fn check_scopes(scopes: &[String], account: Option<Account>) -> Result<(), VerifyError> {
    let missing = missing_scopes(scopes, &required_scopes(), SCOPE_RULE);
    if missing.is_empty() {
        return Ok(());
    }
    Err(VerifyError::InsufficientScope(ScopeProblem {
        account,
        scopes: scopes.to_vec(),
        detail: format!(
            "The token has the scopes [{}] but needs api or read_api. In GitLab, create a new token with the read_api (or api) scope under User settings > Access tokens, then connect again.",
            scopes.join(", ")
        ),
        missing_scopes: missing,
    }))
}

/// The error for a non-2xx GitLab answer.
pub fn refusal(response: &Response) -> VerifyError {
    #[derive(Deserialize, Default)]
    struct Body {
        error: Option<String>,
        error_description: Option<String>,
        message: Option<serde_json::Value>,
        scope: Option<String>,
    }
    let body: Body = response.json().unwrap_or_default();
    match response.status {
        401 => {
            let description = body
                .error_description
                .or_else(|| response.header("www-authenticate").and_then(|h| auth_param(h, "error_description")))
                .unwrap_or_default();
            let lower = description.to_ascii_lowercase();
            if lower.contains("expired") {
                VerifyError::TokenExpired(format!(
                    "GitLab says the token has expired ({})",
                    description.trim_end_matches('.')
                ))
            } else if lower.contains("revoked") {
                VerifyError::TokenRevoked(format!(
                    "GitLab says the token was revoked ({})",
                    description.trim_end_matches('.')
                ))
            } else {
                VerifyError::InvalidToken(
                    "GitLab does not accept this token (401 Unauthorized); check that it was copied whole and belongs to this GitLab instance".into(),
                )
            }
        }
        403 if body.error.as_deref() == Some("insufficient_scope") => {
            let needed: Vec<String> = body
                .scope
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .filter(|v: &Vec<String>| !v.is_empty())
                .unwrap_or_else(required_scopes);
            VerifyError::InsufficientScope(ScopeProblem {
                account: None,
                scopes: Vec::new(),
                detail: format!(
                    "GitLab says the token lacks the scopes for this check (one of: {}). In GitLab, create a token with the read_api (or api) scope under User settings > Access tokens, then connect again.",
                    needed.join(", ")
                ),
                missing_scopes: needed,
            })
        }
        403 => VerifyError::InvalidToken(format!(
            "GitLab refused the token (403{}); the account may be blocked or the token restricted",
            message_suffix(body.message.as_ref())
        )),
        404 => VerifyError::UpstreamError(
            "The base URL does not look like a GitLab 15.5+ API (404 on the token endpoint); check the base URL".into(),
        ),
        429 => VerifyError::RateLimited(response.retry_after()),
        500..=599 => VerifyError::UpstreamError(format!("GitLab answered {} (server error)", response.status)),
        other => VerifyError::UpstreamError(format!("GitLab answered an unexpected {other}; check the base URL")),
    }
}

fn message_suffix(message: Option<&serde_json::Value>) -> String {
    match message {
        Some(serde_json::Value::String(s)) if s.len() < 200 => format!(": {s}"),
        _ => String::new(),
    }
}

/// A 2xx answer that is not what GitLab would send.
pub fn not_gitlab() -> VerifyError {
    VerifyError::UpstreamError(
        "The answer is not GitLab API JSON; check that the base URL points at a GitLab instance".into(),
    )
}

/// One parameter of a `WWW-Authenticate` challenge, e.g. `error_description`.
fn auth_param(header: &str, name: &str) -> Option<String> {
    let start = header.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &header[start..];
    Some(rest[..rest.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn plain_401_is_invalid_token() {
        let e = refusal(&response(401, &[], r#"{"message":"401 Unauthorized"}"#));
        assert!(matches!(e, VerifyError::InvalidToken(_)));
    }

    #[test]
    fn expired_and_revoked_descriptions() {
        let expired = r#"{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}"#;
        assert!(matches!(refusal(&response(401, &[], expired)), VerifyError::TokenExpired(_)));
        let revoked = r#"{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}"#;
        assert!(matches!(refusal(&response(401, &[], revoked)), VerifyError::TokenRevoked(_)));
        let doorkeeper = r#"{"error":"invalid_token","error_description":"The access token expired"}"#;
        assert!(matches!(refusal(&response(401, &[], doorkeeper)), VerifyError::TokenExpired(_)));
    }

    #[test]
    fn description_from_www_authenticate_header() {
        let header = r#"Bearer realm="Protected by OAuth 2", error="invalid_token", error_description="Token was revoked. You have to re-authorize from the user.""#;
        let e = refusal(&response(401, &[("www-authenticate", header)], ""));
        assert!(matches!(e, VerifyError::TokenRevoked(_)));
    }

    #[test]
    fn insufficient_scope_lists_scopes() {
        let body = r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api read_user"}"#;
        match refusal(&response(403, &[], body)) {
            VerifyError::InsufficientScope(p) => assert_eq!(p.missing_scopes, vec!["api", "read_user"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_limit_and_server_errors() {
        let e = refusal(&response(429, &[("retry-after", "42")], "Retry later\n"));
        assert!(matches!(e, VerifyError::RateLimited(Some(42))));
        assert!(matches!(refusal(&response(503, &[], "")), VerifyError::UpstreamError(_)));
        assert!(matches!(refusal(&response(404, &[], "")), VerifyError::UpstreamError(_)));
    }

    #[test]
    fn user_shape() {
        let body = r#"{"id":42,"username":"jdoe","name":"Jane","state":"active","email":"j@x","web_url":"https://g/jdoe","avatar_url":null,"bot":true}"#;
        let (account, bot) = parse_user(&response(200, &[], body)).unwrap();
        assert_eq!((account.id.as_str(), account.username.as_str(), bot), ("42", "jdoe", true));
        assert!(matches!(parse_user(&response(200, &[], "<html>")), Err(VerifyError::UpstreamError(_))));
    }

    #[test]
    fn scope_rule_is_any_of_api_read_api() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_scopes(&s(&["read_api"]), None).is_ok());
        assert!(check_scopes(&s(&["api", "read_user"]), None).is_ok());
        match check_scopes(&s(&["read_user"]), None) {
            Err(VerifyError::InsufficientScope(p)) => assert_eq!(p.missing_scopes, vec!["api", "read_api"]),
            other => panic!("{other:?}"),
        }
    }
}
