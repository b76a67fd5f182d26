//! Every way GitLab says no, and every way it fails, mapped to the stable
//! codes of the error table.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    fake_gitlab::{Behavior, FakeGitlab, Kind, TokenState},
    harness::{Gatehouse, Options, connect_pat, pat_body},
};

async fn setup() -> (FakeGitlab, u64, Gatehouse) {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let g = Gatehouse::start(Options::lax().arg("--http-timeout").arg("1s")).await;
    (fake, jane, g)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_verdicts_are_200_on_verify_and_422_on_connect() {
    let (fake, jane, g) = setup().await;
    let unknown = "glpat-unknown-token-0000000000".to_string();
    let revoked = fake.pat(jane);
    fake.set_state(&revoked, TokenState::Revoked);
    let expired = fake.pat(jane);
    fake.set_state(&expired, TokenState::Expired);
    let oauth_revoked = fake.token(jane, Kind::OAuth, &["api"]);
    fake.set_state(&oauth_revoked, TokenState::Revoked);
    let oauth_expired = fake.token(jane, Kind::OAuth, &["api"]);
    fake.set_state(&oauth_expired, TokenState::Expired);

    let cases = [
        ("gitlab-pat", "token", unknown.clone(), "invalid_token"),
        ("gitlab-pat", "token", revoked.clone(), "token_revoked"),
        ("gitlab-pat", "token", expired.clone(), "token_expired"),
        ("gitlab-oauth", "access_token", "gloas-unknown-0000000000".into(), "invalid_token"),
        ("gitlab-oauth", "access_token", oauth_revoked.clone(), "token_revoked"),
        ("gitlab-oauth", "access_token", oauth_expired.clone(), "token_expired"),
    ];
    for (provider, field, token, code) in cases {
        let creds = json!({field: token, "base_url": fake.url});
        let v = g.post(&format!("/api/v1/providers/{provider}/verify"), json!({"credentials": creds})).await;
        assert_eq!(v.status, 200, "{provider} {code}: {}", v.body);
        assert_eq!(v.body["valid"], false);
        assert_eq!(v.body["error"]["code"], code, "{provider}: {}", v.body);
        assert_eq!(v.body["error"]["status"], 422);
        let c = g.post("/api/v1/integrations", json!({"provider": provider, "credentials": creds})).await;
        assert_eq!((c.status, c.code()), (422, code), "{provider}: {}", c.body);
    }
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));
    let mut secrets = fake.all_tokens();
    secrets.push(unknown);
    g.finish(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_lists_the_missing_scopes() {
    let (fake, jane, g) = setup().await;
    // Can read the user but not the API.
    let read_user = fake.token(jane, Kind::Pat, &["read_user"]);
    let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&read_user, &fake.url)).await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body["valid"], false);
    assert_eq!(v.body["error"]["code"], "insufficient_scope");
    assert_eq!(v.body["missing_scopes"], json!(["api", "read_api"]));
    assert_eq!(v.body["account"]["username"], "jane");
    let c = g.post("/api/v1/integrations", connect_pat(&read_user, &fake.url)).await;
    assert_eq!((c.status, c.code()), (422, "insufficient_scope"));
    assert_eq!(c.body["missing_scopes"], json!(["api", "read_api"]));

    // GitLab itself refuses /user with 403 insufficient_scope.
    let registry_only = fake.token(jane, Kind::OAuth, &["read_registry"]);
    let body =
        json!({"provider": "gitlab-oauth", "credentials": {"access_token": registry_only, "base_url": fake.url}});
    let c = g.post("/api/v1/integrations", body).await;
    assert_eq!((c.status, c.code()), (422, "insufficient_scope"), "{}", c.body);
    assert_eq!(c.body["missing_scopes"], json!(["api", "read_user"]));

    // Any one of api / read_api is enough.
    let read_api = fake.token(jane, Kind::Pat, &["read_api"]);
    let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&read_api, &fake.url)).await;
    assert_eq!(v.body["valid"], true, "{}", v.body);
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors() {
    let (fake, jane, g) = setup().await;
    let limited = fake.pat(jane);
    fake.set_behavior(&limited, Behavior::RateLimited);
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&limited, &fake.url)).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"));
    assert_eq!(r.body["retry_after"], 42);
    assert_eq!(r.headers["retry-after"], "42");

    for status in [500, 502, 503] {
        let broken = fake.pat(jane);
        fake.set_behavior(&broken, Behavior::Status(status));
        let r = g.post("/api/v1/integrations", connect_pat(&broken, &fake.url)).await;
        assert_eq!((r.status, r.code()), (502, "upstream_error"), "{status}: {}", r.body);
        // The connector's sentence alone in `detail`; the host's advice apart.
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(&status.to_string()) && !detail.contains("Try again later"), "{}", r.body);
        assert_eq!(r.body["advice"], "Try again later; if it persists, check the base URL.");
    }
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_times_out_within_the_deadline() {
    let (fake, jane, g) = setup().await;
    let slow = fake.pat(jane);
    fake.set_behavior(&slow, Behavior::Hang);
    let started = Instant::now();
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&slow, &fake.url)).await;
    assert_eq!((r.status, r.code()), (504, "upstream_timeout"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    g.finish(&fake.all_tokens());
}

/// The fake's oversized answer is a valid one padded past 5 MiB: only the
/// 4 MiB response limit refuses it, and with a higher limit it verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_upstream_body_is_refused_and_the_host_lives() {
    let (fake, jane, mut g) = setup().await;
    let huge = fake.pat(jane);
    fake.set_behavior(&huge, Behavior::Huge);
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&huge, &fake.url)).await;
    assert_eq!((r.status, r.code()), (502, "upstream_error"), "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("response size limit (--max-response-bytes)"), "{}", r.body);
    assert!(g.is_running());
    let fine = fake.pat(jane);
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&fine, &fake.url)).await;
    assert_eq!(r.body["valid"], true);
    g.finish(&fake.all_tokens());

    let roomy = Gatehouse::start(Options::lax().arg("--max-response-bytes").arg("8388608")).await;
    let r = roomy.post("/api/v1/providers/gitlab-pat/verify", pat_body(&huge, &fake.url)).await;
    assert_eq!(r.body["valid"], true, "the padded answer is a valid one: {}", r.body);
    roomy.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_base_url() {
    let (fake, jane, g) = setup().await;
    let token = fake.pat(jane);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = g.post("/api/v1/integrations", connect_pat(&token, &format!("http://127.0.0.1:{closed}"))).await;
    assert_eq!((r.status, r.code()), (502, "upstream_unreachable"), "{}", r.body);
    let r = g.post("/api/v1/integrations", connect_pat(&token, "http://no-such-host.invalid")).await;
    assert_eq!((r.status, r.code()), (502, "upstream_unreachable"), "{}", r.body);
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverify_that_cannot_reach_gitlab_marks_unreachable() {
    let (fake, jane, g) = setup().await;
    let token = fake.pat(jane);
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    fake.set_behavior(&token, Behavior::Status(503));
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!((r.status, r.code()), (502, "upstream_error"));
    let stored = g.get(&format!("/api/v1/integrations/{id}")).await.body;
    assert_eq!(stored["status"], "unreachable");
    assert_eq!(stored["last_error"]["code"], "upstream_error");
    g.finish(&fake.all_tokens());
}

/// An answer that is not GitLab's (a captive portal's HTML page with 200)
/// is `upstream_error`, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_answer_is_upstream_error() {
    let (fake, jane, g) = setup().await;
    let token = fake.pat(jane);
    fake.set_behavior(&token, Behavior::NotGitlab);
    let r = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    assert_eq!((r.status, r.code()), (502, "upstream_error"), "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("not GitLab API JSON"), "{}", r.body);
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_route_is_not_found() {
    let g = Gatehouse::start(Options::lax()).await;
    for path in ["/api/v1/nope", "/api/v2/integrations", "/nothing/here"] {
        let r = g.call("GET", path, None, Some(crate::harness::API_KEY)).await;
        assert_eq!((r.status, r.code()), (404, "not_found"), "{path}: {}", r.body);
    }
    g.finish(&[]);
}

/// A method a route does not take is 405 with the `Allow` header RFC 9110
/// requires, listing what the route does take (from the served document).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_with_allow() {
    let g = Gatehouse::start(Options::lax()).await;
    let id = uuid::Uuid::new_v4();
    let cases = [
        ("TRACE", "/api/v1/health".to_string(), "GET, HEAD"),
        ("DELETE", "/api/v1/integrations".to_string(), "GET, HEAD, POST"),
        ("PUT", format!("/api/v1/integrations/{id}"), "DELETE, GET, HEAD"),
        ("GET", format!("/api/v1/integrations/{id}/verify"), "POST"),
        ("PATCH", "/api/v1/webhooks".to_string(), "GET, HEAD, POST"),
        ("POST", "/".to_string(), "GET, HEAD"),
        ("GET", format!("/api/v1/hooks/{id}"), "POST"),
    ];
    for (method, path, allow) in cases {
        let r = g.call(method, &path, None, Some(crate::harness::API_KEY)).await;
        assert_eq!((r.status, r.code()), (405, "method_not_allowed"), "{method} {path}: {}", r.body);
        assert_eq!(r.headers.get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
    }
    g.finish(&[]);
}

/// Stored credentials sealed with another master key cannot be opened:
/// `secret_unavailable` (503), and the integration is still listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_master_key_is_secret_unavailable() {
    use base64::Engine;
    let (fake, jane, mut g) = setup().await;
    let token = fake.pat(jane);
    let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap().to_string();
    g.stop();
    let other_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::fs::write(g.key_file(), other_key).unwrap();
    g.restart().await;
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!((r.status, r.code()), (503, "secret_unavailable"), "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("master key"), "{}", r.body);
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"].as_array().unwrap().len(), 1);
    g.finish(&fake.all_tokens());
}
