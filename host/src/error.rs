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

pub use crate::problem::Problem;

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
    /// Not allowed for this caller: the API key's role lacks the one the
    /// route needs, or a connect session may not do this (a route of the
    /// API key, a connector the session is not for, another end user).
    #[error("{0}")]
    Forbidden(String),
    /// The connect session's lifetime is over.
    #[error("the connect session expired")]
    SessionExpired,
    /// The consuming system revoked the connect session.
    #[error("the connect session was revoked")]
    SessionRevoked,
    /// The account is already connected for another end user.
    #[error("{0}")]
    AccountInUse(String),
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
    /// The connector (or this kind of credential) cannot replace itself at
    /// the provider.
    #[error("{0}")]
    RotationUnsupported(String),
    /// The provider issued a new credential that could not be stored.
    #[error("{0}")]
    RotationIncomplete(String),
    /// The connector cannot tell what a credential reaches, so the
    /// connection cannot be limited to part of the provider.
    #[error("{0}")]
    ScopeUnsupported(String),
    /// The chosen scope is not among what the credential reaches.
    #[error("{0}")]
    ScopeNotReached(String),
    /// A request for something outside the connection's scope.
    #[error("{0}")]
    OutsideScope(String),
    /// The connector of a stored integration is no longer loaded (its id).
    #[error("the connector {0} is not loaded")]
    ProviderUnavailable(String),
    #[error(transparent)]
    Connector(#[from] CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The stable error codes of the API. Each has one HTTP status and one
/// title; the README's error table lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ValidationError,
    InvalidBaseUrl,
    OAuthStateInvalid,
    OAuthDenied,
    OAuthNotConfigured,
    OAuthUnsupported,
    Unauthorized,
    SessionExpired,
    SessionRevoked,
    Forbidden,
    EgressDenied,
    ProviderForbidden,
    NotFound,
    AccountMismatch,
    AccountInUse,
    NotRefreshable,
    ProxyUnsupported,
    RotationUnsupported,
    ScopeUnsupported,
    OutsideScope,
    ScopeNotReached,
    RotationIncomplete,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    InsufficientScope,
    InvalidGrant,
    OAuthClientInvalid,
    RateLimited,
    InternalError,
    UpstreamError,
    UpstreamUnreachable,
    PluginFailed,
    SecretUnavailable,
    HostBusy,
    ProviderUnavailable,
    DatabaseUnavailable,
    UpstreamTimeout,
    PluginTimeout,
}

