//! `gatehouse:plugin@0.2.0` (latest): bindings, host imports and
//! conversions. Adds OAuth 2.0 to 0.1.0.

use wasmtime::component::HasSelf;

use super::super::{Answer, Call, CallState, model};
use crate::egress::{OutboundRequest, SendError};

wasmtime::component::bindgen!({
    world: "provider",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::gatehouse::plugin::{http, log, types};

pub const VERSION: &str = "0.2.0";
pub const CONNECTOR_EXPORT: &str = "gatehouse:plugin/connector@0.2.0";

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Provider::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

pub(crate) async fn call(
    pre: &ProviderPre<CallState>,
    store: &mut wasmtime::Store<CallState>,
    call: Call<'_>,
) -> wasmtime::Result<Answer> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let connector = instance.gatehouse_plugin_connector();
    Ok(match call {
        Call::Manifest => Answer::Manifest(manifest(connector.call_manifest(&mut *store).await?)),
        Call::Verify(credentials) => {
            let result = connector.call_verify(&mut *store, credentials).await?;
            let state = store.data();
            let redact = |s: String| state.redact(&s);
            Answer::Verify(result.map(|v| verification(v).redacted(&redact)).map_err(|e| verify_error(e, &redact)))
        }
        Call::AuthorizeUrl { base_url, client_id, redirect_uri, state, code_challenge } => {
            let result = connector
                .call_authorize_url(&mut *store, base_url, client_id, redirect_uri, state, code_challenge)
                .await?;
            let data = store.data();
            Answer::AuthorizeUrl(result.map_err(|e| oauth_error(e, &|s| data.redact(&s))))
        }
        Call::ExchangeCode { base_url, client, code, verifier } => {
            let result =
                connector.call_exchange_code(&mut *store, base_url, &oauth_client(client), code, verifier).await?;
            let data = store.data();
            Answer::Grant(result.map(token_grant).map_err(|e| oauth_error(e, &|s| data.redact(&s))))
        }
        Call::RefreshToken { base_url, client, refresh_token } => {
            let result =
                connector.call_refresh_token(&mut *store, base_url, &oauth_client(client), refresh_token).await?;
            let data = store.data();
            Answer::Grant(result.map(token_grant).map_err(|e| oauth_error(e, &|s| data.redact(&s))))
        }
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
        oauth: m.oauth.map(|o| model::OAuthSettings {
            authorize_path: o.authorize_path,
            token_path: o.token_path,
            scopes: o.scopes,
            url_field: o.url_field,
            token_field: o.token_field,
        }),
    }
}

fn verification(v: types::Verification) -> model::Verification {
    model::Verification {
        account: account(v.account),
        scopes: v.scopes,
        expires_at: v.expires_at,
        token_kind: v.token_kind,
    }
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
            scopes: p.scopes,
            missing_scopes: p.missing_scopes,
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

fn oauth_client(c: &model::OAuthClient) -> types::OauthClient {
    types::OauthClient {
        client_id: c.client_id.clone(),
        client_secret: secrecy::ExposeSecret::expose_secret(&c.client_secret).to_string(),
        redirect_uri: c.redirect_uri.clone(),
    }
}

fn token_grant(g: types::TokenGrant) -> model::TokenGrant {
    model::TokenGrant {
        access_token: g.access_token.into(),
        refresh_token: g.refresh_token.map(Into::into),
        expires_in: g.expires_in,
        scopes: g.scopes,
    }
}

fn oauth_error(e: types::OauthError, redact: &dyn Fn(String) -> String) -> model::OAuthError {
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
