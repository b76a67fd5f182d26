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
