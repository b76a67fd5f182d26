//! A bearer-token connector built against `wit/v0.1.0` with wit-bindgen
//! directly (not the SDK, which follows the latest version): the host must
//! keep loading and calling components of older WIT versions.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "provider", path: "../../wit/v0.1.0" });

use exports::gatehouse::plugin::connector::Guest;
use gatehouse::plugin::{
    http,
    types::{Account, AuthMethod, Field, FieldKind, ProviderManifest, ScopeRule, Verification, VerifyError},
};

struct Legacy;

fn field(key: &str, label: &str, kind: FieldKind, default: Option<&str>) -> Field {
    Field {
        key: key.into(),
        label: label.into(),
        kind,
        required: default.is_none(),
        default: default.map(Into::into),
        placeholder: None,
        help: None,
    }
}

impl Guest for Legacy {
    fn manifest() -> ProviderManifest {
        ProviderManifest {
            id: "legacy-bearer".into(),
            name: "Legacy bearer token (WIT 0.1.0)".into(),
            vendor: "Gatehouse tests".into(),
            auth_method: AuthMethod::PersonalAccessToken,
            description: "Checks a bearer token with GET /api/v4/user; built against gatehouse:plugin@0.1.0.".into(),
            notes: vec![],
            fields: vec![
                field("token", "Token", FieldKind::Secret, None),
                field("base_url", "Base URL", FieldKind::Url, Some("https://gitlab.com")),
            ],
            required_scopes: vec![],
            required_scopes_rule: ScopeRule::AllOf,
            version: "0.1.0".into(),
        }
    }

    fn verify(credentials: Vec<(String, String)>) -> Result<Verification, VerifyError> {
        let get = |k: &str| credentials.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let request = http::Request {
            method: "GET".into(),
            url: format!("{}/api/v4/user", get("base_url")),
            headers: vec![("authorization".into(), format!("Bearer {}", get("token")))],
            body: vec![],
        };
        let response = http::send(&request).map_err(|e| VerifyError::UpstreamUnreachable(format!("{e:?}")))?;
        if response.status == 401 {
            return Err(VerifyError::InvalidToken("The token was refused.".into()));
        }
        let user: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|_| VerifyError::UpstreamError("The answer is not JSON.".into()))?;
        Ok(Verification {
            account: Account {
                id: user["id"].to_string(),
                username: user["username"].as_str().unwrap_or_default().into(),
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

export!(Legacy);
