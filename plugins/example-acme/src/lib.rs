//! The example connector of plugins/README.md, verbatim: the guide's code is
//! built and tested, so it cannot rot.

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use gatehouse_plugin::{
    Account, AuthMethod, Connector, CredentialPresentation, Credentials, FieldKind, Manifest, ScopeRule, Verification,
    VerifyError, field, http, register,
};

pub struct AcmeToken;

impl Connector for AcmeToken {
    fn manifest() -> Manifest {
        Manifest {
            id: "acme-token".into(),
            name: "Connect using an Acme API token".into(),
            vendor: "Acme".into(),
            auth_method: AuthMethod::PersonalAccessToken,
            description: "Verifies an Acme API token.".into(),
            notes: vec![],
            fields: vec![
                field("token", "API token", FieldKind::Secret, true),
                gatehouse_plugin::Field {
                    default: Some("https://api.acme.example".into()),
                    ..field("base_url", "Base URL", FieldKind::Url, false)
                },
            ],
            required_scopes: vec![],
            required_scopes_rule: ScopeRule::AllOf,
            version: env!("CARGO_PKG_VERSION").into(),
            oauth: None,
            credential_presentation: Some(CredentialPresentation {
                header: "authorization".into(),
                value: "Bearer {token}".into(),
            }),
            actions: vec![],
            sync_models: vec![],
            inbound_webhook: None,
        }
    }

    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError> {
        let token = credentials.require("token")?;
        let base = credentials.require("base_url")?;
        let bearer = format!("Bearer {token}");
        let response = http::get(&format!("{base}/v1/me"), &[("authorization", &bearer)])?;
        match response.status {
            200 => {}
            401 => return Err(VerifyError::InvalidToken("Acme does not accept this token".into())),
            429 => return Err(VerifyError::RateLimited(response.retry_after())),
            s => return Err(VerifyError::UpstreamError(format!("Acme answered {s}"))),
        }
        #[derive(serde::Deserialize)]
        struct Me {
            id: u64,
            login: String,
        }
        let me: Me = response.json().ok_or(VerifyError::UpstreamError("Acme sent an unexpected body".into()))?;
        Ok(Verification {
            account: Account {
                id: me.id.to_string(),
                username: me.login,
                name: None,
                email: None,
                web_url: None,
                avatar_url: None,
            },
            scopes: vec![],
            expires_at: None,
            token_kind: "api".into(),
        })
    }
}

register!(AcmeToken);
