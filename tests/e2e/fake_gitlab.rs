//! A fake GitLab on loopback that answers like GitLab does: the endpoints the
//! connectors use, GitLab's JSON shapes, status codes and headers (every
//! answer carries `Date`), plus misbehaviour on demand (hang, oversized
//! body, non-GitLab page, 429, 5xx). Credentials are taken only where the
//! real server takes them: `PRIVATE-TOKEN` for PATs on `/api/v4`, Bearer
//! for PATs and OAuth tokens there, Bearer OAuth tokens only on
//! `/oauth/token/info` (whose `expires_in` is the lifetime that remains).
//! Token times are relative to now, so the suite does not expire. It also
//! answers Gitea's `GET /api/v1/user` (`token …` or Bearer), for the
//! connector written in Python, Bitbucket Data Center's
//! `/rest/api/1.0/application-properties` (naming the Bearer token's user in
//! `X-AUSERNAME`) and `/rest/api/1.0/users/{slug}`, for the Bitbucket
//! connectors of the guide, and GitLab's OAuth provider:
//! `/oauth/authorize` (redirects back with a code for the signed-in user)
//! and `/oauth/token` (checks client credentials, redirect URI and PKCE
//! verifier; issues 2-hour tokens; rotates refresh tokens and refuses a
//! spent one with `invalid_grant`).

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

const OAUTH_LIFETIME: i64 = 7200;
const PAT_LIFETIME: i64 = 30 * 86_400;

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
    /// The normal, valid answer padded past 5 MiB (a long `bio` on the
    /// user, a long `name` on the token), so only a size limit refuses it.
    Huge,
    RateLimited,
    Status(u16),
    /// A 200 HTML page, as a captive portal or a wrong base URL answers.
    NotGitlab,
}

#[derive(Clone)]
struct Token {
    user: u64,
    kind: Kind,
    scopes: Vec<String>,
    state: TokenState,
    behavior: Behavior,
    created_at: i64,
    lifetime: Option<i64>,
}

struct App {
    secret: String,
    redirect_uri: String,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    user: u64,
    scopes: Vec<String>,
}

