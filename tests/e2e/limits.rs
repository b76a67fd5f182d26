//! The host's own memory, disk and time against a hostile connector and a
//! saturated host: what a connector hands over, logs or asks the host to
//! hold is bounded; a call waits for a slot only so long; a resolver that
//! never answers cannot hold a call past its deadline.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{Gatehouse, Options, Reply, pat_body},
    netns,
    sandbox::NOWHERE,
};

const HOSTILE: &str = gatehouse_test_programs::TEST_HOSTILE_WASM;
/// What the hostile connector puts at the start of the lines it forges.
const FORGED: &str = "2026-01-01T00:00:00.000000Z";

async fn hostile(g: &Gatehouse, mode: &str) -> Reply {
    g.post("/api/v1/providers/hostile-test/verify", json!({"credentials": {"mode": mode, "base_url": NOWHERE}})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_cannot_make_the_host_hold_its_data() {
    let g = Gatehouse::start(Options::lax().plugin(HOSTILE)).await;
    let over = [
        // A 24 MiB answer (the default limit is 16 MiB).
        ("answer-24", "more than 16 MiB at once"),
        // 16 MiB of randomness in one request (the limit is 64 KiB).
        ("random-16384", "more than 64 KiB of randomness"),
        // 10,000 pollables held at once (the limit is 4096).
        ("resources-10000", "more than 4096 host resources"),
    ];
    for (mode, why) in over {
        let r = hostile(&g, mode).await;
        assert_eq!((r.status, r.code()), (502, "plugin_failed"), "{mode}: {}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains(why), "{mode}: {}", r.body);
        let ok = hostile(&g, "ok").await;
        assert_eq!((ok.status, &ok.body["valid"]), (200, &json!(true)), "after {mode}: {}", ok.body);
    }
    // The same calls within the limits succeed.
    for mode in ["answer-1", "random-32", "resources-100"] {
        let r = hostile(&g, mode).await;
        assert_eq!((r.status, &r.body["valid"]), (200, &json!(true)), "{mode}: {}", r.body);
    }
    let narrower =
        Gatehouse::start(Options::lax().plugin(HOSTILE).arg("--plugin-max-answer-bytes").arg("524288")).await;
    let r = hostile(&narrower, "answer-1").await;
    assert_eq!((r.status, r.code()), (502, "plugin_failed"), "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("more than 512 KiB at once"), "{}", r.body);
    narrower.finish(&[]);
    g.finish(&[]);
}

/// Observed before: one verify call wrote 1.25 GB to the host log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_connector_gets_a_bounded_log() {
    let g = Gatehouse::start(Options::lax().plugin(HOSTILE)).await;
    // The budget is per call: the second call gets its own.
    for round in 1..=2 {
        let before = g.logs().len();
        let r = hostile(&g, "log-flood").await;
        assert_eq!((r.status, &r.body["valid"]), (200, &json!(true)), "{}", r.body);
        let logs = g.logs();
        let written = &logs[before..];
        // The connector tried 10 MiB of lines and one of 1 MiB.
        assert!(written.len() < 64 * 1024, "round {round}: one call wrote {} bytes to the log", written.len());
        assert_eq!(written.matches("log budget exhausted").count(), 1, "round {round}: {written}");
        assert!(written.contains("[cut at 2048 characters]"), "the 1 MiB line is cut");
        assert!(written.lines().all(|l| l.len() < 4096), "round {round}: a line is longer than 4 KiB");
    }
    let lines_only = Gatehouse::start(Options::lax().plugin(HOSTILE).arg("--plugin-log-lines").arg("3")).await;
    let r = hostile(&lines_only, "log-flood").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let logs = lines_only.logs();
    assert_eq!(logs.lines().filter(|l| l.contains("flood ")).count(), 2, "3 lines: the long one and two floods");
    assert!(logs.contains("more than 3 lines"), "{logs}");
    lines_only.finish(&[]);
    g.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_cannot_forge_host_log_lines() {
    let g = Gatehouse::start(Options::lax().plugin(HOSTILE)).await;
    let r = hostile(&g, "log-forge").await;
    assert_eq!((r.status, &r.body["valid"]), (200, &json!(true)), "{}", r.body);
    // Its stderr, shown when it traps, is escaped the same way.
    let r = hostile(&g, "trap-forge").await;
    assert_eq!((r.status, r.code()), (502, "plugin_failed"), "{}", r.body);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("hostile connector trapped\\r2026"), "{detail}");
    let logs = g.logs();
    for line in logs.split(['\n', '\r']) {
        assert!(!line.starts_with(FORGED), "a connector wrote a line of its own: {line}");
    }
    assert!(!logs.contains(['\r', '\u{1b}', '\u{2028}']), "a control character reached the log");
    assert!(logs.contains(&format!("innocent\\n{FORGED}")), "the message is kept, escaped: {logs}");
    // A field value is written quoted, its escape's backslash escaped again.
    assert!(logs.contains(&format!(r#"field="value\\n{FORGED}"#)), "fields are escaped too: {logs}");
    g.finish(&[]);
}

/// With every slot taken, a request is refused after `--max-call-wait`
/// instead of waiting for as long as the running calls take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_host_answers_busy_with_retry_after() {
    let fake = FakeGitlab::start().await;
    let options = Options::lax()
        .plugin(HOSTILE)
        .arg("--max-concurrent-calls")
        .arg("1")
        .arg("--max-call-wait")
        .arg("300ms")
        .arg("--plugin-timeout")
        .arg("4s");
    let g = Arc::new(Gatehouse::start(options).await);
    let looping = {
        let (g, url) = (g.clone(), fake.url.clone());
        tokio::spawn(async move {
            g.post(
                "/api/v1/providers/hostile-test/verify",
                json!({"credentials": {"mode": "announce-loop", "base_url": url}}),
            )
            .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.hits("/hostile/started") == 0 {
        assert!(Instant::now() < deadline, "the looping call never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let r = hostile(&g, "ok").await;
    assert_eq!((r.status, r.code()), (503, "host_busy"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(2), "refused only after {:?}", started.elapsed());
    assert_eq!(r.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"), "{:?}", r.headers);
    assert_eq!(r.body["retry_after"], 1, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("--max-concurrent-calls"), "{}", r.body);
    // Connecting is refused the same way, and nothing is stored.
    let token = fake.pat(fake.add_user("jane", false));
    let r = g.post("/api/v1/integrations", crate::harness::connect_pat(&token, &fake.url)).await;
    assert_eq!((r.status, r.code()), (503, "host_busy"), "{}", r.body);
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));

    let looped = looping.await.unwrap();
    assert_eq!(looped.code(), "plugin_timeout", "{}", looped.body);
    let ok = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &fake.url)).await;
    assert_eq!((ok.status, &ok.body["valid"]), (200, &json!(true)), "a free slot is used again: {}", ok.body);
    Arc::into_inner(g).unwrap().finish(&fake.all_tokens());
}

/// The base URL's name is resolved before the connector runs; a resolver
/// that never answers must not hold the request past the call deadline.
/// Inside a namespace whose only nameserver is a loopback socket that reads
/// nothing, so no query can leave the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_netns), ignore = "needs user and network namespaces (unshare -rnm) and ip")]
async fn a_silent_resolver_cannot_hold_a_call_past_its_deadline() {
    let resolv = "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n";
    if !netns::enter("limits::a_silent_resolver_cannot_hold_a_call_past_its_deadline", resolv) {
        return;
    }
    let _silent = std::net::UdpSocket::bind("127.0.0.1:53").expect("bind the silent resolver");
    let g = Gatehouse::start(Options::lax().arg("--plugin-timeout").arg("2s")).await;
    let token = "glpat-silent-resolver-0123456789".to_string();
    let started = Instant::now();
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, "http://gitlab.silent-resolver.test")).await;
    assert_eq!((r.status, r.code()), (504, "plugin_timeout"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(8), "answered after {:?}", started.elapsed());
    g.finish(&[token]);
}

/// A sync page that finds every slot taken pauses for the `Retry-After`
/// and continues, instead of failing for a whole `--sync-retry`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_on_a_saturated_host_pauses_briefly() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    fake.api(|d| d.add_many_projects(1, 30, jane));
    let options = Options::lax()
        .plugin(HOSTILE)
        .arg("--max-concurrent-calls")
        .arg("1")
        .arg("--max-call-wait")
        .arg("200ms")
        .arg("--plugin-timeout")
        .arg("3s")
        .arg("--sync-poll")
        .arg("200ms")
        .arg("--sync-retry")
        .arg("10m");
    let g = Arc::new(Gatehouse::start(options).await);
    let token = fake.pat(jane);
    let id = g.post("/api/v1/integrations", crate::harness::connect_pat(&token, &fake.url)).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let projects = |g: Arc<Gatehouse>| {
        let id = id.clone();
        async move {
            let r = g.get(&format!("/api/v1/integrations/{id}/syncs")).await;
            r.body["syncs"].as_array().unwrap().iter().find(|s| s["model"] == "projects").unwrap().clone()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let s = projects(g.clone()).await;
        if s["state"] == "idle" && s["records"] == 30 {
            break s;
        }
        assert!(Instant::now() < deadline, "the first projects sync did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let looping = {
        let (g, url) = (g.clone(), fake.url.clone());
        tokio::spawn(async move {
            g.post(
                "/api/v1/providers/hostile-test/verify",
                json!({"credentials": {"mode": "announce-loop", "base_url": url}}),
            )
            .await
        })
    };
    while fake.hits("/hostile/started") == 0 {
        assert!(Instant::now() < deadline, "the looping call never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g.post(&format!("/api/v1/integrations/{id}/syncs/projects/run"), json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopped = loop {
        let s = projects(g.clone()).await;
        if s["state"] == "paused" || s["state"] == "failed" {
            break s;
        }
        assert!(Instant::now() < deadline, "the sync neither paused nor failed: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (&stopped["state"], &stopped["last_error"]["code"]),
        (&json!("paused"), &json!("host_busy")),
        "{stopped}"
    );
    looping.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = projects(g.clone()).await;
        if s["state"] == "idle" && s["last_finished_at"] != first["last_finished_at"] {
            assert_eq!((&s["records"], &s["last_error"]), (&json!(30), &json!(null)), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "the paused sync did not continue: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Arc::into_inner(g).unwrap().finish(&fake.all_tokens());
}
