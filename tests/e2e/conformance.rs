//! The OpenAPI document tells the truth: schemathesis (`--checks all`)
//! finds no failure against the real server, and a client generated from
//! the served document by openapi-python-client walks the API with every
//! answer parsed into its models. Both tools are pinned in
//! tests/api/requirements.txt and installed by tests/setup.sh.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{API_KEY, Gatehouse, Options},
    netns,
};

fn api_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/api")
}

fn tool(name: &str) -> PathBuf {
    let path = api_dir().join(".venv/bin").join(name);
    assert!(path.is_file(), "{} is missing: run tests/setup.sh", path.display());
    path
}

/// Runs `cmd` to its end within `budget`; returns whether it succeeded and
/// what it printed.
fn run(mut cmd: Command, budget: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = std::fs::File::create(&out).unwrap();
    let mut child =
        cmd.stdin(Stdio::null()).stdout(file.try_clone().unwrap()).stderr(file).spawn().expect("the tool starts");
    let deadline = Instant::now() + budget;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    match status {
        Some(status) => (status.success(), said),
        None => (false, format!("killed after {budget:?}:\n{said}")),
    }
}

/// Generated requests carry generated URLs (base URLs, webhook targets):
/// the run is inside a loopback-only network namespace, so none of them
/// can reach a real network whatever the server does with them.
#[test]
#[cfg_attr(
    not(all(gatehouse_api_tools, gatehouse_netns)),
    ignore = "needs schemathesis (tests/setup.sh) and user and network namespaces"
)]
fn schemathesis_finds_no_conformance_failure() {
    netns::isolated("conformance::schemathesis_finds_no_conformance_failure", &[], || async {
        let fake = FakeGitlab::start().await;
        let g = Gatehouse::start(Options::lax()).await;
        // One object of each kind, so that paths with an id reach a handler.
        let token = fake.pat(fake.add_user("jane", false));
        let c = g
            .post(
                "/api/v1/integrations",
                json!({"provider": "gitlab-pat", "credentials": {"token": token, "base_url": fake.url}}),
            )
            .await;
        assert_eq!(c.status, 201, "{}", c.body);
        let app = g
            .post(
                "/api/v1/oauth-apps",
                json!({"provider": "gitlab-oauth", "base_url": fake.url, "client_id": "app", "client_secret": "app-secret-0123456789"}),
            )
            .await;
        assert_eq!(app.status, 201, "{}", app.body);
        let hook = g.post("/api/v1/webhooks", json!({"url": format!("{}/hook", fake.url)})).await;
        assert_eq!(hook.status, 201, "{}", hook.body);

        // Schemathesis keeps a cache in its working directory: not in the tree.
        let work = tempfile::tempdir().unwrap();
        let mut st = Command::new(tool("st"));
        st.arg("--config-file")
            .arg(api_dir().join("schemathesis.toml"))
            .arg("run")
            .arg(format!("{}/api/openapi.json", g.base))
            .args(["--checks", "all", "--max-examples", "25", "--workers", "1", "--no-color", "--seed", "1"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {API_KEY}"))
            .env("INTEGRATION_ID", c.body["id"].as_str().unwrap())
            .env("OAUTH_APP_ID", app.body["id"].as_str().unwrap())
            .env("WEBHOOK_ID", hook.body["id"].as_str().unwrap())
            .current_dir(work.path());
        let (ok, said) = run(st, Duration::from_secs(600));
        assert!(ok, "schemathesis found failures:\n{said}");
        assert!(said.contains("Tested: "), "schemathesis did not test:\n{said}");
        drop(g);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_api_tools), ignore = "needs openapi-python-client (tests/setup.sh)")]
async fn a_client_generated_from_the_document_walks_the_api() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("walker", false));
    let g = Gatehouse::start(Options::lax()).await;
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("openapi.json");
    let served = reqwest::get(format!("{}/api/openapi.json", g.base)).await.unwrap().bytes().await.unwrap();
    std::fs::write(&document, &served).unwrap();

    let mut generate = Command::new(tool("openapi-python-client"));
    generate
        .arg("generate")
        .arg("--path")
        .arg(&document)
        .arg("--config")
        .arg(api_dir().join("client.yaml"))
        .args(["--meta", "none", "--fail-on-warning", "--output-path"])
        .arg(dir.path().join("gatehouse_client"));
    let (ok, said) = run(generate, Duration::from_secs(120));
    assert!(ok, "openapi-python-client failed:\n{said}");

    let mut walk = Command::new(tool("python"));
    walk.arg(api_dir().join("walk.py"))
        .env("PYTHONPATH", dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("GATEHOUSE_URL", &g.base)
        .env("GATEHOUSE_API_KEY", API_KEY)
        .env("GITLAB_URL", &fake.url)
        .env("GITLAB_TOKEN", &token);
    let (ok, said) = run(walk, Duration::from_secs(120));
    assert!(ok, "the generated client's walk failed:\n{said}");
    assert!(said.contains("walked:"), "{said}");
}