struct RefreshToken {
    client_id: String,
    user: u64,
    scopes: Vec<String>,
    access_token: String,
    spent: bool,
    revoked: bool,
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
    apps: HashMap<String, App>,
    codes: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, RefreshToken>,
    /// Who is signed in at the authorize page; None: the user declines.
    signed_in: Option<u64>,
    token_lifetime: i64,
    /// The lifetime of the next token issued only, then `token_lifetime`.
    next_token_lifetime: Option<i64>,
    /// Projects, issues and notes, for using connections.
    api: crate::fake_gitlab_api::Data,
    base_url: String,
    /// Every code issued (spent ones leave `codes`), PKCE verifier presented
    /// and state received, for the secrets scan.
    issued_codes: Vec<String>,
    verifiers: Vec<String>,
    states: Vec<String>,
    /// Tokens issued by `/personal_access_tokens/self/rotate`.
    rotations: usize,
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
        let state = Arc::new(Mutex::new(State { next_user: 100, token_lifetime: OAUTH_LIFETIME, ..State::default() }));
        let shared = state.clone();
        let app = poem::endpoint::make(move |req: Request| {
            let state = shared.clone();
            async move { handle(state, req).await }
        });
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        let url = format!("http://127.0.0.1:{port}");
        state.lock().unwrap().base_url = url.clone();
        Self { url, state }
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
        self.insert_token(&token, user, kind, scopes, now());
        token
    }

    /// Like [`token`](Self::token), created `age` seconds ago: an OAuth
    /// token's remaining lifetime (`expires_in`) is then 7200 - `age`.
    pub fn aged_token(&self, user: u64, kind: Kind, scopes: &[&str], age: i64) -> String {
        let token = self.token(user, kind, scopes);
        self.state.lock().unwrap().tokens.get_mut(&token).unwrap().created_at = now() - age;
        token
    }

    fn insert_token(&self, token: &str, user: u64, kind: Kind, scopes: Vec<String>, created_at: i64) {
        // OAuth access tokens live 2 hours (GitLab's default); PATs 30 days.
        let lifetime = if kind == Kind::OAuth { OAUTH_LIFETIME } else { PAT_LIFETIME };
        let t = Token {
            user,
            kind,
            scopes,
            state: TokenState::Active,
            behavior: Behavior::Normal,
            created_at,
            lifetime: Some(lifetime),
        };
        self.state.lock().unwrap().tokens.insert(token.to_string(), t);
    }

    /// When `token` expires, in Unix seconds.
    pub fn expires_at(&self, token: &str) -> i64 {
        let s = self.state.lock().unwrap();
        let t = &s.tokens[token];
        t.created_at + t.lifetime.unwrap()
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

    /// Every token and code this fake ever issued, and every PKCE verifier
    /// it was shown: none may appear anywhere outside Gatehouse's memory.
    pub fn all_tokens(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.tokens.keys().chain(s.refresh_tokens.keys()).chain(&s.issued_codes).chain(&s.verifiers).cloned().collect()
    }

    /// Every OAuth state presented at `/oauth/authorize`: they travel in
    /// redirects, but are never stored or logged in plain text.
    pub fn oauth_states(&self) -> Vec<String> {
        self.state.lock().unwrap().states.clone()
    }

    /// Registers an OAuth application.
    pub fn register_app(&self, client_id: &str, secret: &str, redirect_uri: &str) {
        let app = App { secret: secret.into(), redirect_uri: redirect_uri.into() };
        self.state.lock().unwrap().apps.insert(client_id.into(), app);
    }

    /// The user who approves at `/oauth/authorize`; None declines.
    pub fn sign_in(&self, user: Option<u64>) {
        self.state.lock().unwrap().signed_in = user;
    }

    /// Seconds that access tokens issued from now on live (GitLab: 7200).
    pub fn set_token_lifetime(&self, seconds: i64) {
        self.state.lock().unwrap().token_lifetime = seconds;
    }

    /// Seconds that the next access token issued lives; the ones after it
    /// live `set_token_lifetime`'s (a token due at once, renewed for long).
    pub fn next_token_lifetime(&self, seconds: i64) {
        self.state.lock().unwrap().next_token_lifetime = Some(seconds);
    }

    /// Revokes every refresh token (as when the user revokes the app).
    pub fn revoke_refresh_tokens(&self) {
        for t in self.state.lock().unwrap().refresh_tokens.values_mut() {
            t.revoked = true;
        }
    }

    /// Every refresh token issued, spent or not.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().refresh_tokens.keys().cloned().collect()
    }

    /// The projects, issues and notes behind `/api/v4/projects`.
    pub fn api<R>(&self, f: impl FnOnce(&mut crate::fake_gitlab_api::Data) -> R) -> R {
        f(&mut self.state.lock().unwrap().api)
    }

    /// How many tokens `/personal_access_tokens/self/rotate` issued.
    pub fn rotations(&self) -> usize {
        self.state.lock().unwrap().rotations
    }

    /// Whether `token` is still accepted (not revoked or expired).
    pub fn is_active(&self, token: &str) -> bool {
        let s = self.state.lock().unwrap();
        s.tokens
            .get(token)
            .is_some_and(|t| t.state == TokenState::Active && t.lifetime.is_none_or(|l| t.created_at + l >= now()))
    }

    /// Sets when `token` expires: `seconds` from now.
    pub fn expire_in(&self, token: &str, seconds: i64) {
        let mut s = self.state.lock().unwrap();
        let t = s.tokens.get_mut(token).unwrap();
        t.lifetime = Some(now() + seconds - t.created_at);
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

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn oauth_error(status: u16, error: &str) -> Response {
    let description = match error {
        "invalid_client" => {
            "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."
        }
        "invalid_grant" => {
            "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."
        }
        _ => {
            "The request is missing a required parameter, includes an unsupported parameter value, or is otherwise malformed."
        }
    };
    json_response(status, json!({"error": error, "error_description": description}))
}

fn redirect(to: String) -> Response {
    Response::builder().status(StatusCode::FOUND).header("Location", to).body("")
}

/// `GET /oauth/authorize`: the signed-in user approves at once.
fn authorize(state: &Mutex<State>, query: &str) -> Response {
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    if !get("state").is_empty() {
        s.states.push(get("state"));
    }
    let known = s.apps.get(&get("client_id")).is_some_and(|a| a.redirect_uri == get("redirect_uri"));
    if !known {
        // GitLab shows an HTML error page and does not redirect.
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .content_type("text/html")
            .body("<p>The redirect URI included is not valid.</p>");
    }
    if get("response_type") != "code" || get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return redirect(format!("{}?error=invalid_request&state={}", get("redirect_uri"), get("state")));
    }
    let Some(user) = s.signed_in else {
        return redirect(format!(
            "{}?error=access_denied&error_description=The+resource+owner+or+authorization+server+denied+the+request.&state={}",
            get("redirect_uri"),
            get("state")
        ));
    };
    let code = uuid::Uuid::new_v4().simple().to_string();
    let scopes = get("scope").split_whitespace().map(str::to_string).collect();
    let grant = Grant {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        challenge: get("code_challenge"),
        user,
        scopes,
    };
    s.codes.insert(code.clone(), grant);
    s.issued_codes.push(code.clone());
    let state_param: String = url::form_urlencoded::byte_serialize(get("state").as_bytes()).collect();
    redirect(format!("{}?code={code}&state={state_param}", get("redirect_uri")))
}

