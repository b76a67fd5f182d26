//! `gatehouse:plugin@0.1.0`, frozen: its types converted into the latest
//! version's, and its `http` and `log` imports forwarded to the latest
//! implementation. A 0.1.0 connector has no OAuth, actions, syncs or
//! credential presentation: those calls are answered without
//! instantiating it.

use wasmtime::component::HasSelf;

use super::{
    super::{Answer, Call, CallState, model},
    latest,
};

wasmtime::component::bindgen!({
    world: "provider",
    path: "../wit/v0.1.0",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::gatehouse::plugin::{http, log, types};

pub const VERSION: &str = "0.1.0";
pub const CONNECTOR_EXPORT: &str = "gatehouse:plugin/connector@0.1.0";

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Provider::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

pub(crate) async fn call(
    pre: &ProviderPre<CallState>,
    store: &mut wasmtime::Store<CallState>,
    call: Call<'_>,
) -> wasmtime::Result<Answer> {
    match call {
        Call::AuthorizeUrl { .. } => return Ok(Answer::AuthorizeUrl(Err(model::OAuthError::Unsupported))),
        Call::ExchangeCode { .. } | Call::RefreshToken { .. } => {
            return Ok(Answer::Grant(Err(model::OAuthError::Unsupported)));
        }
        Call::Action { .. } => {
            return Ok(Answer::Action(Err(model::ProviderError::Unsupported(
                "The connector implements gatehouse:plugin@0.1.0, which has no actions.".into(),
            ))));
        }
        Call::Sync { .. } => {
            return Ok(Answer::Sync(Err(model::ProviderError::Unsupported(
                "The connector implements gatehouse:plugin@0.1.0, which has no syncs.".into(),
            ))));
        }
        Call::Describe { .. } | Call::CheckPath { .. } | Call::Rotate { .. } => return Ok(Answer::Unsupported),
        Call::Manifest | Call::Verify(_) => {}
    }
    let instance = pre.instantiate_async(&mut *store).await?;
    let connector = instance.gatehouse_plugin_connector();
    Ok(match call {
        Call::Verify(credentials) => {
            let result = connector.call_verify(&mut *store, credentials).await?;
            let state = store.data();
            Answer::Verify(latest::verify_result(result.map(Into::into).map_err(Into::into), &|s| state.redact(&s)))
        }
        _ => Answer::Manifest(Box::new(latest::manifest(connector.call_manifest(&mut *store).await?.into())?)),
    })
}

use latest::types as l;

impl From<types::ProviderManifest> for l::ProviderManifest {
    fn from(m: types::ProviderManifest) -> Self {
        Self {
            id: m.id,
            name: m.name,
            vendor: m.vendor,
            auth_method: match m.auth_method {
                types::AuthMethod::Oauth2 => l::AuthMethod::Oauth2,
                types::AuthMethod::PersonalAccessToken => l::AuthMethod::PersonalAccessToken,
            },
            description: m.description,
            notes: m.notes,
            fields: m.fields.into_iter().map(Into::into).collect(),
            required_scopes: m.required_scopes,
            required_scopes_rule: m.required_scopes_rule.into(),
            version: m.version,
            oauth: None,
            credential_presentation: None,
            actions: Vec::new(),
            sync_models: Vec::new(),
            inbound_webhook: None,
        }
    }
}

impl From<types::Field> for l::Field {
    fn from(f: types::Field) -> Self {
        Self {
            key: f.key,
            label: f.label,
            kind: match f.kind {
                types::FieldKind::Text => l::FieldKind::Text,
                types::FieldKind::Secret => l::FieldKind::Secret,
                types::FieldKind::Url => l::FieldKind::Url,
            },
            required: f.required,
            default: f.default,
            placeholder: f.placeholder,
            help: f.help,
        }
    }
}

impl From<types::ScopeRule> for l::ScopeRule {
    fn from(r: types::ScopeRule) -> Self {
        match r {
            types::ScopeRule::AllOf => Self::AllOf,
            types::ScopeRule::AnyOf => Self::AnyOf,
        }
    }
}

impl From<types::Account> for l::Account {
    fn from(a: types::Account) -> Self {
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

impl From<types::Verification> for l::Verification {
    fn from(v: types::Verification) -> Self {
        Self { account: v.account.into(), scopes: v.scopes, expires_at: v.expires_at, token_kind: v.token_kind }
    }
}

impl From<types::VerifyError> for l::VerifyError {
    fn from(e: types::VerifyError) -> Self {
        use types::VerifyError as V;
        match e {
            V::InvalidInput(s) => Self::InvalidInput(s),
            V::InvalidToken(s) => Self::InvalidToken(s),
            V::TokenExpired(s) => Self::TokenExpired(s),
            V::TokenRevoked(s) => Self::TokenRevoked(s),
            V::InsufficientScope(p) => Self::InsufficientScope(l::ScopeProblem {
                account: p.account.map(Into::into),
                scopes: p.scopes,
                missing_scopes: p.missing_scopes,
                detail: p.detail,
            }),
            V::RateLimited(after) => Self::RateLimited(after),
            V::UpstreamError(s) => Self::UpstreamError(s),
            V::UpstreamUnreachable(s) => Self::UpstreamUnreachable(s),
            V::UpstreamTimeout => Self::UpstreamTimeout,
            V::EgressDenied(s) => Self::EgressDenied(s),
        }
    }
}

impl types::Host for CallState {}

impl http::Host for CallState {
    async fn send(&mut self, req: http::Request) -> wasmtime::Result<Result<http::Response, http::Error>> {
        let request = latest::http::Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            authenticate: false,
        };
        let result = <Self as latest::http::Host>::send(self, request).await?;
        Ok(result.map(|r| http::Response { status: r.status, headers: r.headers, body: r.body }).map_err(|e| {
            use latest::http::Error as E;
            match e {
                E::Denied(why) => http::Error::Denied(why),
                E::Timeout => http::Error::Timeout,
                E::Unreachable(why) => http::Error::Unreachable(why),
                E::TooLarge => http::Error::TooLarge,
                E::InvalidRequest(why) => http::Error::InvalidRequest(why),
            }
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
            log::Level::Trace => latest::log::Level::Trace,
            log::Level::Debug => latest::log::Level::Debug,
            log::Level::Info => latest::log::Level::Info,
            log::Level::Warn => latest::log::Level::Warn,
            log::Level::Error => latest::log::Level::Error,
        };
        <Self as latest::log::Host>::write(self, level, message, fields).await
    }
}
