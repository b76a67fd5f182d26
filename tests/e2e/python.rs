//! A connector written in Python from `wit/` alone (plugins/gitea-py),
//! built with componentize-py, loaded from --plugins-dir and used end to end.

use std::{path::Path, process::Command};

use serde_json::json;

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{Gatehouse, Options},
};

/// Builds the component; a missing componentize-py fails (the test is
/// compiled as ignored when host/build.rs did not find it, outside CI).
fn build_python_connector(out: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/gitea-py");
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let status = Command::new("componentize-py")
        .arg("-d")
        .arg(&wit)
        .args(["-w", "full", "componentize", "app", "-p"])
        .arg(&source)
        .arg("-o")
        .arg(out)
        .current_dir(out.parent().unwrap())
        .status()
        .expect("componentize-py runs: run tests/setup.sh (pip install componentize-py==0.25.1)");
    assert!(status.success(), "componentize-py failed with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_componentize_py), ignore = "needs componentize-py: run tests/setup.sh")]
async fn a_python_connector_loads_and_verifies() {
    let build = tempfile::tempdir().unwrap();
    let wasm = build.path().join("gitea_py.wasm");
    build_python_connector(&wasm);
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("gitte", false), Kind::Pat, &[]);
    let g = Gatehouse::start(Options::lax().plugin(wasm.to_str().unwrap()).arg("--sync-poll").arg("200ms")).await;

    let provider = g.get("/api/v1/providers/gitea-token").await;
    assert_eq!(provider.status, 200, "{}", g.logs());
    assert_eq!(provider.body["fields"][0]["kind"], "secret");

    let creds = json!({"token": token, "base_url": fake.url});
    let v = g.post("/api/v1/providers/gitea-token/verify", json!({"credentials": creds})).await;
    assert_eq!((v.status, &v.body["valid"]), (200, &json!(true)), "{}", v.body);
    assert_eq!(v.body["account"]["username"], "gitte");

    let c = g.post("/api/v1/integrations", json!({"provider": "gitea-token", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    // Its sync, written in Python too: the repositories, full, mirrored.
    let id = c.body["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = g.get(&format!("/api/v1/integrations/{id}/syncs")).await;
        let repos = &s.body["syncs"][0];
        assert_eq!(repos["model"], "repos", "{}", s.body);
        if repos["state"] == "idle" && repos["records"] == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the repos sync did not complete: {}", s.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let feed = g.get(&format!("/api/v1/integrations/{id}/records?model=repos")).await;
    let names: Vec<&str> =
        feed.body["records"].as_array().unwrap().iter().map(|r| r["data"]["full_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["gitte/infra", "gitte/website", "gitte/notes"]);
    let bad = json!({"credentials": {"token": "not-a-gitea-token-000000", "base_url": fake.url}});
    let v = g.post("/api/v1/providers/gitea-token/verify", bad).await;
    assert_eq!(v.body["error"]["code"], "invalid_token", "{}", v.body);
    g.finish(&fake.all_tokens());
}
