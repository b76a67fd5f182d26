//! The settings page in a real browser: tests/browser/settings.mjs drives
//! Debian's headless Chromium with playwright-core against the real binary
//! and the fake GitLab. `.ci/run` installs both (apt chromium, npm ci).

use std::{path::Path, process::Command};

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{API_KEY, Gatehouse, Options},
};

const HOSTILE: &str = env!("GATEHOUSE_TEST_HOSTILE_WASM");

fn browser_ready(dir: &Path) -> bool {
    let ready = dir.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists();
    if !ready && std::env::var_os("CI").is_some() {
        panic!("CI needs Chromium and playwright-core: `apt-get install chromium` and `npm ci` in tests/browser");
    }
    if !ready {
        eprintln!("SKIPPED: install Chromium (apt-get install chromium) and run `npm ci` in tests/browser");
    }
    ready
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_page_in_a_real_browser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    if !browser_ready(&dir) {
        return;
    }
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let tokens = serde_json::json!({
        "pat": fake.pat(jane),
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
    let out = tokio::task::spawn_blocking({
        let (base, fake_url, tokens, shot) =
            (g.base.clone(), fake.url.clone(), tokens.to_string(), shots.join("settings.png"));
        move || {
            Command::new("node")
                .arg("settings.mjs")
                .current_dir(&dir)
                .env("GATEHOUSE_URL", base)
                .env("FAKE_URL", fake_url)
                .env("API_KEY", API_KEY)
                .env("TOKENS", tokens)
                .env("SCREENSHOT", shot)
                .output()
                .unwrap()
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
    g.finish(&secrets);
}