impl ErrorCode {
    /// The code's text, its HTTP status and its title, in one place so a
    /// code cannot exist without the other two.
    fn parts(self) -> (&'static str, u16, &'static str) {
        match self {
            Self::ValidationError => ("validation_error", 400, "The request is not valid"),
            Self::InvalidBaseUrl => ("invalid_base_url", 400, "The base URL is not acceptable"),
            Self::OAuthStateInvalid => ("oauth_state_invalid", 400, "The authorization state is not valid"),
            Self::OAuthDenied => ("oauth_denied", 400, "The provider did not grant the authorization"),
            Self::OAuthNotConfigured => ("oauth_not_configured", 409, "No OAuth application is configured"),
            Self::OAuthUnsupported => ("oauth_unsupported", 400, "The connector does not support OAuth"),
            Self::Unauthorized => ("unauthorized", 401, "Missing or wrong API key"),
            Self::SessionExpired => ("session_expired", 401, "The connect session expired"),
            Self::SessionRevoked => ("session_revoked", 401, "The connect session was revoked"),
            Self::Forbidden => ("forbidden", 403, "Not allowed for this caller"),
            Self::EgressDenied => ("egress_denied", 403, "The target address is refused by the egress policy"),
            Self::ProviderForbidden => {
                ("provider_forbidden", 403, "The provider does not allow this for the connected account")
            }
            Self::NotFound => ("not_found", 404, "Not found"),
            Self::AccountMismatch => ("account_mismatch", 409, "The token belongs to another account"),
            Self::AccountInUse => ("account_in_use", 409, "The account is connected for another end user"),
            Self::NotRefreshable => ("not_refreshable", 409, "The integration cannot be refreshed"),
            Self::ProxyUnsupported => ("proxy_unsupported", 409, "The connector cannot be used through the proxy"),
            Self::RotationUnsupported => ("rotation_unsupported", 409, "This provider cannot rotate the token"),
            Self::ScopeUnsupported => {
                ("scope_unsupported", 409, "The connection cannot be limited to part of the provider")
            }
            Self::OutsideScope => ("outside_scope", 403, "The request is outside the connection's scope"),
            Self::ScopeNotReached => ("scope_not_reached", 422, "The token does not reach that scope"),
            Self::RotationIncomplete => {
                ("rotation_incomplete", 503, "The new token was issued but could not be stored")
            }
            Self::InvalidToken => ("invalid_token", 422, "The provider refused the token"),
            Self::TokenExpired => ("token_expired", 422, "The token has expired"),
            Self::TokenRevoked => ("token_revoked", 422, "The token was revoked"),
            Self::InsufficientScope => ("insufficient_scope", 422, "The token lacks required scopes"),
            Self::InvalidGrant => ("invalid_grant", 422, "The provider refused the grant"),
            Self::OAuthClientInvalid => ("oauth_client_invalid", 422, "The provider refused the OAuth application"),
            Self::RateLimited => ("rate_limited", 429, "The provider is rate limiting requests"),
            Self::InternalError => ("internal_error", 500, "Internal error"),
            Self::UpstreamError => ("upstream_error", 502, "The provider answered with an error"),
            Self::UpstreamUnreachable => ("upstream_unreachable", 502, "The provider could not be reached"),
            Self::PluginFailed => ("plugin_failed", 502, "The connector failed"),
            Self::SecretUnavailable => ("secret_unavailable", 503, "Stored credentials cannot be decrypted"),
            Self::HostBusy => ("host_busy", 503, "The host is busy"),
            Self::ProviderUnavailable => ("provider_unavailable", 503, "The integration's connector is not loaded"),
            Self::DatabaseUnavailable => ("database_unavailable", 503, "The database cannot be reached"),
            Self::UpstreamTimeout => ("upstream_timeout", 504, "The provider did not answer in time"),
            Self::PluginTimeout => ("plugin_timeout", 504, "The connector did not finish in time"),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.parts().0
    }

    pub fn status(self) -> u16 {
        self.parts().1
    }

    pub fn title(self) -> &'static str {
        self.parts().2
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            Self::Validation(_) => C::ValidationError,
            Self::InvalidBaseUrl(_) => C::InvalidBaseUrl,
            Self::EgressDenied(_) => C::EgressDenied,
            Self::Unauthorized => C::Unauthorized,
            Self::Forbidden(_) => C::Forbidden,
            Self::SessionExpired => C::SessionExpired,
            Self::SessionRevoked => C::SessionRevoked,
            Self::AccountInUse(_) => C::AccountInUse,
            Self::NotFound(_) => C::NotFound,
            Self::AccountMismatch(_) => C::AccountMismatch,
            Self::Verify(e) => match e {
                VerifyError::InvalidInput(_) => C::ValidationError,
                VerifyError::InvalidToken(_) => C::InvalidToken,
                VerifyError::TokenExpired(_) => C::TokenExpired,
                VerifyError::TokenRevoked(_) => C::TokenRevoked,
                VerifyError::InsufficientScope { .. } => C::InsufficientScope,
                VerifyError::RateLimited(_) => C::RateLimited,
                VerifyError::UpstreamError(_) => C::UpstreamError,
                VerifyError::UpstreamUnreachable(_) => C::UpstreamUnreachable,
                VerifyError::UpstreamTimeout => C::UpstreamTimeout,
                VerifyError::EgressDenied(_) => C::EgressDenied,
            },
            Self::OAuthState(_) => C::OAuthStateInvalid,
            Self::OAuthDenied(_) => C::OAuthDenied,
            Self::OAuthNotConfigured(_) => C::OAuthNotConfigured,
            Self::NotRefreshable(_) => C::NotRefreshable,
            Self::OAuth(e) => match e {
                OAuthError::Unsupported => C::OAuthUnsupported,
                OAuthError::InvalidGrant(_) => C::InvalidGrant,
                OAuthError::InvalidClient(_) => C::OAuthClientInvalid,
                OAuthError::RateLimited(_) => C::RateLimited,
                OAuthError::UpstreamError(_) => C::UpstreamError,
                OAuthError::UpstreamUnreachable(_) => C::UpstreamUnreachable,
                OAuthError::UpstreamTimeout => C::UpstreamTimeout,
                OAuthError::EgressDenied(_) => C::EgressDenied,
            },
            Self::Provider(e) => match e {
                ProviderError::InvalidInput(_) => C::ValidationError,
                ProviderError::NotFound(_) | ProviderError::Unsupported(_) => C::NotFound,
                ProviderError::Unauthorized(_) => C::InvalidToken,
                ProviderError::Forbidden(_) => C::ProviderForbidden,
                ProviderError::RateLimited(_) => C::RateLimited,
                ProviderError::UpstreamError(_) => C::UpstreamError,
                ProviderError::UpstreamUnreachable(_) => C::UpstreamUnreachable,
                ProviderError::UpstreamTimeout => C::UpstreamTimeout,
                ProviderError::EgressDenied(_) => C::EgressDenied,
            },
            Self::Schema { .. } => C::ValidationError,
            Self::BadOutput { .. } => C::PluginFailed,
            Self::ProxyUnsupported(_) => C::ProxyUnsupported,
            Self::RotationUnsupported(_) => C::RotationUnsupported,
            Self::RotationIncomplete(_) => C::RotationIncomplete,
            Self::ScopeUnsupported(_) => C::ScopeUnsupported,
            Self::ScopeNotReached(_) => C::ScopeNotReached,
            Self::OutsideScope(_) => C::OutsideScope,
            Self::ProviderUnavailable(_) => C::ProviderUnavailable,
            Self::Connector(CallError::Timeout(_)) => C::PluginTimeout,
            Self::Connector(CallError::Failed(_)) => C::PluginFailed,
            Self::Connector(CallError::Busy(..)) => C::HostBusy,
            Self::Store(e) if e.is_unavailable() => C::DatabaseUnavailable,
            Self::Store(_) => C::InternalError,
            Self::Crypto(_) => C::SecretUnavailable,
        }
    }

    pub fn status(&self) -> u16 {
        self.code().status()
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
            Self::OutsideScope(_) => Some(
                "This connection is limited to one scope (reach.scope on the integration); ask for something inside it, or change or lift the limit with PUT /api/v1/integrations/{id}/scope.",
            ),
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
            | Self::Forbidden(s)
            | Self::AccountInUse(s)
            | Self::OAuthState(s)
            | Self::OAuthDenied(s)
            | Self::OAuthNotConfigured(s)
            | Self::NotRefreshable(s)
            | Self::ProxyUnsupported(s)
            | Self::RotationUnsupported(s)
            | Self::RotationIncomplete(s)
            | Self::ScopeUnsupported(s)
            | Self::ScopeNotReached(s)
            | Self::OutsideScope(s) => s.clone(),
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
            Self::SessionExpired => {
                "This connect session has expired; ask the application that sent you here for a new link (its backend creates a new session with POST /api/v1/connect-sessions).".into()
            }
            Self::SessionRevoked => {
                "This connect session was revoked; ask the application that sent you here for a new link.".into()
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
            Self::Connector(CallError::Timeout(d)) => format!(
                "The connector did not finish within {} s and was stopped; try again, and report it to the connector's author if it persists.",
                d.as_secs_f32()
            ),
            Self::Connector(CallError::Failed(s)) => {
                format!("{s}. The connector was stopped; report it to the connector's author.")
            }
            Self::Connector(CallError::Busy(waited, slots)) => format!(
                "All {slots} connector call slots stayed taken for {} s; retry after {} s (Retry-After), or raise --max-concurrent-calls or --max-call-wait.",
                waited.as_secs_f32(),
                busy_retry_after(*waited)
            ),
            Self::ProviderUnavailable(id) => format!(
                "The connector {id:?} of this integration is not loaded (its file was removed or refused); put its .wasm back into the plugins directory (GET /api/v1/plugins lists refused files). The stored credentials are kept."
            ),
            Self::Store(e) if e.is_unavailable() => "The database cannot be reached right now (it is down or restarting, or every connection stayed busy); retry in a few seconds: the server reconnects by itself when it is back. If it persists, check the database and GET /api/v1/ready.".into(),
            Self::Store(_) => "The database failed; see the server log and try again.".into(),
            Self::Crypto(e) => format!(
                "{e}. Restore the master key the server used before (its key file, --master-key-file, or GATEHOUSE_MASTER_KEY; `gatehouse keys status` tells which key each secret needs), or connect the integration again."
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let (missing_scopes, retry_after) = match self {
            Self::Verify(VerifyError::InsufficientScope { missing_scopes, .. }) => (Some(missing_scopes.clone()), None),
            Self::Verify(VerifyError::RateLimited(after))
            | Self::OAuth(OAuthError::RateLimited(after))
            | Self::Provider(ProviderError::RateLimited(after)) => (None, *after),
            Self::Connector(CallError::Busy(waited, _)) => (None, Some(busy_retry_after(*waited))),
            _ => (None, None),
        };
        let pointer = match self {
            Self::Schema { pointer, .. } | Self::BadOutput { pointer, .. } => Some(pointer.clone()),
            _ => None,
        };
        Problem {
            kind: format!("https://gatehouse.invalid/problems/{}", self.code()),
            title: self.code().title().into(),
            status: self.status(),
            detail: self.detail(),
            code: self.code().as_str().into(),
            advice: self.advice().map(String::from),
            missing_scopes,
            retry_after,
            pointer,
            request_id: None,
        }
    }
}

/// Seconds to suggest before retrying a call refused as `host_busy`.
fn busy_retry_after(waited: std::time::Duration) -> u32 {
    waited.as_secs_f64().ceil().clamp(1.0, 30.0) as u32
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
