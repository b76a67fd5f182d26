//! `gatehouse:plugin@0.4.0` (latest): bindings of the world `everything`, the
//! host side of `gatehouse:host` (`http`, `log`), and the conversions of the
//! connector's answers into [`model`]. Older versions convert their types
//! into these and forward their host calls here.
//!
//! `connector` is the one mandatory export; `oauth`, `actions`, `syncs`,
//! `reach` and `rotation` are looked up one by one, so a component exports
//! only what it has.

use wasmtime::component::{HasSelf, InstancePre};

use super::super::{Answer, Call, CallState, model};
use crate::egress::{OutboundRequest, SendError};

wasmtime::component::bindgen!({
    world: "everything",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::{
    exports::gatehouse::plugin::{actions, connector, oauth, reach, rotation, syncs},
    gatehouse::{
        host::{http, log},
        plugin::types,
    },
};

pub const VERSION: &str = "0.4.0";
pub const CONNECTOR_EXPORT: &str = "gatehouse:plugin/connector@0.4.0";
const OAUTH_EXPORT: &str = "gatehouse:plugin/oauth@0.4.0";
const ACTIONS_EXPORT: &str = "gatehouse:plugin/actions@0.4.0";
const SYNCS_EXPORT: &str = "gatehouse:plugin/syncs@0.4.0";
const REACH_EXPORT: &str = "gatehouse:plugin/reach@0.4.0";
const ROTATION_EXPORT: &str = "gatehouse:plugin/rotation@0.4.0";

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Everything::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

/// A pre-instantiated 0.4.0 component and the exports it has.
pub struct Pre {
    instance: InstancePre<CallState>,
    connector: connector::GuestIndices,
    oauth: Option<oauth::GuestIndices>,
    actions: Option<actions::GuestIndices>,
    syncs: Option<syncs::GuestIndices>,
    reach: Option<reach::GuestIndices>,
    rotation: Option<rotation::GuestIndices>,
}

impl Pre {
    pub fn new(instance: InstancePre<CallState>) -> wasmtime::Result<Self> {
        let exported = |name: &str| instance.component().get_export_index(None, name).is_some();
        Ok(Self {
            connector: connector::GuestIndices::new(&instance)?,
            oauth: exported(OAUTH_EXPORT).then(|| oauth::GuestIndices::new(&instance)).transpose()?,
            actions: exported(ACTIONS_EXPORT).then(|| actions::GuestIndices::new(&instance)).transpose()?,
            syncs: exported(SYNCS_EXPORT).then(|| syncs::GuestIndices::new(&instance)).transpose()?,
            reach: exported(REACH_EXPORT).then(|| reach::GuestIndices::new(&instance)).transpose()?,
            rotation: exported(ROTATION_EXPORT).then(|| rotation::GuestIndices::new(&instance)).transpose()?,
            instance,
        })
    }

    pub fn exports_reach(&self) -> bool {
        self.reach.is_some()
    }

    pub fn exports_rotation(&self) -> bool {
        self.rotation.is_some()
    }

    pub fn exports_oauth(&self) -> bool {
        self.oauth.is_some()
    }

    pub fn exports_actions(&self) -> bool {
        self.actions.is_some()
    }

    pub fn exports_syncs(&self) -> bool {
        self.syncs.is_some()
    }
}

pub(crate) async fn call(
    pre: &Pre,
    store: &mut wasmtime::Store<CallState>,
    call: Call<'_>,
) -> wasmtime::Result<Answer> {
    // What the component does not export is answered without instantiating.
    if let (Call::Sync { .. }, None) = (&call, &pre.syncs) {
        return Ok(Answer::Sync(Err(model::ProviderError::Unsupported("The connector does not export syncs.".into()))));
    }
    if let (Call::Describe { .. } | Call::CheckPath { .. }, None) = (&call, &pre.reach) {
        return Ok(Answer::Unsupported);
    }
    if let (Call::Rotate { .. }, None) = (&call, &pre.rotation) {
        return Ok(Answer::Unsupported);
    }
    match (&call, &pre.oauth, &pre.actions) {
        (Call::AuthorizeUrl { .. }, None, _) => return Ok(Answer::AuthorizeUrl(Err(model::OAuthError::Unsupported))),
        (Call::ExchangeCode { .. } | Call::RefreshToken { .. }, None, _) => {
            return Ok(Answer::Grant(Err(model::OAuthError::Unsupported)));
        }
        (Call::Action { .. }, _, None) => {
            return Ok(Answer::Action(Err(model::ProviderError::Unsupported(
                "The connector does not export actions.".into(),
            ))));
        }
        _ => {}
    }
    let instance = instantiate(pre, store).await?;
    call_in(pre, store, &instance, call).await
}

/// A fresh instance, for one call or for the calls of one operation on one
/// credential (a verify and the reach of what it verified).
pub(crate) async fn instantiate(
    pre: &Pre,
    store: &mut wasmtime::Store<CallState>,
) -> wasmtime::Result<wasmtime::component::Instance> {
    pre.instance.instantiate_async(&mut *store).await
}

/// One call into an instance of `pre`. The caller has checked that the
/// export it names exists (`call` does, before instantiating).
pub(crate) async fn call_in(
    pre: &Pre,
    store: &mut wasmtime::Store<CallState>,
    instance: &wasmtime::component::Instance,
    call: Call<'_>,
) -> wasmtime::Result<Answer> {
    let instance = *instance;
    let missing = || wasmtime::Error::msg("the connector does not export what was called");
    Ok(match call {
        Call::Manifest => {
            let connector = pre.connector.load(&mut *store, &instance)?;
            let manifest = connector.call_manifest(&mut *store).await?;
            // Type-check every optional export now, so a component whose
            // signatures do not match is refused at load, not at first use.
            if let Some(oauth) = &pre.oauth {
                oauth.load(&mut *store, &instance)?;
            }
            if let Some(actions) = &pre.actions {
                actions.load(&mut *store, &instance)?;
            }
            if let Some(syncs) = &pre.syncs {
                syncs.load(&mut *store, &instance)?;
            }
            if let Some(reach) = &pre.reach {
                reach.load(&mut *store, &instance)?;
            }
            if let Some(rotation) = &pre.rotation {
                rotation.load(&mut *store, &instance)?;
            }
            Answer::Manifest(Box::new(self::manifest(manifest)?))
        }
        Call::Verify(credentials) => {
            let connector = pre.connector.load(&mut *store, &instance)?;
            let result = connector.call_verify(&mut *store, credentials).await?;
            let state = store.data();
            Answer::Verify(verify_result(result, &|s| state.redact(&s)))
        }
        Call::AuthorizeUrl { base_url, client_id, redirect_uri, state, code_challenge } => {
            let oauth = pre.oauth.as_ref().ok_or_else(missing)?.load(&mut *store, &instance)?;
            let result =
                oauth.call_authorize_url(&mut *store, base_url, client_id, redirect_uri, state, code_challenge).await?;
            let data = store.data();
            Answer::AuthorizeUrl(result.map_err(|e| oauth_error(e, &|s| data.redact(&s))))
        }
        Call::ExchangeCode { base_url, client, code, verifier } => {
            let oauth = pre.oauth.as_ref().ok_or_else(missing)?.load(&mut *store, &instance)?;
            let result = oauth.call_exchange_code(&mut *store, base_url, &oauth_client(client), code, verifier).await?;
            let data = store.data();
            Answer::Grant(result.map(token_grant).map_err(|e| oauth_error(e, &|s| data.redact(&s))))
        }
        Call::RefreshToken { base_url, client, refresh_token } => {
            let oauth = pre.oauth.as_ref().ok_or_else(missing)?.load(&mut *store, &instance)?;
            let result = oauth.call_refresh_token(&mut *store, base_url, &oauth_client(client), refresh_token).await?;
            let data = store.data();
            Answer::Grant(result.map(token_grant).map_err(|e| oauth_error(e, &|s| data.redact(&s))))
        }
        Call::Action { name, input, connection } => {
            let actions = pre.actions.as_ref().ok_or_else(missing)?.load(&mut *store, &instance)?;
            let result = actions.call_run(&mut *store, name, input, &self::connection(connection)).await?;
            let data = store.data();
            Answer::Action(result.map(|out| data.redact(&out)).map_err(|e| provider_error(e, &|s| data.redact(&s))))
        }
        Call::Sync { model, checkpoint, run_started_at, connection } => {
            let syncs = pre.syncs.as_ref().ok_or_else(missing)?.load(&mut *store, &instance)?;
            let result =
                syncs.call_run(&mut *store, model, checkpoint, run_started_at, &self::connection(connection)).await?;
            let data = store.data();
            let redact = |s: String| data.redact(&s);
            Answer::Sync(
                result
                    .map(|page| model::SyncPage {
                        records: page.records.into_iter().map(|r| (redact(r.id), redact(r.data))).collect(),
                        deleted: page.deleted.into_iter().map(redact).collect(),
                        checkpoint: page.checkpoint.map(redact),
                        has_more: page.has_more,
                    })
                    .map_err(|e| provider_error(e, &redact)),
            )
        }
        Call::Describe { connection } => {
            let reach = pre.reach.as_ref().ok_or_else(missing)?.load(&mut *store, &instance)?;
            let result = reach.call_describe(&mut *store, &self::connection(connection)).await?;
            let data = store.data();
            let redact = |s: String| data.redact(&s);
            Answer::Reach(result.map(|r| token_reach(r, &redact)).map_err(|e| provider_error(e, &redact)))
        }
        Call::CheckPath { scope, method, path, connection } => {
            let reach = pre.reach.as_ref().ok_or_else(missing)?.load(&mut *store, &instance)?;
            let scope = reach_item_out(scope);
            let result =
                reach.call_check_path(&mut *store, &scope, method, path, &self::connection(connection)).await?;
            let data = store.data();
            let redact = |s: String| data.redact(&s);
            Answer::PathVerdict(
                result
                    .map(|v| match v {
                        types::ScopeVerdict::Inside => model::ScopeVerdict::Inside,
                        types::ScopeVerdict::Outside(s) => model::ScopeVerdict::Outside(redact(s)),
                        types::ScopeVerdict::Unknown(s) => model::ScopeVerdict::Unknown(redact(s)),
                    })
                    .map_err(|e| provider_error(e, &redact)),
            )
        }
        Call::Rotate { connection } => {
            let rotation = pre.rotation.as_ref().ok_or_else(missing)?.load(&mut *store, &instance)?;
            let result = rotation.call_rotate(&mut *store, &self::connection(connection)).await?;
            let data = store.data();
            let redact = |s: String| data.redact(&s);
            Answer::Rotated(result.map(rotated).map_err(|e| rotate_error(e, &redact)))
        }
    })
}

/// The new credential is not redacted (it is not a stored secret yet) but
/// goes straight into secrets; everything else is a sentence.
pub(super) fn rotated(r: types::Rotated) -> model::Rotated {
    model::Rotated {
        credentials: r.credentials.into_iter().map(|(k, v)| (k, secrecy::SecretString::from(v))).collect(),
        expires_at: r.expires_at,
    }
}

pub(super) fn rotate_error(e: types::RotateError, redact: &dyn Fn(String) -> String) -> model::RotateError {
    match e {
        types::RotateError::NotRotatable(s) => model::RotateError::NotRotatable(redact(s)),
        types::RotateError::InsufficientScope(p) => model::RotateError::InsufficientScope {
            scopes: p.scopes.into_iter().map(redact).collect(),
            missing_scopes: p.missing_scopes.into_iter().map(redact).collect(),
            detail: redact(p.detail),
        },
        types::RotateError::Provider(p) => model::RotateError::Provider(provider_error(p, redact)),
    }
}

fn reach_item(i: types::ReachItem, redact: &dyn Fn(String) -> String) -> model::ReachItem {
    model::ReachItem { id: redact(i.id), path: redact(i.path), name: redact(i.name), kind: redact(i.kind) }
}

fn reach_item_out(i: &model::ReachItem) -> types::ReachItem {
    types::ReachItem { id: i.id.clone(), path: i.path.clone(), name: i.name.clone(), kind: i.kind.clone() }
}

fn token_reach(r: types::TokenReach, redact: &dyn Fn(String) -> String) -> model::TokenReach {
    use model::CredentialKind as M;
    use types::CredentialKind as K;
    model::TokenReach {
        kind: match r.kind {
            K::Personal => M::Personal,
            K::Group => M::Group,
            K::Project => M::Project,
            K::Service => M::Service,
            K::Oauth => M::OAuth,
            K::Other => M::Other,
        },
        bound_to: r.bound_to.map(|i| reach_item(i, redact)),
        group_count: r.group_count,
        project_count: r.project_count,
        top_level: r.top_level.into_iter().map(|i| reach_item(i, redact)).collect(),
        summary: redact(r.summary),
        note: redact(r.note),
    }
}

/// The manifest in the host's terms. Schemas must be JSON; whether they
/// are usable JSON Schema is checked with the rest of the manifest.
pub(super) fn manifest(m: types::ProviderManifest) -> wasmtime::Result<model::Manifest> {
    let schema = |what: &str, text: &str| -> wasmtime::Result<serde_json::Value> {
        serde_json::from_str(text).map_err(|e| wasmtime::Error::msg(format!("{what} is not JSON: {e}")))
    };
    let actions = m
        .actions
        .into_iter()
        .map(|a| {
            Ok(model::ActionDefinition {
                input_schema: schema(&format!("the input schema of action {:?}", a.name), &a.input_schema)?,
                output_schema: schema(&format!("the output schema of action {:?}", a.name), &a.output_schema)?,
                name: a.name,
                description: a.description,
            })
        })
        .collect::<wasmtime::Result<_>>()?;
    let sync_models = m
        .sync_models
        .into_iter()
        .map(|s| {
            Ok(model::SyncModel {
                record_schema: schema(&format!("the record schema of sync model {:?}", s.name), &s.record_schema)?,
                name: s.name,
                description: s.description,
                default_interval_seconds: s.default_interval_seconds,
                incremental: s.incremental,
            })
        })
        .collect::<wasmtime::Result<_>>()?;
    Ok(model::Manifest {
        id: m.id,
        name: m.name,
        vendor: m.vendor,
        auth_method: match m.auth_method {
            types::AuthMethod::Oauth2 => model::AuthMethod::OAuth2,
            types::AuthMethod::PersonalAccessToken => model::AuthMethod::PersonalAccessToken,
        },
        description: m.description,
        notes: m.notes,
        fields: m
            .fields
            .into_iter()
            .map(|f| model::Field {
                key: f.key,
                label: f.label,
                kind: match f.kind {
                    types::FieldKind::Text => model::FieldKind::Text,
                    types::FieldKind::Secret => model::FieldKind::Secret,
                    types::FieldKind::Url => model::FieldKind::Url,
                },
                required: f.required,
                default: f.default,
                placeholder: f.placeholder,
                help: f.help,
            })
            .collect(),
        required_scopes: m.required_scopes,
        required_scopes_rule: match m.required_scopes_rule {
            types::ScopeRule::AllOf => model::ScopeRule::AllOf,
            types::ScopeRule::AnyOf => model::ScopeRule::AnyOf,
        },
        version: m.version,
        oauth: m.oauth.map(|o| model::OAuthSettings {
            authorize_path: o.authorize_path,
            token_path: o.token_path,
            scopes: o.scopes,
            url_field: o.url_field,
            token_field: o.token_field,
        }),
        credential_presentation: m
            .credential_presentation
            .map(|p| model::CredentialPresentation { header: p.header, value: p.value }),
        actions,
        sync_models,
        inbound_webhook: m.inbound_webhook.map(|w| model::InboundWebhook {
            token_header: w.token_header,
            event_header: w.event_header,
            idempotency_header: w.idempotency_header,
            events: w.events,
            setup: w.setup,
        }),
    })
}

/// Every string a connector returns passes through `redact`, the account
/// included: a careless or hostile connector cannot hand the token back as
/// a user name.
pub(super) fn verify_result(
    result: Result<types::Verification, types::VerifyError>,
    redact: &dyn Fn(String) -> String,
) -> Result<model::Verification, model::VerifyError> {
    result
        .map(|v| {
            model::Verification {
                account: account(v.account),
                scopes: v.scopes,
                expires_at: v.expires_at,
                token_kind: v.token_kind,
            }
            .redacted(redact)
        })
        .map_err(|e| verify_error(e, redact))
}

fn verify_error(e: types::VerifyError, redact: &dyn Fn(String) -> String) -> model::VerifyError {
    use model::VerifyError as M;
    use types::VerifyError as V;
    match e {
        V::InvalidInput(s) => M::InvalidInput(redact(s)),
        V::InvalidToken(s) => M::InvalidToken(redact(s)),
        V::TokenExpired(s) => M::TokenExpired(redact(s)),
        V::TokenRevoked(s) => M::TokenRevoked(redact(s)),
        V::InsufficientScope(p) => M::InsufficientScope {
            account: p.account.map(|a| account(a).redacted(redact)),
            scopes: p.scopes.into_iter().map(redact).collect(),
            missing_scopes: p.missing_scopes.into_iter().map(redact).collect(),
            detail: redact(p.detail),
        },
        V::RateLimited(after) => M::RateLimited(after),
        V::UpstreamError(s) => M::UpstreamError(redact(s)),
        V::UpstreamUnreachable(s) => M::UpstreamUnreachable(redact(s)),
        V::UpstreamTimeout => M::UpstreamTimeout,
        V::EgressDenied(s) => M::EgressDenied(redact(s)),
    }
}

fn account(a: types::Account) -> model::Account {
    model::Account {
        id: a.id,
        username: a.username,
        name: a.name,
        email: a.email,
        web_url: a.web_url,
        avatar_url: a.avatar_url,
    }
}

pub(super) fn oauth_client(c: &model::OAuthClient) -> types::OauthClient {
    types::OauthClient {
        client_id: c.client_id.clone(),
        client_secret: secrecy::ExposeSecret::expose_secret(&c.client_secret).to_string(),
        redirect_uri: c.redirect_uri.clone(),
    }
}

pub(super) fn token_grant(g: types::TokenGrant) -> model::TokenGrant {
    model::TokenGrant {
        access_token: g.access_token.into(),
        refresh_token: g.refresh_token.map(Into::into),
        expires_in: g.expires_in,
        scopes: g.scopes,
    }
}

pub(super) fn oauth_error(e: types::OauthError, redact: &dyn Fn(String) -> String) -> model::OAuthError {
    use model::OAuthError as M;
    use types::OauthError as O;
    match e {
        O::Unsupported => M::Unsupported,
        O::InvalidGrant(s) => M::InvalidGrant(redact(s)),
        O::InvalidClient(s) => M::InvalidClient(redact(s)),
        O::RateLimited(after) => M::RateLimited(after),
        O::UpstreamError(s) => M::UpstreamError(redact(s)),
        O::UpstreamUnreachable(s) => M::UpstreamUnreachable(redact(s)),
        O::UpstreamTimeout => M::UpstreamTimeout,
        O::EgressDenied(s) => M::EgressDenied(redact(s)),
    }
}

fn connection(c: &model::Connection) -> types::Connection {
    types::Connection {
        base_url: c.base_url.clone(),
        account_id: c.account_id.clone(),
        settings: c.settings.clone(),
        scope: c.scope.as_ref().map(reach_item_out),
    }
}

pub(super) fn provider_error(e: types::ProviderError, redact: &dyn Fn(String) -> String) -> model::ProviderError {
    use model::ProviderError as M;
    use types::ProviderError as P;
    match e {
        P::InvalidInput(s) => M::InvalidInput(redact(s)),
        P::NotFound(s) => M::NotFound(redact(s)),
        P::Unauthorized(s) => M::Unauthorized(redact(s)),
        P::Forbidden(s) => M::Forbidden(redact(s)),
        P::RateLimited(after) => M::RateLimited(after),
        P::UpstreamError(s) => M::UpstreamError(redact(s)),
        P::UpstreamUnreachable(s) => M::UpstreamUnreachable(redact(s)),
        P::UpstreamTimeout => M::UpstreamTimeout,
        P::EgressDenied(s) => M::EgressDenied(redact(s)),
        P::Unsupported(s) => M::Unsupported(redact(s)),
    }
}

impl types::Host for CallState {}

/// The one `http.send` of every version: older versions convert their
/// request into this one and forward here.
impl http::Host for CallState {
    async fn send(&mut self, req: http::Request) -> wasmtime::Result<Result<http::Response, http::Error>> {
        let request = OutboundRequest {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            authenticate: req.authenticate,
        };
        Ok(CallState::send(self, request)
            .await?
            .map(|r| http::Response { status: r.status, headers: r.headers, body: r.body })
            .map_err(|e| match e {
                SendError::Denied(why) => http::Error::Denied(why),
                SendError::Timeout => http::Error::Timeout,
                SendError::Unreachable(why) => http::Error::Unreachable(why),
                SendError::TooLarge => http::Error::TooLarge,
                SendError::InvalidRequest(why) => http::Error::InvalidRequest(why),
                // `CallState::send` traps instead; kept total for the compiler.
                SendError::BudgetExhausted(n) => http::Error::InvalidRequest(format!("request budget of {n} spent")),
            }))
    }
}

impl log::Host for CallState {
    async fn write(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => tracing::Level::TRACE,
            log::Level::Debug => tracing::Level::DEBUG,
            log::Level::Info => tracing::Level::INFO,
            log::Level::Warn => tracing::Level::WARN,
            log::Level::Error => tracing::Level::ERROR,
        };
        self.plugin_log(level, &message, &fields);
        Ok(())
    }
}
