//! Connect sessions: connections of end users, a session that sees and
//! manages only its end user's connections (every route of the OpenAPI
//! document tried with another user's ids), expired and revoked sessions,
//! OAuth started from a session, the page's framing headers, and the
//! connection events the consuming system receives.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{Gatehouse, Options, Reply, connect_pat},
};

/// Creates a connect session; returns (id, token, url).
async fn session(g: &Gatehouse, body: Value) -> (String, String, String) {
    let r = g.post("/api/v1/connect-sessions", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let text = |k: &str| r.body[k].as_str().unwrap().to_string();
    (text("id"), text("token"), text("url"))
}

async fn as_session(g: &Gatehouse, token: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
    g.call(method, path, body, Some(token)).await
}

/// What a receiver of the consuming system got: (headers, body) of each POST.
type Received = Arc<Mutex<Vec<(BTreeMap<String, String>, Value)>>>;

async fn receiver() -> (String, Received) {
    use poem::{
        Request, Server,
        listener::{Acceptor, TcpAcceptor},
    };
    let got: Received = Arc::default();
    let shared = got.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let app = poem::endpoint::make(move |mut req: Request| {
        let got = shared.clone();
        async move {
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            let body = req.take_body().into_string().await.unwrap_or_default();
            got.lock().unwrap().push((headers, serde_json::from_str(&body).unwrap_or(Value::Null)));
            poem::Response::builder().status(poem::http::StatusCode::NO_CONTENT).finish()
        }
    });
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (format!("http://127.0.0.1:{port}/hooks"), got)
}

/// Waits for an event of `kind` whose data matches `pred`.
async fn event(got: &Received, kind: &str, pred: impl Fn(&Value) -> bool) -> (BTreeMap<String, String>, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = got.lock().unwrap().iter().find(|(_, b)| b["type"] == kind && pred(&b["data"])).cloned() {
            return found;
        }
        assert!(Instant::now() < deadline, "no {kind} event: {:?}", got.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fills a path template of the OpenAPI document with `ids`.
fn fill(template: &str, ids: &BTreeMap<&str, String>) -> String {
    let mut path = template.to_string();
    for (name, value) in ids {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    assert!(!path.contains('{'), "no value for a parameter of {template}");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_manages_only_its_end_users_connections_on_every_route() {
    let fake = FakeGitlab::start().await;
    let alice = fake.add_user("alice", false);
    let bob = fake.add_user("bob", false);
    let g = Gatehouse::start(Options::lax().arg("--webhook-retry").arg("1s")).await;
    crate::oauth::setup(&g, &fake).await;
    let (hook_url, got) = receiver().await;
    let hook = g.post("/api/v1/webhooks", json!({"url": hook_url})).await;
    assert_eq!(hook.status, 201);

    let (a_id, a_token, a_url) = session(
        &g,
        json!({"end_user_id": "user-a", "end_user_name": "Alice", "end_user_email": "alice@example.com", "organization": "acme"}),
    )
    .await;
    let (b_id, b_token, _) = session(&g, json!({"end_user_id": "user-b"})).await;
    assert!(a_token.starts_with("gcs_") && a_token.len() >= 40, "{a_token}");
    assert!(a_url.ends_with(&format!("/settings#session={a_token}")), "the token travels in the fragment: {a_url}");

    // Each end user connects their own account, with no API key.
    let r =
        as_session(&g, &a_token, "POST", "/api/v1/integrations", Some(connect_pat(&fake.pat(alice), &fake.url))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["end_user"], json!({"id": "user-a", "name": "Alice", "email": "alice@example.com"}));
    assert_eq!(r.body["organization"], "acme");
    let id_a = r.body["id"].as_str().unwrap().to_string();
    let b_pat = fake.pat(bob);
    let r = as_session(&g, &b_token, "POST", "/api/v1/integrations", Some(connect_pat(&b_pat, &fake.url))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id_b = r.body["id"].as_str().unwrap().to_string();
    let b_before = g.get(&format!("/api/v1/integrations/{id_b}")).await.body;

    // The consuming system hears of both.
    let (headers, _) = event(&got, "connection.created", |d| d["integration_id"] == id_a.as_str()).await;
    assert!(headers["webhook-signature"].starts_with("v1,"), "signed as the other webhooks");
    let (_, created) = event(&got, "connection.created", |d| d["integration_id"] == id_b.as_str()).await;
    assert_eq!(created["data"]["end_user"]["id"], "user-b");
    assert_eq!(created["data"]["provider"], "gitlab-pat");
    assert_eq!(created["data"]["account"]["username"], "bob");

    // A session lists its own; the API key filters by end user and organization.
    let mine = as_session(&g, &a_token, "GET", "/api/v1/integrations", None).await;
    let ids: Vec<&str> =
        mine.body["integrations"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id_a.as_str()]);
    let r = as_session(&g, &a_token, "GET", "/api/v1/integrations?end_user_id=user-b", None).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = g.get("/api/v1/integrations?end_user_id=user-b").await;
    assert_eq!(r.body["integrations"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["integrations"][0]["id"], id_b.as_str());
    let r = g.get("/api/v1/integrations?organization=acme").await;
    assert_eq!(r.body["integrations"][0]["id"], id_a.as_str());
    assert_eq!(r.body["integrations"].as_array().unwrap().len(), 1);
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"].as_array().unwrap().len(), 2);

    // A session cannot connect for someone else, nor take over another
    // user's account by connecting it.
    let mut body = connect_pat(&fake.pat(alice), &fake.url);
    body["end_user_id"] = json!("user-b");
    let r = as_session(&g, &a_token, "POST", "/api/v1/integrations", Some(body)).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r =
        as_session(&g, &a_token, "POST", "/api/v1/integrations", Some(connect_pat(&fake.pat(bob), &fake.url))).await;
    assert_eq!((r.status, r.code()), (409, "account_in_use"), "{}", r.body);

    // Every route of the OpenAPI document, with A's session and B's ids.
    let spec = g.call("GET", "/api/openapi.json", None, None).await.body;
    let webhook_id = hook.body["id"].as_str().unwrap().to_string();
    let app_id = g.get("/api/v1/oauth-apps").await.body["oauth_apps"][0]["id"].as_str().unwrap().to_string();
    let mut ids = BTreeMap::new();
    ids.insert("provider_id", "gitlab-pat".to_string());
    ids.insert("model", "projects".to_string());
    ids.insert("name", "list-projects".to_string());
    let missing = uuid::Uuid::new_v4().to_string();
    // What a session may do, and how it must be answered with B's ids;
    // every other route must answer 403 forbidden.
    let page_routes: BTreeMap<(&str, &str), u16> = [
        (("get", "/api/v1/providers"), 200),
        (("get", "/api/v1/providers/{provider_id}"), 200),
        (("post", "/api/v1/providers/{provider_id}/verify"), 200),
        (("get", "/api/v1/integrations"), 200),
        (("post", "/api/v1/integrations"), 409),
        (("get", "/api/v1/integrations/{id}"), 404),
        (("delete", "/api/v1/integrations/{id}"), 404),
        (("post", "/api/v1/integrations/{id}/verify"), 404),
        (("put", "/api/v1/integrations/{id}/credentials"), 404),
        (("post", "/api/v1/integrations/{id}/rotate"), 404),
        (("put", "/api/v1/integrations/{id}/scope"), 404),
        (("get", "/api/v1/oauth/{provider_id}/authorize"), 302),
        // No key at all: liveness, readiness, and the callback needs its state.
        (("get", "/api/v1/health"), 200),
        (("get", "/api/v1/ready"), 200),
        (("get", "/api/v1/oauth/{provider_id}/callback"), 400),
    ]
    .into();
    let mut tried = 0;
    for (template, operations) in spec["paths"].as_object().unwrap() {
        for (method, _) in operations.as_object().unwrap() {
            let id = if template.starts_with("/api/v1/integrations/") {
                id_b.clone()
            } else if template.starts_with("/api/v1/connect-sessions/") {
                b_id.clone()
            } else if template.starts_with("/api/v1/webhooks/") {
                webhook_id.clone()
            } else if template.starts_with("/api/v1/oauth-apps/") {
                app_id.clone()
            } else {
                missing.clone()
            };
            ids.insert("id", id);
            let path = fill(template, &ids);
            let body = match (method.as_str(), template.as_str()) {
                ("post", "/api/v1/integrations") => Some(connect_pat(&b_pat, &fake.url)),
                ("post", "/api/v1/providers/{provider_id}/verify") => {
                    Some(json!({"credentials": {"token": fake.pat(alice), "base_url": fake.url}}))
                }
                ("put", "/api/v1/integrations/{id}/credentials") => {
                    Some(json!({"credentials": {"token": fake.pat(alice)}}))
                }
                ("put", "/api/v1/integrations/{id}/scope") => Some(json!({"scope": null})),
                ("post" | "put" | "patch", _) => Some(json!({})),
                _ => None,
            };
            let path = if template.ends_with("/authorize") { format!("{path}?redirect=false") } else { path };
            let r = as_session(&g, &a_token, &method.to_uppercase(), &path, body).await;
            let expected = page_routes.get(&(method.as_str(), template.as_str())).copied();
            let expected_status = match (expected, template.ends_with("/authorize")) {
                (Some(302), true) => 400, // gitlab-pat has no OAuth: answered, not refused
                (Some(s), _) => s,
                (None, _) => 403,
            };
            assert_eq!(
                r.status,
                expected_status,
                "{} {path} with another user's session: {}",
                method.to_uppercase(),
                r.body
            );
            if expected.is_none() {
                assert_eq!(r.code(), "forbidden", "{method} {path}");
            }
            if expected == Some(404) {
                // Exactly as a missing integration: ids cannot be probed.
                let other = path.replace(&id_b, &missing);
                let absent = as_session(&g, &a_token, &method.to_uppercase(), &other, None).await;
                let body_for =
                    |r: &Reply| r.body["detail"].as_str().unwrap().replace(&id_b, "ID").replace(&missing, "ID");
                if absent.status == 404 {
                    assert_eq!(body_for(&r), body_for(&absent), "{method} {path}");
                }
            }
            tried += 1;
        }
    }
    assert!(tried >= 34, "only {tried} routes tried");
    // The proxy (not in the document) and the settings page's own routes.
    let r = g
        .send_proxied(
            g.client().get(format!("{}/api/v1/integrations/{id_b}/proxy/api/v4/user", g.base)).bearer_auth(&a_token),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // B's connection is untouched.
    let b_after = g.get(&format!("/api/v1/integrations/{id_b}")).await.body;
    assert_eq!(b_before, b_after);
    // The session's providers are limited when it asks.
    let (_, limited, _) = session(&g, json!({"end_user_id": "user-a", "providers": ["gitlab-oauth"]})).await;
    let r = as_session(&g, &limited, "GET", "/api/v1/providers", None).await;
    let listed: Vec<&str> = r.body["providers"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ["gitlab-oauth"]);
    let r =
        as_session(&g, &limited, "POST", "/api/v1/integrations", Some(connect_pat(&fake.pat(alice), &fake.url))).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));

    // A failed connect from a session is an event; so is a disconnect.
    let r = as_session(
        &g,
        &a_token,
        "POST",
        "/api/v1/integrations",
        Some(connect_pat("glpat-not-a-real-token-000000", &fake.url)),
    )
    .await;
    assert_eq!(r.status, 422);
    let (_, failed) =
        event(&got, "connection.failed", |d| d["end_user"]["id"] == "user-a" && d["error"]["code"] == "invalid_token")
            .await;
    assert_eq!(failed["data"]["error"]["code"], "invalid_token");
    let r = as_session(&g, &a_token, "DELETE", &format!("/api/v1/integrations/{id_a}"), None).await;
    assert_eq!(r.status, 204);
    let (_, deleted) = event(&got, "connection.deleted", |d| d["integration_id"] == id_a.as_str()).await;
    assert_eq!(deleted["data"]["organization"], "acme");
    let _ = a_id;

    let mut secrets = fake.all_tokens();
    secrets.push("glpat-not-a-real-token-000000".into());
    // Session tokens are in the create answers only: never in the log or the data dir.
    g.finish_scan(&secrets, &[a_token, b_token, limited]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_sessions_are_refused_with_their_own_codes() {
    let g = Gatehouse::start(Options::lax()).await;
    let (id, token, _) = session(&g, json!({"end_user_id": "u1"})).await;
    assert_eq!(as_session(&g, &token, "GET", "/api/v1/integrations", None).await.status, 200);
    let shown = g.get(&format!("/api/v1/connect-sessions/{id}")).await;
    assert_eq!(shown.body["state"], "active");
    assert!(shown.body.get("token").is_none(), "the token is shown once");
    assert_eq!(g.delete(&format!("/api/v1/connect-sessions/{id}")).await.status, 204);
    let r = as_session(&g, &token, "GET", "/api/v1/integrations", None).await;
    assert_eq!((r.status, r.code()), (401, "session_revoked"));
    assert_eq!(g.get(&format!("/api/v1/connect-sessions/{id}")).await.body["state"], "revoked");

    let (_, short, _) = session(&g, json!({"end_user_id": "u1", "expires_in_seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = as_session(&g, &short, "GET", "/api/v1/providers", None).await;
    assert_eq!((r.status, r.code()), (401, "session_expired"));
    assert!(r.body["detail"].as_str().unwrap().contains("new link"), "{}", r.body);

    let r = as_session(&g, "gcs_not-a-session-token-0000000000000000", "GET", "/api/v1/integrations", None).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    // A session cannot make sessions, and bad input is refused.
    let (_, live, _) = session(&g, json!({"end_user_id": "u1"})).await;
    let r = as_session(&g, &live, "POST", "/api/v1/connect-sessions", Some(json!({"end_user_id": "u2"}))).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    for bad in [
        json!({"end_user_id": ""}),
        json!({"end_user_id": "u", "expires_in_seconds": 90_000}),
        json!({"end_user_id": "u", "end_user_email": "not-an-email"}),
        json!({"end_user_id": "u", "providers": []}),
    ] {
        let r = g.post("/api/v1/connect-sessions", bad.clone()).await;
        assert_eq!((r.status, r.code()), (400, "validation_error"), "{bad}: {}", r.body);
    }
    let r = g.post("/api/v1/connect-sessions", json!({"end_user_id": "u", "providers": ["nope"]})).await;
    assert_eq!(r.status, 404);
    let r = g.delete(&format!("/api/v1/connect-sessions/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(r.status, 404);
    let logs = g.logs();
    for t in [&token, &short, &live] {
        assert!(!logs.contains(t.as_str()), "a session token is in the log");
    }
    g.finish_scan(&[], &[token, short, live]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_from_a_session_returns_to_its_page_and_connects_its_end_user() {
    let fake = FakeGitlab::start().await;
    let carol = fake.add_user("carol", false);
    let g = Gatehouse::start(Options::lax()).await;
    crate::oauth::setup(&g, &fake).await;
    let (hook_url, got) = receiver().await;
    assert_eq!(g.post("/api/v1/webhooks", json!({"url": hook_url})).await.status, 201);
    let (_, token, _) = session(&g, json!({"end_user_id": "user-c", "organization": "acme"})).await;
    let browser =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let location = |r: &reqwest::Response| r.headers()["location"].to_str().unwrap().to_string();

    // Approved: back on the session's page, connected for user-c.
    fake.sign_in(Some(carol));
    let authorize = format!("{}/api/v1/oauth/gitlab-oauth/authorize?base_url={}", g.base, fake.url);
    let r = browser.get(&authorize).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let r = browser.get(location(&r)).send().await.unwrap();
    let callback = location(&r);
    let path = &callback[callback.find("/api/v1/").unwrap()..];
    let r = g.send(browser.get(format!("{}{path}", g.base))).await;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = r.headers["location"].to_str().unwrap();
    let id = back.strip_prefix("/settings?connected=").expect("back on the session's page").to_string();
    let it = as_session(&g, &token, "GET", &format!("/api/v1/integrations/{id}"), None).await;
    assert_eq!(it.status, 200);
    assert_eq!(it.body["end_user"]["id"], "user-c");
    assert_eq!(it.body["organization"], "acme");
    event(&got, "connection.created", |d| d["integration_id"] == id.as_str()).await;

    // Declined: back on the page with the failure, and an event.
    fake.sign_in(None);
    let r = browser.get(&authorize).bearer_auth(&token).send().await.unwrap();
    let r = browser.get(location(&r)).send().await.unwrap();
    let callback = location(&r);
    let path = &callback[callback.find("/api/v1/").unwrap()..];
    let r = g.send(browser.get(format!("{}{path}", g.base))).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.headers["location"], "/settings?failed=oauth_denied");
    let (_, failed) = event(&got, "connection.failed", |d| d["end_user"]["id"] == "user-c").await;
    assert_eq!(failed["data"]["provider"], "gitlab-oauth");
    g.finish_scan(&fake.all_tokens(), &[fake.oauth_states(), vec![token]].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_can_be_framed_only_by_the_listed_origins() {
    let g = Gatehouse::start(Options::lax()).await;
    for path in ["/", "/settings"] {
        let r = g.client().get(format!("{}{path}", g.base)).send().await.unwrap();
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    drop(g);
    let g = Gatehouse::start(
        Options::lax()
            .arg("--frame-ancestors")
            .arg("https://app.example.com")
            .arg("--frame-ancestors")
            .arg("http://127.0.0.1:9"),
    )
    .await;
    let r = g.client().get(format!("{}/settings", g.base)).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors https://app.example.com http://127.0.0.1:9"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(
        html.contains(r#"<meta name="gatehouse-parent-origins" content="https://app.example.com http://127.0.0.1:9">"#)
    );
    drop(g);
    // Not an origin: refused at start with a sentence.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--frame-ancestors", "https://app.example.com/path"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not an origin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
