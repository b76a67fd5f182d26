//! The Gatehouse plugin SDK: implement [`Connector`] for a type and call
//! [`register!`] once. Everything else — the WIT bindings, the host's `http`
//! and `log` imports, JSON Schemas for typed actions — is wrapped here so a
//! connector reads like plain Rust.
//!
//! ```ignore
//! struct MyProvider;
//! impl gatehouse_plugin::Connector for MyProvider {
//!     fn manifest() -> gatehouse_plugin::Manifest { /* … */ }
//!     fn verify(c: &gatehouse_plugin::Credentials) -> Result<gatehouse_plugin::Verification, gatehouse_plugin::VerifyError> { /* … */ }
//!     fn run_action(name: &str, input: &str, c: &gatehouse_plugin::Connection) -> Result<String, gatehouse_plugin::ProviderError> { /* … */ }
//! }
//! gatehouse_plugin::register!(MyProvider, actions);
//! ```

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

pub mod action;
pub mod http;
pub mod log;
pub mod oauth;
pub mod sync;
#[cfg(not(target_arch = "wasm32"))]
pub mod testkit;

/// The raw bindings of `gatehouse:plugin@0.4.0`, world `everything`, for
/// what the SDK does not wrap. One set of types serves every connector; `register!`
/// picks which exports a component gets.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "everything",
        // The crate's own copy of the WIT (the repository's `wit/`, checked
        // equal by a test), so the SDK builds outside this repository.
        path: "wit",
        // `gatehouse:host` lives in `wit/deps`; its bindings belong here too.
        generate_all,
        // The export glue is expanded in the connector's crate by
        // `register!`, one interface at a time.
        pub_export_macro: true,
        export_macro_name: "__export_everything",
        default_bindings_module: "::gatehouse_plugin::bindings",
    });
}

/// Component-type metadata of each world `register!` can pick, encoded by
/// the build script.
#[doc(hidden)]
pub mod __worlds {
    include!(concat!(env!("OUT_DIR"), "/worlds.rs"));
}

pub use action::{Action, action_definition, run_typed};
pub use oauth::{OAuthClient, OAuthError, OAuthSettings, TokenGrant};
pub use sync::{Page, SyncedModel, definition as sync_model_definition, run_typed as run_sync_typed};

pub use bindings::gatehouse::plugin::types::{
    Account, ActionDefinition, AuthMethod, Connection, CredentialKind, CredentialPresentation, Field, FieldKind,
    InboundWebhook, ProviderError, ProviderManifest as Manifest, ReachItem, RotateError, Rotated, ScopeProblem,
    ScopeRule, ScopeVerdict, SyncModel, SyncPage, SyncRecord, TokenReach, Verification, VerifyError,
};

// The `register!` macro, one arm per combination of optional exports,
// written by the build script (documented there).
include!(concat!(env!("OUT_DIR"), "/register.rs"));

/// A provider connector. The host calls each function in a fresh instance,
/// so there is no state to keep between calls.
pub trait Connector {
    /// Static description: id, fields, scopes, actions. Must not perform
    /// requests.
    fn manifest() -> Manifest;
    /// Checks the credentials against the provider.
    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError>;

    /// OAuth only (declare `oauth` in the manifest and register with
    /// `oauth`): the URL the user's browser goes to. See
    /// [`oauth::authorize_url`].
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

    /// Actions only (list them in the manifest's `actions` and register
    /// with `actions`): runs the action `name` on `input`, JSON the host
    /// already validated against the action's input schema, and answers
    /// JSON matching its output schema. Dispatch typed actions with
    /// [`run_typed`]. Requests sent with [`http::Request::authenticated`]
    /// carry the connection's credential; the connector never sees it.
    fn run_action(name: &str, _input: &str, _connection: &Connection) -> Result<String, ProviderError> {
        Err(action::unknown(name))
    }

    /// Syncs only (list the models in the manifest's `sync_models` and
    /// register with `syncs`): reads one page of `model` starting at
    /// `checkpoint` (the previous page's, or the last completed run's; None
    /// on the very first run). `run_started_at` is the run's start (RFC
    /// 3339, UTC), the same for every page of a run. Dispatch typed models
    /// with [`run_sync_typed`]; send requests with
    /// [`http::Request::authenticated`].
    fn run_sync(
        model: &str,
        _checkpoint: Option<&str>,
        _run_started_at: &str,
        _connection: &Connection,
    ) -> Result<SyncPage, ProviderError> {
        Err(sync::unknown(model))
    }

    /// Reach only (register with `reach`): what the connection's credential
    /// reaches and what kind of credential it is. Send requests with
    /// [`http::Request::authenticated`].
    fn describe(_connection: &Connection) -> Result<TokenReach, ProviderError> {
        Err(ProviderError::Unsupported("The connector cannot tell what a credential reaches.".into()))
    }

    /// Reach only: whether `method` `path` (relative to the base URL,
    /// percent-encoded as sent) stays inside `scope`. Answer `unknown` with
    /// a sentence when unsure: the host refuses the request.
    fn check_path(
        _scope: &ReachItem,
        _method: &str,
        _path: &str,
        _connection: &Connection,
    ) -> Result<ScopeVerdict, ProviderError> {
        Ok(ScopeVerdict::Unknown("The connector cannot check requests against a scope.".into()))
    }

