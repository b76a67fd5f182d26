//! The Gatehouse plugin SDK: implement [`Connector`] for a type and call
//! [`register!`] once. Everything else — the WIT bindings, the host's `http`
//! and `log` imports — is wrapped here so a connector reads like plain Rust.
//!
//! ```ignore
//! struct MyProvider;
//! impl gatehouse_plugin::Connector for MyProvider {
//!     fn manifest() -> gatehouse_plugin::Manifest { /* … */ }
//!     fn verify(c: &gatehouse_plugin::Credentials) -> Result<gatehouse_plugin::Verification, gatehouse_plugin::VerifyError> { /* … */ }
//! }
//! gatehouse_plugin::register!(MyProvider);
//! ```

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

pub mod http;
pub mod log;
pub mod oauth;

/// The raw bindings of `gatehouse:plugin/provider`, for what the SDK does
/// not wrap.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "provider",
        path: "../../wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_provider",
        default_bindings_module: "::gatehouse_plugin::bindings",
    });
}

pub use oauth::{OAuthClient, OAuthError, OAuthSettings, TokenGrant};

pub use bindings::gatehouse::plugin::types::{
    Account, AuthMethod, Field, FieldKind, ProviderManifest as Manifest, ScopeProblem, ScopeRule, Verification,
    VerifyError,
};

/// A provider connector. The host calls each function in a fresh instance,
/// so there is no state to keep between calls.
pub trait Connector {
    /// Static description: id, fields, scopes. Must not perform requests.
    fn manifest() -> Manifest;
    /// Checks the credentials against the provider.
    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError>;

    /// OAuth only (declare `oauth` in the manifest): the URL the user's
    /// browser goes to. See [`oauth::authorize_url`].
    fn authorize_url(
        _base_url: &str,
        _client_id: &str,
        _redirect_uri: &str,
        _state: &str,
        _code_challenge: &str,
    ) -> Result<String, OAuthError> {
        Err(OAuthError::Unsupported)
    }

    /// OAuth only: trades the authorization code for tokens. See
    /// [`oauth::exchange_code`].
    fn exchange_code(
        _base_url: &str,
        _client: &OAuthClient,
        _code: &str,
        _code_verifier: &str,
    ) -> Result<TokenGrant, OAuthError> {
        Err(OAuthError::Unsupported)
    }

    /// OAuth only: trades a refresh token for new tokens. See
    /// [`oauth::refresh`].
    fn refresh_token(_base_url: &str, _client: &OAuthClient, _refresh_token: &str) -> Result<TokenGrant, OAuthError> {
        Err(OAuthError::Unsupported)
    }
}

/// Exports a [`Connector`] as the component's `connector` interface. Call
/// it once, at the crate root. On native targets it expands to nothing, so
/// the connector's logic can be unit-tested with a plain `cargo test`.
#[macro_export]
macro_rules! register {
    ($connector:ident) => {
        #[cfg(target_arch = "wasm32")]
        mod __gatehouse_export {
            struct Exported;
            impl $crate::bindings::exports::gatehouse::plugin::connector::Guest for Exported {
                fn manifest() -> $crate::Manifest {
                    <super::$connector as $crate::Connector>::manifest()
                }
                fn verify(
                    credentials: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<$crate::Verification, $crate::VerifyError> {
                    <super::$connector as $crate::Connector>::verify(&$crate::Credentials::new(credentials))
                }
                fn authorize_url(
                    base_url: ::std::string::String,
                    client_id: ::std::string::String,
                    redirect_uri: ::std::string::String,
                    state: ::std::string::String,
                    code_challenge: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, $crate::OAuthError> {
                    <super::$connector as $crate::Connector>::authorize_url(
                        &base_url,
                        &client_id,
                        &redirect_uri,
                        &state,
                        &code_challenge,
                    )
                }
                fn exchange_code(
                    base_url: ::std::string::String,
                    client: $crate::OAuthClient,
                    code: ::std::string::String,
                    code_verifier: ::std::string::String,
                ) -> ::std::result::Result<$crate::TokenGrant, $crate::OAuthError> {
                    <super::$connector as $crate::Connector>::exchange_code(&base_url, &client, &code, &code_verifier)
                }
                fn refresh_token(
                    base_url: ::std::string::String,
                    client: $crate::OAuthClient,
                    refresh_token: ::std::string::String,
                ) -> ::std::result::Result<$crate::TokenGrant, $crate::OAuthError> {
                    <super::$connector as $crate::Connector>::refresh_token(&base_url, &client, &refresh_token)
                }
            }
            $crate::bindings::__export_provider!(Exported with_types_in $crate::bindings);
        }
    };
}

/// The credentials the host passed: every manifest field, defaults applied,
/// url values without a trailing slash.
pub struct Credentials(Vec<(String, String)>);

impl Credentials {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of a required field, or an `invalid-input` error naming it.
    pub fn require(&self, key: &str) -> Result<&str, VerifyError> {
        self.get(key)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| VerifyError::InvalidInput(format!("The field {key:?} is required.")))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k)).finish()
    }
}

/// Builds a field; the common case of a manifest.
pub fn field(key: &str, label: &str, kind: FieldKind, required: bool) -> Field {
    Field { key: key.into(), label: label.into(), kind, required, default: None, placeholder: None, help: None }
}

/// Scopes of `required` the token lacks, under `rule`. Empty when satisfied.
pub fn missing_scopes(granted: &[String], required: &[String], rule: ScopeRule) -> Vec<String> {
    let has = |s: &String| granted.iter().any(|g| g == s);
    match rule {
        ScopeRule::AllOf => required.iter().filter(|s| !has(s)).cloned().collect(),
        ScopeRule::AnyOf if required.is_empty() || required.iter().any(has) => Vec::new(),
        ScopeRule::AnyOf => required.to_vec(),
    }
}

/// Formats Unix seconds as an RFC 3339 UTC date-time, without needing a
/// clock or a date crate (civil-from-days, Howard Hinnant's algorithm).
pub fn unix_to_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let required = s(&["api", "read_api"]);
        assert!(missing_scopes(&s(&["read_api"]), &required, ScopeRule::AnyOf).is_empty());
        assert_eq!(missing_scopes(&s(&["read_user"]), &required, ScopeRule::AnyOf), required);
        assert_eq!(missing_scopes(&s(&["api"]), &required, ScopeRule::AllOf), s(&["read_api"]));
    }

    #[test]
    fn rfc3339_from_unix() {
        assert_eq!(unix_to_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_to_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(unix_to_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn credentials_debug_shows_only_keys() {
        let c = Credentials::new(vec![("token".into(), "glpat-secret".into())]);
        assert_eq!(format!("{c:?}"), r#"["token"]"#);
        assert!(c.require("base_url").is_err());
    }
}
