//! The settings page in a real browser: tests/browser/settings.mjs drives
//! Debian's headless Chromium with playwright-core against the real binary
//! and the fake GitLab. `tests/setup.sh` installs both (apt chromium, npm
//! ci); without them the test is compiled as ignored (host/build.rs), except
//! under `CI`, where it runs and fails.

use std::{path::Path, process::Command};

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{API_KEY, Gatehouse, Options},
};

const HOSTILE: &str = gatehouse_test_programs::TEST_HOSTILE_WASM;

/// The Chromium host/build.rs found (or `chromium`, to fail under CI).
const CHROMIUM: &str = env!("GATEHOUSE_TEST_CHROMIUM");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_browser), ignore = "needs Chromium, node and `npm ci` in tests/browser: run tests/setup.sh")]
async fn settings_page_in_a_real_browser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run tests/setup.sh (npm ci in tests/browser)"
    );
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    // What jane's tokens reach, and a group access token's bot user.
    let bot = fake.add_user("group_9_bot_1a2b3c", true);
    fake.api(|d| {
        d.add_group(9, "acme", &[jane, bot]);
        d.add_group(20, "tools", &[jane]);
        d.add_project(31, "acme/api", &[jane], &[]);
    });
    let tokens = serde_json::json!({
        "group": fake.pat(bot),
        "pat": fake.pat(jane),
        "pat2": fake.pat(jane),
        "oauth": fake.token(jane, Kind::OAuth, &["api"]),
        "read_user": fake.token(jane, Kind::Pat, &["read_user"]),
        "bad": "glpat-not-a-real-token-000000",
    });
    let g = Gatehouse::start(Options::lax().plugin(HOSTILE)).await;
    // The OAuth application, at the fake and in Gatehouse; jane approves.
    let secret = "gloas-browser-client-secret-0123456789abcdef";
    fake.register_app("browser-app", secret, &format!("{}/api/v1/oauth/gitlab-oauth/callback", g.base));
    fake.sign_in(Some(jane));
    let app = serde_json::json!({"provider": "gitlab-oauth", "base_url": fake.url, "client_id": "browser-app", "client_secret": secret});
    assert_eq!(g.post("/api/v1/oauth-apps", app).await.status, 201);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let traffic = tempfile::NamedTempFile::new().unwrap();
    let out = tokio::task::spawn_blocking({
        let (base, fake_url, tokens, shot) =
            (g.base.clone(), fake.url.clone(), tokens.to_string(), shots.join("settings.png"));
        let traffic = traffic.path().to_path_buf();
        move || {
            Command::new("node")
                .arg("settings.mjs")
                .env("CHROMIUM", CHROMIUM)
                .current_dir(&dir)
                .env("GATEHOUSE_URL", base)
                .env("FAKE_URL", fake_url)
                .env("API_KEY", API_KEY)
                .env("TOKENS", tokens)
                .env("SCREENSHOT", shot)
                .env("TRAFFIC", traffic)
                .output()
                .expect("node runs: run tests/setup.sh")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("browser test passed"));
    let mut secrets = fake.all_tokens();
    secrets.push("glpat-not-a-real-token-000000".into());
    secrets.push(secret.into());
    let seen = std::fs::read_to_string(traffic.path()).unwrap();
    let mut received = secrets.clone();
    received.push(API_KEY.into());
    assert!(seen.contains("integrations"), "the browser's traffic was recorded");
    crate::harness::scan_text("what the browser received", &seen, &received);
    g.finish_scan(&secrets, &fake.oauth_states());
}

/// A page of the consuming system that frames `src` (its query) and
/// records the messages it receives, served on its own loopback port.
/// Returns the port: `http://127.0.0.1:<port>` and `http://localhost:<port>`
/// are two different origins of it.
async fn parent_site() -> u16 {
    use poem::{
        Request, Server,
        listener::{Acceptor, TcpAcceptor},
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let app = poem::endpoint::make(move |req: Request| async move {
        let src: String = url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "src")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let src = src.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
        let html = format!(
            r#"<!doctype html><title>App</title><script>window.events = [];
addEventListener("message", (e) => window.events.push({{ origin: e.origin, data: e.data }}));</script>
<iframe id="gatehouse" src="{src}" width="1000" height="1400"></iframe>"#
        );
        poem::Response::builder().content_type("text/html; charset=utf-8").body(html)
    });
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_browser), ignore = "needs Chromium, node and `npm ci` in tests/browser: run tests/setup.sh")]
async fn a_connect_session_page_in_a_real_browser_framed_and_not() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(dir.join("node_modules/playwright-core").exists(), "playwright-core is missing: run tests/setup.sh");
    let fake = FakeGitlab::start().await;
    let alice = fake.add_user("alice", false);
    let tokens = serde_json::json!({
        "pat": fake.pat(alice),
        "pat2": fake.pat(alice),
        "bad": "glpat-not-a-real-token-000000",
    });
    let parent = parent_site().await;
    let allowed = format!("http://127.0.0.1:{parent}");
    let g = Gatehouse::start(Options::lax().arg("--frame-ancestors").arg(&allowed)).await;
    let secret = "gloas-browser-client-secret-0123456789abcdef";
    fake.register_app("browser-app", secret, &format!("{}/api/v1/oauth/gitlab-oauth/callback", g.base));
    fake.sign_in(Some(alice));
    let app = serde_json::json!({"provider": "gitlab-oauth", "base_url": fake.url, "client_id": "browser-app", "client_secret": secret});
    assert_eq!(g.post("/api/v1/oauth-apps", app).await.status, 201);
    let s = g
        .post("/api/v1/connect-sessions", serde_json::json!({"end_user_id": "user-a", "end_user_name": "Alice"}))
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let (token, url) = (s.body["token"].as_str().unwrap().to_string(), s.body["url"].as_str().unwrap().to_string());
    // Another end user's connection, which the page must never show.
    let bob = fake.add_user("bob", false);
    let mut other = crate::harness::connect_pat(&fake.pat(bob), &fake.url);
    other["end_user_id"] = serde_json::json!("user-b");
    assert_eq!(g.post("/api/v1/integrations", other).await.status, 201);
    let traffic = tempfile::NamedTempFile::new().unwrap();
    let out = tokio::task::spawn_blocking({
        let (base, fake_url, tokens) = (g.base.clone(), fake.url.clone(), tokens.to_string());
        let traffic = traffic.path().to_path_buf();
        let (allowed, denied) = (allowed.clone(), format!("http://localhost:{parent}"));
        move || {
            Command::new("node")
                .arg("session.mjs")
                .env("CHROMIUM", CHROMIUM)
                .current_dir(&dir)
                .env("GATEHOUSE_URL", base)
                .env("FAKE_URL", fake_url)
                .env("SESSION_URL", url)
                .env("ALLOWED_PARENT", allowed)
                .env("DENIED_PARENT", denied)
                .env("TOKENS", tokens)
                .env("TRAFFIC", traffic)
                .output()
                .expect("node runs: run tests/setup.sh")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("session browser test passed"));
    // Everything the page made belongs to user-a.
    let listed = g.get("/api/v1/integrations?end_user_id=user-a").await.body;
    assert!(!listed["integrations"].as_array().unwrap().is_empty(), "{listed}");
    let mut secrets = fake.all_tokens();
    secrets.push("glpat-not-a-real-token-000000".into());
    secrets.push(secret.into());
    let seen = std::fs::read_to_string(traffic.path()).unwrap();
    let mut received = secrets.clone();
    received.push(API_KEY.into());
    crate::harness::scan_text("what the browser received", &seen, &received);
    g.finish_scan(&secrets, &[fake.oauth_states(), vec![token]].concat());
}
