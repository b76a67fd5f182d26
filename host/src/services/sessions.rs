//! Connect sessions and what a caller may see. The consuming system's
//! backend (API key) creates a short-lived session for one of its end
//! users; the session's token lets the settings page manage that end
//! user's connections and nothing else. `Access` is the one place where
//! object-level authorization is decided: every lookup of an integration
//! by id on behalf of a caller goes through `Access::admits`.

use std::{sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sqlx::types::Json;

use crate::{
    clock::{Timestamp, now},
    crypto,
    error::AppError,
    services::shared::Shared,
    store::{IntegrationRow, Owner, sessions::SessionRow},
};

/// Every session token starts with this, so a token sent to a route of
/// the API key is recognised (and refused with 403, not 401).
pub const TOKEN_PREFIX: &str = "gcs_";

/// Whether `token` is shaped like a connect session's token.
pub fn is_session_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

/// Lifetimes of sessions, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct SessionSettings {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

/// An authenticated connect session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    /// The end user (always with an id) and organization it acts for.
    pub owner: Owner,
    /// None: every loaded connector.
    pub providers: Option<Vec<String>>,
}

/// Who is asking: the API key sees and may do everything; a session only
/// its end user's connections, with the connectors it was created for.
#[derive(Clone, Debug)]
pub enum Access {
    ApiKey,
    Session(Session),
}

impl Access {
    /// The object-level check: whether the caller may see integration `row`.
    /// A session sees its end user's connections (within its organization,
    /// when it has one); another user's answer as a missing one does.
    pub fn admits(&self, row: &IntegrationRow) -> bool {
        match self {
            Self::ApiKey => true,
            Self::Session(s) => {
                row.owner.end_user_id.is_some()
                    && row.owner.end_user_id == s.owner.end_user_id
                    && (s.owner.organization.is_none() || row.owner.organization == s.owner.organization)
            }
        }
    }

