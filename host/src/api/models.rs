//! Request and response bodies of the HTTP API, as the OpenAPI document
//! shows them. Conversions from the host's types live here too. Optional
//! fields are left out when empty rather than sent as `null`: the document
//! does not mark them nullable, and a strict generated client refuses one.

use std::collections::BTreeMap;

use poem_openapi::{Enum, Object};

use crate::{
    error::{AppError, Problem},
    runtime::{
        Connector,
        model::{self, Account, Verification, VerifyError},
    },
    store::IntegrationRow,
};

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The server's version; only with the API key.
    #[oai(skip_serializing_if_is_none)]
    pub version: Option<String>,
    /// Ids of the loaded connectors; only with the API key.
    #[oai(skip_serializing_if_is_none)]
    pub plugins: Option<Vec<String>>,
}

/// Readiness: this process can serve requests.
#[derive(Debug, Object)]
pub struct Readiness {
    /// Always `ready` (a process that is not answers 503).
    pub status: String,
    /// `sqlite` or `postgres`: reachable, with every migration applied.
    pub database: String,
    /// How many connectors are loaded.
    pub connectors: u64,
}

/// What is loaded, and what the plugins directory holds that is not.
#[derive(Debug, Object)]
pub struct PluginsStatus {
    pub loaded: Vec<LoadedPlugin>,
    /// Files refused now: not a component, another world, a bad manifest,
    /// or an id another file already serves.
    pub refused: Vec<RefusedPlugin>,
}

#[derive(Debug, Object)]
pub struct LoadedPlugin {
    pub id: String,
    pub name: String,
    pub version: String,
    pub wit_version: String,
    /// `builtin:<name>` or the file it was loaded from.
    pub source: String,
    pub sha256: String,
    /// The interfaces the component exports (`connector`, `oauth`, …).
    pub exports: Vec<String>,
}

