//! Several Gatehouse processes on one PostgreSQL database, as a team runs
//! them behind a load balancer: each has its own data dir and shares the
//! database and the master key. Clients are spread over the processes
//! round-robin: a connection made on one is seen by all, and one whose
//! connector a process lacks is answered there with a clear 503; an OAuth flow
//! started on one completes on another; a refresh token is spent once even
//! when all three refresh at the same moment; a sync whose process is
//! SIGKILLed mid-run is taken over and ends with an exact record set and a
//! feed without duplicates; a PostgreSQL restart in the middle of traffic
//! answers 503 `database_unavailable` (never a 500) and service resumes by
//! itself.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{Gatehouse, Options, connect_pat},
    postgres::Cluster,
};

/// A master key all processes share (base64 of 32 random bytes).
fn shared_master_key() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn integration_ids(g: &Gatehouse) -> Vec<String> {
    let r = g.get("/api/v1/integrations").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["integrations"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

async fn projects_sync(g: &Gatehouse, id: &str) -> Value {
    let r = g.get(&format!("/api/v1/integrations/{id}/syncs")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["syncs"].as_array().unwrap().iter().find(|s| s["model"] == "projects").unwrap().clone()
}

#[cfg_attr(
    not(gatehouse_postgres),
    ignore = "needs PostgreSQL's server (Debian's postgresql package): run tests/setup.sh"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_share_one_postgres_database() {
    let cluster = Cluster::start();
    let url = cluster.create_database().await;
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    fake.sign_in(Some(jane));
    fake.api(|d| {
        d.add_many_projects(1, 3000, jane);
        d.slow = Duration::from_millis(60);
    });
    let options = Options::lax()
        .database_url(&url)
        .env("GATEHOUSE_MASTER_KEY", &shared_master_key())
        .arg("--sync-poll")
        .arg("200ms")
        .arg("--sync-retry")
        .arg("1s")
        .arg("--sync-lease")
        .arg("3s")
        .arg("--refresh-interval")
        .arg("2s")
        .arg("--database-acquire-timeout")
        .arg("2s");
    // Started at once: the migrations are applied once (an advisory lock).
    // Only the first has the Bitbucket connector in its plugins directory.
    let with_bitbucket = options.clone().plugin(gatehouse_test_programs::EXAMPLE_BITBUCKET_WASM);
    let mut gs =
        futures::future::join_all([with_bitbucket, options.clone(), options].into_iter().map(Gatehouse::start)).await;
    for g in &gs {
        let r = g.call("GET", "/api/v1/ready", None, None).await;
        assert_eq!((r.status, &r.body["database"]), (200, &json!("postgres")), "{}", r.body);
    }

    // A connection made on one process is the same on every other.
    let token = fake.token(jane, Kind::Pat, &["read_api"]);
    let r = gs[0].post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let pat_id = r.body["id"].as_str().unwrap().to_string();
    let again = gs[1].post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    assert_eq!((again.status, &again.body["id"]), (200, &json!(pat_id)), "the same account, not a second row");
    assert_eq!(integration_ids(&gs[2]).await, std::slice::from_ref(&pat_id));

    // A connection whose connector only the first process loads: the
    // others show it, and answer its uses with a clear 503, not a 500.
    let creds = json!({"token": fake.pat(fake.add_user("jdoe", false)), "base_url": fake.url});
    let r = gs[0].post("/api/v1/integrations", json!({"provider": "bitbucket-pat", "credentials": creds})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bitbucket_id = r.body["id"].as_str().unwrap().to_string();
    for g in &gs[1..] {
        let shown = g.get(&format!("/api/v1/integrations/{bitbucket_id}")).await;
        assert_eq!(shown.body["status"], "provider_unavailable", "{}", shown.body);
        let r = g.post(&format!("/api/v1/integrations/{bitbucket_id}/verify"), json!({})).await;
        assert_eq!((r.status, r.code()), (503, "provider_unavailable"), "{}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains("bitbucket-pat"), "{}", r.body);
    }
    let r = gs[0].post(&format!("/api/v1/integrations/{bitbucket_id}/verify"), json!({})).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("connected")), "{}", r.body);
    assert_eq!(gs[0].delete(&format!("/api/v1/integrations/{bitbucket_id}")).await.status, 204);

    // Its projects sync runs on one process; that one is SIGKILLed once a
    // few pages are committed, and another takes the run over when the
    // lease expires, from the last committed page.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = projects_sync(&gs[2], &pat_id).await;
        if p["current_run"]["added"].as_i64().unwrap_or(0) >= 500 {
            assert!(p["current_run"]["added"].as_i64().unwrap() < 3000, "killed mid-run: {p}");
            break;
        }
        assert!(Instant::now() < deadline, "the sync made no progress: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runner = gs
        .iter()
        .position(|g| g.logs().lines().any(|l| l.contains("sync run started") && l.contains(&pat_id)))
        .expect("one process ran the sync");
    gs[runner].kill_and_restart().await;
    fake.api(|d| d.slow = Duration::ZERO);
    let other = &gs[(runner + 1) % 3];
    let deadline = Instant::now() + Duration::from_secs(120);
    let p = loop {
        let p = projects_sync(other, &pat_id).await;
        if p["state"] == "idle" && !p["last_finished_at"].is_null() {
            break p;
        }
        assert!(Instant::now() < deadline, "the run was not taken over: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(p["records"], 3000);
    assert_eq!(p["last_run"], json!({"added": 3000, "updated": 0, "deleted": 0}), "counted once across the kill");
    let (feed, _) = crate::syncs::read_feed(&gs[runner], &pat_id, "projects", "", 1000).await;
    assert_eq!(feed.len(), 3000, "every record once in the feed");
    let unique: BTreeSet<&str> = feed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), 3000, "no record twice in the feed");

    // OAuth: the application registered on the first process, the flow
    // started on the second, its callback delivered to the third.
    // The token the code exchange issues is due for refresh at once (120 s
    // left, a 5 min window); the renewed ones are not. Set before the flow,
    // so no background refresh can come between the exchange and the
    // change of lifetime.
    fake.next_token_lifetime(120);
    crate::oauth::setup(&gs[0], &fake).await;
    let callback = crate::oauth::approve(&crate::oauth::start(&gs[1], &fake).await).await;
    let token_calls = fake.hits("/oauth/token");
    let (status, location) = crate::oauth::deliver(&gs[2], &callback).await;
    assert_eq!(status, 302, "{location}");
    let oauth_id = location.as_str().unwrap().strip_prefix("/?connected=").unwrap().to_string();
    let r = gs[0].get(&format!("/api/v1/integrations/{oauth_id}")).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("connected")), "{}", r.body);

    // Its access token expires within the refresh window, and the provider
    // now issues long-lived ones: a use on every process at the same moment
    // (and their background tasks) find it due, and one refresh reaches the
    // provider; the others wait for its outcome and use the renewed token.
    let user_path = format!("/api/v1/integrations/{oauth_id}/proxy/api/v4/user");
    let uses = futures::future::join_all(gs.iter().map(|g| g.get_proxied(&user_path))).await;
    for r in &uses {
        assert_eq!((r.status, &r.body["username"]), (200, &json!("jane")), "{}", r.body);
    }
    assert_eq!(fake.hits("/oauth/token") - token_calls, 2, "the code exchange, then one refresh for one due token");
    let expiries: BTreeSet<String> = futures::future::join_all(gs.iter().map(|g| async {
        g.get(&format!("/api/v1/integrations/{oauth_id}")).await.body["token_expires_at"].to_string()
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(expiries.len(), 1, "every process sees the one renewed token: {expiries:?}");
    // The background tasks find nothing due any more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.hits("/oauth/token") - token_calls, 2, "no second refresh");

    // PostgreSQL restarts in the middle of traffic: 503 with the stable
    // code (liveness stays up, readiness says no), then service resumes.
    cluster.stop();
    for g in &gs {
        let r = g.get("/api/v1/integrations").await;
        assert_eq!((r.status, r.code()), (503, "database_unavailable"), "{}", r.body);
        let r = g.call("GET", "/api/v1/ready", None, None).await;
        assert_eq!((r.status, r.code()), (503, "database_unavailable"), "{}", r.body);
        assert_eq!(g.call("GET", "/api/v1/health", None, None).await.status, 200);
    }
    cluster.start_again();
    let deadline = Instant::now() + Duration::from_secs(60);
    for g in &mut gs {
        loop {
            let r = g.get("/api/v1/integrations").await;
            if r.status == 200 {
                break;
            }
            assert_eq!((r.status, r.code()), (503, "database_unavailable"), "{}", r.body);
            assert!(Instant::now() < deadline, "service did not resume after the database came back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(g.is_running(), "the process survived the outage");
        assert_eq!(g.call("GET", "/api/v1/ready", None, None).await.status, 200);
    }
    let mut ids = integration_ids(&gs[1]).await;
    ids.sort();
    let mut expected = vec![pat_id, oauth_id];
    expected.sort();
    assert_eq!(ids, expected);
    for g in gs {
        g.finish(std::slice::from_ref(&token));
    }
}
