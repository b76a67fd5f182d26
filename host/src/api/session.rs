//! Connect sessions at the HTTP edge: the session token as a security
//! scheme of its own (`Authorization: Bearer gcs_…`), `PageCaller` — the API
//! key or a session, accepted by the routes the settings page uses — and
//! the routes that create, show and revoke sessions (API key only). Which
//! integrations a session may touch is decided in the services layer
//! (`services::sessions::Access`), not here.

use std::sync::Arc;

use poem::{IntoResponse, Request};
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme, auth::Bearer, param::Path, payload::Json};

use crate::{
    error::AppError,
    services::sessions::{Access, CreatedSession, NewSession, Session, Sessions, is_session_token},
    store::{Owner, sessions::SessionRow},
};

use super::{ApiKey, problem::ApiError};
use crate::store::api_keys::Role;

/// `Authorization: Bearer <connect session token>`: what the settings page
/// sends when it was opened from a session's URL.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", rename = "ConnectSession", checker = "check_session")]
pub struct SessionToken(Session);

async fn check_session(req: &Request, bearer: Bearer) -> poem::Result<Session> {
    let Some(sessions) = req.data::<Arc<Sessions>>() else {
        return Err(refusal(AppError::Unauthorized));
    };
    sessions.authenticate(&bearer.token).await.map_err(refusal)
}

fn refusal(e: AppError) -> poem::Error {
    poem::Error::from_response(ApiError::from(e).into_response())
}

/// Why a bearer token that is not the API key is refused on a route of the
/// API key: a session's token gets 403 (sessions may use the settings
/// page's routes only), anything else 401.
pub fn refused_on_key_route(token: &str) -> poem::Error {
    if is_session_token(token) {
        refusal(AppError::Forbidden(
            "A connect session may use only the routes of the settings page; this one needs the API key.".into(),
        ))
    } else {
        refusal(AppError::Unauthorized)
    }
}

/// Whether a request's bearer token is shaped like a session's.
pub fn bearer_is_session(req: &Request) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| is_session_token(t.trim()))
}

/// The caller of a route the settings page uses: the API key, or a
/// connect session (which then sees only its end user's connections).
#[derive(SecurityScheme)]
pub enum PageCaller {
    Key(ApiKey),
    Session(SessionToken),
}

impl PageCaller {
    /// With the API key, `forbidden` unless its role includes `needed`; a
    /// session is held to its own rules by its `access`.
    pub fn require(&self, needed: crate::store::api_keys::Role) -> Result<(), ApiError> {
        match self {
            Self::Key(key) => key.require(needed).map(|_| ()),
            Self::Session(_) => Ok(()),
        }
    }

    pub fn access(&self) -> Access {
        match self {
            Self::Key(_) => Access::ApiKey,
            Self::Session(s) => Access::Session(s.0.clone()),
        }
    }
}

/// `POST /api/v1/connect-sessions`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ConnectSessionRequest {
    /// The consuming system's id of the end user (1–255 characters).
    pub end_user_id: String,
    /// Their display name, stored on the connections they make.
    pub end_user_name: Option<String>,
    /// Their email, stored on the connections they make.
    pub end_user_email: Option<String>,
    /// An organization (tenant) tag; the session then sees only that
    /// organization's connections of the end user.
    pub organization: Option<String>,
    /// Limit the session to these connectors (ids); default: all.
    pub providers: Option<Vec<String>>,
    /// Lifetime in seconds, from 1 to --connect-session-max-ttl (24 h by
    /// default); default --connect-session-ttl (30 min).
    pub expires_in_seconds: Option<u64>,
}

/// A connect session as shown to the consuming system (never its token,
/// except once, on creation).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConnectSession {
    pub id: String,
    pub end_user_id: String,
    pub end_user_name: Option<String>,
    pub end_user_email: Option<String>,
    pub organization: Option<String>,
    /// The connectors it may use; left out: all.
    pub providers: Option<Vec<String>>,
    pub created_at: String,
    pub expires_at: String,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    pub revoked_at: Option<String>,
}

