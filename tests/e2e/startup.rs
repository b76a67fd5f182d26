//! What `serve` takes at start: the address it listens on (bound once, so
//! port 0 means one port throughout) and OAuth applications from the
//! environment, a file or the command line, with a warning where the
//! client secrets are exposed.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{API_KEY, Gatehouse, Options},
};

/// The socket is bound first, so clients may connect while connectors are
/// still being compiled; a SIGTERM then must still be a graceful stop.
#[test]
fn a_sigterm_while_starting_is_a_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--no-component-cache", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--plugins-dir")
        .arg(dir.path().join("plugins"))
        .env("GATEHOUSE_API_KEY", API_KEY)
        .env_remove("GATEHOUSE_MASTER_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none() && Instant::now() < deadline, "never bound");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A client waits in the backlog, as a health check would.
    let _waiting = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "a SIGTERM during start ended gatehouse with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_zero_is_one_port_throughout() {
    let fake = FakeGitlab::start().await;
    let g = Gatehouse::start(Options::lax().any_port()).await;
    assert_eq!(g.get("/api/v1/health").await.status, 200);
    // The default redirect URI names the port really listened on.
    let app = json!({"provider": "gitlab-oauth", "base_url": fake.url, "client_id": "app", "client_secret": "s3cr3t-value-0123456789"});
    let r = g.post("/api/v1/oauth-apps", app).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["redirect_uri"], format!("{}/api/v1/oauth/gitlab-oauth/callback", g.base));
    g.finish(&["s3cr3t-value-0123456789".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_apps_come_from_the_environment_a_file_or_the_command_line() {
    let fake = FakeGitlab::start().await;
    let secret = "gloas-configured-secret-8f14e45fceea167a".to_string();
    let apps =
        json!([{"provider": "gitlab-oauth", "base_url": fake.url, "client_id": "configured", "client_secret": secret}])
            .to_string();
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("apps.json");
    let shared = dir.path().join("shared.json");
    for (file, mode) in [(&private, 0o600), (&shared, 0o644)] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(file, &apps).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let cases = [
        (Options::lax().env("GATEHOUSE_OAUTH_APPS", &apps), None),
        (Options::lax().arg("--oauth-apps-file").arg(private.to_str().unwrap()), None),
        (Options::lax().arg("--oauth-apps-file").arg(shared.to_str().unwrap()), Some("can be read by other users")),
        (Options::lax().arg("--oauth-apps").arg(&apps), Some("--oauth-apps on the command line")),
    ];
    for (options, warning) in cases {
        let g = Gatehouse::start(options).await;
        let listed = g.get("/api/v1/oauth-apps").await;
        assert_eq!(listed.body["oauth_apps"][0]["client_id"], "configured", "{}", listed.body);
        let logs = g.logs();
        for expected in ["can be read by other users", "--oauth-apps on the command line"] {
            assert_eq!(logs.contains(expected), warning == Some(expected), "{expected:?} in:\n{logs}");
        }
        g.finish(std::slice::from_ref(&secret));
    }
}
