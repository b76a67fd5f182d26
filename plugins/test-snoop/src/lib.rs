//! A connector for the host's tests, built with wit-bindgen directly
//! against `wit/` in the world `provider-with-actions`: the component
//! exports only `connector` and `actions`. Its `snoop` action gathers
//! everything a hostile connector could learn the stored credential from
//! and returns it, so a test can check the secret is nowhere in it. Never
//! load it in production.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "provider-with-actions", path: "../../wit", generate_all });

use exports::gatehouse::plugin::{actions, connector};
use gatehouse::{
    host::http,
    plugin::types::{
        Account, ActionDefinition, AuthMethod, Connection, CredentialPresentation, Field, FieldKind, ProviderError,
        ProviderManifest, ScopeRule, Verification, VerifyError,
    },
};
use serde_json::json;

struct Snoop;

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

fn empty_input() -> String {
    json!({"$schema": DRAFT, "type": "object", "properties": {}, "additionalProperties": false}).to_string()
}

fn object_of(property: &str) -> String {
    json!({
        "$schema": DRAFT,
        "type": "object",
        "properties": {property: {"type": "string"}},
        "required": [property],
        "additionalProperties": false,
    })
    .to_string()
}

/// The `provider-error` cases, by their WIT names.
const ERRORS: [&str; 10] = [
    "invalid-input",
    "not-found",
    "unauthorized",
    "forbidden",
    "rate-limited",
    "upstream-error",
    "upstream-unreachable",
    "upstream-timeout",
    "egress-denied",
    "unsupported",
];

fn action(name: &str, description: &str, input_schema: String, output_schema: String) -> ActionDefinition {
    ActionDefinition { name: name.into(), description: description.into(), input_schema, output_schema }
}

fn field(key: &str, label: &str, kind: FieldKind) -> Field {
    Field { key: key.into(), label: label.into(), kind, required: true, default: None, placeholder: None, help: None }
}

fn get(url: String) -> Result<http::Response, http::Error> {
    http::send(&http::Request {
        method: "GET".into(),
        url,
        headers: vec![("accept".into(), "application/json".into())],
        body: vec![],
        authenticate: true,
    })
}

impl connector::Guest for Snoop {
    fn manifest() -> ProviderManifest {
        ProviderManifest {
            id: "test-snoop".into(),
            name: "Snooping test connector".into(),
            vendor: "Gatehouse tests".into(),
            auth_method: AuthMethod::PersonalAccessToken,
            description:
                "Its actions try to learn the stored credential; exports only connector and actions. Test use only."
                    .into(),
            notes: vec![],
            fields: vec![field("token", "Token", FieldKind::Secret), field("base_url", "Base URL", FieldKind::Url)],
            required_scopes: vec![],
            required_scopes_rule: ScopeRule::AllOf,
            version: env!("CARGO_PKG_VERSION").into(),
            oauth: None,
            credential_presentation: Some(CredentialPresentation {
                header: "private-token".into(),
                value: "{token}".into(),
            }),
            actions: vec![
                action(
                    "snoop",
                    "Returns everything the connector can see: environment, arguments, connection, echoed request headers.",
                    empty_input(),
                    object_of("found"),
                ),
                action("whoami", "Returns the account's username.", empty_input(), object_of("username")),
                action(
                    "bad-output",
                    "Answers a number where its schema says string.",
                    empty_input(),
                    object_of("found"),
                ),
                action(
                    "fail",
                    "Fails with the provider-error named in the input.",
                    json!({
                        "$schema": DRAFT,
                        "type": "object",
                        "properties": {"error": {"type": "string", "enum": ERRORS}},
                        "required": ["error"],
                        "additionalProperties": false,
                    })
                    .to_string(),
                    json!({"$schema": DRAFT, "type": "object"}).to_string(),
                ),
            ],
            sync_models: vec![],
            inbound_webhook: None,
        }
    }

    /// Sends no credential header of its own: the host presents the
    /// credentials being verified because the request asks it to.
    fn verify(credentials: Vec<(String, String)>) -> Result<Verification, VerifyError> {
        let base_url = credentials.iter().find(|(k, _)| k == "base_url").map(|(_, v)| v.clone()).unwrap_or_default();
        let response = get(format!("{base_url}/api/v4/user")).map_err(|e| match e {
            http::Error::Denied(why) => VerifyError::EgressDenied(why),
            http::Error::Timeout => VerifyError::UpstreamTimeout,
            other => VerifyError::UpstreamUnreachable(format!("The provider could not be reached: {other:?}")),
        })?;
        if !(200..300).contains(&response.status) {
            return Err(VerifyError::InvalidToken(format!(
                "The provider refused the token (HTTP {}).",
                response.status
            )));
        }
        let user: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|_| VerifyError::UpstreamError("The answer is not JSON.".into()))?;
        let id = match &user["id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok(Verification {
            account: Account {
                id,
                username: user["username"].as_str().unwrap_or_default().into(),
                name: None,
                email: None,
                web_url: None,
                avatar_url: None,
            },
            scopes: vec![],
            expires_at: None,
            token_kind: "test".into(),
        })
    }
}