    /// Rotation only (register with `rotation`): has the provider issue a
    /// new credential in place of the stored one, sent with
    /// [`http::Request::authenticated`], and answers the new values of the
    /// secret fields.
    fn rotate(_connection: &Connection) -> Result<Rotated, RotateError> {
        Err(RotateError::NotRotatable("The connector cannot rotate credentials.".into()))
    }
}

/// The body of [`register!`]: the `connector` export, the optional exports
/// named, and the metadata of the world they make up.
#[doc(hidden)]
#[macro_export]
macro_rules! __register {
    ($connector:ident, $world:ident, $section:literal; $($optional:ident)*) => {
        #[cfg(target_arch = "wasm32")]
        mod __gatehouse_export {
            pub struct Exported;

            impl $crate::bindings::exports::gatehouse::plugin::connector::Guest for Exported {
                fn manifest() -> $crate::Manifest {
                    <super::$connector as $crate::Connector>::manifest()
                }
                fn verify(
                    credentials: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<$crate::Verification, $crate::VerifyError> {
                    <super::$connector as $crate::Connector>::verify(&$crate::Credentials::new(credentials))
                }
            }
            $crate::bindings::exports::gatehouse::plugin::connector::__export_gatehouse_plugin_connector_0_4_0_cabi!(
                Exported with_types_in $crate::bindings::exports::gatehouse::plugin::connector
            );
            $($crate::$optional!($connector);)*

            // What the component exports: wit-component reads the world
            // from this section when it turns the module into a component.
            #[unsafe(link_section = $section)]
            #[used]
            static COMPONENT_TYPE: [u8; $crate::__worlds::$world.len()] = *$crate::__worlds::$world;
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_oauth {
    ($connector:ident) => {
        impl $crate::bindings::exports::gatehouse::plugin::oauth::Guest for Exported {
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
        $crate::bindings::exports::gatehouse::plugin::oauth::__export_gatehouse_plugin_oauth_0_4_0_cabi!(
            Exported with_types_in $crate::bindings::exports::gatehouse::plugin::oauth
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_actions {
    ($connector:ident) => {
        impl $crate::bindings::exports::gatehouse::plugin::actions::Guest for Exported {
            fn run(
                name: ::std::string::String,
                input: ::std::string::String,
                connection: $crate::Connection,
            ) -> ::std::result::Result<::std::string::String, $crate::ProviderError> {
                <super::$connector as $crate::Connector>::run_action(&name, &input, &connection)
            }
        }
        $crate::bindings::exports::gatehouse::plugin::actions::__export_gatehouse_plugin_actions_0_4_0_cabi!(
            Exported with_types_in $crate::bindings::exports::gatehouse::plugin::actions
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_syncs {
    ($connector:ident) => {
        impl $crate::bindings::exports::gatehouse::plugin::syncs::Guest for Exported {
            fn run(
                model: ::std::string::String,
                checkpoint: ::std::option::Option<::std::string::String>,
                run_started_at: ::std::string::String,
                connection: $crate::Connection,
            ) -> ::std::result::Result<$crate::SyncPage, $crate::ProviderError> {
                <super::$connector as $crate::Connector>::run_sync(
                    &model,
                    checkpoint.as_deref(),
                    &run_started_at,
                    &connection,
                )
            }
        }
        $crate::bindings::exports::gatehouse::plugin::syncs::__export_gatehouse_plugin_syncs_0_4_0_cabi!(
            Exported with_types_in $crate::bindings::exports::gatehouse::plugin::syncs
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_reach {
    ($connector:ident) => {
        impl $crate::bindings::exports::gatehouse::plugin::reach::Guest for Exported {
            fn describe(connection: $crate::Connection) -> ::std::result::Result<$crate::TokenReach, $crate::ProviderError> {
                <super::$connector as $crate::Connector>::describe(&connection)
            }
            fn check_path(
                scope: $crate::ReachItem,
                method: ::std::string::String,
                path: ::std::string::String,
                connection: $crate::Connection,
            ) -> ::std::result::Result<$crate::ScopeVerdict, $crate::ProviderError> {
                <super::$connector as $crate::Connector>::check_path(&scope, &method, &path, &connection)
            }
        }
        $crate::bindings::exports::gatehouse::plugin::reach::__export_gatehouse_plugin_reach_0_4_0_cabi!(
            Exported with_types_in $crate::bindings::exports::gatehouse::plugin::reach
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_rotation {
    ($connector:ident) => {
        impl $crate::bindings::exports::gatehouse::plugin::rotation::Guest for Exported {
            fn rotate(connection: $crate::Connection) -> ::std::result::Result<$crate::Rotated, $crate::RotateError> {
                <super::$connector as $crate::Connector>::rotate(&connection)
            }
        }
        $crate::bindings::exports::gatehouse::plugin::rotation::__export_gatehouse_plugin_rotation_0_4_0_cabi!(
            Exported with_types_in $crate::bindings::exports::gatehouse::plugin::rotation
        );
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

impl Credentials {
    /// The credentials as a typed struct, e.g. `struct Creds { token:
    /// String, base_url: String }` (`#[derive(serde::Deserialize)]`). A
    /// missing field is `invalid-input` naming it; no value is ever quoted.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, VerifyError> {
        let map: serde_json::Map<String, serde_json::Value> =
            self.0.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            let e = e.to_string();
            // serde names a missing field without its value; other errors
            // may quote the value, which may be a secret.
            match e.split('`').nth(1).filter(|_| e.starts_with("missing field")) {
                Some(field) => VerifyError::InvalidInput(format!("The field {field:?} is required.")),
                None => VerifyError::InvalidInput(
                    "A credential field does not have the form this connector expects.".into(),
                ),
            }
        })
    }
}

impl Manifest {
    /// A manifest with everything optional empty: a personal-access-token
    /// connector with no fields yet. Fill in the rest with struct update
    /// syntax: `Manifest { fields: vec![…], ..Manifest::new(…) }`.
    pub fn new(id: &str, name: &str, version: &str) -> Self {
        Manifest {
            id: id.into(),
            name: name.into(),
            vendor: String::new(),
            auth_method: AuthMethod::PersonalAccessToken,
            description: String::new(),
            notes: Vec::new(),
            fields: Vec::new(),
            required_scopes: Vec::new(),
            required_scopes_rule: ScopeRule::AllOf,
            version: version.into(),
            oauth: None,
            credential_presentation: None,
            actions: Vec::new(),
            sync_models: Vec::new(),
            inbound_webhook: None,
        }
    }
}

impl CredentialPresentation {
    /// `authorization: Bearer {field}`.
    pub fn bearer(field: &str) -> Self {
        Self { header: "authorization".into(), value: format!("Bearer {{{field}}}") }
    }
}

impl Account {
    /// An account with only its id and username.
    pub fn new(id: impl Into<String>, username: impl Into<String>) -> Self {
        Account { id: id.into(), username: username.into(), name: None, email: None, web_url: None, avatar_url: None }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k)).finish()
    }
}

impl Connection {
    /// The value of a non-secret credential field, e.g. `base_url`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `path` (starting with `/`) on the connection's base URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.trim_end_matches('/'))
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

/// Parses an RFC 3339 date-time (`2026-11-26T10:00:00Z`,
/// `2026-11-26T10:00:00.123+01:00`) into Unix seconds and nanoseconds.
pub fn rfc3339_to_unix(text: &str) -> Option<(i64, u32)> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        (!part.is_empty() && part.bytes().all(|c| c.is_ascii_digit())).then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let kept = &fraction[..len.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &fraction[len..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (digits(text.len() - 5..text.len() - 3)?, digits(text.len() - 2..text.len())?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm), the inverse of
    // `unix_to_rfc3339`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_to_unix_parses_fractions_and_offsets() {
        assert_eq!(rfc3339_to_unix("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(rfc3339_to_unix("2023-11-14T22:13:20Z"), Some((1_700_000_000, 0)));
        assert_eq!(rfc3339_to_unix("2000-02-29T00:00:00Z"), Some((951_782_400, 0)));
        assert_eq!(rfc3339_to_unix("2023-11-14T22:13:20.5Z"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(rfc3339_to_unix("2023-11-15T00:13:20.123+02:00"), Some((1_700_000_000, 123_000_000)));
        assert_eq!(rfc3339_to_unix("2023-11-14T21:13:20-01:00"), Some((1_700_000_000, 0)));
        for t in 0..200 {
            let secs = t * 7_919_993;
            assert_eq!(rfc3339_to_unix(&unix_to_rfc3339(secs)), Some((secs, 0)));
        }
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+2:00",
        ] {
            assert_eq!(rfc3339_to_unix(bad), None, "{bad}");
        }
    }

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
    fn typed_credentials_name_a_missing_field_and_never_quote_a_value() {
        #[derive(serde::Deserialize, Debug)]
        struct Creds {
            token: String,
            base_url: String,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Numeric {
            token: u32,
        }
        let c =
            Credentials::new(vec![("token".into(), "glpat-secret".into()), ("base_url".into(), "https://h".into())]);
        let parsed: Creds = c.parse().unwrap();
        assert_eq!((parsed.token.as_str(), parsed.base_url.as_str()), ("glpat-secret", "https://h"));
        let missing = Credentials::new(vec![("token".into(), "glpat-secret".into())]).parse::<Creds>();
        assert!(matches!(&missing, Err(VerifyError::InvalidInput(m)) if m.contains("base_url")), "{missing:?}");
        let wrong = c.parse::<Numeric>();
        assert!(matches!(&wrong, Err(VerifyError::InvalidInput(m)) if !m.contains("glpat")), "{wrong:?}");
    }

    #[test]
    fn credentials_debug_shows_only_keys() {
        let c = Credentials::new(vec![("token".into(), "glpat-secret".into())]);
        assert_eq!(format!("{c:?}"), r#"["token"]"#);
        assert!(c.require("base_url").is_err());
    }
}