impl From<&crate::runtime::Connector> for LoadedPlugin {
    fn from(p: &crate::runtime::Connector) -> Self {
        Self {
            id: p.manifest.id.clone(),
            name: p.manifest.name.clone(),
            version: p.manifest.version.clone(),
            wit_version: p.wit_version.into(),
            source: p.source.clone(),
            sha256: p.sha256.clone(),
            exports: p.exports().into_iter().map(String::from).collect(),
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RefusedPlugin {
    pub file: String,
    /// Why it was refused.
    pub error: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReloadResult {
    /// Ids loaded after the reload.
    pub plugins: Vec<String>,
    /// Ids newly loaded or replaced.
    pub loaded: Vec<String>,
    pub unloaded: Vec<String>,
    pub refused: Vec<RefusedPlugin>,
}

#[derive(Debug, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AuthMethod {
    Oauth2,
    PersonalAccessToken,
}

#[derive(Debug, Enum)]
#[oai(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Secret,
    Url,
}

#[derive(Debug, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ScopeRule {
    /// Every listed scope is needed.
    AllOf,
    /// One of the listed scopes is enough.
    AnyOf,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Field {
    pub key: String,
    pub label: String,
    pub kind: FieldKind,
    pub required: bool,
    pub default: Option<String>,
    pub placeholder: Option<String>,
    pub help: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PluginInfo {
    /// The connector's own version.
    pub version: String,
    /// The `gatehouse:plugin` WIT version it implements.
    pub wit_version: String,
    /// SHA-256 of the component file.
    pub sha256: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProviderManifest {
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub auth_method: AuthMethod,
    pub description: String,
    pub notes: Vec<String>,
    pub fields: Vec<Field>,
    pub required_scopes: Vec<String>,
    pub required_scopes_rule: ScopeRule,
    pub plugin: PluginInfo,
    /// Present when the connector runs the OAuth 2.0 authorization-code flow
    /// (`GET /api/v1/oauth/{provider_id}/authorize`).
    pub oauth: Option<OAuthSettings>,
    /// How Gatehouse presents the stored credential to the provider for the
    /// proxy, actions and syncs. Absent: connections can only be verified.
    pub credential_presentation: Option<CredentialPresentation>,
    /// Typed operations: `POST /api/v1/integrations/{id}/actions/{name}`.
    pub actions: Vec<ActionDefinition>,
    /// Data the connector's syncs mirror.
    pub sync_models: Vec<SyncModel>,
    /// Present when the provider's webhooks can trigger syncs
    /// (`PUT /api/v1/integrations/{id}/inbound-webhook`).
    pub inbound_webhook: Option<InboundWebhookInfo>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InboundWebhookInfo {
    /// Provider events and the sync model each makes due.
    pub events: Vec<InboundEvent>,
    /// Where to register the URL and token at the provider.
    pub setup: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InboundEvent {
    pub event: String,
    pub model: String,
}

/// The URL and secret token to register at the provider; the token is
/// shown only in this answer.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InboundWebhookSetup {
    /// Where the provider should send its webhooks.
    pub url: String,
    pub secret_token: String,
    /// The header the provider sends the token in.
    pub token_header: String,
    pub setup: String,
    pub events: Vec<InboundEvent>,
}

/// One header Gatehouse adds to requests bound for the base URL.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CredentialPresentation {
    /// Header name, e.g. `private-token`.
    pub header: String,
    /// Template of the value; `{key}` stands for the credential field `key`.
    pub value: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ActionDefinition {
    pub name: String,
    pub description: String,
    /// JSON Schema (draft 2020-12) the request body must match.
    pub input_schema: serde_json::Value,
    /// JSON Schema (draft 2020-12) of the answer.
    pub output_schema: serde_json::Value,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SyncModel {
    pub name: String,
    pub description: String,
    /// JSON Schema (draft 2020-12) of one record.
    pub record_schema: serde_json::Value,
    pub default_interval_seconds: u32,
    /// Whether runs resume from a checkpoint (true) or read everything.
    pub incremental: bool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OAuthSettings {
    /// Authorization endpoint, relative to the base URL.
    pub authorize_path: String,
    /// Token endpoint, relative to the base URL.
    pub token_path: String,
    /// Scopes requested; register the OAuth application with them.
    pub scopes: Vec<String>,
    /// The field holding the base URL.
    pub url_field: String,
    /// The field the access token goes into.
    pub token_field: String,
}

/// An OAuth application registered with the provider for one base URL.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
#[oai(deny_unknown_fields)]
pub struct OAuthAppRequest {
    /// Provider id, e.g. `gitlab-oauth`.
    pub provider: String,
    /// The provider instance; default: the provider's default base URL.
    pub base_url: Option<String>,
    /// The application id the provider issued.
    pub client_id: String,
    /// The application secret. Write-only: never returned.
    #[oai(write_only)]
    pub client_secret: String,
    /// Registered redirect URI; default: `<public url>/api/v1/oauth/<provider>/callback`.
    pub redirect_uri: Option<String>,
}

/// An OAuth application. The client secret is stored sealed and never returned.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OAuthApp {
    pub id: uuid::Uuid,
    pub provider: String,
    pub base_url: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// `api` or `config` (GATEHOUSE_OAUTH_APPS).
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OAuthAppList {
    pub oauth_apps: Vec<OAuthApp>,
}

/// Where to send the browser to authorize.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuthorizeResult {
    /// The provider's authorization URL, with state and PKCE challenge.
    pub authorize_url: String,
    /// The authorization must be completed before this time.
    pub expires_at: String,
}

impl TryFrom<crate::store::OAuthAppRow> for OAuthApp {
    type Error = AppError;

    fn try_from(row: crate::store::OAuthAppRow) -> Result<Self, AppError> {
        let id = row
            .id
            .parse()
            .map_err(|_| AppError::Store(crate::store::StoreError::Corrupt { id: row.id.clone(), why: "id".into() }))?;
        Ok(Self {
            id,
            provider: row.provider,
            base_url: row.base_url,
            client_id: row.client_id,
            redirect_uri: row.redirect_uri,
            source: row.source,
            created_at: row.created_at.to_string(),
            updated_at: row.updated_at.to_string(),
        })
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProviderList {
    pub providers: Vec<ProviderManifest>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
#[oai(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Values for the provider's fields, by key. Omitted fields take their default.
    pub credentials: CredentialValues,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
#[oai(deny_unknown_fields)]
pub struct ConnectRequest {
    /// Provider id, e.g. `gitlab-pat`.
    pub provider: String,
    pub credentials: CredentialValues,
    /// A name for this connection.
    #[oai(validator(max_length = 200))]
    pub label: Option<String>,
    /// The consuming system's id of the user this connection belongs to.
    /// With a connect session it is the session's and may be left out.
    pub end_user_id: Option<String>,
    /// The end user's display name.
    pub end_user_name: Option<String>,
    /// The end user's email.
    pub end_user_email: Option<String>,
    /// An organization (tenant) tag of the consuming system's.
    pub organization: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
#[oai(deny_unknown_fields)]
pub struct RotateRequest {
    /// The new credentials; fields left out keep their stored value, secrets excepted.
    pub credentials: CredentialValues,
}

/// Credential values by field key; every value must be a JSON string.
/// (poem-openapi's own string parser would take a number or a boolean as
/// its text.) Documented as an object of strings.
#[derive(Debug, Default)]
pub struct CredentialValues(pub BTreeMap<String, String>);

impl poem_openapi::types::Type for CredentialValues {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, String> as poem_openapi::types::Type>::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        <BTreeMap<String, String> as poem_openapi::types::Type>::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl poem_openapi::types::ParseFromJSON for CredentialValues {
    /// The error names the key, never the value, which may be a secret.
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        use poem_openapi::types::ParseError;
        let Some(serde_json::Value::Object(map)) = value else {
            return Err(ParseError::custom("credentials must be an object of strings by field name"));
        };
        map.into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => Ok((key, text)),
                _ => Err(ParseError::custom(format!("the credential {key:?} must be a string"))),
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl poem_openapi::types::ToJSON for CredentialValues {
    fn to_json(&self) -> Option<serde_json::Value> {
        self.0.to_json()
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
#[oai(rename = "Account")]
pub struct AccountBody {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub web_url: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VerificationResult {
    pub valid: bool,
    pub account: Option<AccountBody>,
    pub scopes: Vec<String>,
    pub missing_scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub token_kind: Option<String>,
    /// What the token reaches and what kind of token it is, when the
    /// connector can tell.
    pub reach: Option<Reach>,
    /// Why the token is not valid.
    pub error: Option<Problem>,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum CredentialKind {
    /// Acts as a person: reaches what that person can reach.
    Personal,
    /// Bound to one group (its user is a bot).
    Group,
    /// Bound to one project (its user is a bot).
    Project,
    /// A service account of its own.
    Service,
    #[oai(rename = "oauth")]
    OAuth,
    Other,
}

/// A group, project or organization a token reaches.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReachItemBody {
    pub id: String,
    /// Full path, e.g. `acme/infra`.
    pub path: String,
    pub name: String,
    /// The provider's word for it: `group`, `project`, …
    pub kind: String,
}

/// What a token reaches, as its connector says.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Reach {
    pub kind: CredentialKind,
    /// For a group or project token: the group or project it belongs to.
    pub bound_to: Option<ReachItemBody>,
    pub group_count: u32,
    pub project_count: u32,
    /// The top-level groups it reaches: what a connection can be limited to
    /// (`PUT /api/v1/integrations/{id}/scope`).
    pub top_level: Vec<ReachItemBody>,
    /// E.g. "This token reaches 3 groups: acme, acme-infra, tools."
    pub summary: String,
    /// What the provider's "one organization" rule means for this kind of token.
    pub note: String,
}

impl From<model::ReachItem> for ReachItemBody {
    fn from(i: model::ReachItem) -> Self {
        Self { id: i.id, path: i.path, name: i.name, kind: i.kind }
    }
}

impl From<model::TokenReach> for Reach {
    fn from(r: model::TokenReach) -> Self {
        use model::CredentialKind as K;
        Self {
            kind: match r.kind {
                K::Personal => CredentialKind::Personal,
                K::Group => CredentialKind::Group,
                K::Project => CredentialKind::Project,
                K::Service => CredentialKind::Service,
                K::OAuth => CredentialKind::OAuth,
                K::Other => CredentialKind::Other,
            },
            bound_to: r.bound_to.map(Into::into),
            group_count: r.group_count,
            project_count: r.project_count,
            top_level: r.top_level.into_iter().map(Into::into).collect(),
            summary: r.summary,
            note: r.note,
        }
    }
}

/// `PUT /integrations/{id}/scope`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ScopeRequest {
    /// The id or path of one of `reach.top_level` (or of `reach.bound_to`);
    /// `null` lifts the limit.
    pub scope: poem_openapi::types::MaybeUndefined<String>,
}

/// Served as stored.
pub use crate::store::Status;

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Integration {
    pub id: uuid::Uuid,
    pub provider: String,
    pub label: Option<String>,
    pub status: Status,
    pub base_url: Option<String>,
    pub account: AccountBody,
    pub scopes: Vec<String>,
    pub missing_scopes: Vec<String>,
    /// At most the last 4 characters of the token.
    pub token_hint: Option<String>,
    pub token_kind: Option<String>,
    pub token_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_verified_at: Option<String>,
    pub last_error: Option<Problem>,
    /// Whether Gatehouse holds a refresh token and renews the access token
    /// before it expires.
    pub refreshable: bool,
    /// Why the integration cannot be refreshed, for OAuth connectors.
    pub refresh_note: Option<String>,
    /// What the token reaches, when the connector can tell.
    pub reach: Option<Reach>,
    /// The scope the connection is limited to: the proxy, actions and
    /// syncs stay inside it. Absent: all the token reaches.
    pub scope: Option<ReachItemBody>,
    /// With status `expiring`: when the token expires and what to do.
    pub expiry_warning: Option<String>,
    /// Whether `POST /api/v1/integrations/{id}/rotate` can have the provider
    /// issue a new token (the connector exports rotation).
    pub rotatable: bool,
    /// Set when a rotation asked the provider for a new token and did not
    /// store it (the server stopped, or the database failed): the old
    /// token may be revoked; replace it if the integration stops working.
    pub rotation_started_at: Option<String>,
    /// The consuming system's user this connection belongs to; left out
    /// for connections made with the API key for no end user.
    pub end_user: Option<EndUser>,
    /// The organization (tenant) tag given when connecting.
    pub organization: Option<String>,
}

/// An end user of the consuming system, as it named them.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EndUser {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IntegrationList {
    pub integrations: Vec<Integration>,
}

impl From<&Connector> for ProviderManifest {
    fn from(p: &Connector) -> Self {
        let m = &p.manifest;
        Self {
            id: m.id.clone(),
            name: m.name.clone(),
            vendor: m.vendor.clone(),
            auth_method: match m.auth_method {
                model::AuthMethod::OAuth2 => AuthMethod::Oauth2,
                model::AuthMethod::PersonalAccessToken => AuthMethod::PersonalAccessToken,
            },
            description: m.description.clone(),
            notes: m.notes.clone(),
            fields: m
                .fields
                .iter()
                .map(|f| Field {
                    key: f.key.clone(),
                    label: f.label.clone(),
                    kind: match f.kind {
                        model::FieldKind::Text => FieldKind::Text,
                        model::FieldKind::Secret => FieldKind::Secret,
                        model::FieldKind::Url => FieldKind::Url,
                    },
                    required: f.required,
                    default: f.default.clone(),
                    placeholder: f.placeholder.clone(),
                    help: f.help.clone(),
                })
                .collect(),
            required_scopes: m.required_scopes.clone(),
            required_scopes_rule: match m.required_scopes_rule {
                model::ScopeRule::AllOf => ScopeRule::AllOf,
                model::ScopeRule::AnyOf => ScopeRule::AnyOf,
            },
            plugin: PluginInfo {
                version: m.version.clone(),
                wit_version: p.wit_version.into(),
                sha256: p.sha256.clone(),
            },
            oauth: m.oauth.as_ref().map(|o| OAuthSettings {
                authorize_path: o.authorize_path.clone(),
                token_path: o.token_path.clone(),
                scopes: o.scopes.clone(),
                url_field: o.url_field.clone(),
                token_field: o.token_field.clone(),
            }),
            credential_presentation: m
                .credential_presentation
                .as_ref()
                .map(|p| CredentialPresentation { header: p.header.clone(), value: p.value.clone() }),
            actions: m
                .actions
                .iter()
                .map(|a| ActionDefinition {
                    name: a.name.clone(),
                    description: a.description.clone(),
                    input_schema: a.input_schema.clone(),
                    output_schema: a.output_schema.clone(),
                })
                .collect(),
            sync_models: m
                .sync_models
                .iter()
                .map(|s| SyncModel {
                    name: s.name.clone(),
                    description: s.description.clone(),
                    record_schema: s.record_schema.clone(),
                    default_interval_seconds: s.default_interval_seconds,
                    incremental: s.incremental,
                })
                .collect(),
            inbound_webhook: m.inbound_webhook.as_ref().map(|w| InboundWebhookInfo {
                events: w
                    .events
                    .iter()
                    .map(|(event, model)| InboundEvent { event: event.clone(), model: model.clone() })
                    .collect(),
                setup: w.setup.clone(),
            }),
        }
    }
}

impl From<Account> for AccountBody {
    fn from(a: Account) -> Self {
        Self {
            id: a.id,
            username: a.username,
            name: a.name,
            email: a.email,
            web_url: a.web_url,
            avatar_url: a.avatar_url,
        }
    }
}

impl VerificationResult {
    /// Not verified for a reason of the host's (the connector failed, the
    /// base URL is refused, …): the same shape as a provider's verdict.
    pub fn failed(problem: Problem) -> Self {
        Self {
            valid: false,
            account: None,
            scopes: Vec::new(),
            missing_scopes: Vec::new(),
            expires_at: None,
            token_kind: None,
            reach: None,
            error: Some(problem),
        }
    }
}

impl From<Result<Verification, VerifyError>> for VerificationResult {
    fn from(verdict: Result<Verification, VerifyError>) -> Self {
        match verdict {
            Ok(v) => Self {
                valid: true,
                account: Some(v.account.into()),
                scopes: v.scopes,
                missing_scopes: Vec::new(),
                expires_at: v.expires_at,
                token_kind: Some(v.token_kind),
                reach: None,
                error: None,
            },
            Err(e) => {
                let (account, scopes, missing_scopes) = match &e {
                    VerifyError::InsufficientScope { account, scopes, missing_scopes, .. } => {
                        (account.clone().map(Into::into), scopes.clone(), missing_scopes.clone())
                    }
                    _ => (None, Vec::new(), Vec::new()),
                };
                Self {
                    valid: false,
                    account,
                    scopes,
                    missing_scopes,
                    expires_at: None,
                    token_kind: None,
                    reach: None,
                    error: Some(AppError::Verify(e).problem()),
                }
            }
        }
    }
}

impl TryFrom<IntegrationRow> for Integration {
    type Error = AppError;

    fn try_from(row: IntegrationRow) -> Result<Self, AppError> {
        let corrupt =
            |why: &str| AppError::Store(crate::store::StoreError::Corrupt { id: row.id.clone(), why: why.to_string() });
        Ok(Self {
            id: row.id.parse().map_err(|_| corrupt("id"))?,
            provider: row.provider,
            label: row.label,
            status: row.status,
            base_url: Some(row.base_url).filter(|u| !u.is_empty()),
            account: row.account.0.into(),
            scopes: row.scopes.0,
            missing_scopes: row.missing_scopes.0,
            token_hint: row.token_hint,
            token_kind: row.token_kind,
            token_expires_at: row.token_expires_at.map(|t| t.to_string()),
            created_at: row.created_at.to_string(),
            updated_at: row.updated_at.to_string(),
            last_verified_at: row.last_verified_at.map(|t| t.to_string()),
            last_error: row.last_error.map(|e| e.0),
            refreshable: row.refresh.is_some(),
            refresh_note: None,
            reach: row.reach.map(|r| r.0.into()),
            scope: row.scope.map(|s| s.0.into()),
            expiry_warning: None,
            rotatable: false,
            rotation_started_at: row.rotation_started_at.map(|t| t.to_string()),
            end_user: row.owner.end_user_id.map(|id| EndUser {
                id,
                name: row.owner.end_user_name,
                email: row.owner.end_user_email,
            }),
            organization: row.owner.organization,
        })
    }
}

#[derive(Debug, Enum, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum SyncState {
    Idle,
    Running,
    Failed,
    /// Waiting for the provider's rate limit to reset.
    Paused,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SyncCounts {
    pub added: i64,
    pub updated: i64,
    pub deleted: i64,
}

/// One model's sync on one connection.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Sync {
    pub model: String,
    pub description: String,
    /// Runs resume from the last checkpoint (true), or read everything and
    /// delete what they did not see (false).
    pub incremental: bool,
    pub enabled: bool,
    pub state: SyncState,
    /// Seconds between runs in effect.
    pub interval_seconds: i64,
    /// The connector's default, used while `interval_seconds` is not overridden.
    pub default_interval_seconds: u32,
    /// Records held (deleted ones excepted).
    pub records: i64,
    pub last_started_at: Option<String>,
    pub last_finished_at: Option<String>,
    /// What the last completed run changed.
    pub last_run: SyncCounts,
    /// Progress of the run in progress (or interrupted and to be continued).
    pub current_run: Option<SyncCounts>,
    pub last_error: Option<Problem>,
    pub next_run_at: Option<String>,
    pub paused_until: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SyncList {
    pub syncs: Vec<Sync>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
#[oai(deny_unknown_fields)]
pub struct SyncSettingsRequest {
    pub enabled: Option<bool>,
    /// Seconds between runs (10 to 2592000); `null` goes back to the connector's default.
    #[oai(validator(minimum(value = "10"), maximum(value = "2592000")))]
    pub interval_seconds: poem_openapi::types::MaybeUndefined<u32>,
}

#[derive(Debug, Enum, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum RecordAction {
    Added,
    Updated,
    Deleted,
}

/// A mirrored record with its last change.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RecordItem {
    /// The provider's id of the record.
    pub id: String,
    pub model: String,
    pub action: RecordAction,
    /// The record (for a deleted one, as last seen).
    pub data: serde_json::Value,
    pub first_seen_at: String,
    pub last_modified_at: String,
    /// Continue the feed after this record with `cursor=<this>`.
    pub cursor: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RecordPage {
    pub records: Vec<RecordItem>,
    /// Pass as `cursor` to read what changed after this page (the same
    /// cursor when nothing did).
    pub next_cursor: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
#[oai(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where events are POSTed, e.g. `https://app.example.com/hooks/gatehouse`.
    /// A host name or IPv4 address; no user name, password or fragment.
    #[oai(validator(
        max_length = 2048,
        pattern = r"^[hH][tT][tT][pP][sS]?://(([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?][^#\s]*)?$"
    ))]
    pub url: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Webhook {
    pub id: uuid::Uuid,
    pub url: String,
    pub created_at: String,
}

/// A new webhook and its signing secret, shown only in this answer.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedWebhook {
    pub id: uuid::Uuid,
    pub url: String,
    pub created_at: String,
    /// `whsec_<base64>`: verify `webhook-signature` with it (Standard Webhooks).
    pub secret: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Delivery {
    /// Also the `webhook-id` header, the same on every attempt.
    pub id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (given up after 8 attempts).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

use crate::clock::unix_rfc3339 as unix_text;

impl TryFrom<crate::services::syncs::SyncStatus> for Sync {
    type Error = AppError;

    fn try_from(s: crate::services::syncs::SyncStatus) -> Result<Self, AppError> {
        let row = s.row;
        let corrupt = |why: &str| {
            AppError::Store(crate::store::StoreError::Corrupt { id: row.integration_id.clone(), why: why.into() })
        };
        let state = match row.state.as_str() {
            "idle" => SyncState::Idle,
            "running" => SyncState::Running,
            "failed" => SyncState::Failed,
            "paused" => SyncState::Paused,
            _ => return Err(corrupt("sync state")),
        };
        let last_error = match &row.last_error_json {
            Some(text) => Some(serde_json::from_str::<Problem>(text).map_err(|_| corrupt("sync error"))?),
            None => None,
        };
        Ok(Self {
            description: s.model.description.clone(),
            incremental: s.model.incremental,
            enabled: row.enabled,
            state,
            interval_seconds: row.interval_seconds.unwrap_or(i64::from(s.model.default_interval_seconds)),
            default_interval_seconds: s.model.default_interval_seconds,
            records: s.records,
            last_started_at: row.last_started_at.clone(),
            last_finished_at: row.last_finished_at.clone(),
            last_run: SyncCounts { added: row.last_added, updated: row.last_updated, deleted: row.last_deleted },
            current_run: row.run_id.as_ref().map(|_| SyncCounts {
                added: row.run_added,
                updated: row.run_updated,
                deleted: row.run_deleted,
            }),
            last_error,
            next_run_at: if row.enabled { unix_text(row.next_run_at) } else { None },
            paused_until: row.paused_until.and_then(unix_text),
            model: row.model,
        })
    }
}

impl TryFrom<crate::store::syncs::RecordRow> for RecordItem {
    type Error = AppError;

    fn try_from(r: crate::store::syncs::RecordRow) -> Result<Self, AppError> {
        let corrupt = |why: &str| {
            AppError::Store(crate::store::StoreError::Corrupt { id: r.external_id.clone(), why: why.into() })
        };
        Ok(Self {
            action: match r.action.as_str() {
                "added" => RecordAction::Added,
                "updated" => RecordAction::Updated,
                "deleted" => RecordAction::Deleted,
                _ => return Err(corrupt("record action")),
            },
            data: serde_json::from_str(&r.data_json).map_err(|_| corrupt("record data"))?,
            cursor: r.seq.to_string(),
            id: r.external_id,
            model: r.model,
            first_seen_at: r.first_seen_at,
            last_modified_at: r.last_modified_at,
        })
    }
}

impl TryFrom<crate::store::webhooks::DeliveryRow> for Delivery {
    type Error = AppError;

    fn try_from(d: crate::store::webhooks::DeliveryRow) -> Result<Self, AppError> {
        Ok(Self {
            payload: serde_json::from_str(&d.payload_json).map_err(|_| {
                AppError::Store(crate::store::StoreError::Corrupt { id: d.id.clone(), why: "delivery payload".into() })
            })?,
            next_attempt_at: (d.status == "pending").then(|| unix_text(d.next_attempt_at)).flatten(),
            id: d.id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        })
    }
}

impl TryFrom<crate::store::webhooks::WebhookRow> for Webhook {
    type Error = AppError;

    fn try_from(w: crate::store::webhooks::WebhookRow) -> Result<Self, AppError> {
        Ok(Self {
            id: w.id.parse().map_err(|_| {
                AppError::Store(crate::store::StoreError::Corrupt { id: w.id.clone(), why: "webhook id".into() })
            })?,
            url: w.url,
            created_at: w.created_at,
        })
    }
}

/// A named API key (never the key itself).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub role: crate::store::api_keys::Role,
    pub created_at: String,
    /// Set once revoked: the key is refused from then on.
    pub revoked_at: Option<String>,
}

impl From<crate::store::api_keys::ApiKeyRow> for ApiKeyInfo {
    fn from(row: crate::store::api_keys::ApiKeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            role: row.role,
            created_at: row.created_at.to_string(),
            revoked_at: row.revoked_at.map(|t| t.to_string()),
        }
    }
}

#[derive(Debug, Object)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyInfo>,
}

/// A JSON string and nothing else: poem-openapi's own `String` also takes
/// a number or a boolean as its text, which a schema saying `string` does
/// not allow.
#[derive(Debug, Clone)]
pub struct StrictString(pub String);

impl poem_openapi::types::Type for StrictString {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        <String as poem_openapi::types::Type>::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        <String as poem_openapi::types::Type>::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl poem_openapi::types::ParseFromJSON for StrictString {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(text)) => Ok(Self(text)),
            _ => Err(poem_openapi::types::ParseError::custom("expected a string")),
        }
    }
}

impl poem_openapi::types::ToJSON for StrictString {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ApiKeyRequest {
    /// What the key is for, e.g. `billing-app`: 1 to 100 letters, digits,
    /// spaces or `-_.@`, unique among the keys in use.
    pub name: StrictString,
    // No doc comment here: poem-openapi would wrap the enum's reference in
    // an `allOf` with it, which generated clients fail to resolve. The
    // roles are described on `Role` itself (README: keys and roles).
    pub role: crate::store::api_keys::Role,
}

/// A new key: `key` is shown only in this answer.
#[derive(Debug, Object)]
pub struct CreatedApiKey {
    pub id: String,
    pub name: String,
    pub role: crate::store::api_keys::Role,
    pub created_at: String,
    /// Send it as `Authorization: Bearer <key>`. Only its SHA-256 is kept.
    pub key: String,
}

/// Who acted.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditActor {
    /// `api_key`, `cli`, `system` (background work such as refreshes) or
    /// `anonymous` (a route that needs no key, such as the OAuth callback).
    pub kind: String,
    /// The API key's id and name.
    pub id: Option<String>,
    pub name: Option<String>,
}

/// What was acted on.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditTarget {
    /// `integration`, `oauth_app`, `api_key`, `connector`, `webhook`.
    pub kind: String,
    pub id: Option<String>,
    pub provider: Option<String>,
}

/// One entry of the audit log.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditItem {
    /// Pass as `cursor` to read the entries after this one.
    pub cursor: String,
    pub at: String,
    pub actor: AuditActor,
    /// `integration.connect`, `integration.rotate`, `api_key.revoke`, … (README: audit log).
    pub action: String,
    pub target: AuditTarget,
    /// `ok`, or the error code the attempt ended with.
    pub outcome: String,
    /// The caller's address (the peer's; a trusted proxy's `X-Forwarded-For` with `--trust-forwarded-for`).
    pub address: Option<String>,
    pub request_id: Option<String>,
}

impl From<crate::store::audit::AuditEntry> for AuditItem {
    fn from(e: crate::store::audit::AuditEntry) -> Self {
        Self {
            cursor: e.seq.to_string(),
            at: e.at.to_string(),
            actor: AuditActor { kind: e.actor_kind, id: e.actor_id, name: e.actor_name },
            action: e.action,
            target: AuditTarget { kind: e.target_kind, id: e.target_id, provider: e.provider },
            outcome: e.outcome,
            address: e.address,
            request_id: e.request_id,
        }
    }
}

#[derive(Debug, Object)]
pub struct AuditLog {
    pub entries: Vec<AuditItem>,
    /// Where the next page starts; the same cursor when there is nothing newer yet.
    pub next_cursor: String,
}