impl actions::Guest for Snoop {
    fn run(name: String, input: String, connection: Connection) -> Result<String, ProviderError> {
        match name.as_str() {
            "snoop" => Ok(json!({ "found": snoop(&connection) }).to_string()),
            "whoami" => whoami(&connection),
            "bad-output" => Ok(json!({ "found": 42 }).to_string()),
            "fail" => Err(fail(&input)),
            other => Err(ProviderError::Unsupported(format!("There is no action named {other:?}."))),
        }
    }
}

/// Everything the connector can observe, in one string.
fn snoop(connection: &Connection) -> String {
    let mut found = String::new();
    for (key, value) in std::env::vars() {
        found.push_str(&format!("env {key}={value}\n"));
    }
    for arg in std::env::args() {
        found.push_str(&format!("arg {arg}\n"));
    }
    found.push_str(&format!(
        "connection base-url={} account-id={} settings={:?}\n",
        connection.base_url, connection.account_id, connection.settings
    ));
    match get(format!("{}/echo-headers", connection.base_url)) {
        Ok(response) => {
            found.push_str(&format!("echo status={}\n", response.status));
            for (key, value) in &response.headers {
                found.push_str(&format!("echo header {key}: {value}\n"));
            }
            found.push_str(&format!("echo body {}\n", String::from_utf8_lossy(&response.body)));
        }
        Err(e) => found.push_str(&format!("echo error {e:?}\n")),
    }
    match get("http://127.0.0.2:9/".into()) {
        Ok(response) => found.push_str(&format!(
            "other origin status={} headers={:?} body {}\n",
            response.status,
            response.headers,
            String::from_utf8_lossy(&response.body)
        )),
        Err(e) => found.push_str(&format!("other origin error {e:?}\n")),
    }
    found
}

fn whoami(connection: &Connection) -> Result<String, ProviderError> {
    let response = get(format!("{}/api/v4/user", connection.base_url)).map_err(|e| match e {
        http::Error::Denied(why) => ProviderError::EgressDenied(why),
        http::Error::Timeout => ProviderError::UpstreamTimeout,
        other => ProviderError::UpstreamUnreachable(format!("The provider could not be reached: {other:?}")),
    })?;
    let status = response.status;
    match status {
        200..=299 => {}
        400 | 422 => {
            return Err(ProviderError::InvalidInput(format!("The provider refused the request (HTTP {status}).")));
        }
        401 => return Err(ProviderError::Unauthorized("The provider refused the credential (HTTP 401).".into())),
        403 => return Err(ProviderError::Forbidden("The account may not do this (HTTP 403).".into())),
        404 => return Err(ProviderError::NotFound("The provider has no such user (HTTP 404).".into())),
        429 => {
            let retry =
                response.headers.iter().find(|(k, _)| k == "retry-after").and_then(|(_, v)| v.trim().parse().ok());
            return Err(ProviderError::RateLimited(retry));
        }
        _ => return Err(ProviderError::UpstreamError(format!("The provider answered HTTP {status}."))),
    }
    let user: serde_json::Value = serde_json::from_slice(&response.body)
        .map_err(|_| ProviderError::UpstreamError("The answer is not JSON.".into()))?;
    let username =
        user["username"].as_str().ok_or_else(|| ProviderError::UpstreamError("The answer has no username.".into()))?;
    Ok(json!({ "username": username }).to_string())
}

fn fail(input: &str) -> ProviderError {
    let input: serde_json::Value = serde_json::from_str(input).unwrap_or_default();
    let sentence = |what: &str| format!("The test connector fails with {what} on request.");
    match input["error"].as_str().unwrap_or_default() {
        "invalid-input" => ProviderError::InvalidInput(sentence("invalid-input")),
        "not-found" => ProviderError::NotFound(sentence("not-found")),
        "unauthorized" => ProviderError::Unauthorized(sentence("unauthorized")),
        "forbidden" => ProviderError::Forbidden(sentence("forbidden")),
        "rate-limited" => ProviderError::RateLimited(Some(7)),
        "upstream-error" => ProviderError::UpstreamError(sentence("upstream-error")),
        "upstream-unreachable" => ProviderError::UpstreamUnreachable(sentence("upstream-unreachable")),
        "upstream-timeout" => ProviderError::UpstreamTimeout,
        "egress-denied" => ProviderError::EgressDenied(sentence("egress-denied")),
        "unsupported" => ProviderError::Unsupported(sentence("unsupported")),
        other => ProviderError::InvalidInput(format!("{other:?} is not a provider-error the test connector knows.")),
    }
}

export!(Snoop);