    /// Whether the caller may use connector `provider` (403 otherwise).
    pub fn check_provider(&self, provider: &str) -> Result<(), AppError> {
        match self {
            Self::Session(Session { providers: Some(allowed), .. }) if !allowed.iter().any(|p| p == provider) => {
                Err(AppError::Forbidden(format!(
                    "This connect session is limited to {}; it cannot use this connector.",
                    allowed.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whose a new connection is: a session's is always its own end user's
    /// (a body naming someone else is refused); the API key names anyone.
    pub fn owner_for_connect(&self, requested: Owner) -> Result<Owner, AppError> {
        match self {
            Self::ApiKey => {
                if requested.end_user_id.is_none()
                    && (requested.end_user_name.is_some() || requested.end_user_email.is_some())
                {
                    return Err(AppError::Validation(
                        "end_user_name and end_user_email need end_user_id, the consuming system's id of the user."
                            .into(),
                    ));
                }
                check_owner(&requested)?;
                Ok(requested)
            }
            Self::Session(s) => {
                if requested != Owner::default() && requested != s.owner {
                    return Err(AppError::Forbidden(
                        "A connect session connects for its own end user only; leave out end_user_id, end_user_name, end_user_email and organization.".into(),
                    ));
                }
                Ok(s.owner.clone())
            }
        }
    }

    /// The end user and organization a list is narrowed to: a session's own
    /// (its filters must not name anyone else), or the API key's choice.
    pub fn list_filter(
        &self,
        end_user_id: Option<String>,
        organization: Option<String>,
    ) -> Result<(Option<String>, Option<String>), AppError> {
        match self {
            Self::ApiKey => Ok((end_user_id, organization)),
            Self::Session(s) => {
                let other_user = end_user_id.is_some_and(|u| Some(u) != s.owner.end_user_id);
                let other_organization = match (&organization, &s.owner.organization) {
                    (Some(asked), Some(mine)) => asked != mine,
                    _ => false,
                };
                if other_user || other_organization {
                    return Err(AppError::Forbidden(
                        "A connect session lists its own end user's connections only.".into(),
                    ));
                }
                Ok((s.owner.end_user_id.clone(), s.owner.organization.clone().or(organization)))
            }
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match self {
            Self::ApiKey => None,
            Self::Session(s) => Some(&s.id),
        }
    }

    pub fn is_session(&self) -> bool {
        matches!(self, Self::Session(_))
    }
}

/// What the consuming system asks for.
pub struct NewSession {
    pub owner: Owner,
    pub providers: Option<Vec<String>>,
    pub ttl: Option<Duration>,
}

/// A new session: its row, its token (shown once) and its page.
pub struct CreatedSession {
    pub row: SessionRow,
    pub token: SecretString,
    pub url: String,
}

pub struct Sessions {
    shared: Arc<Shared>,
    settings: SessionSettings,
}

impl Sessions {
    pub(super) fn new(shared: Arc<Shared>, settings: SessionSettings) -> Self {
        Self { shared, settings }
    }

    pub async fn create(&self, input: NewSession) -> Result<CreatedSession, AppError> {
        if input.owner.end_user_id.is_none() {
            return Err(AppError::Validation("end_user_id is required: the consuming system's id of the user.".into()));
        }
        check_owner(&input.owner)?;
        let ttl = input.ttl.unwrap_or(self.settings.default_ttl);
        if ttl < Duration::from_secs(1) || ttl > self.settings.max_ttl {
            return Err(AppError::Validation(format!(
                "expires_in_seconds must be between 1 and {} (--connect-session-max-ttl).",
                self.settings.max_ttl.as_secs()
            )));
        }
        if let Some(providers) = &input.providers {
            if providers.is_empty() {
                return Err(AppError::Validation(
                    "providers, when given, names at least one connector; leave it out for all of them.".into(),
                ));
            }
            for p in providers {
                self.shared.plugin(p)?;
            }
        }
        let token = SecretString::from(format!("{TOKEN_PREFIX}{}", crypto::random_token().expose_secret()));
        let (now_unix, now_text) = now();
        let expires = Timestamp::now().after(ttl);
        let row = SessionRow {
            id: uuid::Uuid::new_v4().to_string(),
            token_hash: crypto::sha256_hex(token.expose_secret().as_bytes()),
            end_user_id: input.owner.end_user_id.clone().unwrap_or_default(),
            end_user_name: input.owner.end_user_name,
            end_user_email: input.owner.end_user_email,
            organization: input.owner.organization,
            providers: input.providers.map(Json),
            created_at: now_text,
            expires_at: expires.to_string(),
            expires_at_unix: expires.unix(),
            revoked_at: None,
        };
        self.shared.store.insert_session(&row, now_unix).await?;
        let base = self.shared.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string());
        // The token travels in the fragment: browsers never send it to a
        // server, so it reaches neither a log nor a Referer header.
        let url = format!("{}/settings#session={}", base.unwrap_or_default(), token.expose_secret());
        Ok(CreatedSession { row, token, url })
    }

    /// The session of a token, or why not: `unauthorized` (unknown),
    /// `session_revoked`, `session_expired`.
    pub async fn authenticate(&self, token: &str) -> Result<Session, AppError> {
        if !is_session_token(token) {
            return Err(AppError::Unauthorized);
        }
        let hash = crypto::sha256_hex(token.as_bytes());
        let row = self.shared.store.session_by_token_hash(&hash).await?.ok_or(AppError::Unauthorized)?;
        if row.revoked_at.is_some() {
            return Err(AppError::SessionRevoked);
        }
        if now().0 >= row.expires_at_unix {
            return Err(AppError::SessionExpired);
        }
        Ok(session_of(row))
    }

    /// A session by id, whatever its state (for the OAuth callback, whose
    /// flow may outlive the page's session by the state's lifetime).
    pub(super) async fn by_id(&self, id: &str) -> Result<Option<SessionRow>, AppError> {
        Ok(self.shared.store.session(id).await?)
    }

    pub async fn get(&self, id: &str) -> Result<SessionRow, AppError> {
        self.by_id(id).await?.ok_or_else(|| not_found(id))
    }

    /// Revokes a session: its token is refused from now on.
    pub async fn revoke(&self, id: &str) -> Result<SessionRow, AppError> {
        self.shared.store.revoke_session(id, &now().1).await?.ok_or_else(|| not_found(id))
    }
}

pub(super) fn session_of(row: SessionRow) -> Session {
    Session {
        id: row.id,
        owner: Owner {
            end_user_id: Some(row.end_user_id),
            end_user_name: row.end_user_name,
            end_user_email: row.end_user_email,
            organization: row.organization,
        },
        providers: row.providers.map(|p| p.0),
    }
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("No connect session {id}."))
}

/// Bounds on what the consuming system names; control characters would
/// end up in logs and pages.
fn check_owner(o: &Owner) -> Result<(), AppError> {
    let fields = [
        ("end_user_id", &o.end_user_id, 255),
        ("end_user_name", &o.end_user_name, 200),
        ("end_user_email", &o.end_user_email, 320),
        ("organization", &o.organization, 255),
    ];
    for (name, value, max) in fields {
        if let Some(v) = value
            && (v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control))
        {
            return Err(AppError::Validation(format!(
                "{name} must be 1 to {max} characters without control characters."
            )));
        }
    }
    if o.end_user_email.as_ref().is_some_and(|e| !e.contains('@')) {
        return Err(AppError::Validation("end_user_email is not an email address.".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: Option<&str>, organization: Option<&str>) -> Owner {
        Owner { end_user_id: user.map(Into::into), organization: organization.map(Into::into), ..Owner::default() }
    }

    fn session(user: &str, organization: Option<&str>) -> Access {
        Access::Session(Session { id: "s".into(), owner: owner(Some(user), organization), providers: None })
    }

    fn row(o: Owner) -> IntegrationRow {
        IntegrationRow { owner: o, ..crate::store::tests::row("i") }
    }

    #[test]
    fn a_session_sees_its_own_end_users_connections_only() {
        let a = session("a", None);
        assert!(a.admits(&row(owner(Some("a"), None))));
        assert!(a.admits(&row(owner(Some("a"), Some("acme")))));
        assert!(!a.admits(&row(owner(Some("b"), None))));
        assert!(!a.admits(&row(owner(None, None))), "the API key's pool is nobody's");
        let in_acme = session("a", Some("acme"));
        assert!(in_acme.admits(&row(owner(Some("a"), Some("acme")))));
        assert!(!in_acme.admits(&row(owner(Some("a"), Some("other")))));
        assert!(!in_acme.admits(&row(owner(Some("a"), None))));
        assert!(Access::ApiKey.admits(&row(owner(Some("b"), None))));
    }

    #[test]
    fn a_session_connects_for_itself_and_lists_itself() {
        let a = session("a", Some("acme"));
        assert_eq!(a.owner_for_connect(Owner::default()).unwrap(), owner(Some("a"), Some("acme")));
        assert!(a.owner_for_connect(owner(Some("b"), None)).is_err());
        assert_eq!(a.list_filter(None, None).unwrap(), (Some("a".into()), Some("acme".into())));
        assert!(a.list_filter(Some("b".into()), None).is_err());
        assert!(a.list_filter(None, Some("other".into())).is_err());
        let limited = Access::Session(Session {
            id: "s".into(),
            owner: owner(Some("a"), None),
            providers: Some(vec!["x".into()]),
        });
        assert!(limited.check_provider("x").is_ok());
        assert!(limited.check_provider("y").is_err());
        assert!(
            Access::ApiKey.owner_for_connect(Owner { end_user_name: Some("n".into()), ..Owner::default() }).is_err()
        );
    }
}
