//! Compiled components are cached in <data-dir>/cache; a damaged cache file
//! is recompiled, never trusted.

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{Gatehouse, Options, pat_body},
};

fn cached(g: &Gatehouse) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(g.data_dir().join("cache"))
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_components_are_cached_and_damage_is_survived() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let mut g = Gatehouse::start(Options::lax()).await;
    let files = cached(&g);
    assert_eq!(files.len(), 2, "one compiled file per first-party connector: {files:?}");

    // A restart uses the cached files: put the OAuth connector's compiled
    // code under the PAT connector's name, and the restarted host serves the
    // OAuth connector twice (so only once) and no PAT connector.
    let sha = |id: &str| {
        let id = id.to_string();
        let g = &g;
        async move { g.get(&format!("/api/v1/providers/{id}")).await.body["plugin"]["sha256"].as_str().unwrap().to_string() }
    };
    let named =
        |sha: &str| files.iter().find(|f| f.file_name().unwrap().to_string_lossy().starts_with(sha)).unwrap().clone();
    let (pat_file, oauth_file) = (named(&sha("gitlab-pat").await), named(&sha("gitlab-oauth").await));
    let pat_code = std::fs::read(&pat_file).unwrap();
    // Only while the host is stopped: it maps these files into memory.
    g.stop();
    std::fs::copy(&oauth_file, &pat_file).unwrap();
    g.restart().await;
    let health = g.get("/api/v1/health").await;
    assert_eq!(health.body["plugins"], serde_json::json!(["gitlab-oauth"]), "the cache was not used");
    g.stop();
    std::fs::write(&pat_file, pat_code).unwrap();
    g.restart().await;
    let health = g.get("/api/v1/health").await;
    assert_eq!(health.body["plugins"], serde_json::json!(["gitlab-oauth", "gitlab-pat"]));

    g.stop();
    std::fs::write(&files[0], b"not a compiled component").unwrap();
    g.restart().await;
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &fake.url)).await;
    assert_eq!(r.body["valid"], true);
    let again = cached(&g);
    assert_eq!(again.len(), 2);
    assert!(std::fs::metadata(&again[0]).unwrap().len() > 10_000, "the damaged file was rewritten");
    assert!(g.logs().contains("ignoring unusable compiled component"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse")).arg("serve").arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--no-component-cache"));
    g.finish(&fake.all_tokens());
}
