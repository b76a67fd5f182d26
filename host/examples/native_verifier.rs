//! The native baseline of `host/benches/verify.sh`: a poem + reqwest
//! server that verifies a GitLab personal access token the way the
//! gitlab-pat connector does — the same two upstream requests, the same
//! JSON in and out, the API key checked — with no sandbox, no egress
//! policy and no store. What Gatehouse's verify costs beyond this is the
//! price of the sandbox and the host's checks.
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