/// `POST /oauth/token`: authorization_code and refresh_token grants.
fn token(state: &Mutex<State>, body: &[u8]) -> Response {
    use base64::Engine;
    use sha2::Digest;
    let q: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    if !get("code_verifier").is_empty() {
        s.verifiers.push(get("code_verifier"));
    }
    let client_ok = s.apps.get(&get("client_id")).is_some_and(|a| a.secret == get("client_secret"));
    if !client_ok {
        return oauth_error(401, "invalid_client");
    }
    let (user, scopes) = match get("grant_type").as_str() {
        "authorization_code" => {
            // A code is single use, whatever happens next.
            let Some(grant) = s.codes.remove(&get("code")) else {
                return oauth_error(400, "invalid_grant");
            };
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
            if grant.client_id != get("client_id")
                || grant.redirect_uri != get("redirect_uri")
                || grant.challenge != challenge
            {
                return oauth_error(400, "invalid_grant");
            }
            (grant.user, grant.scopes)
        }
        "refresh_token" => {
            let presented = get("refresh_token");
            let Some(old) = s.refresh_tokens.get_mut(&presented) else {
                return oauth_error(400, "invalid_grant");
            };
            if old.spent || old.revoked || old.client_id != get("client_id") {
                return oauth_error(400, "invalid_grant");
            }
            old.spent = true;
            let (user, scopes, previous) = (old.user, old.scopes.clone(), old.access_token.clone());
            // Doorkeeper revokes the previous access token on refresh.
            if let Some(t) = s.tokens.get_mut(&previous) {
                t.state = TokenState::Revoked;
            }
            (user, scopes)
        }
        _ => return oauth_error(400, "unsupported_grant_type"),
    };
    let access = format!("gloas-{}", uuid::Uuid::new_v4().simple());
    let refresh = format!("glrt-{}", uuid::Uuid::new_v4().simple());
    let lifetime = s.next_token_lifetime.take().unwrap_or(s.token_lifetime);
    let created_at = now();
    let t = Token {
        user,
        kind: Kind::OAuth,
        scopes: scopes.clone(),
        state: TokenState::Active,
        behavior: Behavior::Normal,
        created_at,
        lifetime: Some(lifetime),
    };
    s.tokens.insert(access.clone(), t);
    let r = RefreshToken {
        client_id: get("client_id"),
        user,
        scopes: scopes.clone(),
        access_token: access.clone(),
        spent: false,
        revoked: false,
    };
    s.refresh_tokens.insert(refresh.clone(), r);
    json_response(
        200,
        json!({
            "access_token": access, "token_type": "Bearer", "expires_in": lifetime,
            "refresh_token": refresh, "scope": scopes.join(" "), "created_at": created_at
        }),
    )
}

