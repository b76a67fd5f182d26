//! The host's error type and its stable codes. `api::problem` turns it into
//! RFC 9457 problem details; everything else just returns `AppError`.

use crate::{
    crypto::CryptoError,
    runtime::{
        CallError,
        model::{OAuthError, ProviderError, VerifyError},
    },
    store::StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidBaseUrl(String),
    #[error("{0}")]
    EgressDenied(String),
    #[error("missing or wrong API key")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AccountMismatch(String),
    #[error("{0:?}")]
    Verify(VerifyError),
    /// The OAuth state is unknown, spent, expired or for another provider.
    #[error("{0}")]
    OAuthState(String),
    /// The provider's callback carried an error (the user declined, …).
    #[error("{0}")]
    OAuthDenied(String),
    /// No OAuth application for this provider and base URL.
    #[error("{0}")]
    OAuthNotConfigured(String),
    /// The integration holds no refresh token.
    #[error("{0}")]
    NotRefreshable(String),
    #[error("{0:?}")]
    OAuth(OAuthError),
    /// An action failed at the provider (or the connector has no such
    /// action).
    #[error("{0:?}")]
    Provider(ProviderError),
    /// A JSON body does not match its schema (`pointer` names where).
    #[error("{detail}")]
    Schema { detail: String, pointer: String },
    /// The connector's answer does not match its declared schema.
    #[error("{detail}")]
    BadOutput { detail: String, pointer: String },
    /// The connector cannot be used through the proxy.
    #[error("{0}")]
    ProxyUnsupported(String),
    /// The connector of a stored integration is no longer loaded (its id).
    #[error("the connector {0} is not loaded")]
    ProviderUnavailable(String),
    #[error(transparent)]
    Plugin(#[from] CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// One problem, as served and as stored in `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, poem_openapi::Object)]
#[oai(rename = "Problem")]
pub struct Problem {
    /// URI naming the problem type; stable per `code`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What happened and what to do next.
    pub detail: String,
    /// Stable machine-readable code (see the README's error table).
    pub code: String,
    /// Scopes the token lacks (`insufficient_scope`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_scopes: Option<Vec<String>>,
    /// Seconds to wait before retrying (`rate_limited`), as the provider said.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
    /// What the host suggests doing next, when `detail` is the connector's
    /// own sentence (kept apart from it).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// JSON pointer of the value that fails its schema (`validation_error`
    /// for an action's input, `plugin_failed` for its output).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_error",
            Self::InvalidBaseUrl(_) => "invalid_base_url",
            Self::EgressDenied(_) => "egress_denied",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::AccountMismatch(_) => "account_mismatch",
            Self::Verify(e) => match e {
                VerifyError::InvalidInput(_) => "validation_error",
                VerifyError::InvalidToken(_) => "invalid_token",
                VerifyError::TokenExpired(_) => "token_expired",
                VerifyError::TokenRevoked(_) => "token_revoked",
                VerifyError::InsufficientScope { .. } => "insufficient_scope",
                VerifyError::RateLimited(_) => "rate_limited",
                VerifyError::UpstreamError(_) => "upstream_error",
                VerifyError::UpstreamUnreachable(_) => "upstream_unreachable",
                VerifyError::UpstreamTimeout => "upstream_timeout",
                VerifyError::EgressDenied(_) => "egress_denied",
            },
            Self::OAuthState(_) => "oauth_state_invalid",
            Self::OAuthDenied(_) => "oauth_denied",
            Self::OAuthNotConfigured(_) => "oauth_not_configured",
            Self::NotRefreshable(_) => "not_refreshable",
            Self::OAuth(e) => match e {
                OAuthError::Unsupported => "oauth_unsupported",
                OAuthError::InvalidGrant(_) => "invalid_grant",
                OAuthError::InvalidClient(_) => "oauth_client_invalid",
                OAuthError::RateLimited(_) => "rate_limited",
                OAuthError::UpstreamError(_) => "upstream_error",
                OAuthError::UpstreamUnreachable(_) => "upstream_unreachable",
                OAuthError::UpstreamTimeout => "upstream_timeout",
                OAuthError::EgressDenied(_) => "egress_denied",
            },
            Self::Provider(e) => match e {
                ProviderError::InvalidInput(_) => "validation_error",
                ProviderError::NotFound(_) | ProviderError::Unsupported(_) => "not_found",
                ProviderError::Unauthorized(_) => "invalid_token",
                ProviderError::Forbidden(_) => "provider_forbidden",
                ProviderError::RateLimited(_) => "rate_limited",
                ProviderError::UpstreamError(_) => "upstream_error",
                ProviderError::UpstreamUnreachable(_) => "upstream_unreachable",
                ProviderError::UpstreamTimeout => "upstream_timeout",
                ProviderError::EgressDenied(_) => "egress_denied",
            },
            Self::Schema { .. } => "validation_error",
            Self::BadOutput { .. } => "plugin_failed",
            Self::ProxyUnsupported(_) => "proxy_unsupported",
            Self::ProviderUnavailable(_) => "provider_unavailable",
            Self::Plugin(CallError::Timeout(_)) => "plugin_timeout",
            Self::Plugin(CallError::Failed(_)) => "plugin_failed",
            Self::Store(_) => "internal_error",
            Self::Crypto(_) => "secret_unavailable",
        }
    }

    pub fn status(&self) -> u16 {
        match self.code() {
            "validation_error"
            | "invalid_base_url"
            | "oauth_state_invalid"
            | "oauth_denied"
            | "oauth_not_configured"
            | "oauth_unsupported" => 400,
            "unauthorized" => 401,
            "egress_denied" | "provider_forbidden" => 403,
            "not_found" => 404,
            "account_mismatch" | "not_refreshable" | "proxy_unsupported" => 409,
            "invalid_token"
            | "token_expired"
            | "token_revoked"
            | "insufficient_scope"
            | "invalid_grant"
            | "oauth_client_invalid" => 422,
            "rate_limited" => 429,
            "upstream_error" | "upstream_unreachable" | "plugin_failed" => 502,
            "secret_unavailable" | "provider_unavailable" => 503,
            "upstream_timeout" | "plugin_timeout" => 504,
            _ => 500,
        }
    }

    fn title(&self) -> &'static str {
        match self.code() {
            "validation_error" => "The request is not valid",
            "invalid_base_url" => "The base URL is not acceptable",
            "egress_denied" => "The target address is refused by the egress policy",
            "unauthorized" => "Missing or wrong API key",
            "not_found" => "Not found",
            "account_mismatch" => "The token belongs to another account",
            "invalid_token" => "The provider refused the token",
            "token_expired" => "The token has expired",
            "token_revoked" => "The token was revoked",
            "insufficient_scope" => "The token lacks required scopes",
            "rate_limited" => "The provider is rate limiting requests",
            "upstream_error" => "The provider answered with an error",
            "upstream_unreachable" => "The provider could not be reached",
            "upstream_timeout" => "The provider did not answer in time",
            "oauth_state_invalid" => "The authorization state is not valid",
            "oauth_denied" => "The provider did not grant the authorization",
            "oauth_not_configured" => "No OAuth application is configured",
            "oauth_unsupported" => "The connector does not support OAuth",
            "not_refreshable" => "The integration cannot be refreshed",
            "invalid_grant" => "The provider refused the grant",
            "oauth_client_invalid" => "The provider refused the OAuth application",
            "plugin_failed" => "The connector failed",
            "provider_forbidden" => "The provider does not allow this for the connected account",
            "proxy_unsupported" => "The connector cannot be used through the proxy",
            "plugin_timeout" => "The connector did not finish in time",
            "secret_unavailable" => "Stored credentials cannot be decrypted",
            "provider_unavailable" => "The integration's connector is not loaded",
            _ => "Internal error",
        }
    }

    /// The host's suggestion of what to do next where `detail` is a
    /// connector's own sentence: kept apart, so it is never appended to
    /// the connector's words (the README lists it per code).
    pub fn advice(&self) -> Option<&'static str> {
        const CHECK_TOKEN: &str =
            "Check that the token is valid, or create a new one at the provider and connect again.";
        const TRY_LATER: &str = "Try again later; if it persists, check the base URL.";
        const CHECK_ROUTE: &str = "Check the base URL, DNS and TLS certificates (see --ca-bundle for a private CA).";
        match self {
            Self::Verify(
                VerifyError::InvalidToken(_) | VerifyError::TokenExpired(_) | VerifyError::TokenRevoked(_),
            ) => Some(CHECK_TOKEN),
            Self::Verify(VerifyError::UpstreamError(_))
            | Self::OAuth(OAuthError::UpstreamError(_))
            | Self::Provider(ProviderError::UpstreamError(_)) => Some(TRY_LATER),
            Self::Verify(VerifyError::UpstreamUnreachable(_))
            | Self::OAuth(OAuthError::UpstreamUnreachable(_))
            | Self::Provider(ProviderError::UpstreamUnreachable(_)) => Some(CHECK_ROUTE),
            Self::Provider(ProviderError::InvalidInput(_)) => Some("Fix the input and send it again."),
            Self::Provider(ProviderError::Unauthorized(_)) => Some(
                "The provider refused the stored credential: re-verify the integration, and replace the token or reconnect if it is no longer valid.",
            ),
            Self::Provider(ProviderError::Forbidden(_)) => Some(
                "The connected account lacks the permission or scope for this; use an account or token that has it.",
            ),
            Self::OAuth(OAuthError::InvalidGrant(_)) => Some("Start the authorization again."),
            Self::OAuth(OAuthError::InvalidClient(_)) => Some(
                "Check the client id and secret of the OAuth application for this base URL (POST /api/v1/oauth-apps replaces them).",
            ),
            _ => None,
        }
    }

    /// What happened, in one sentence; for a connector's error its own
    /// sentence, else the host's, which then also says what to do next.
    pub fn detail(&self) -> String {
        match self {
            Self::Validation(s)
            | Self::NotFound(s)
            | Self::AccountMismatch(s)
            | Self::OAuthState(s)
            | Self::OAuthDenied(s)
            | Self::OAuthNotConfigured(s)
            | Self::NotRefreshable(s)
            | Self::ProxyUnsupported(s) => s.clone(),
            Self::Schema { detail, .. } | Self::BadOutput { detail, .. } => detail.clone(),
            Self::Provider(e) => match e {
                ProviderError::InvalidInput(s) => sentence(s),
                ProviderError::NotFound(s) | ProviderError::Unsupported(s) => s.clone(),
                ProviderError::Unauthorized(s) | ProviderError::Forbidden(s) => sentence(s),
                ProviderError::RateLimited(after) => Self::Verify(VerifyError::RateLimited(*after)).detail(),
                ProviderError::UpstreamError(s) => Self::Verify(VerifyError::UpstreamError(s.clone())).detail(),
                ProviderError::UpstreamUnreachable(s) => {
                    Self::Verify(VerifyError::UpstreamUnreachable(s.clone())).detail()
                }
                ProviderError::UpstreamTimeout => Self::Verify(VerifyError::UpstreamTimeout).detail(),
                ProviderError::EgressDenied(s) => format!("{s}."),
            },
            Self::OAuth(e) => match e {
                OAuthError::Unsupported => {
                    "This connector does not do OAuth; connect it with its credential fields instead.".into()
                }
                OAuthError::InvalidGrant(s) | OAuthError::InvalidClient(s) => sentence(s),
                OAuthError::RateLimited(after) => Self::Verify(VerifyError::RateLimited(*after)).detail(),
                OAuthError::UpstreamError(s) => Self::Verify(VerifyError::UpstreamError(s.clone())).detail(),
                OAuthError::UpstreamUnreachable(s) => {
                    Self::Verify(VerifyError::UpstreamUnreachable(s.clone())).detail()
                }
                OAuthError::UpstreamTimeout => Self::Verify(VerifyError::UpstreamTimeout).detail(),
                OAuthError::EgressDenied(s) => format!("{s}."),
            },
            Self::InvalidBaseUrl(s) => format!("{s}."),
            Self::EgressDenied(s) => format!("{s}."),
            Self::Unauthorized => {
                "Send the API key as `Authorization: Bearer <key>`; it was printed when the server first started or set with GATEHOUSE_API_KEY.".into()
            }
            Self::Verify(e) => match e {
                VerifyError::InvalidInput(s) => s.clone(),
                VerifyError::InvalidToken(s) | VerifyError::TokenExpired(s) | VerifyError::TokenRevoked(s) => sentence(s),
                VerifyError::InsufficientScope { detail, .. } => detail.clone(),
                VerifyError::RateLimited(Some(after)) => {
                    format!("The provider asked to wait {after} seconds before trying again.")
                }
                VerifyError::RateLimited(None) => "The provider asked to slow down; try again in a minute.".into(),
                VerifyError::UpstreamError(s) | VerifyError::UpstreamUnreachable(s) => sentence(s),
                VerifyError::UpstreamTimeout => {
                    "The provider did not answer within the HTTP timeout; try again later or raise --http-timeout.".into()
                }
                VerifyError::EgressDenied(s) => format!("{s}."),
            },
            Self::Plugin(CallError::Timeout(d)) => format!(
                "The connector did not finish within {} s and was stopped; try again, and report it to the connector's author if it persists.",
                d.as_secs_f32()
            ),
            Self::Plugin(CallError::Failed(s)) => {
                format!("{s}. The connector was stopped; report it to the connector's author.")
            }
            Self::ProviderUnavailable(id) => format!(
                "The connector {id:?} of this integration is not loaded (its file was removed or refused); put its .wasm back into the plugins directory (GET /api/v1/plugins lists refused files). The stored credentials are kept."
            ),
            Self::Store(_) => "The database failed; see the server log and try again.".into(),
            Self::Crypto(e) => format!(
                "{e}. Restore the master key the server used before (GATEHOUSE_MASTER_KEY or master.key in the data dir), or connect the integration again."
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let (missing_scopes, retry_after) = match self {
            Self::Verify(VerifyError::InsufficientScope { missing_scopes, .. }) => (Some(missing_scopes.clone()), None),
            Self::Verify(VerifyError::RateLimited(after))
            | Self::OAuth(OAuthError::RateLimited(after))
            | Self::Provider(ProviderError::RateLimited(after)) => (None, *after),
            _ => (None, None),
        };
        let pointer = match self {
            Self::Schema { pointer, .. } | Self::BadOutput { pointer, .. } => Some(pointer.clone()),
            _ => None,
        };
        Problem {
            kind: format!("https://gatehouse.invalid/problems/{}", self.code()),
            title: self.title().into(),
            status: self.status(),
            detail: self.detail(),
            code: self.code().into(),
            advice: self.advice().map(String::from),
            missing_scopes,
            retry_after,
            pointer,
        }
    }
}

/// A connector's sentence as a problem's detail: trimmed, ending like one.
fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        "The connector gave no explanation.".to_string()
    } else if text.ends_with(['.', '!', '?']) {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connectors_sentence_and_the_hosts_advice_stay_apart() {
        let e = AppError::Verify(VerifyError::UpstreamError("Acme failed; try again later".into()));
        let p = e.problem();
        assert_eq!(p.detail, "Acme failed; try again later.");
        assert_eq!(p.advice.as_deref(), Some("Try again later; if it persists, check the base URL."));
        let e = AppError::Provider(ProviderError::Forbidden("Not yours.".into()));
        assert_eq!(e.problem().detail, "Not yours.");
        assert!(e.problem().advice.unwrap().contains("permission"));
        // The host's own errors say it all in `detail`.
        assert_eq!(AppError::Unauthorized.problem().advice, None);
        let stored = serde_json::to_string(&AppError::Unauthorized.problem()).unwrap();
        assert!(!stored.contains("advice"), "{stored}");
    }
}
