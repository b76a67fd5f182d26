//! Hostile connectors: each misbehaviour fails its own request with the
//! right code and the host answers the next request normally.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{Gatehouse, Options, pat_body},
};

const HOSTILE: &str = gatehouse_test_programs::TEST_HOSTILE_WASM;
/// A base URL for hostile calls that reach nothing: an IP literal, so the
/// host's reachability check asks no resolver (the connector's default,
/// example.invalid, would be a DNS query leaving the machine).
pub const NOWHERE: &str = "http://127.0.0.1:9";
const WRONG_WORLD: &str = gatehouse_test_programs::TEST_WRONG_WORLD_WASM;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connectors_fail_alone() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let options = Options::lax().plugin(HOSTILE).arg("--plugin-timeout").arg("2s");
    let mut g = Gatehouse::start(options).await;
    // Each failure says why: the detail names the limit or the fault.
    let cases = [
        ("loop", 504, "plugin_timeout", "within 2 s"),
        ("alloc", 502, "plugin_failed", "memory limit of 64 MiB"),
        // Just over the cap fails; just under it (below) succeeds.
        ("alloc-72", 502, "plugin_failed", "memory limit of 64 MiB"),
        // A panic's message reaches the caller (from the call's stderr).
        ("trap", 502, "plugin_failed", "hostile connector trapped on purpose"),
        ("recurse", 502, "plugin_failed", "trapped"),
        ("egress", 403, "egress_denied", "169.254.169.254"),
        ("flood", 502, "plugin_failed", "limit of 16 outbound requests per call"),
    ];
    for (mode, status, code, why) in cases {
        let started = Instant::now();
        let before = fake.hits("/api/v4/user");
        let body = json!({"credentials": {"mode": mode, "base_url": fake.url}});
        let r = g.post("/api/v1/providers/hostile-test/verify", body).await;
        assert_eq!((r.status, r.code()), (status, code), "{mode}: {}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains(why), "{mode}: {}", r.body);
        assert!(started.elapsed() < Duration::from_secs(10), "{mode} took {:?}", started.elapsed());
        assert!(g.is_running(), "the host died on {mode}");
        if mode == "flood" {
            // Exactly the budget went out; the 17th request was never sent.
            assert_eq!(fake.hits("/api/v4/user") - before, 16, "the request budget stopped the flood");
        }

        let ok = g
            .post("/api/v1/providers/hostile-test/verify", json!({"credentials": {"mode": "ok", "base_url": NOWHERE}}))
            .await;
        assert_eq!((ok.status, &ok.body["valid"]), (200, &json!(true)), "after {mode}: {}", ok.body);
        let pat = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &fake.url)).await;
        assert_eq!(pat.body["valid"], true, "after {mode}");
    }
    let under = g
        .post(
            "/api/v1/providers/hostile-test/verify",
            json!({"credentials": {"mode": "alloc-48", "base_url": NOWHERE}}),
        )
        .await;
    assert_eq!((under.status, &under.body["valid"]), (200, &json!(true)), "48 MiB fits in 64: {}", under.body);
    g.finish(&fake.all_tokens());
}