/// Every answer carries `Date`, as GitLab's do.
async fn handle(state: Arc<Mutex<State>>, req: Request) -> Response {
    let mut r = route(state, req).await;
    r.headers_mut().insert("date", http_date(now()).parse().unwrap());
    r
}

/// An IMF-fixdate (RFC 9110), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize],
        t.day(),
        MONTHS[t.month() as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Which credential header a request carried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    PrivateToken,
    Bearer,
    /// Gitea's `Authorization: token …`.
    GiteaToken,
}

async fn route(state: Arc<Mutex<State>>, mut req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/oauth/authorize" || path == "/oauth/token" {
        *state.lock().unwrap().hits.entry(path.clone()).or_default() += 1;
        if path == "/oauth/authorize" {
            return authorize(&state, req.uri().query().unwrap_or_default());
        }
        let body = req.take_body().into_vec().await.unwrap_or_default();
        return token(&state, &body);
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let presented = header("private-token")
        .map(|t| (Scheme::PrivateToken, t))
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(|t| (Scheme::Bearer, t.into()))))
        .or_else(|| {
            header("authorization").and_then(|v| v.strip_prefix("token ").map(|t| (Scheme::GiteaToken, t.into())))
        });
    let is_oauth_info = path == "/oauth/token/info";
    let is_gitea = path == "/api/v1/user" || path == "/api/v1/user/repos";
    let is_bitbucket = path.starts_with("/rest/api/1.0/");
    let (token, user) = {
        let mut s = state.lock().unwrap();
        *s.hits.entry(path.clone()).or_default() += 1;
        let token = presented.as_ref().and_then(|(scheme, t)| {
            let token = s.tokens.get(t)?;
            // What each server accepts: Doorkeeper's token info takes an OAuth
            // access token as Bearer only; GitLab's REST API takes a PAT as
            // PRIVATE-TOKEN or Bearer and an OAuth token as Bearer only (an
            // OAuth token in PRIVATE-TOKEN is unknown to it); Gitea takes
            // `token …` or Bearer; the guide's Acme API takes Bearer.
            let accepted = match (path.as_str(), scheme) {
                ("/oauth/token/info", Scheme::Bearer) => token.kind == Kind::OAuth,
                ("/api/v1/user" | "/api/v1/user/repos", Scheme::GiteaToken | Scheme::Bearer) => true,
                (p, Scheme::PrivateToken) if p.starts_with("/api/v4/") => token.kind == Kind::Pat,
                (p, Scheme::Bearer) if p.starts_with("/api/v4/") => true,
                ("/v1/me", Scheme::Bearer) => true,
                (p, Scheme::Bearer) if p.starts_with("/rest/api/1.0/") => true,
                // The reflecting upstream of the tests takes what GitLab takes.
                ("/echo-headers", Scheme::PrivateToken) => token.kind == Kind::Pat,
                ("/echo-headers", Scheme::Bearer) => true,
                _ => false,
            };
            accepted.then(|| token.clone())
        });
        let user = token.as_ref().and_then(|t| s.users.get(&t.user).cloned());
        (token, user)
    };
    let Some(token) = token else {
        return if is_gitea {
            json_response(401, json!({"message": "invalid username, password or token", "url": "/api/swagger"}))
        } else if is_bitbucket {
            json_response(
                401,
                json!({"errors": [{"context": null, "message": "Authentication failed. Please check your credentials and try again.", "exceptionName": "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"}]}),
            )
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
        Behavior::Normal | Behavior::Huge => {}
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
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
        Behavior::NotGitlab => {
            return Response::builder()
                .status(StatusCode::OK)
                .content_type("text/html; charset=utf-8")
                .body("<!DOCTYPE html><html><head><title>Sign in to the network</title></head><body></body></html>");
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

    let lapsed = token.lifetime.is_some_and(|l| token.created_at + l < now());
    let effective = if lapsed && token.state == TokenState::Active { TokenState::Expired } else { token.state };
    match effective {
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
    if path == "/api/v4/personal_access_tokens/self/rotate" && token.kind == Kind::Pat {
        if req.method() != "POST" {
            return json_response(405, json!({"error": "405 Method Not Allowed"}));
        }
        let body = req.take_body().into_vec().await.unwrap_or_default();
        let presented = presented.map(|(_, t)| t).unwrap_or_default();
        return rotate(&state, &presented, &token, &body);
    }
    let api_path = path.starts_with("/api/v4/projects")
        || path.starts_with("/api/v4/groups/")
        || [
            "/api/v4/groups",
            "/api/v4/issues",
            "/api/v4/merge_requests",
            "/echo-headers",
            crate::fake_gitlab_api::ASSOCIATIONS,
        ]
        .contains(&path.as_str());
    if api_path {
        let slow = state.lock().unwrap().api.slow;
        if req.method() == "GET" && !slow.is_zero() {
            tokio::time::sleep(slow).await;
        }
        let method = req.method().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let body = req.take_body().into_vec().await.unwrap_or_default();
        let mut s = state.lock().unwrap();
        let base_url = s.base_url.clone();
        let caller = crate::fake_gitlab_api::Caller {
            base_url: &base_url,
            user: token.user,
            username: &user.username,
            scopes: &token.scopes,
        };
        if let Some(response) =
            crate::fake_gitlab_api::route(&mut s.api, &method, &path, &query, &body, req.headers(), &caller)
        {
            return response;
        }
    }
    let (status, mut body) = answer(&path, &token, &user);
    if path == "/rest/api/1.0/application-properties" {
        // Bitbucket names the authenticated user in a header of every answer.
        return Response::builder()
            .content_type("application/json")
            .header("X-AUSERNAME", user.username.as_str())
            .body(body.to_string());
    }
    if token.behavior == Behavior::Huge && status == 200 {
        // A valid answer, only too big: a field GitLab really sends, padded.
        let field = if path == "/api/v4/personal_access_tokens/self" { "description" } else { "bio" };
        body[field] = json!("x".repeat(5 * 1024 * 1024));
    }
    json_response(status, body)
}

/// `POST /personal_access_tokens/self/rotate`: needs `api` or
/// `self_rotate` (else 403 `insufficient_scope`, as GitLab answers); issues
/// a new token of the same user and scopes expiring at 00:00 UTC of
/// `expires_at` (a week when not given, at most a year), revokes the
/// presented one, and answers the new one with its `token`.
fn rotate(state: &Mutex<State>, presented: &str, token: &Token, body: &[u8]) -> Response {
    if !token.scopes.iter().any(|s| s == "api" || s == "self_rotate") {
        return json_response(
            403,
            json!({
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": "api self_rotate"
            }),
        );
    }
    let input: Value = serde_json::from_slice(body).unwrap_or(json!({}));
    let today = now().div_euclid(86_400) * 86_400;
    let expires = match input["expires_at"].as_str() {
        None => today + 7 * 86_400,
        Some(text) => match time::OffsetDateTime::parse(
            &format!("{text}T00:00:00Z"),
            &time::format_description::well_known::Rfc3339,
        ) {
            Ok(t) => t.unix_timestamp(),
            Err(_) => return json_response(400, json!({"error": "expires_at is invalid"})),
        },
    };
    if expires <= today || expires > today + 366 * 86_400 {
        return json_response(
            400,
            json!({"message": "400 Bad request - Expiration date must be in the future and at most a year away"}),
        );
    }
    let new = format!("glpat-{}", uuid::Uuid::new_v4().simple());
    let created_at = now();
    let mut s = state.lock().unwrap();
    s.rotations += 1;
    s.tokens.insert(
        new.clone(),
        Token {
            user: token.user,
            kind: Kind::Pat,
            scopes: token.scopes.clone(),
            state: TokenState::Active,
            behavior: Behavior::Normal,
            created_at,
            lifetime: Some(expires - created_at),
        },
    );
    // GitLab revokes the rotated token at once.
    if let Some(old) = s.tokens.get_mut(presented) {
        old.state = TokenState::Revoked;
    }
    let expires_date = time::OffsetDateTime::from_unix_timestamp(expires).unwrap().date();
    json_response(
        200,
        json!({
            "id": 4712, "name": "gatehouse", "description": "", "revoked": false,
            "created_at": crate::fake_gitlab_api::gitlab_time(created_at), "scopes": token.scopes,
            "user_id": token.user, "last_used_at": null, "active": true,
            "expires_at": expires_date.to_string(), "token": new
        }),
    )
}

/// The normal answer at `path` for an accepted, active `token`.
fn answer(path: &str, token: &Token, user: &User) -> (u16, Value) {
    match path {
        "/api/v4/personal_access_tokens/self" if token.kind == Kind::Pat => {
            let expires =
                time::OffsetDateTime::from_unix_timestamp(token.created_at + token.lifetime.unwrap()).unwrap();
            (
                200,
                json!({
                    "id": 4711, "name": "gatehouse", "description": "", "revoked": false,
                    "created_at": crate::fake_gitlab_api::gitlab_time(token.created_at), "scopes": token.scopes,
                    "user_id": token.user, "last_used_at": null, "active": true,
                    "expires_at": expires.date().to_string()
                }),
            )
        }
        // Doorkeeper: `expires_in` is the lifetime that REMAINS at the time
        // of the answer; `created_at` is when the token was issued.
        "/oauth/token/info" if token.kind == Kind::OAuth => {
            let remaining = token.lifetime.map(|l| token.created_at + l - now());
            (
                200,
                json!({
                    "resource_owner_id": token.user, "scope": token.scopes, "scopes": token.scopes,
                    "expires_in": remaining, "expires_in_seconds": remaining,
                    "application": {"uid": "0f3c0ffee"}, "created_at": token.created_at
                }),
            )
        }
        // The guide's example connector (plugins/example-acme).
        "/v1/me" => (200, json!({"id": token.user, "login": user.username})),
        "/api/v1/user" => (
            200,
            json!({
                "id": token.user, "login": user.username, "login_name": "", "full_name": format!("{} Example", user.username),
                "email": format!("{}@example.com", user.username),
                "avatar_url": format!("https://gitea.example.com/avatars/{}", user.username),
                "html_url": format!("https://gitea.example.com/{}", user.username),
                "language": "en-US", "is_admin": false, "active": true, "prohibit_login": false
            }),
        ),
        // Gitea's repository list (one page here; Gitea adds `Link` when
        // more follow).
        "/api/v1/user/repos" => (
            200,
            json!(
                ["infra", "website", "notes"]
                    .iter()
                    .enumerate()
                    .map(|(i, name)| json!({
                        "id": 300 + i, "name": name, "full_name": format!("{}/{name}", user.username),
                        "html_url": format!("https://gitea.example.com/{}/{name}", user.username),
                        "private": i == 2, "fork": false, "empty": false, "archived": false,
                        "updated_at": "2026-11-20T08:00:00Z", "created_at": "2026-01-05T10:00:00Z",
                        "owner": {"id": token.user, "login": user.username}
                    }))
                    .collect::<Vec<_>>()
            ),
        ),
        "/rest/api/1.0/application-properties" => (
            200,
            json!({"version": "9.4.0", "buildNumber": "9004000", "buildDate": "1700000000000", "displayName": "Bitbucket"}),
        ),
        p if p == format!("/rest/api/1.0/users/{}", user.username) => (
            200,
            json!({
                "name": user.username, "emailAddress": format!("{}@example.com", user.username), "active": true,
                "displayName": format!("{} Example", user.username), "id": token.user, "slug": user.username,
                "type": "NORMAL", "links": {"self": [{"href": format!("https://bitbucket.example.com/users/{}", user.username)}]}
            }),
        ),
        "/api/v4/user" => {
            if !token.scopes.iter().any(|s| ["api", "read_api", "read_user"].contains(&s.as_str())) {
                return (
                    403,
                    json!({
                        "error": "insufficient_scope",
                        "error_description": "The request requires higher privileges than provided by the access token.",
                        "scope": "api read_user"
                    }),
                );
            }
            (
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
        _ => (404, json!({"message": "404 Not Found"})),
    }
}
