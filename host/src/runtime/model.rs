//! The host's own view of a connector: the latest WIT version's concepts as
//! plain Rust types. Every supported WIT version converts into these once,
//! at the edge, so nothing else matches over versions.

use std::{collections::BTreeMap, fmt};

use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    OAuth2,
    PersonalAccessToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Secret,
    Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeRule {
    AllOf,
    AnyOf,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub key: String,
    pub label: String,
    pub kind: FieldKind,
    pub required: bool,
    pub default: Option<String>,
    pub placeholder: Option<String>,
    pub help: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub auth_method: AuthMethod,
    pub description: String,
    pub notes: Vec<String>,
    pub fields: Vec<Field>,
    pub required_scopes: Vec<String>,
    pub required_scopes_rule: ScopeRule,
    pub version: String,
    /// Present when the connector runs the OAuth 2.0 authorization-code flow.
    pub oauth: Option<OAuthSettings>,
    /// How the host presents a stored credential; None: the connection can
    /// be verified but not used through the proxy, actions or syncs.
    pub credential_presentation: Option<CredentialPresentation>,
    pub actions: Vec<ActionDefinition>,
    pub sync_models: Vec<SyncModel>,
    pub inbound_webhook: Option<InboundWebhook>,
}

/// How the provider's own webhooks tell the host that data changed.
#[derive(Debug, Clone)]
pub struct InboundWebhook {
    pub token_header: String,
    pub event_header: String,
    pub idempotency_header: Option<String>,
    /// (event, sync model) pairs.
    pub events: Vec<(String, String)>,
    pub setup: String,
}

/// One header the host adds to authenticated requests. `value` is a
/// template whose `{key}` placeholders name credential fields.
#[derive(Debug, Clone)]
pub struct CredentialPresentation {
    pub header: String,
    pub value: String,
}

/// A typed operation a connector offers; the schemas are JSON Schema
/// documents (draft 2020-12).
#[derive(Debug, Clone)]
pub struct ActionDefinition {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub output_schema: serde_json::Value,
}

/// A kind of record a connector's syncs mirror.
#[derive(Debug, Clone)]
pub struct SyncModel {
    pub name: String,
    pub description: String,
    pub record_schema: serde_json::Value,
    pub default_interval_seconds: u32,
    pub incremental: bool,
}

/// What an action or sync learns of the connection it runs for: never a
/// secret.
#[derive(Debug, Clone)]
pub struct Connection {
    pub base_url: String,
    pub account_id: String,
    pub settings: Vec<(String, String)>,
    /// The part of the provider the connection is limited to, if any.
    pub scope: Option<ReachItem>,
}

/// What kind of credential a token is, as its connector tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Personal,
    Group,
    Project,
    Service,
    #[serde(rename = "oauth")]
    OAuth,
    Other,
}

/// A group, project or organization a credential reaches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReachItem {
    pub id: String,
    pub path: String,
    pub name: String,
    pub kind: String,
}

/// What a credential reaches; texts already redacted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenReach {
    pub kind: CredentialKind,
    pub bound_to: Option<ReachItem>,
    pub group_count: u32,
    pub project_count: u32,
    pub top_level: Vec<ReachItem>,
    pub summary: String,
    pub note: String,
}

/// Whether a request stays inside a connection's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeVerdict {
    Inside,
    Outside(String),
    Unknown(String),
}

/// A credential the provider issued in place of the stored one: new
/// values of secret fields.
pub struct Rotated {
    pub credentials: Vec<(String, SecretString)>,
    pub expires_at: Option<String>,
}

impl fmt::Debug for Rotated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotated")
            .field("fields", &self.credentials.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a rotation did not happen; sentences already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateError {
    NotRotatable(String),
    InsufficientScope { scopes: Vec<String>, missing_scopes: Vec<String>, detail: String },
    Provider(ProviderError),
}

/// One page of a sync run, as the connector answered it.
#[derive(Debug, Clone)]
pub struct SyncPage {
    /// (external id, record JSON text)
    pub records: Vec<(String, String)>,
    pub deleted: Vec<String>,
    pub checkpoint: Option<String>,
    pub has_more: bool,
}

/// The provider's rate-limit budget as its answers during one call showed
/// it (the `RateLimit-Remaining` / `RateLimit-Reset` header fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateBudget {
    pub remaining: u64,
    /// Unix seconds when the budget resets, when the provider said.
    pub reset_at: Option<i64>,
}

