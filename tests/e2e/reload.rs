//! Hot reload: components added, replaced or removed in --plugins-dir take
//! effect without a restart; a broken file never replaces a working one.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Gatehouse, Options};

const HOSTILE: &str = gatehouse_test_programs::TEST_HOSTILE_WASM;

async fn ids(g: &Gatehouse) -> serde_json::Value {
    g.get("/api/v1/health").await.body["plugins"].clone()
}

/// The hostile component with its display name edited (same length, so it
/// stays a valid component): the same id, different bytes.
fn renamed_hostile() -> Vec<u8> {
    let (from, to) = (b"Hostile test connector", b"Hostile test replaced!");
    let mut bytes = std::fs::read(HOSTILE).unwrap();
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the name is in the component");
    bytes[at..at + from.len()].copy_from_slice(to);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_replaces_and_removes() {
    let fake = crate::fake_gitlab::FakeGitlab::start().await;
    let options = Options::lax().arg("--plugins-poll").arg("0s").arg("--plugin-timeout").arg("2s");
    let g = std::sync::Arc::new(Gatehouse::start(options).await);
    let target = g.plugins_dir().join("hostile.wasm");
    assert_eq!(ids(&g).await, json!(["gitlab-oauth", "gitlab-pat"]));
    let name = |g: std::sync::Arc<Gatehouse>| async move {
        let p = g.get("/api/v1/providers/hostile-test").await.body;
        (p["name"].as_str().unwrap_or_default().to_string(), p["plugin"]["sha256"].clone())
    };

    std::fs::copy(HOSTILE, &target).unwrap();
    let r = g.post("/api/v1/plugins/reload", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["loaded"], json!(["hostile-test"]));
    let ok = json!({"credentials": {"mode": "ok", "base_url": crate::sandbox::NOWHERE}});
    assert_eq!(g.post("/api/v1/providers/hostile-test/verify", ok.clone()).await.body["valid"], true);
    let (first_name, first_sha) = name(g.clone()).await;
    assert_eq!(first_name, "Hostile test connector");

    // A different valid component in its place replaces it.
    std::fs::write(&target, renamed_hostile()).unwrap();
    let r = g.post("/api/v1/plugins/reload", json!({})).await;
    assert_eq!((&r.body["loaded"], &r.body["refused"]), (&json!(["hostile-test"]), &json!([])), "{}", r.body);
    let (second_name, second_sha) = name(g.clone()).await;
    assert_eq!(second_name, "Hostile test replaced!");
    assert_ne!(second_sha, first_sha);
    assert_eq!(g.post("/api/v1/providers/hostile-test/verify", ok.clone()).await.body["valid"], true);

    // A broken replacement is refused; the loaded version keeps serving.
    std::fs::write(&target, b"\0asm broken").unwrap();
    let r = g.post("/api/v1/plugins/reload", json!({})).await;
    assert_eq!(r.body["refused"][0]["file"].as_str().unwrap(), target.to_str().unwrap());
    assert!(r.body["refused"][0]["error"].as_str().unwrap().contains("not a WebAssembly component"));
    assert_eq!(r.body["loaded"], json!([]), "{}", r.body);
    assert_eq!(g.post("/api/v1/providers/hostile-test/verify", ok.clone()).await.body["valid"], true);
    assert_eq!(name(g.clone()).await, (second_name, second_sha), "the replaced version still serves");
    let logs = g.logs();
    assert!(
        logs.lines().any(|l| l.contains("plugin refused") && l.contains("hostile.wasm")),
        "the refusal is logged with the file: {logs}"
    );

    // A call in flight finishes on the version it started with.
    std::fs::copy(HOSTILE, &target).unwrap();
    g.post("/api/v1/plugins/reload", json!({})).await;
    let slow = {
        let (g, body) = (g.clone(), json!({"credentials": {"mode": "announce-loop", "base_url": fake.url}}));
        tokio::spawn(async move { g.post("/api/v1/providers/hostile-test/verify", body).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.hits("/hostile/started") == 0 {
        assert!(Instant::now() < deadline, "the looping call never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::remove_file(&target).unwrap();
    let r = g.post("/api/v1/plugins/reload", json!({})).await;
    assert_eq!(r.body["unloaded"], json!(["hostile-test"]));
    assert!(!slow.is_finished(), "the call was still running when its component was removed");
    let finished = slow.await.unwrap();
    assert_eq!(finished.code(), "plugin_timeout", "{}", finished.body);
    let gone = g.post("/api/v1/providers/hostile-test/verify", ok).await;
    assert_eq!((gone.status, gone.code()), (404, "not_found"));
    std::sync::Arc::into_inner(g).unwrap().finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_dir_is_watched() {
    let g = Gatehouse::start(Options::lax().arg("--plugins-poll").arg("100ms")).await;
    std::fs::copy(HOSTILE, g.plugins_dir().join("hostile.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ids(&g).await.as_array().unwrap().contains(&json!("hostile-test")) {
        assert!(Instant::now() < deadline, "the new component was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_file(g.plugins_dir().join("hostile.wasm")).unwrap();
    while ids(&g).await.as_array().unwrap().contains(&json!("hostile-test")) {
        assert!(Instant::now() < deadline, "the removed component is still loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    g.finish(&[]);
}
