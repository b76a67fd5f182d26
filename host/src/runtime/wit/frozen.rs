//! Conversions into the latest types that several frozen versions share.
//! Each old version's `types` has records of the same shape under its own
//! generated names, so the same `From` impls are written once here and
//! expanded in each module, where `types` is that version's and `l` the
//! latest's. A version whose shape differs does not compile with them, and
//! keeps its own.

/// `field` and `scope-rule`, as 0.1.0 to 0.3.0 have them.
macro_rules! field_conversions {
    () => {
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
    };
}

/// `account`, `verification` and `verify-error`, as 0.1.0 to 0.3.0 have them.
macro_rules! verify_conversions {
    () => {
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
    };
}

/// The OAuth client, grant and error, as 0.2.0 and 0.3.0 have them.
macro_rules! oauth_conversions {
    () => {
        impl From<l::OauthClient> for types::OauthClient {
            fn from(c: l::OauthClient) -> Self {
                Self { client_id: c.client_id, client_secret: c.client_secret, redirect_uri: c.redirect_uri }
            }
        }

        impl From<types::TokenGrant> for l::TokenGrant {
            fn from(g: types::TokenGrant) -> Self {
                Self {
                    access_token: g.access_token,
                    refresh_token: g.refresh_token,
                    expires_in: g.expires_in,
                    scopes: g.scopes,
                }
            }
        }

        impl From<types::OauthError> for l::OauthError {
            fn from(e: types::OauthError) -> Self {
                use types::OauthError as O;
                match e {
                    O::Unsupported => Self::Unsupported,
                    O::InvalidGrant(s) => Self::InvalidGrant(s),
                    O::InvalidClient(s) => Self::InvalidClient(s),
                    O::RateLimited(after) => Self::RateLimited(after),
                    O::UpstreamError(s) => Self::UpstreamError(s),
                    O::UpstreamUnreachable(s) => Self::UpstreamUnreachable(s),
                    O::UpstreamTimeout => Self::UpstreamTimeout,
                    O::EgressDenied(s) => Self::EgressDenied(s),
                }
            }
        }
    };
}

/// The `http` and `log` imports of 0.1.0 and 0.2.0 (still inside
/// `gatehouse:plugin`, so their own interfaces), forwarded to the latest
/// implementation. A request of theirs is never authenticated by the host.
macro_rules! forwarded_host_imports {
    () => {
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
    };
}

pub(super) use {field_conversions, forwarded_host_imports, oauth_conversions, verify_conversions};
