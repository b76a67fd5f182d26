//! What is known about the request being served, wherever code runs for
//! it: its id (logs, the `X-Request-Id` header, problem details), the
//! caller's address, and who acts (the audit log). The API edge sets it
//! once per request (task-locals), so the services record who did what
//! without every call passing it along; code outside a request (the
//! background refresh, the plugins poll) acts as `system`, the CLI as `cli`.

use std::future::Future;

use crate::{clock::Timestamp, store::audit::AuditEntry};

tokio::task_local! {
    static REQUEST: Request;
    static ACTOR: Actor;
}

/// The request being served.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    /// The caller's address: the peer's, or a trusted proxy's
    /// `X-Forwarded-For` when the server is told to trust it.
    pub address: Option<String>,
}

/// Who acts: an API key (its id and name, never the key), the CLI, the
/// server itself, or a caller of a route that needs no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: &'static str,
    pub id: Option<String>,
    pub name: Option<String>,
}

impl Actor {
    pub fn api_key(id: &str, name: &str) -> Self {
        Self { kind: "api_key", id: Some(id.to_string()), name: Some(name.to_string()) }
    }

    pub fn system() -> Self {
        Self { kind: "system", id: None, name: None }
    }

    pub fn cli() -> Self {
        Self { kind: "cli", id: None, name: None }
    }

    pub fn anonymous() -> Self {
        Self { kind: "anonymous", id: None, name: None }
    }
}

/// Runs `f` as part of `request`.
pub async fn in_request<F: Future>(request: Request, f: F) -> F::Output {
    REQUEST.scope(request, f).await
}

/// Runs `f` on behalf of `actor`.
pub async fn acting<F: Future>(actor: Actor, f: F) -> F::Output {
    ACTOR.scope(actor, f).await
}

/// The id of the request being served, if any.
pub fn request_id() -> Option<String> {
    REQUEST.try_with(|r| r.id.clone()).ok()
}

pub fn actor() -> Actor {
    ACTOR.try_with(Clone::clone).unwrap_or_else(|_| Actor::system())
}

/// What an audit entry is about.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: &'static str,
    pub id: Option<String>,
    pub provider: Option<String>,
}

impl Target {
    pub fn integration(id: &str, provider: &str) -> Self {
        Self { kind: "integration", id: Some(id.to_string()), provider: Some(provider.to_string()) }
    }

    /// An integration not (yet) known by id: a connect that failed.
    pub fn provider(provider: &str) -> Self {
        Self { kind: "integration", id: None, provider: Some(provider.to_string()) }
    }

    pub fn oauth_app(id: Option<&str>, provider: &str) -> Self {
        Self { kind: "oauth_app", id: id.map(str::to_string), provider: Some(provider.to_string()) }
    }

    pub fn api_key(id: Option<&str>) -> Self {
        Self { kind: "api_key", id: id.map(str::to_string), provider: None }
    }

    pub fn connector(id: &str) -> Self {
        Self { kind: "connector", id: Some(id.to_string()), provider: Some(id.to_string()) }
    }

    pub fn webhook(id: Option<&str>) -> Self {
        Self { kind: "webhook", id: id.map(str::to_string), provider: None }
    }
}

/// An audit entry for `action` on `target` by the current actor, from the
/// current request; `outcome` is `ok` or an error code.
pub fn audit_entry(action: &str, target: Target, outcome: &str) -> AuditEntry {
    let actor = actor();
    let request = REQUEST.try_with(Clone::clone).ok();
    AuditEntry {
        seq: 0,
        at: Timestamp::now(),
        actor_kind: actor.kind.to_string(),
        actor_id: actor.id,
        actor_name: actor.name,
        action: action.to_string(),
        target_kind: target.kind.to_string(),
        target_id: target.id,
        provider: target.provider,
        outcome: outcome.to_string(),
        address: request.as_ref().and_then(|r| r.address.clone()),
        request_id: request.map(|r| r.id),
    }
}
