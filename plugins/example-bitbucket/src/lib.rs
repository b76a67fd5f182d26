//! Bitbucket Data Center with an HTTP access token, the guide's short
//! connector: typed credentials, the standard status mapping, a JSON GET.
#![allow(clippy::result_large_err)] // `VerifyError` is the WIT's type

use gatehouse_plugin::{
    Account, Connector, CredentialPresentation, Credentials, FieldKind, Manifest, Verification, VerifyError, field,
    http::Request, log, register,
};
use serde::Deserialize;

pub struct BitbucketPat;

#[derive(Deserialize)]
struct Creds {
    base_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: u64,
    slug: String,
    display_name: String,
    email_address: Option<String>,
}

impl Connector for BitbucketPat {
    fn manifest() -> Manifest {
        Manifest {
            vendor: "Atlassian".into(),
            fields: vec![
                field("token", "HTTP access token", FieldKind::Secret, true),
                field("base_url", "Bitbucket URL", FieldKind::Url, true),
            ],
            credential_presentation: Some(CredentialPresentation::bearer("token")),
            ..Manifest::new("bitbucket-pat", "Connect Bitbucket Data Center", env!("CARGO_PKG_VERSION"))
        }
    }

    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError> {
        let Creds { base_url } = credentials.parse()?;
        // Bitbucket names the token's user in a header of any REST answer.
        let probe = Request::get(format!("{base_url}/rest/api/1.0/application-properties")).authenticated().send()?;
        let probe = probe.verify_status()?;
        let slug = probe
            .header("x-ausername")
            .ok_or(VerifyError::InvalidToken("Bitbucket did not recognise the token.".into()))?;
        log::debug("token accepted", &[("user", slug)]);
        let user: User = Request::get(format!("{base_url}/rest/api/1.0/users/{slug}")).authenticated().verify_json()?;
        let account = Account {
            name: Some(user.display_name),
            email: user.email_address,
            ..Account::new(user.id.to_string(), user.slug)
        };
        Ok(Verification { account, scopes: vec![], expires_at: None, token_kind: "http-access-token".into() })
    }
}

register!(BitbucketPat);
