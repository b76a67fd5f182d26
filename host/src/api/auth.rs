//! Who is calling, and what they may do. `authenticate` (middleware)
//! resolves a bearer API key once per request into a `Caller` (its id, name
//! and role), kept in the request and in the request's context for the
//! audit log; the `ApiKey` security scheme demands one, and
//! `ApiKey::require` checks the role a route needs, answering 403
//! `forbidden` with the role to ask for. Another kind of credential (a
//! session token) is a scheme of its own beside this one.

use std::sync::Arc;

use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{
    context,
    error::AppError,
    services::api_keys::{ApiKeys, Caller},
    store::api_keys::Role,
};

use super::problem::ApiError;

/// `Authorization: Bearer <api key>`: a key in use, with its role.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_api_key")]
pub struct ApiKey(pub Caller);

/// A key in use, resolved by `authenticate`; else a session's token is
/// 403 (sessions may use the settings page's routes only), anything else 401.
async fn check_api_key(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    req.data::<Caller>().cloned().ok_or_else(|| super::session::refused_on_key_route(&bearer.token))
}

impl ApiKey {
    /// The caller, when its role includes `needed`; else `forbidden`.
    pub fn require(&self, needed: Role) -> Result<&Caller, ApiError> {
        require(&self.0, needed).map_err(ApiError::from)?;
        Ok(&self.0)
    }
}

/// `forbidden` unless `caller`'s role includes `needed`.
pub fn require(caller: &Caller, needed: Role) -> Result<(), AppError> {
    if caller.may(needed) {
        return Ok(());
    }
    tracing::warn!(key_id = %caller.id, role = %caller.role, needed = %needed, "refused: the key's role does not allow this");
    let roles = match needed {
        Role::Reader => "reader, operator or admin",
        Role::Operator => "operator or admin",
        Role::Admin => "admin",
    };
    Err(AppError::Forbidden(format!(
        "This needs the {needed} role ({roles}); the API key {:?} has the {} role. Use a key with that role, or ask an admin to create one (POST /api/v1/api-keys).",
        caller.name, caller.role
    )))
}

/// The caller of a request that came with a key in use, if any.
pub fn caller(req: &Request) -> Option<&Caller> {
    req.data::<Caller>()
}

/// Resolves the bearer key, if one is sent, and runs the rest of the
/// request on its behalf. A wrong or revoked key is not refused here: the
/// routes that need a key answer 401, the others (health, the OAuth
/// callback, the settings page) do not need one.
pub async fn authenticate<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let key = bearer(&req).map(str::to_string);
    let keys = req.data::<Arc<ApiKeys>>().cloned();
    let caller = match (key, keys) {
        (Some(key), Some(keys)) => match keys.resolve(&key).await {
            Ok(caller) => caller,
            Err(e) => return Ok(ApiError::from(e).into_response()),
        },
        _ => None,
    };
    let actor = caller.as_ref().map_or_else(context::Actor::anonymous, Caller::actor);
    if let Some(caller) = caller {
        req.set_data(caller);
    }
    context::acting(actor, async move { ep.call(req).await.map(IntoResponse::into_response) }).await
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim()).filter(|k| !k.is_empty())
}
