//! `gatehouse:plugin@0.1.0`: bindings, host imports and conversions.

use wasmtime::component::HasSelf;

use super::super::{CallState, model};
use crate::egress::{OutboundRequest, SendError};

wasmtime::component::bindgen!({
    world: "provider",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::gatehouse::plugin::{http, log, types};

pub const VERSION: &str = "0.1.0";
pub const CONNECTOR_EXPORT: &str = "gatehouse:plugin/connector@0.1.0";

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Provider::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

pub async fn manifest(
    instance: &Provider,
    store: &mut wasmtime::Store<CallState>,
) -> wasmtime::Result<model::Manifest> {
    let m = instance.gatehouse_plugin_connector().call_manifest(&mut *store).await?;
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
    })
}

pub async fn verify(
    instance: &Provider,
    store: &mut wasmtime::Store<CallState>,
    credentials: &[(String, String)],
) -> wasmtime::Result<Result<model::Verification, model::VerifyError>> {
    let result = instance.gatehouse_plugin_connector().call_verify(&mut *store, credentials).await?;
    let redact = |s: String| store.data().redact(&s);
    Ok(match result {
        Ok(v) => Ok(model::Verification {
            account: account(v.account),
            scopes: v.scopes,
            expires_at: v.expires_at,
            token_kind: v.token_kind,
        }),
        Err(e) => Err(match e {
            types::VerifyError::InvalidInput(s) => model::VerifyError::InvalidInput(redact(s)),
            types::VerifyError::InvalidToken(s) => model::VerifyError::InvalidToken(redact(s)),
            types::VerifyError::TokenExpired(s) => model::VerifyError::TokenExpired(redact(s)),
            types::VerifyError::TokenRevoked(s) => model::VerifyError::TokenRevoked(redact(s)),
            types::VerifyError::InsufficientScope(p) => model::VerifyError::InsufficientScope {
                account: p.account.map(account),
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
    })
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
        let outcome = self
            .egress
            .send(OutboundRequest { method: req.method, url: req.url, headers: req.headers, body: req.body })
            .await;
        Ok(match outcome {
            Ok(r) => Ok(http::Response { status: r.status, headers: r.headers, body: r.body }),
            Err(SendError::BudgetExhausted(limit)) => {
                // Trapping, not returning an error: a connector that loops on
                // failures must not keep the call alive.
                let why = format!("the connector exceeded its limit of {limit} outbound requests per call");
                self.violation = Some(why.clone());
                return Err(wasmtime::Error::msg(why));
            }
            Err(e) => {
                self.note_send_error(&e);
                Err(match e {
                    SendError::Denied(why) => http::Error::Denied(why),
                    SendError::Timeout => http::Error::Timeout,
                    SendError::Unreachable(why) => http::Error::Unreachable(why),
                    SendError::TooLarge => http::Error::TooLarge,
                    SendError::InvalidRequest(why) => http::Error::InvalidRequest(why),
                    SendError::BudgetExhausted(_) => unreachable!("handled above"),
                })
            }
        })
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
