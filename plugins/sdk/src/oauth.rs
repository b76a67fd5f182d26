//! OAuth 2.0 (RFC 6749) for connectors: building the authorization URL and
//! calling the token endpoint. The host owns state, PKCE, redirects,
//! storage and when to refresh; a connector supplies its provider's
//! endpoints and parameters and lets these helpers speak the protocol.

use serde::Deserialize;

pub use crate::bindings::gatehouse::plugin::types::{
    OauthClient as OAuthClient, OauthError as OAuthError, OauthSettings as OAuthSettings, TokenGrant,
};
use crate::{
    bindings::gatehouse::host::http::Error as HostError,
    http::{self, Response},
};

/// `endpoint?k=v&…`, form-encoded.
pub fn authorize_url(endpoint: &str, params: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    format!("{endpoint}?{query}")
}

/// The authorization-code grant with PKCE (RFC 6749 §4.1.3, RFC 7636 §4.5),
/// client credentials in the body.
pub fn exchange_code(
    token_url: &str,
    client: &OAuthClient,
    code: &str,
    verifier: &str,
) -> Result<TokenGrant, OAuthError> {
    token_request(
        token_url,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &client.redirect_uri),
            ("client_id", &client.client_id),
            ("client_secret", &client.client_secret),
            ("code_verifier", verifier),
        ],
    )
}

/// The refresh-token grant (RFC 6749 §6).
pub fn refresh(token_url: &str, client: &OAuthClient, refresh_token: &str) -> Result<TokenGrant, OAuthError> {
    token_request(
        token_url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("redirect_uri", &client.redirect_uri),
            ("client_id", &client.client_id),
            ("client_secret", &client.client_secret),
        ],
    )
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
    /// Space-separated (RFC 6749 §3.3).
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    error_description: Option<String>,
}

/// POSTs a form to the token endpoint and reads the answer.
pub fn token_request(token_url: &str, params: &[(&str, &str)]) -> Result<TokenGrant, OAuthError> {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let response = http::send_raw(
        "POST",
        token_url,
        &[("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json")],
        body.into_bytes(),
    )
    .map_err(transport_error)?;
    token_answer(&response)
}

/// Maps a token endpoint's answer (RFC 6749 §5.1, §5.2).
pub fn token_answer(response: &Response) -> Result<TokenGrant, OAuthError> {
    if response.is_success() {
        let answer: TokenAnswer = response
            .json()
            .ok_or_else(|| OAuthError::UpstreamError("The token endpoint answered without an access token.".into()))?;
        return Ok(TokenGrant {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
            expires_in: answer.expires_in.and_then(|s| u32::try_from(s).ok()),
            scopes: answer.scope.unwrap_or_default().split_whitespace().map(str::to_string).collect(),
        });
    }
    if response.status == 429 {
        return Err(OAuthError::RateLimited(response.retry_after()));
    }
    if response.status >= 500 {
        return Err(OAuthError::UpstreamError(format!("The token endpoint failed with HTTP {}.", response.status)));
    }
    let answer: Option<ErrorAnswer> = response.json();
    let describe = |a: &ErrorAnswer| a.error_description.clone().unwrap_or_else(|| a.error.clone());
    match answer {
        Some(a) if a.error == "invalid_grant" => Err(OAuthError::InvalidGrant(describe(&a))),
        Some(a) if a.error == "invalid_client" || a.error == "unauthorized_client" => {
            Err(OAuthError::InvalidClient(describe(&a)))
        }
        _ if response.status == 401 => {
            Err(OAuthError::InvalidClient("The token endpoint refused the client credentials.".into()))
        }
        Some(a) => Err(OAuthError::UpstreamError(format!("The token endpoint refused the request: {}", describe(&a)))),
        None => Err(OAuthError::UpstreamError(format!("The token endpoint answered HTTP {}.", response.status))),
    }
}

/// How a transport failure is reported.
pub fn transport_error(e: HostError) -> OAuthError {
    match e {
        HostError::Denied(why) => OAuthError::EgressDenied(why),
        HostError::Timeout => OAuthError::UpstreamTimeout,
        HostError::Unreachable(why) => {
            OAuthError::UpstreamUnreachable(format!("The provider could not be reached: {why}"))
        }
        HostError::TooLarge => {
            OAuthError::UpstreamError("The provider's answer is larger than the host allows.".into())
        }
        HostError::InvalidRequest(why) => OAuthError::UpstreamError(format!("The request could not be built: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response {
        Response { status, headers: vec![("retry-after".into(), "7".into())], body: body.as_bytes().to_vec() }
    }

    #[test]
    fn token_answers() {
        let ok = token_answer(&answer(
            200,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":7200,"refresh_token":"r","scope":"api read_user","created_at":1}"#,
        ))
        .unwrap();
        assert_eq!(
            (ok.access_token.as_str(), ok.refresh_token.as_deref(), ok.expires_in),
            ("a", Some("r"), Some(7200))
        );
        assert_eq!(ok.scopes, ["api", "read_user"]);
        let grant = token_answer(&answer(
            400,
            r#"{"error":"invalid_grant","error_description":"The provided authorization grant is invalid"}"#,
        ));
        assert!(matches!(grant, Err(OAuthError::InvalidGrant(d)) if d.contains("grant is invalid")));
        let client = token_answer(&answer(
            401,
            r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
        ));
        assert!(matches!(client, Err(OAuthError::InvalidClient(_))));
        assert!(matches!(token_answer(&answer(429, "Retry later")), Err(OAuthError::RateLimited(Some(7)))));
        assert!(matches!(token_answer(&answer(502, "")), Err(OAuthError::UpstreamError(_))));
    }

    #[test]
    fn authorize_url_is_form_encoded() {
        let url = authorize_url("https://h/oauth/authorize", &[("redirect_uri", "http://x/cb?a=b"), ("scope", "a b")]);
        assert_eq!(url, "https://h/oauth/authorize?redirect_uri=http%3A%2F%2Fx%2Fcb%3Fa%3Db&scope=a+b");
    }
}
