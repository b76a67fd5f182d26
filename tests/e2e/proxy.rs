//! The authenticated proxy as a client uses it: requests reach the fake
//! GitLab with the credential added by the host, the caller's API key and
//! hop-by-hop headers stay behind, paths cannot leave the base URL,
//! pagination links point back through the proxy, rate limits pass through
//! (or are waited out on request), and an OAuth connection is refreshed
//! when due and once more after a 401.

use std::io::{Read, Write};

use serde_json::{Value, json};

use crate::{
    fake_gitlab::{FakeGitlab, Kind, TokenState},
    harness::{API_KEY, Gatehouse, Options, connect_pat},
};

/// Jane, her projects (1..=3 are hers, 4 is not), a PAT connection.
async fn connected(g: &Gatehouse, fake: &FakeGitlab, scopes: &[&str]) -> (String, String) {
    let jane = fake.add_user("jane", false);
    let other = fake.add_user("joe", false);
    fake.api(|d| {
        d.add_project(1, "acme/api", &[jane], &[7]);
        d.add_project(2, "acme/web", &[jane], &[]);
        d.add_project(3, "acme/infra/terraform", &[jane], &[]);
        d.add_project(4, "joe/private", &[other], &[]);
    });
    let token = fake.token(jane, Kind::Pat, scopes);
    let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    assert_eq!(c.status, 201, "{}", c.body);
    (c.body["id"].as_str().unwrap().to_string(), token)
}

