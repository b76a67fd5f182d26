//! A fake GitLab on loopback that answers like GitLab does: the endpoints the
//! connectors use, GitLab's JSON shapes, status codes and headers, plus
//! misbehaviour on demand (hang, oversized body, 429, 5xx). It also answers
//! Gitea's `GET /api/v1/user`, for the connector written in Python.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{
    Request, Response, Server,
    http::StatusCode,
    listener::{Acceptor, TcpAcceptor},
};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pat,
    OAuth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Revoked,
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    Normal,
    /// Never answers (well, after a minute).
    Hang,
    /// A 200 with a 5 MiB JSON body.
    Huge,
    RateLimited,
    Status(u16),
}

#[derive(Clone)]
struct Token {
    user: u64,
    kind: Kind,
    scopes: Vec<String>,
    state: TokenState,
    behavior: Behavior,
}

#[derive(Clone)]
struct User {
    username: String,
    bot: bool,
}

#[derive(Default)]
struct State {
    users: HashMap<u64, User>,
    tokens: HashMap<String, Token>,
    hits: HashMap<String, usize>,
    next_user: u64,
}

#[derive(Clone)]
pub struct FakeGitlab {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeGitlab {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State { next_user: 100, ..State::default() }));
        let shared = state.clone();
        let app = poem::endpoint::make(move |req: Request| {
            let state = shared.clone();
            async move { handle(state, req).await }
        });
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { url: format!("http://127.0.0.1:{port}"), state }
    }

    pub fn add_user(&self, username: &str, bot: bool) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.next_user += 1;
        let id = s.next_user;
        s.users.insert(id, User { username: username.into(), bot });
        id
    }

    /// A new token for `user` with `scopes`. Tokens are long and random so
    /// the secrets scan cannot match anything by accident.
    pub fn token(&self, user: u64, kind: Kind, scopes: &[&str]) -> String {
        let prefix = if kind == Kind::Pat { "glpat-" } else { "gloas-" };
        let token = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let scopes = scopes.iter().map(|s| s.to_string()).collect();
        let t = Token { user, kind, scopes, state: TokenState::Active, behavior: Behavior::Normal };
        self.state.lock().unwrap().tokens.insert(token.clone(), t);
        token
    }

    pub fn pat(&self, user: u64) -> String {
        self.token(user, Kind::Pat, &["api"])
    }

    pub fn set_state(&self, token: &str, state: TokenState) {
        self.state.lock().unwrap().tokens.get_mut(token).unwrap().state = state;
    }

    pub fn set_behavior(&self, token: &str, behavior: Behavior) {
        self.state.lock().unwrap().tokens.get_mut(token).unwrap().behavior = behavior;
    }

    /// Every token this fake ever issued.
    pub fn all_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.keys().cloned().collect()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

