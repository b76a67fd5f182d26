//! {{title}}: a Gatehouse connector. It verifies an API token by asking the
//! provider who the token belongs to. Change `ME_PATH` and `User` to your
//! provider's "current user" endpoint, then add actions and syncs (see the
//! guide, plugins/README.md in the Gatehouse repository).
// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use gatehouse_plugin::{
    Account, Connector, CredentialPresentation, Credentials, FieldKind, Manifest, Verification, VerifyError, field,
    http::Request, log, register,
};
use serde::Deserialize;

/// The provider's "who am I" endpoint, below the base URL.
pub const ME_PATH: &str = "/user";

pub struct Plugin;

#[derive(Deserialize)]
struct Creds {
    base_url: String,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    username: String,
    name: Option<String>,
}

impl Connector for Plugin {
    fn manifest() -> Manifest {
        Manifest {
            description: "Verifies an API token.".into(),
            fields: vec![
                field("token", "API token", FieldKind::Secret, true),
                field("base_url", "Base URL", FieldKind::Url, true),
            ],
            // The host adds `authorization: Bearer <token>` to requests sent
            // with `.authenticated()`; the connector never handles it.
            credential_presentation: Some(CredentialPresentation::bearer("token")),
            ..Manifest::new("{{id}}", "Connect using {{title}}", env!("CARGO_PKG_VERSION"))
        }
    }

    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError> {
        let Creds { base_url } = credentials.parse()?;
        // 401 → invalid-token, 429 → rate-limited, 5xx → upstream-error.
        let user: User = Request::get(format!("{base_url}{ME_PATH}")).authenticated().verify_json()?;
        log::debug("token accepted", &[("user", &user.username)]);
        let account = Account { name: user.name, ..Account::new(user.id.to_string(), user.username) };
        Ok(Verification { account, scopes: vec![], expires_at: None, token_kind: "api-token".into() })
    }
}

register!(Plugin);
