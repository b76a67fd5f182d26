//! Compiled components are cached in <data-dir>/cache, each file carrying
//! a MAC (keyed BLAKE3) keyed from the master key: a file that was tampered with,
//! damaged, moved under another component's name or written under another
//! key is compiled again, never loaded.

use std::os::unix::fs::MetadataExt;

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

fn rebuilt(g: &Gatehouse) -> usize {
    g.logs().matches("compiled component failed authentication").count()
}

async fn verify_works(g: &Gatehouse, token: &str, url: &str) {
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(token, url)).await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_components_are_authenticated_before_they_are_loaded() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let mut g = Gatehouse::start(Options::lax()).await;
    let files = cached(&g);
    assert_eq!(files.len(), 2, "one compiled file per first-party connector: {files:?}");
    let sha = |id: &str| {
        let id = id.to_string();
        let g = &g;
        async move { g.get(&format!("/api/v1/providers/{id}")).await.body["plugin"]["sha256"].as_str().unwrap().to_string() }
    };
    let named =
        |sha: &str| files.iter().find(|f| f.file_name().unwrap().to_string_lossy().starts_with(sha)).unwrap().clone();
    let (pat_file, oauth_file) = (named(&sha("gitlab-pat").await), named(&sha("gitlab-oauth").await));
    // A restart uses the cached files: nothing is compiled or written again.
    let inode = std::fs::metadata(&pat_file).unwrap().ino();
    g.restart().await;
    assert_eq!(std::fs::metadata(&pat_file).unwrap().ino(), inode, "the cached file was used, not rewritten");
    assert_eq!(rebuilt(&g), 0);

    // One byte of the compiled code flipped (only while the host is
    // stopped): refused, compiled again, rewritten, and the host works.
    g.stop();
    let mut code = std::fs::read(&pat_file).unwrap();
    let middle = code.len() / 2;
    code[middle] ^= 0x01;
    std::fs::write(&pat_file, &code).unwrap();
    g.restart().await;
    assert_eq!(rebuilt(&g), 1, "the tampered file was noticed:\n{}", g.logs());
    verify_works(&g, &token, &fake.url).await;
    let again = std::fs::read(&pat_file).unwrap();
    assert_ne!(again, code, "the tampered file was replaced");
    assert_eq!(again.len(), code.len());

    // Another connector's authentic code under this connector's name is
    // refused too: the tag covers which component it was compiled from.
    g.stop();
    std::fs::copy(&oauth_file, &pat_file).unwrap();
    g.restart().await;
    assert_eq!(rebuilt(&g), 2);
    let health = g.get("/api/v1/health").await;
    assert_eq!(health.body["plugins"], serde_json::json!(["gitlab-oauth", "gitlab-pat"]));
    verify_works(&g, &token, &fake.url).await;

    // A file that is not a compiled component at all.
    g.stop();
    std::fs::write(&files[0], b"not a compiled component").unwrap();
    g.restart().await;
    assert_eq!(rebuilt(&g), 3);
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 10_000, "the damaged file was rewritten");

    // Under another master key every entry is foreign, and rebuilt.
    g.stop();
    use base64::Engine;
    std::fs::write(g.key_file(), base64::engine::general_purpose::STANDARD.encode([9u8; 32])).unwrap();
    g.restart().await;
    assert_eq!(rebuilt(&g), 5);
    verify_works(&g, &token, &fake.url).await;
    g.restart().await;
    assert_eq!(rebuilt(&g), 5, "the rebuilt entries authenticate");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse")).arg("serve").arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--no-component-cache"));
    g.finish(&fake.all_tokens());
}