fn unauthorized_api(description: Option<&str>) -> Response {
    match description {
        None => json_response(401, json!({"message": "401 Unauthorized"})),
        Some(d) => {
            let mut r = json_response(401, json!({"error": "invalid_token", "error_description": d}));
            let challenge =
                format!(r#"Bearer realm="Protected by OAuth 2", error="invalid_token", error_description="{d}""#);
            r.headers_mut().insert("www-authenticate", challenge.parse().unwrap());
            r
        }
    }
}

async fn handle(state: Arc<Mutex<State>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let presented = header("private-token")
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string)))
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("token ").map(str::to_string)));
    let (token, user) = {
        let mut s = state.lock().unwrap();
        *s.hits.entry(path.clone()).or_default() += 1;
        let token = presented.as_ref().and_then(|t| s.tokens.get(t).cloned());
        let user = token.as_ref().and_then(|t| s.users.get(&t.user).cloned());
        (token, user)
    };
    let is_oauth_info = path == "/oauth/token/info";
    let is_gitea = path == "/api/v1/user";
    let Some(token) = token else {
        return if is_gitea {
            json_response(401, json!({"message": "invalid username, password or token", "url": "/api/swagger"}))
        } else if is_oauth_info {
            json_response(
                401,
                json!({"error": "invalid_token", "error_description": "The access token is invalid", "state": "unauthorized"}),
            )
        } else {
            unauthorized_api(None)
        };
    };

    match token.behavior {
        Behavior::Normal => {}
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Behavior::Huge => {
            let filler = "x".repeat(5 * 1024 * 1024);
            return json_response(200, json!({"id": 1, "filler": filler}));
        }
        Behavior::RateLimited => {
            return Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .content_type("text/plain")
                .header("Retry-After", "42")
                .header("RateLimit-Limit", "600")
                .header("RateLimit-Observed", "601")
                .header("RateLimit-Remaining", "0")
                .header("RateLimit-Reset", "1893456000")
                .header("RateLimit-ResetTime", "Tue, 01 Jan 2030 00:00:00 GMT")
                .body("Retry later\n");
        }
        Behavior::Status(502) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .content_type("text/html")
                .body("<html><body><h1>502 Bad Gateway</h1></body></html>");
        }
        Behavior::Status(code) => {
            return json_response(code, json!({"message": format!("{code} Internal Server Error")}));
        }
    }

    match token.state {
        TokenState::Active => {}
        TokenState::Revoked if is_oauth_info => {
            return json_response(
                401,
                json!({"error": "invalid_token", "error_description": "The access token was revoked", "state": "unauthorized"}),
            );
        }
        TokenState::Expired if is_oauth_info => {
            return json_response(
                401,
                json!({"error": "invalid_token", "error_description": "The access token expired", "state": "unauthorized"}),
            );
        }
        TokenState::Revoked => {
            return unauthorized_api(Some("Token was revoked. You have to re-authorize from the user."));
        }
        TokenState::Expired => {
            return unauthorized_api(Some("Token is expired. You can either do re-authorization or token refresh."));
        }
    }

    let user = user.expect("tokens belong to users");
    match path.as_str() {
        "/api/v4/personal_access_tokens/self" if token.kind == Kind::Pat => json_response(
            200,
            json!({
                "id": 4711, "name": "gatehouse", "revoked": false,
                "created_at": "2026-01-01T00:00:00.000Z", "scopes": token.scopes,
                "user_id": token.user, "last_used_at": null, "active": true, "expires_at": "2027-01-01"
            }),
        ),
        "/oauth/token/info" if token.kind == Kind::OAuth => json_response(
            200,
            json!({
                "resource_owner_id": token.user, "scope": token.scopes, "scopes": token.scopes,
                "expires_in": 7200, "expires_in_seconds": 7200,
                "application": {"uid": "0f3c0ffee"}, "created_at": 1_800_000_000
            }),
        ),
        // The guide's example connector (plugins/example-acme).
        "/v1/me" => json_response(200, json!({"id": token.user, "login": user.username})),
        "/api/v1/user" => json_response(
            200,
            json!({
                "id": token.user, "login": user.username, "login_name": "", "full_name": format!("{} Example", user.username),
                "email": format!("{}@example.com", user.username),
                "avatar_url": format!("https://gitea.example.com/avatars/{}", user.username),
                "html_url": format!("https://gitea.example.com/{}", user.username),
                "language": "en-US", "is_admin": false, "active": true, "prohibit_login": false
            }),
        ),
        "/api/v4/user" => {
            if !token.scopes.iter().any(|s| ["api", "read_api", "read_user"].contains(&s.as_str())) {
                return json_response(
                    403,
                    json!({
                        "error": "insufficient_scope",
                        "error_description": "The request requires higher privileges than provided by the access token.",
                        "scope": "api read_user"
                    }),
                );
            }
            json_response(
                200,
                json!({
                    "id": token.user, "username": user.username, "name": format!("{} Example", user.username),
                    "state": "active", "locked": false,
                    "avatar_url": format!("https://secure.gravatar.com/avatar/{}", user.username),
                    "web_url": format!("https://gitlab.example.com/{}", user.username),
                    "created_at": "2020-01-01T00:00:00.000Z", "bio": "", "public_email": null,
                    "email": format!("{}@example.com", user.username), "bot": user.bot,
                    "two_factor_enabled": true, "external": false, "private_profile": false
                }),
            )
        }
        _ => json_response(404, json!({"message": "404 Not Found"})),
    }
}
