//! A bearer-token connector built against `wit/v0.2.0` with wit-bindgen
//! directly (not the SDK, which follows the latest version): the host must
//! keep loading and calling components of older WIT versions.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "provider", path: "../../wit/v0.2.0" });

use exports::gatehouse::plugin::connector::Guest;
use gatehouse::plugin::{
    http,
    types::{
        Account, AuthMethod, Field, FieldKind, OauthClient, OauthError, ProviderManifest, ScopeRule, TokenGrant,
        Verification, VerifyError,
    },
};

struct Legacy;

fn field(key: &str, label: &str, kind: FieldKind) -> Field {
    Field { key: key.into(), label: label.into(), kind, required: true, default: None, placeholder: None, help: None }
}

impl Guest for Legacy {
    fn manifest() -> ProviderManifest {
        ProviderManifest {
            id: "legacy-v2".into(),
            name: "Legacy bearer token (WIT 0.2.0)".into(),
            vendor: "Gatehouse tests".into(),
            auth_method: AuthMethod::PersonalAccessToken,
            description: "Checks a bearer token with GET /v1/me; built against gatehouse:plugin@0.2.0.".into(),
            notes: vec![],
            fields: vec![field("token", "Token", FieldKind::Secret), field("base_url", "Base URL", FieldKind::Url)],
            required_scopes: vec![],
            required_scopes_rule: ScopeRule::AllOf,
            version: "0.2.0".into(),
            oauth: None,
        }
    }

    fn verify(credentials: Vec<(String, String)>) -> Result<Verification, VerifyError> {
        let get = |k: &str| credentials.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let request = http::Request {
            method: "GET".into(),
            url: format!("{}/v1/me", get("base_url")),
            headers: vec![("authorization".into(), format!("Bearer {}", get("token")))],
            body: vec![],
        };
        let response = http::send(&request).map_err(|e| VerifyError::UpstreamUnreachable(format!("{e:?}")))?;
        if response.status == 401 {
            return Err(VerifyError::InvalidToken("The token was refused.".into()));
        }
        if response.status != 200 {
            return Err(VerifyError::UpstreamError(format!("The provider answered HTTP {}.", response.status)));
        }
        let me: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|_| VerifyError::UpstreamError("The answer is not JSON.".into()))?;
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

    // No OAuth (the manifest's `oauth` is None); 0.2.0's connector has
    // these functions all the same.
    fn authorize_url(_: String, _: String, _: String, _: String, _: String) -> Result<String, OauthError> {
        Err(OauthError::Unsupported)
    }

    fn exchange_code(_: String, _: OauthClient, _: String, _: String) -> Result<TokenGrant, OauthError> {
        Err(OauthError::Unsupported)
    }

    fn refresh_token(_: String, _: OauthClient, _: String) -> Result<TokenGrant, OauthError> {
        Err(OauthError::Unsupported)
    }
}

export!(Legacy);