/// A new session: its token and page URL are in this answer only.
#[derive(Debug, Object)]
pub struct CreatedConnectSession {
    #[oai(flatten)]
    pub session: ConnectSession,
    /// The bearer token of the session (`gcs_…`); shown only here.
    pub token: String,
    /// The settings page for this session, with the token in the fragment
    /// (`/settings#session=…`), which browsers never send to a server:
    /// open it in a browser or an iframe.
    pub url: String,
}

impl From<SessionRow> for ConnectSession {
    fn from(r: SessionRow) -> Self {
        let state = if r.revoked_at.is_some() {
            "revoked"
        } else if crate::clock::now().0 >= r.expires_at_unix {
            "expired"
        } else {
            "active"
        };
        Self {
            id: r.id,
            end_user_id: r.end_user_id,
            end_user_name: r.end_user_name,
            end_user_email: r.end_user_email,
            organization: r.organization,
            providers: r.providers.map(|p| p.0),
            created_at: r.created_at,
            expires_at: r.expires_at,
            state: state.into(),
            revoked_at: r.revoked_at,
        }
    }
}

#[derive(ApiResponse)]
pub enum SessionCreated {
    #[oai(status = 201)]
    Created(Json<CreatedConnectSession>),
}

#[derive(ApiResponse)]
pub enum SessionRevoked {
    /// Revoked: the token is refused from now on (`session_revoked`).
    #[oai(status = 204)]
    NoContent,
}

#[derive(poem_openapi::Tags)]
enum SessionTags {
    /// Connect sessions: let one end user manage their own connections on
    /// the settings page.
    #[oai(rename = "Connect sessions")]
    ConnectSessions,
}

#[derive(Clone)]
pub struct SessionApi {
    pub sessions: Arc<Sessions>,
}

#[OpenApi(prefix_path = "/api/v1")]
impl SessionApi {
    /// Create a connect session for one end user (API key). Answers the
    /// token and the URL of the settings page for that session; the page
    /// then shows and manages only that end user's connections.
    ///
    /// Role: operator.
    #[oai(path = "/connect-sessions", method = "post", tag = "SessionTags::ConnectSessions")]
    async fn create(&self, auth: ApiKey, body: Json<ConnectSessionRequest>) -> Result<SessionCreated, ApiError> {
        auth.require(Role::Operator)?;
        let b = body.0;
        let input = NewSession {
            owner: Owner {
                end_user_id: Some(b.end_user_id),
                end_user_name: b.end_user_name,
                end_user_email: b.end_user_email,
                organization: b.organization,
            },
            providers: b.providers,
            ttl: b.expires_in_seconds.map(std::time::Duration::from_secs),
        };
        let CreatedSession { row, token, url } = self.sessions.create(input).await?;
        Ok(SessionCreated::Created(Json(CreatedConnectSession {
            session: row.into(),
            token: secrecy::ExposeSecret::expose_secret(&token).to_string(),
            url,
        })))
    }

    /// One connect session: whose, until when, and whether it is active,
    /// expired or revoked.
    ///
    /// Role: reader.
    #[oai(path = "/connect-sessions/:id", method = "get", tag = "SessionTags::ConnectSessions")]
    async fn get(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> Result<Json<ConnectSession>, ApiError> {
        auth.require(Role::Reader)?;
        Ok(Json(self.sessions.get(&id.0.to_string()).await?.into()))
    }

    /// Revoke a connect session: its token is refused from now on.
    ///
    /// Role: operator.
    #[oai(path = "/connect-sessions/:id", method = "delete", tag = "SessionTags::ConnectSessions")]
    async fn revoke(&self, auth: ApiKey, id: Path<uuid::Uuid>) -> Result<SessionRevoked, ApiError> {
        auth.require(Role::Operator)?;
        self.sessions.revoke(&id.0.to_string()).await?;
        Ok(SessionRevoked::NoContent)
    }
}
