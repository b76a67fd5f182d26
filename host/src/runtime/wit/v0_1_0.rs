//! `gatehouse:plugin@0.1.0`: bindings, host imports and conversions. A
//! 0.1.0 connector has no OAuth: it answers those calls `unsupported`
//! without being instantiated.

use wasmtime::component::HasSelf;

use super::super::{Answer, Call, CallState, model};
use crate::egress::{OutboundRequest, SendError};

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
        Call::Manifest | Call::Verify(_) => {}
    }
    let instance = pre.instantiate_async(&mut *store).await?;
    let connector = instance.gatehouse_plugin_connector();
    Ok(match call {
        Call::Verify(credentials) => {
            Answer::Verify(verify(connector.call_verify(&mut *store, credentials).await?, store.data()))
        }
        _ => Answer::Manifest(manifest(connector.call_manifest(&mut *store).await?)),
    })
}

fn manifest(m: types::ProviderManifest) -> model::Manifest {
    model::Manifest {
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
        oauth: None,
    }
}

fn verify(
    result: Result<types::Verification, types::VerifyError>,
    state: &CallState,
) -> Result<model::Verification, model::VerifyError> {
    let redact = |s: String| state.redact(&s);
    match result {
        Ok(v) => Ok(model::Verification {
            account: account(v.account),
            scopes: v.scopes,
            expires_at: v.expires_at,
            token_kind: v.token_kind,
        }
        .redacted(&redact)),
        Err(e) => Err(match e {
            types::VerifyError::InvalidInput(s) => model::VerifyError::InvalidInput(redact(s)),
            types::VerifyError::InvalidToken(s) => model::VerifyError::InvalidToken(redact(s)),
            types::VerifyError::TokenExpired(s) => model::VerifyError::TokenExpired(redact(s)),
            types::VerifyError::TokenRevoked(s) => model::VerifyError::TokenRevoked(redact(s)),
            types::VerifyError::InsufficientScope(p) => model::VerifyError::InsufficientScope {
                account: p.account.map(|a| account(a).redacted(&redact)),
                scopes: p.scopes,
                missing_scopes: p.missing_scopes,
                detail: redact(p.detail),
            },
            types::VerifyError::RateLimited(after) => model::VerifyError::RateLimited(after),
            types::VerifyError::UpstreamError(s) => model::VerifyError::UpstreamError(redact(s)),
            types::VerifyError::UpstreamUnreachable(s) => model::VerifyError::UpstreamUnreachable(redact(s)),
            types::VerifyError::UpstreamTimeout => model::VerifyError::UpstreamTimeout,
            types::VerifyError::EgressDenied(s) => model::VerifyError::EgressDenied(redact(s)),
        }),
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

impl types::Host for CallState {}

impl http::Host for CallState {
    async fn send(&mut self, req: http::Request) -> wasmtime::Result<Result<http::Response, http::Error>> {
        let request = OutboundRequest { method: req.method, url: req.url, headers: req.headers, body: req.body };
        Ok(CallState::send(self, request)
            .await?
            .map(|r| http::Response { status: r.status, headers: r.headers, body: r.body })
            .map_err(|e| match e {
                SendError::Denied(why) => http::Error::Denied(why),
                SendError::Timeout => http::Error::Timeout,
                SendError::Unreachable(why) => http::Error::Unreachable(why),
                SendError::TooLarge => http::Error::TooLarge,
                SendError::InvalidRequest(why) => http::Error::InvalidRequest(why),
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
