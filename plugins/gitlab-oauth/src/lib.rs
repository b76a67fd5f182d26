//! GitLab OAuth 2.0 connector (pasted access token): `Authorization:
//! Bearer` against `/oauth/token/info` (scopes, expiry) and `/api/v4/user`.

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use gatehouse_plugin::{
    AuthMethod, Connector, Credentials, FieldKind, Manifest, Verification, VerifyError, field, http, register,
    unix_to_rfc3339,
};
use gitlab_common as gitlab;
use serde::Deserialize;

pub struct GitlabOauth;

/// Doorkeeper's token info; GitLab sends `scope` and newer versions also
/// `scopes`, plus `expires_in` (null for tokens that do not expire).
#[derive(Deserialize)]
struct TokenInfo {
    scope: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    expires_in: Option<i64>,
    expires_in_seconds: Option<i64>,
    created_at: Option<i64>,
}

impl TokenInfo {
    fn scopes(&self) -> Vec<String> {
        self.scopes.clone().or_else(|| self.scope.clone()).unwrap_or_default()
    }

    fn expires_at(&self) -> Option<String> {
        let lifetime = self.expires_in.or(self.expires_in_seconds)?;
        Some(unix_to_rfc3339(self.created_at? + lifetime))
    }
}

impl Connector for GitlabOauth {
    fn manifest() -> Manifest {
        Manifest {
            id: "gitlab-oauth".into(),
            name: "Connect using OAuth v2".into(),
            vendor: gitlab::VENDOR.into(),
            auth_method: AuthMethod::Oauth2,
            description: format!(
                "OAuth 2.0 is a standardized authorization protocol that enables third-party applications to access user data without revealing user credentials. It is extensively utilized for user-endorsed communications with third-party APIs. {}",
                gitlab::DESCRIPTION_SUFFIX
            ),
            notes: vec![
                "Provide the access token you received from GitLab following successful authorization; it is verified automatically on input.".into(),
            ],
            fields: vec![
                gatehouse_plugin::Field {
                    help: Some("The OAuth access token GitLab issued to your application (scope read_api or api).".into()),
                    ..field("access_token", "Access Token", FieldKind::Secret, true)
                },
                gitlab::base_url_field(),
            ],
            required_scopes: gitlab::required_scopes(),
            required_scopes_rule: gitlab::SCOPE_RULE,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError> {
        let token = credentials.require("access_token")?;
        let base_url = credentials.get("base_url").unwrap_or(gitlab::DEFAULT_BASE_URL);
        let bearer = format!("Bearer {token}");
        let auth = ("authorization", bearer.as_str());

        let response = http::get(&format!("{base_url}/oauth/token/info"), &[auth, ("accept", "application/json")])?;
        if !response.is_success() {
            return Err(gitlab::refusal(&response));
        }
        let info: TokenInfo = response.json().ok_or_else(gitlab::not_gitlab)?;
        let scopes = info.scopes();

        let (account, _bot) = gitlab::fetch_user(base_url, auth)?;
        gitlab::check_scopes(&scopes, Some(account.clone()))?;
        Ok(Verification { account, scopes, expires_at: info.expires_at(), token_kind: "oauth".into() })
    }
}

register!(GitlabOauth);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_matches_the_product_page() {
        let m = GitlabOauth::manifest();
        assert_eq!((m.id.as_str(), m.name.as_str()), ("gitlab-oauth", "Connect using OAuth v2"));
        assert_eq!(m.fields[0].label, "Access Token");
        assert_eq!(m.fields[1].default.as_deref(), Some("https://gitlab.com"));
    }

    #[test]
    fn token_info_expiry() {
        let info: TokenInfo = serde_json::from_str(
            r#"{"resource_owner_id":1,"scope":["api"],"expires_in":7200,"application":{"uid":"x"},"created_at":1700000000}"#,
        )
        .unwrap();
        assert_eq!(info.scopes(), ["api"]);
        assert_eq!(info.expires_at().as_deref(), Some("2023-11-15T00:13:20Z"));
        let forever: TokenInfo =
            serde_json::from_str(r#"{"scope":["read_api"],"expires_in":null,"created_at":1}"#).unwrap();
        assert_eq!(forever.expires_at(), None);
    }
}
