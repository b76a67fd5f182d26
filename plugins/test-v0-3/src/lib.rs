//! A bearer-token connector with one action, built against `wit/v0.3.0`
//! with wit-bindgen directly (not the SDK, which follows the latest
//! version): the host must keep loading 0.3.0 components and running their
//! actions with host-authenticated requests. It has no `reach` or
//! `rotation` (0.3.0 has neither).
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "provider-with-actions", path: "../../wit/v0.3.0", generate_all });

use exports::gatehouse::plugin::{actions, connector};
use gatehouse::{
    host::http,
    plugin::types::{
        Account, ActionDefinition, AuthMethod, Connection, CredentialPresentation, Field, FieldKind, ProviderError,
        ProviderManifest, ScopeRule, Verification, VerifyError,
    },
};

struct Legacy;

fn field(key: &str, label: &str, kind: FieldKind) -> Field {
    Field { key: key.into(), label: label.into(), kind, required: true, default: None, placeholder: None, help: None }
}

fn me(base_url: &str, headers: Vec<(String, String)>, authenticate: bool) -> Result<serde_json::Value, String> {
    let request =
        http::Request { method: "GET".into(), url: format!("{base_url}/v1/me"), headers, body: vec![], authenticate };
    let response = http::send(&request).map_err(|e| format!("{e:?}"))?;
    if response.status != 200 {
        return Err(format!("The provider answered HTTP {}.", response.status));
    }
    serde_json::from_slice(&response.body).map_err(|_| "The answer is not JSON.".into())
}

impl connector::Guest for Legacy {
    fn manifest() -> ProviderManifest {
        ProviderManifest {
            id: "legacy-v3".into(),
            name: "Legacy bearer token (WIT 0.3.0)".into(),
            vendor: "Gatehouse tests".into(),
            auth_method: AuthMethod::PersonalAccessToken,
            description: "Checks a bearer token with GET /v1/me; built against gatehouse:plugin@0.3.0.".into(),
            notes: vec![],
            fields: vec![field("token", "Token", FieldKind::Secret), field("base_url", "Base URL", FieldKind::Url)],
            required_scopes: vec![],
            required_scopes_rule: ScopeRule::AllOf,
            version: "0.3.0".into(),
            oauth: None,
            credential_presentation: Some(CredentialPresentation {
                header: "authorization".into(),
                value: "Bearer {token}".into(),
            }),
            actions: vec![ActionDefinition {
                name: "whoami".into(),
                description: "The account behind the stored token.".into(),
                input_schema: r#"{"type":"object","additionalProperties":false}"#.into(),
                output_schema: r#"{"type":"object","required":["login"],"properties":{"login":{"type":"string"}}}"#
                    .into(),
            }],
            sync_models: vec![],
            inbound_webhook: None,
        }
    }

    fn verify(credentials: Vec<(String, String)>) -> Result<Verification, VerifyError> {
        let get = |k: &str| credentials.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let me = me(&get("base_url"), vec![], true).map_err(VerifyError::InvalidToken)?;
        Ok(Verification {
            account: Account {
                id: me["id"].to_string(),
                username: me["login"].as_str().unwrap_or_default().into(),
                name: None,
                email: None,
                web_url: None,
                avatar_url: None,
            },
            scopes: vec![],
            expires_at: None,
            token_kind: "bearer".into(),
        })
    }
}

impl actions::Guest for Legacy {
    fn run(name: String, _input: String, connection: Connection) -> Result<String, ProviderError> {
        if name != "whoami" {
            return Err(ProviderError::Unsupported(format!("No action {name:?}.")));
        }
        let me = me(&connection.base_url, vec![], true).map_err(ProviderError::UpstreamError)?;
        Ok(serde_json::json!({ "login": me["login"] }).to_string())
    }
}

export!(Legacy);