/// Why an action (or a sync page) did not succeed; sentences already
/// redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    InvalidInput(String),
    NotFound(String),
    Unauthorized(String),
    Forbidden(String),
    RateLimited(Option<u32>),
    UpstreamError(String),
    UpstreamUnreachable(String),
    UpstreamTimeout,
    EgressDenied(String),
    Unsupported(String),
}

#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub authorize_path: String,
    pub token_path: String,
    pub scopes: Vec<String>,
    pub url_field: String,
    pub token_field: String,
}

/// The OAuth application registered with a provider for one base URL.
#[derive(Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// Tokens a provider issued.
pub struct TokenGrant {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<u32>,
    pub scopes: Vec<String>,
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Why an OAuth call did not succeed; sentences already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    Unsupported,
    InvalidGrant(String),
    InvalidClient(String),
    RateLimited(Option<u32>),
    UpstreamError(String),
    UpstreamUnreachable(String),
    UpstreamTimeout,
    EgressDenied(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub web_url: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Verification {
    pub account: Account,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub token_kind: String,
}

impl Verification {
    /// `redact` applied to every text of the answer, not only to error
    /// sentences: a connector may return a credential in any field.
    pub fn redacted(self, redact: &dyn Fn(String) -> String) -> Self {
        Self {
            account: self.account.redacted(redact),
            scopes: self.scopes.into_iter().map(redact).collect(),
            expires_at: self.expires_at.map(redact),
            token_kind: redact(self.token_kind),
        }
    }
}

impl Account {
    pub fn redacted(self, redact: &dyn Fn(String) -> String) -> Self {
        Self {
            id: redact(self.id),
            username: redact(self.username),
            name: self.name.map(redact),
            email: self.email.map(redact),
            web_url: self.web_url.map(redact),
            avatar_url: self.avatar_url.map(redact),
        }
    }
}

/// Why a connector could not confirm the credentials. Sentences come from
/// the connector and have already had credential values removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    InvalidInput(String),
    InvalidToken(String),
    TokenExpired(String),
    TokenRevoked(String),
    InsufficientScope { account: Option<Account>, scopes: Vec<String>, missing_scopes: Vec<String>, detail: String },
    RateLimited(Option<u32>),
    UpstreamError(String),
    UpstreamUnreachable(String),
    UpstreamTimeout,
    EgressDenied(String),
}

impl VerifyError {
    /// Whether the provider gave a verdict on the token itself (as opposed
    /// to not being reachable or usable).
    pub fn is_verdict(&self) -> bool {
        matches!(
            self,
            Self::InvalidToken(_) | Self::TokenExpired(_) | Self::TokenRevoked(_) | Self::InsufficientScope { .. }
        )
    }
}

/// Credential values keyed by field key. Every value is held as a secret:
/// `Debug` shows only the keys, and memory is zeroed on drop.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, SecretString>);

impl Credentials {
    pub fn insert(&mut self, key: String, value: String) {
        self.0.insert(key, SecretString::from(value));
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.expose_secret())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.expose_secret()))
    }

    /// Serialises for sealing; the caller seals the buffer immediately.
    pub fn to_json(&self) -> SecretString {
        let map: BTreeMap<&str, &str> = self.iter().collect();
        SecretString::from(serde_json::to_string(&map).expect("a string map serialises"))
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let map: BTreeMap<String, String> = serde_json::from_str(text)?;
        Ok(Self(map.into_iter().map(|(k, v)| (k, SecretString::from(v))).collect()))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "[redacted]"))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_hides_values() {
        let mut c = Credentials::default();
        c.insert("token".into(), "glpat-very-secret-value".into());
        let shown = format!("{c:?}");
        assert!(shown.contains("token") && !shown.contains("very-secret"), "{shown}");
        let back = Credentials::from_json(secrecy::ExposeSecret::expose_secret(&c.to_json())).unwrap();
        assert_eq!(back.get("token"), Some("glpat-very-secret-value"));
    }
}