fn proxy(id: &str, rest: &str) -> String {
    format!("/api/v1/integrations/{id}/proxy/{rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_carry_the_injected_credential() {
    let fake = FakeGitlab::start().await;
    let g = Gatehouse::start(Options::lax()).await;
    let (id, token) = connected(&g, &fake, &["api"]).await;

    let r = g.get_proxied(&proxy(&id, "api/v4/projects?membership=true&simple=true&per_page=2")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<&str> =
        r.body.as_array().unwrap().iter().map(|p| p["path_with_namespace"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme/api", "acme/web"]);
    assert_eq!(r.headers["x-next-page"], "2");
    assert_eq!(r.headers["x-total"], "3");
    // Pagination links lead back through the proxy, never straight to the provider.
    let link = r.headers["link"].to_str().unwrap();
    assert!(link.starts_with(&format!("</api/v1/integrations/{id}/proxy/api/v4/projects?membership=true&")), "{link}");
    assert!(link.contains("page=2>"), "{link}");
    assert!(!link.contains(&fake.url), "{link}");
    let seen = fake.api(|d| d.requests.last().cloned().unwrap());
    assert_eq!((seen.method.as_str(), seen.auth_header.as_str()), ("GET", "private-token"));
    assert_eq!(seen.query, "membership=true&simple=true&per_page=2", "the query string is forwarded as sent");

    // A project path with an encoded slash reaches GitLab as GitLab names it.
    let r = g
        .send_proxied(
            g.client()
                .post(format!("{}{}", g.base, proxy(&id, "api/v4/projects/acme%2Finfra%2Fterraform/issues")))
                .bearer_auth(API_KEY)
                .header("content-type", "application/json")
                .body(json!({"title": "Rotate the state bucket key"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["references"]["full"], "acme/infra/terraform#1");
    assert_eq!(fake.api(|d| d.issues(3)).len(), 1);
    let seen = fake.api(|d| d.requests.last().cloned().unwrap());
    assert_eq!(seen.path, "/api/v4/projects/acme%2Finfra%2Fterraform/issues");
    assert_eq!(serde_json::from_str::<Value>(&seen.body).unwrap()["title"], "Rotate the state bucket key");

    // The provider's own errors come back as the provider sent them.
    let r = g.get_proxied(&proxy(&id, "api/v4/projects/4")).await;
    assert_eq!((r.status, r.body["message"].as_str()), (404, Some("404 Project Not Found")));

    // What reaches the provider: the credential, not the API key, cookies
    // or hop-by-hop headers; and the credential cannot come back.
    let r = g
        .send_proxied(
            g.client()
                .get(format!("{}{}", g.base, proxy(&id, "echo-headers")))
                .bearer_auth(API_KEY)
                .header("cookie", "session=abc")
                .header("connection", "x-hop")
                .header("x-hop", "1")
                .header("private-token", "glpat-a-guess-of-the-caller")
                .header("x-request-id", "req-42"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let echoed = &r.body["headers"];
    assert_eq!(
        echoed["private-token"], "[redacted]",
        "the host's credential replaced the caller's, and is scrubbed: {echoed}"
    );
    assert_eq!(echoed["x-request-id"], "req-42");
    for gone in ["authorization", "cookie", "x-hop", "gatehouse-retries"] {
        assert!(echoed.get(gone).is_none(), "{gone} reached the provider: {echoed}");
    }
    assert!(!r.body.to_string().contains(&token));
    assert!(!r.body.to_string().contains(API_KEY));
    // The request log has the path, never the query string or the body.
    let logs = g.logs();
    assert!(logs.contains("/proxy/api/v4/projects"), "proxied requests are logged");
    assert!(!logs.contains("per_page=2") && !logs.contains("Rotate the state bucket key"), "{logs}");
    g.finish(&[token, API_KEY.to_string()]);
}

/// Sends a request line as is: HTTP clients normalise `..` and `//` away,
/// which is exactly what an attacker's client would not do.
fn raw_get(base: &str, path: &str) -> u16 {
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_KEY}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_leave_the_base_url_are_refused() {
    let fake = FakeGitlab::start().await;
    let g = Gatehouse::start(Options::lax()).await;
    let (id, token) = connected(&g, &fake, &["api"]).await;
    let before = fake.api(|d| d.requests.len());
    for path in [
        "../../v1/health",
        "api/v4/../../../admin",
        "api/%2e%2e/%2E%2E/admin",
        "api/v4/projects/a%2F..%2F..%2Fadmin",
        "//evil.example/api",
        "/evil.example/api",
        "http://evil.example/api",
        "https:%2F%2Fevil.example/api",
        "api\\..\\admin",
    ] {
        let status = raw_get(&g.base, &format!("/api/v1/integrations/{id}/proxy/{path}"));
        assert_eq!(status, 400, "{path} was not refused");
    }
    assert_eq!(fake.api(|d| d.requests.len()), before, "a refused path reached the provider");
    let status = raw_get(&g.base, &format!("/api/v1/integrations/{id}/proxy/api/v4/projects"));
    assert_eq!(status, 200);
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_the_proxy_itself_are_problems() {
    let fake = FakeGitlab::start().await;
    let g = Gatehouse::start(Options::lax()).await;
    let (id, token) = connected(&g, &fake, &["api"]).await;
    let r = g.call("GET", &proxy(&id, "api/v4/projects"), None, None).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = g.call("GET", &proxy(&id, "api/v4/projects"), None, Some("wrong-key")).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let unknown = "0b7e3e2c-5d2a-4f7e-9a55-3f1f6d2b8c11";
    let r = g.get_proxied(&proxy(unknown, "api/v4/projects")).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = g.get_proxied(&proxy("not-a-uuid", "api/v4/projects")).await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    let r = g.call("OPTIONS", &proxy(&id, "api/v4/projects"), None, Some(API_KEY)).await;
    assert_eq!(r.status, 405);
    // Bodies over the proxy's cap are refused before anything is sent.
    let big = "x".repeat(1024 * 1024 + 1);
    let r = g
        .send(
            g.client()
                .post(format!("{}{}", g.base, proxy(&id, "api/v4/projects/1/issues")))
                .bearer_auth(API_KEY)
                .body(big),
        )
        .await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
    assert!(fake.api(|d| d.requests.iter().all(|s| s.method != "POST")));
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_pass_through_or_are_waited_out_on_request() {
    let fake = FakeGitlab::start().await;
    let g = Gatehouse::start(Options::lax()).await;
    let (id, token) = connected(&g, &fake, &["api"]).await;
    fake.api(|d| d.fail_next = vec![429]);
    let r = g.get_proxied(&proxy(&id, "api/v4/projects")).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.headers["ratelimit-remaining"], "0");
    assert_eq!(r.headers["ratelimit-reset"], "1893456000");

    fake.api(|d| d.fail_next = vec![429, 503]);
    let started = std::time::Instant::now();
    let r = g
        .send_proxied(
            g.client()
                .get(format!("{}{}", g.base, proxy(&id, "api/v4/projects")))
                .bearer_auth(API_KEY)
                .header("gatehouse-retries", "2"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "Retry-After: 1 was not honoured");
    let r = g
        .send(
            g.client()
                .get(format!("{}{}", g.base, proxy(&id, "api/v4/projects")))
                .bearer_auth(API_KEY)
                .header("gatehouse-retries", "9"),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_without_a_credential_presentation_cannot_be_proxied() {
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("lin", false), Kind::OAuth, &["api"]);
    let g = Gatehouse::start(Options::lax().plugin(gatehouse_test_programs::TEST_V0_2_WASM)).await;
    let creds = json!({"token": token, "base_url": fake.url});
    let c = g.post("/api/v1/integrations", json!({"provider": "legacy-v2", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let r = g.get_proxied(&proxy(c.body["id"].as_str().unwrap(), "v1/me")).await;
    assert_eq!((r.status, r.code()), (409, "proxy_unsupported"));
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_connection_is_refreshed_when_due_and_after_a_401() {
    let fake = FakeGitlab::start().await;
    let g = Gatehouse::start(Options::lax().arg("--refresh-interval").arg("0s")).await;
    crate::oauth::setup(&g, &fake).await;
    let jane = fake.add_user("jane", false);
    fake.sign_in(Some(jane));
    fake.api(|d| d.add_project(1, "acme/api", &[jane], &[]));
    let id = crate::oauth::connect_through_oauth(&g, &fake).await;
    let refreshes = || fake.hits("/oauth/token");
    let after_connect = refreshes();
    // Connecting counted the token's projects (what it reaches): only the
    // proxied requests below are counted.
    let counted = fake.hits("/api/v4/projects");

    // The provider revokes the access token early: one 401, one refresh,
    // one retry, and the caller sees only the answer.
    for t in fake.all_tokens().iter().filter(|t| t.starts_with("gloas-")) {
        fake.set_state(t, TokenState::Revoked);
    }
    let r = g.get_proxied(&proxy(&id, "api/v4/projects")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(refreshes(), after_connect + 1);
    assert_eq!(fake.hits("/api/v4/projects") - counted, 2, "one refused request, one retried");
    assert!(fake.api(|d| d.requests.iter().all(|s| s.auth_header == "authorization")));

    // A token about to expire is refreshed before it is used.
    fake.set_token_lifetime(60);
    let r = g.post(&format!("/api/v1/integrations/{id}/refresh"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let before = refreshes();
    let r = g.get_proxied(&proxy(&id, "api/v4/projects")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(refreshes(), before + 1, "the due token was refreshed before use");
    assert_eq!(fake.hits("/api/v4/projects") - counted, 3, "and the request went out once");

    // Refresh refused: the provider's 401 is passed on, the integration is expired.
    fake.revoke_refresh_tokens();
    for t in fake.all_tokens().iter().filter(|t| t.starts_with("gloas-")) {
        fake.set_state(t, TokenState::Revoked);
    }
    let r = g.get_proxied(&proxy(&id, "api/v4/projects")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(g.get(&format!("/api/v1/integrations/{id}")).await.body["status"], "expired");
    g.finish(&fake.all_tokens());
}