/// A looping call holds one slot, not the host: other calls keep being
/// answered promptly while it spins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_calls_flow_while_a_call_loops() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let options = Options::lax().plugin(HOSTILE).arg("--plugin-timeout").arg("4s");
    let g = std::sync::Arc::new(Gatehouse::start(options).await);
    let looping = {
        let g = g.clone();
        tokio::spawn(async move {
            g.post(
                "/api/v1/providers/hostile-test/verify",
                json!({"credentials": {"mode": "loop", "base_url": NOWHERE}}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut answered = 0;
    while !looping.is_finished() {
        let started = Instant::now();
        let ok = g
            .post("/api/v1/providers/hostile-test/verify", json!({"credentials": {"mode": "ok", "base_url": NOWHERE}}))
            .await;
        assert_eq!(ok.body["valid"], true, "{}", ok.body);
        let pat = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &fake.url)).await;
        assert_eq!(pat.body["valid"], true, "{}", pat.body);
        // Behind the loop it would wait for its 4 s timeout; half of that
        // leaves room for a loaded machine.
        assert!(started.elapsed() < Duration::from_secs(2), "a call waited {:?} behind the loop", started.elapsed());
        answered += 1;
    }
    let r = looping.await.unwrap();
    assert_eq!(r.code(), "plugin_timeout", "{}", r.body);
    assert!(answered >= 5, "only {answered} rounds were answered while the loop ran");
    std::sync::Arc::into_inner(g).unwrap().finish(&fake.all_tokens());
}

/// Instance slots are reused and kept resident between calls; each call
/// must still start from the component's initial memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_never_sees_an_earlier_calls_memory() {
    // One call at a time, so every call reuses the same warm slot.
    let g = Gatehouse::start(Options::lax().plugin(HOSTILE).arg("--max-concurrent-calls").arg("1")).await;
    let tokens: Vec<String> = (0..20).map(|i| format!("remembered-{i}-{}", uuid::Uuid::new_v4().simple())).collect();
    for token in &tokens {
        let body = json!({"credentials": {"mode": "remember", "token": token, "base_url": NOWHERE}});
        let r = g.post("/api/v1/providers/hostile-test/verify", body).await;
        assert_eq!((r.status, &r.body["valid"]), (200, &json!(true)), "{}", r.body);
    }
    g.finish(&tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_text_is_scrubbed_of_credentials() {
    let secret = format!("sekrit-{}", uuid::Uuid::new_v4().simple());
    let g = Gatehouse::start(Options::lax().plugin(HOSTILE)).await;
    let body = json!({"credentials": {"mode": "leak", "token": secret, "base_url": NOWHERE}});
    let r = g.post("/api/v1/providers/hostile-test/verify", body).await;
    assert_eq!(r.status, 200);
    assert!(r.body["error"]["detail"].as_str().unwrap().contains("[redacted]"));
    assert!(g.logs().contains("the token is [redacted]"));

    // A connector that answers with the token as the account, verified and
    // then stored: every field comes back, and is kept, redacted.
    let echo = json!({"mode": "echo", "token": secret, "base_url": NOWHERE});
    let v = g.post("/api/v1/providers/hostile-test/verify", json!({"credentials": echo})).await;
    assert_eq!((v.status, &v.body["valid"]), (200, &json!(true)), "{}", v.body);
    assert_eq!(v.body["account"]["username"], "[redacted]", "{}", v.body);
    assert_eq!(v.body["account"]["email"], "[redacted]@example.com", "{}", v.body);
    let c = g.post("/api/v1/integrations", json!({"provider": "hostile-test", "credentials": echo})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["account"]["username"], "[redacted]", "{}", c.body);
    g.finish(&[secret]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_another_world_is_refused_naming_the_file() {
    let g = Gatehouse::start(Options::lax().plugin(WRONG_WORLD).plugin(HOSTILE)).await;
    let health = g.get("/api/v1/health").await;
    assert_eq!(health.body["plugins"], json!(["gitlab-oauth", "gitlab-pat", "hostile-test"]));
    let logs = g.logs();
    assert!(
        logs.lines().any(|l| l.contains("test_wrong_world.wasm") && l.contains("does not implement the world")),
        "{logs}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["plugins", "validate", WRONG_WORLD])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("test_wrong_world.wasm") && stderr.contains("gatehouse:plugin/provider"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["plugins", "validate", HOSTILE])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Built with the small stack of plugins/.cargo/config.toml, so a call's
    // whole memory fits in what the host keeps resident.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("starts with 128 KiB of linear memory") && !stdout.contains("note:"), "{stdout}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["plugins", "inspect", HOSTILE])
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["id"], "hostile-test");
    assert_eq!(manifest["plugin"]["sha256"].as_str().unwrap().len(), 64);
    g.finish(&[]);
}
