//! GitLab Personal Access Token connector: `PRIVATE-TOKEN` against
//! `/api/v4/personal_access_tokens/self` (scopes, expiry, state) and
//! `/api/v4/user` (the account).

// `VerifyError` is the WIT contract's type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use gatehouse_plugin::{
    AuthMethod, Connection, Connector, CredentialPresentation, Credentials, FieldKind, Manifest, ProviderError,
    SyncPage, Verification, VerifyError, field, http, register,
};
use gitlab_common as gitlab;
use serde::Deserialize;

pub struct GitlabPat;

#[derive(Deserialize)]
struct TokenSelf {
    #[serde(default)]
    revoked: bool,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    scopes: Vec<String>,
    expires_at: Option<String>,
}

fn yes() -> bool {
    true
}

impl Connector for GitlabPat {
    fn manifest() -> Manifest {
        Manifest {
            id: "gitlab-pat".into(),
            name: "Connect using Personal Access Tokens (PAT)".into(),
            vendor: gitlab::VENDOR.into(),
            auth_method: AuthMethod::PersonalAccessToken,
            description: format!(
                "Personal Access Tokens (PAT) act as an alternative to traditional password-based authentication methods for accessing GitLab. They offer enhanced security since they can be regenerated and managed with ease. {}",
                gitlab::DESCRIPTION_SUFFIX
            ),
            notes: vec![
                "A PAT has access to only a single organization in GitLab. Please make sure you enter the correct PAT here."
                    .into(),
            ],
            fields: vec![
                gatehouse_plugin::Field {
                    placeholder: Some("glpat-…".into()),
                    help: Some("Create one in GitLab under User settings > Access tokens with the read_api or api scope.".into()),
                    ..field("token", "Personal Access Token (PAT)", FieldKind::Secret, true)
                },
                gitlab::base_url_field(),
            ],
            required_scopes: gitlab::required_scopes(),
            required_scopes_rule: gitlab::SCOPE_RULE,
            version: env!("CARGO_PKG_VERSION").into(),
            oauth: None,
            credential_presentation: Some(CredentialPresentation {
                header: "private-token".into(),
                value: "{token}".into(),
            }),
            actions: gitlab::actions::definitions(),
            sync_models: gitlab::syncs::definitions(),
            inbound_webhook: Some(gitlab::syncs::inbound_webhook()),
        }
    }

    fn verify(credentials: &Credentials) -> Result<Verification, VerifyError> {
        let token = credentials.require("token")?;
        let base_url = credentials.get("base_url").unwrap_or(gitlab::DEFAULT_BASE_URL);
        let auth = ("private-token", token);

        let response = http::get(
            &format!("{base_url}/api/v4/personal_access_tokens/self"),
            &[auth, ("accept", "application/json")],
        )?;
        if !response.is_success() {
            return Err(gitlab::refusal(&response));
        }
        let info: TokenSelf = response.json().ok_or_else(gitlab::not_gitlab)?;
        check_state(&info)?;

        let (account, bot) = gitlab::fetch_user(base_url, auth)?;
        gitlab::check_scopes(&info.scopes, Some(account.clone()))?;
        Ok(Verification {
            account,
            scopes: info.scopes,
            expires_at: info.expires_at,
            token_kind: if bot { "bot".into() } else { "personal".into() },
        })
    }

    fn run_action(name: &str, input: &str, connection: &Connection) -> Result<String, ProviderError> {
        gitlab::actions::run(name, input, connection)
    }

    fn run_sync(
        model: &str,
        checkpoint: Option<&str>,
        run_started_at: &str,
        connection: &Connection,
    ) -> Result<SyncPage, ProviderError> {
        gitlab::syncs::run(model, checkpoint, run_started_at, connection)
    }
}

fn check_state(info: &TokenSelf) -> Result<(), VerifyError> {
    if info.revoked {
        return Err(VerifyError::TokenRevoked("GitLab says the token was revoked".into()));
    }
    if !info.active {
        return Err(VerifyError::TokenExpired(format!(
            "GitLab says the token is no longer active (expiry date {})",
            info.expires_at.as_deref().unwrap_or("unknown")
        )));
    }
    Ok(())
}

register!(GitlabPat, actions, syncs);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_matches_the_product_page() {
        let m = GitlabPat::manifest();
        assert_eq!(m.id, "gitlab-pat");
        assert_eq!(m.fields[0].label, "Personal Access Token (PAT)");
        assert_eq!(m.fields[1].default.as_deref(), Some("https://gitlab.com"));
        assert_eq!(
            m.notes,
            [
                "A PAT has access to only a single organization in GitLab. Please make sure you enter the correct PAT here."
            ]
        );
        let presentation = m.credential_presentation.expect("actions need the host to present the credential");
        assert_eq!((presentation.header.as_str(), presentation.value.as_str()), ("private-token", "{token}"));
        let actions: Vec<String> = m.actions.iter().map(|a| a.name.clone()).collect();
        assert_eq!(actions, ["create-issue", "add-merge-request-note", "list-projects"]);
        let models: Vec<String> = m.sync_models.iter().map(|s| s.name.clone()).collect();
        assert_eq!(models, ["groups", "projects", "issues", "merge_requests"]);
        let connection = Connection { base_url: "https://gitlab.com".into(), account_id: "1".into(), settings: vec![] };
        let unknown = GitlabPat::run_action("delete-everything", "{}", &connection);
        assert!(matches!(unknown, Err(ProviderError::Unsupported(_))));
        let unknown = GitlabPat::run_sync("pipelines", None, "2026-11-26T10:00:00Z", &connection);
        assert!(matches!(unknown, Err(ProviderError::Unsupported(_))));
    }

    #[test]
    fn token_state() {
        let parse = |s: &str| serde_json::from_str::<TokenSelf>(s).unwrap();
        assert!(check_state(&parse(r#"{"revoked":false,"active":true,"scopes":["api"]}"#)).is_ok());
        assert!(matches!(check_state(&parse(r#"{"revoked":true,"active":false}"#)), Err(VerifyError::TokenRevoked(_))));
        assert!(matches!(
            check_state(&parse(r#"{"revoked":false,"active":false,"expires_at":"2020-01-01"}"#)),
            Err(VerifyError::TokenExpired(_))
        ));
    }
}
