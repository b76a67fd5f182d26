//! The native baseline of `host/benches/verify.sh`: a poem + reqwest
//! server that verifies a GitLab personal access token the way the
//! gitlab-pat connector does — the token, its user, then what the token
//! reaches (three upstream requests; Gatehouse makes four, as its reach
//! call runs in an instance of its own and reads the user again) — with
//! the same JSON in and out and the API key checked, but no sandbox, no
//! egress policy and no store. What Gatehouse's verify costs beyond this is
//! the price of the sandbox and the host's checks.
//!
//!   native_verifier LISTEN_ADDR API_KEY

use std::sync::Arc;

use poem::{
    EndpointExt, Route, handler,
    http::StatusCode,
    listener::TcpListener,
    web::{Data, Json, Path},
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct VerifyRequest {
    credentials: Credentials,
}

#[derive(Deserialize)]
struct Credentials {
    token: String,
    base_url: String,
}

#[derive(Deserialize)]
struct Associations {
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    projects: Vec<Value>,
}

#[derive(Deserialize)]
struct Group {
    id: u64,
    name: String,
    web_url: String,
    parent_id: Option<u64>,
}

impl Associations {
    /// The same summary the gitlab-pat connector gives for a personal token.
    fn reach(&self) -> Value {
        let mut top: Vec<Value> = self
            .groups
            .iter()
            .filter(|g| g.parent_id.is_none_or(|p| !self.groups.iter().any(|o| o.id == p)))
            .map(|g| {
                let path = g.web_url.split_once("/groups/").map_or(g.name.as_str(), |(_, p)| p);
                json!({"id": g.id.to_string(), "path": path, "name": g.name, "kind": "group"})
            })
            .collect();
        top.sort_by_key(|item| item["path"].as_str().unwrap_or_default().to_lowercase());
        let names: Vec<&str> = top.iter().take(5).filter_map(|i| i["path"].as_str()).collect();
        let summary = format!(
            "This token reaches {} groups: {} (and {} projects).",
            self.groups.len(),
            names.join(", "),
            self.projects.len()
        );
        json!({
            "kind": "personal",
            "group_count": self.groups.len(),
            "project_count": self.projects.len(),
            "top_level": top,
            "summary": summary,
            "note": "A personal access token acts as its user and reaches every group and project that user can access, not a single organization; limit the connection to one group to keep the proxy, actions and syncs inside it, or use a group access token.",
        })
    }
}

struct State {
    client: reqwest::Client,
    key_hash: [u8; 32],
}

fn problem(status: StatusCode, code: &str) -> poem::Response {
    poem::Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(json!({"code": code, "status": status.as_u16()}).to_string())
}

#[handler]
async fn verify(
    req: &poem::Request,
    Path(provider): Path<String>,
    Json(body): Json<VerifyRequest>,
    state: Data<&Arc<State>>,
) -> poem::Response {
    let key = req.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    // Constant-time, as the host compares.
    if hash.iter().zip(state.key_hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    if provider != "gitlab-pat" {
        return problem(StatusCode::NOT_FOUND, "not_found");
    }
    let base = body.credentials.base_url.trim_end_matches('/');
    let get = |path: &str| {
        state.client.get(format!("{base}/api/v4/{path}")).header("PRIVATE-TOKEN", &body.credentials.token).send()
    };
    let token = match get("personal_access_tokens/self").await {
        Ok(r) if r.status() == 401 => {
            return poem::Response::builder().content_type("application/json").body(
                json!({"valid": false, "error": {"code": "invalid_token", "status": 422}, "scopes": []}).to_string(),
            );
        }
        Ok(r) if r.status().is_success() => r.bytes().await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        _ => None,
    };
    let user = match get("user").await {
        Ok(r) if r.status().is_success() => r.bytes().await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        _ => None,
    };
    let (Some(token), Some(user)) = (token, user) else {
        return problem(StatusCode::BAD_GATEWAY, "upstream_error");
    };
    // What the token reaches, as Gatehouse answers after a valid verify.
    let associations = match get("personal_access_tokens/self/associations?per_page=100&page=1").await {
        Ok(r) if r.status().is_success() => {
            r.bytes().await.ok().and_then(|b| serde_json::from_slice::<Associations>(&b).ok())
        }
        _ => None,
    };
    let answer = json!({
        "valid": true,
        "account": {
            "id": user["id"].to_string(),
            "username": user["username"],
            "name": user["name"],
            "email": user["email"],
            "web_url": user["web_url"],
            "avatar_url": user["avatar_url"],
        },
        "scopes": token["scopes"],
        "missing_scopes": [],
        "token_kind": "personal",
        "token_expires_at": token["expires_at"],
        "reach": associations.map(|a| a.reach()),
    });
    poem::Response::builder().content_type("application/json").body(answer.to_string())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(key)) = (args.next(), args.next()) else {
        eprintln!("usage: native_verifier LISTEN_ADDR API_KEY");
        std::process::exit(2);
    };
    let state = Arc::new(State {
        client: reqwest::Client::builder().no_proxy().build().expect("a reqwest client"),
        key_hash: Sha256::digest(key.as_bytes()).into(),
    });
    let app = Route::new().at("/api/v1/providers/:provider/verify", poem::post(verify)).data(state);
    poem::Server::new(TcpListener::bind(listen)).run(app).await
}
