//! Syncs as a consuming system uses them: the GitLab connectors mirror
//! groups, projects, issues and merge requests from the fake GitLab; the
//! change feed hands out every change once, in commit order; a changed
//! record is emitted again, an unchanged one is not; a full model detects
//! deletions; a run killed with SIGKILL resumes from its last committed page
//! with an exact result; a 429 or a spent rate-limit budget pauses the sync
//! until the reset; a 500 fails the run, which is retried; outgoing
//! webhooks are signed (Standard Webhooks) and retried; disconnecting
//! deletes the records.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{Gatehouse, Options, connect_pat},
};

/// A Gatehouse that looks for due syncs often and retries failed ones soon.
fn options() -> Options {
    Options::lax().arg("--sync-poll").arg("200ms").arg("--sync-retry").arg("1s").arg("--sync-lease").arg("3s")
}

async fn syncs(g: &Gatehouse, id: &str) -> BTreeMap<String, Value> {
    let r = g.get(&format!("/api/v1/integrations/{id}/syncs")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["syncs"].as_array().unwrap().iter().map(|s| (s["model"].as_str().unwrap().to_string(), s.clone())).collect()
}

/// Waits until `model`'s sync has finished a run after `after` (its
/// `last_finished_at` changed) and is idle again.
pub(crate) async fn wait_idle(g: &Gatehouse, id: &str, model: &str, after: Option<&Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = syncs(g, id).await.remove(model).expect("the model is listed");
        let finished = !s["last_finished_at"].is_null() && Some(&s["last_finished_at"]) != after;
        if s["state"] == "idle" && finished {
            return s;
        }
        assert!(Instant::now() < deadline, "the {model} sync did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole feed for `model` from `cursor`, `limit` records a page.
pub(crate) async fn read_feed(g: &Gatehouse, id: &str, model: &str, cursor: &str, limit: u32) -> (Vec<Value>, String) {
    let mut cursor = cursor.to_string();
    let mut all = Vec::new();
    loop {
        let r = g.get(&format!("/api/v1/integrations/{id}/records?model={model}&limit={limit}&cursor={cursor}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let records = r.body["records"].as_array().unwrap().clone();
        let next = r.body["next_cursor"].as_str().unwrap().to_string();
        if records.is_empty() {
            assert_eq!(next, cursor, "an empty page keeps the cursor");
            return (all, cursor);
        }
        all.extend(records);
        cursor = next;
    }
}

fn ids(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_incremental_syncs_and_the_change_feed() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let joe = fake.add_user("joe", false);
    fake.api(|d| {
        d.add_many_projects(1, 250, jane);
        d.add_project(9000, "joe/private", &[joe], &[]);
        d.add_group(1, "acme", &[jane]);
        d.add_group(2, "acme/platform", &[jane]);
        d.add_group(3, "tools", &[jane]);
        d.add_group(4, "joes-group", &[joe]);
        // Issues jane did not write are hers to see with scope=all.
        d.add_issue(1, "Flaky test", (joe, "joe"), 1_767_607_200);
        d.add_issue(2, "Docs typo", (jane, "jane"), 1_767_607_200);
    });
    let mut g = Gatehouse::start(options()).await;
    let token = fake.token(jane, Kind::Pat, &["api"]);
    let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    let id = c.body["id"].as_str().unwrap().to_string();

    // Every model is listed with its connector defaults and runs at once.
    let listed = syncs(&g, &id).await;
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["groups", "issues", "merge_requests", "projects"]);
    assert_eq!(listed["groups"]["incremental"], false);
    assert_eq!(listed["projects"]["incremental"], true);
    assert_eq!(listed["groups"]["default_interval_seconds"], 3600);
    let projects = wait_idle(&g, &id, "projects", None).await;
    assert_eq!((projects["records"].as_i64(), projects["last_run"]["added"].as_i64()), (Some(250), Some(250)));
    let groups = wait_idle(&g, &id, "groups", None).await;
    assert_eq!(groups["records"], 3);
    let issues = wait_idle(&g, &id, "issues", None).await;
    assert_eq!(issues["records"], 2, "scope=all includes issues others wrote");

    // The feed: every record once, in commit order, pages of 100.
    let (feed, cursor) = read_feed(&g, &id, "projects", "", 100).await;
    assert_eq!(feed.len(), 250);
    assert_eq!(ids(&feed).into_iter().collect::<BTreeSet<_>>().len(), 250, "no record twice");
    assert!(feed.iter().all(|r| r["action"] == "added"));
    let cursors: Vec<u64> = feed.iter().map(|r| r["cursor"].as_str().unwrap().parse().unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "commit order");
    assert!(!ids(&feed).contains(&"9000".to_string()), "joe's project is not jane's");
    let first = &feed[0]["data"];
    assert_eq!(first["path_with_namespace"], "bulk/project-1");
    assert_eq!(first["visibility"], "private");

    // Two projects change and one appears: the next run emits exactly those.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fake.api(|d| {
        d.touch_project(7, Some("bulk/renamed-7"));
        d.touch_project(8, None);
        d.add_project(251, "bulk/project-251", &[jane], &[]);
        d.touch_project(251, None);
    });
    let first_finished = projects["last_finished_at"].clone();
    let r = g.post(&format!("/api/v1/integrations/{id}/syncs/projects/run"), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let projects = wait_idle(&g, &id, "projects", Some(&projects["last_finished_at"])).await;
    let (changes, cursor) = read_feed(&g, &id, "projects", &cursor, 100).await;
    let by_id: BTreeMap<String, &Value> = changes.iter().map(|r| (r["id"].as_str().unwrap().to_string(), r)).collect();
    assert_eq!(by_id.keys().collect::<Vec<_>>(), ["251", "7", "8"], "{changes:#?}");
    assert_eq!(by_id["7"]["action"], "updated");
    assert_eq!(by_id["7"]["data"]["path_with_namespace"], "bulk/renamed-7");
    assert_eq!(by_id["251"]["action"], "added");
    assert_eq!(projects["last_run"], json!({"added": 1, "updated": 2, "deleted": 0}));
    // modified_after narrows the feed to what changed after the first run.
    let since = first_finished.as_str().unwrap();
    let r = g.get(&format!("/api/v1/integrations/{id}/records?model=projects&modified_after={since}")).await;
    assert_eq!(r.body["records"].as_array().unwrap().len(), 3, "{}", r.body);

    // A group disappears: the next full run deletes it, once.
    fake.api(|d| d.remove_group(2));
    g.post(&format!("/api/v1/integrations/{id}/syncs/groups/run"), json!({})).await;
    let groups = wait_idle(&g, &id, "groups", Some(&groups["last_finished_at"])).await;
    assert_eq!(groups["last_run"], json!({"added": 0, "updated": 0, "deleted": 1}));
    let (all_groups, _) = read_feed(&g, &id, "groups", "", 1000).await;
    let deleted: Vec<&Value> = all_groups.iter().filter(|r| r["action"] == "deleted").collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["data"]["full_path"], "acme/platform", "a deleted record keeps its last data");

    // An issue edited by someone else: the incremental issues run picks it up.
    let issue_id = fake.api(|d| d.issues(1)[0]["id"].as_u64().unwrap());
    fake.api(|d| d.touch_issue(issue_id, "Flaky test (quarantined)"));
    g.post(&format!("/api/v1/integrations/{id}/syncs/issues/run"), json!({})).await;
    let issues = wait_idle(&g, &id, "issues", Some(&issues["last_finished_at"])).await;
    assert_eq!(issues["last_run"], json!({"added": 0, "updated": 1, "deleted": 0}));

    // Nothing changed: a run emits nothing. (Times have whole seconds: wait
    // one, so this run's finish is told apart from the last one's.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    g.post(&format!("/api/v1/integrations/{id}/syncs/projects/run"), json!({})).await;
    let projects = wait_idle(&g, &id, "projects", Some(&projects["last_finished_at"])).await;
    assert!(read_feed(&g, &id, "projects", &cursor, 100).await.0.is_empty());
    // A reset reads everything again (a full keyset pass) and still emits
    // nothing that did not change.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = fake.api(|d| d.requests.iter().filter(|r| r.query.contains("pagination=keyset")).count());
    let r = g.post(&format!("/api/v1/integrations/{id}/syncs/projects/reset"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_idle(&g, &id, "projects", Some(&projects["last_finished_at"])).await;
    let keyset = fake.api(|d| d.requests.iter().filter(|r| r.query.contains("pagination=keyset")).count());
    assert!(keyset > before, "the reset run read everything by keyset");
    assert!(read_feed(&g, &id, "projects", &cursor, 100).await.0.is_empty());

    // Disabled, a sync does not run; bad settings are refused.
    let r = g
        .call(
            "PATCH",
            &format!("/api/v1/integrations/{id}/syncs/issues"),
            Some(json!({"enabled": false, "interval_seconds": 120})),
            Some(crate::harness::API_KEY),
        )
        .await;
    assert_eq!(
        (r.status, r.body["enabled"].as_bool(), r.body["interval_seconds"].as_i64()),
        (200, Some(false), Some(120))
    );
    let r = g.post(&format!("/api/v1/integrations/{id}/syncs/issues/run"), json!({})).await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    let r = g
        .call(
            "PATCH",
            &format!("/api/v1/integrations/{id}/syncs/issues"),
            Some(json!({"interval_seconds": 1})),
            Some(crate::harness::API_KEY),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    let r = g.post(&format!("/api/v1/integrations/{id}/syncs/wikis/run"), json!({})).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = g.get(&format!("/api/v1/integrations/{id}/records?cursor=abc")).await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));

    // State survives a restart; disconnecting deletes records and syncs.
    g.restart().await;
    assert_eq!(syncs(&g, &id).await["projects"]["records"], 251);
    assert_eq!(g.delete(&format!("/api/v1/integrations/{id}")).await.status, 204);
    let r = g.get(&format!("/api/v1/integrations/{id}/records")).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_run_resumes_from_its_last_page_exactly() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    fake.api(|d| {
        d.add_many_projects(1, 3000, jane);
        d.slow = Duration::from_millis(60);
    });
    let mut g = Gatehouse::start(options()).await;
    let token = fake.token(jane, Kind::Pat, &["read_api"]);
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    // Kill it once a few pages are committed, and not on the last one.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = syncs(&g, &id).await.remove("projects").unwrap();
        if p["current_run"]["added"].as_i64().unwrap_or(0) >= 500 {
            assert!(p["current_run"]["added"].as_i64().unwrap() < 3000);
            break;
        }
        assert!(Instant::now() < deadline, "the sync made no progress: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g.kill_and_restart().await;
    fake.api(|d| d.slow = Duration::ZERO);
    let p = wait_idle(&g, &id, "projects", None).await;
    assert_eq!(p["records"], 3000);
    assert_eq!(p["last_run"], json!({"added": 3000, "updated": 0, "deleted": 0}), "counted once across the crash");
    let (feed, _) = read_feed(&g, &id, "projects", "", 1000).await;
    assert_eq!(feed.len(), 3000, "every record once in the feed");
    assert_eq!(ids(&feed).into_iter().collect::<BTreeSet<_>>().len(), 3000);
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_pause_and_server_errors_retry() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    fake.api(|d| {
        d.add_many_projects(1, 350, jane);
        // Failures below are for the projects list only.
        d.fail_only = Some("/api/v4/projects".into());
    });
    let mut g = Gatehouse::start(options()).await;
    let token = fake.token(jane, Kind::Pat, &["read_api"]);
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    let p = wait_idle(&g, &id, "projects", None).await;
    assert_eq!(p["records"], 350);

    // 429 in the middle of a run: paused, then resumed where it stopped.
    fake.api(|d| {
        d.add_many_projects(400, 250, jane);
        for p in 400..650 {
            d.touch_project(p, None);
        }
        d.fail_next = vec![429];
    });
    let before = fake.hits("/api/v4/projects");
    g.post(&format!("/api/v1/integrations/{id}/syncs/projects/run"), json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let paused = loop {
        let s = syncs(&g, &id).await.remove("projects").unwrap();
        if s["state"] == "paused" {
            break s;
        }
        assert!(Instant::now() < deadline, "the sync did not pause: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(paused["last_error"]["code"], "rate_limited");
    assert!(!paused["paused_until"].is_null());
    let p = wait_idle(&g, &id, "projects", Some(&p["last_finished_at"])).await;
    assert_eq!(p["records"], 600);
    assert_eq!(p["last_run"]["added"], 250);
    assert!(fake.hits("/api/v4/projects") - before <= 5, "resumed, not restarted");

    // The provider's budget runs low: pause until its reset, without a 429.
    let reset = time::OffsetDateTime::now_utc().unix_timestamp() + 2;
    fake.api(|d| {
        d.rate_limit = Some((3, reset));
        for p in 1..=150 {
            d.touch_project(p, None);
        }
    });
    g.post(&format!("/api/v1/integrations/{id}/syncs/projects/run"), json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = syncs(&g, &id).await.remove("projects").unwrap();
        if s["state"] == "paused" {
            assert_eq!(s["last_error"]["code"], "rate_limited");
            break;
        }
        assert!(Instant::now() < deadline, "a spent budget did not pause the sync: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.api(|d| d.rate_limit = None);
    let p = wait_idle(&g, &id, "projects", Some(&p["last_finished_at"])).await;
    assert_eq!(p["last_run"]["updated"], 150);

    // A 500: the run fails, says why, and is retried to completion.
    fake.api(|d| {
        for p in 1..=10 {
            d.touch_project(p, Some(&format!("bulk/moved-{p}")));
        }
        d.fail_next = vec![500];
    });
    g.post(&format!("/api/v1/integrations/{id}/syncs/projects/run"), json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = syncs(&g, &id).await.remove("projects").unwrap();
        if s["state"] == "failed" {
            assert_eq!(s["last_error"]["code"], "upstream_error", "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "the 500 did not fail the run: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = wait_idle(&g, &id, "projects", Some(&p["last_finished_at"])).await;
    assert_eq!(p["last_run"]["updated"], 10);
    assert!(p["last_error"].is_null());
    g.restart().await;
    g.finish(&[token]);
}

/// What a receiver got: headers and body of each request.
pub(crate) type Received = Arc<Mutex<Vec<(BTreeMap<String, String>, String)>>>;

/// A receiver of the consuming system: records what it gets, answers 500 to
/// the first delivery and 204 after.
pub(crate) async fn receiver() -> (String, Received) {
    use poem::{
        Request, Server,
        listener::{Acceptor, TcpAcceptor},
    };
    let got: Received = Arc::default();
    let shared = got.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let app = poem::endpoint::make(move |mut req: Request| {
        let got = shared.clone();
        async move {
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            let body = req.take_body().into_string().await.unwrap_or_default();
            let mut got = got.lock().unwrap();
            got.push((headers, body));
            let status = if got.len() == 1 { 500 } else { 204 };
            poem::Response::builder().status(poem::http::StatusCode::from_u16(status).unwrap()).finish()
        }
    });
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (format!("http://127.0.0.1:{port}/hooks/gatehouse"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_logged() {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    fake.api(|d| d.add_many_projects(1, 20, jane));
    let g = Gatehouse::start(options().arg("--webhook-retry").arg("1s")).await;
    let (url, got) = receiver().await;
    let w = g.post("/api/v1/webhooks", json!({"url": url})).await;
    assert_eq!(w.status, 201, "{}", w.body);
    let secret = w.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let webhook_id = w.body["id"].as_str().unwrap().to_string();
    let listed = g.get("/api/v1/webhooks").await;
    assert!(listed.body["webhooks"][0].get("secret").is_none(), "the secret is shown once");
    let r = g.post("/api/v1/webhooks", json!({"url": "ftp://example.com"})).await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));

    let token = fake.token(jane, Kind::Pat, &["read_api"]);
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (headers, body) = loop {
        let projects_event =
            got.lock().unwrap().iter().filter(|(_, b)| b.contains("\"projects\"")).cloned().collect::<Vec<_>>();
        if projects_event.len() >= 2 || (projects_event.len() == 1 && got.lock().unwrap().len() >= 2) {
            break projects_event.last().unwrap().clone();
        }
        assert!(
            Instant::now() < deadline,
            "no delivery of the projects event after a retry: {:?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Standard Webhooks: HMAC-SHA256 over "id.timestamp.body" with the
    // secret's bytes, base64, after "v1,".
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", headers["webhook-id"], headers["webhook-timestamp"], body).as_bytes());
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(headers["webhook-signature"], expected);
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "sync.completed");
    assert_eq!(event["data"]["integration_id"], id.as_str());
    assert_eq!(event["data"]["added"], 20);
    // The cursor in the event reads exactly the run's changes.
    let cursor = event["data"]["cursor"].as_str().unwrap();
    let (changes, _) = read_feed(&g, &id, "projects", cursor, 100).await;
    assert_eq!(changes.len(), 20);

    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = g.get(&format!("/api/v1/webhooks/{webhook_id}/deliveries")).await;
        assert_eq!(log.status, 200, "{}", log.body);
        let done = log.body["deliveries"].as_array().unwrap().iter().any(|d| d["status"] == "delivered");
        if done {
            break log;
        }
        assert!(Instant::now() < deadline, "no delivery recorded as delivered: {}", log.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deliveries = log.body["deliveries"].as_array().unwrap();
    let retried = deliveries.iter().find(|d| d["attempts"] == 2).expect("the delivery needed a second attempt");
    assert_eq!(retried["status"], "delivered");
    assert_eq!(retried["last_status_code"], 204);
    assert_eq!(retried["id"], headers["webhook-id"].as_str(), "the webhook-id is the delivery's, the same on retries");
    assert!(!log.body.to_string().contains(&secret));
    // A failed run is an event too.
    fake.api(|d| {
        d.fail_only = Some("/api/v4/projects".into());
        d.fail_next = vec![500];
    });
    g.post(&format!("/api/v1/integrations/{id}/syncs/projects/run"), json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let found = got.lock().unwrap().iter().map(|(_, b)| b.clone()).find(|b| b.contains("sync.failed"));
        if let Some(body) = found {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert!(Instant::now() < deadline, "no sync.failed event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["data"]["model"], "projects");
    assert_eq!(failed["data"]["error"]["code"], "upstream_error");

    // The signing secret is stored sealed, never in plain text.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(g.data_dir()).unwrap().flatten() {
        if entry.path().is_file() {
            stored.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the webhook secret is stored in plain text"
    );
    assert_eq!(g.delete(&format!("/api/v1/webhooks/{webhook_id}")).await.status, 204);
    // (The secret was answered once, by design, so the response scan looks
    // for the token only.)
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_webhook_triggers_the_matching_sync_once() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let issue = fake.api(|d| {
        d.add_project(1, "acme/api", &[jane], &[]);
        d.add_issue(1, "Flaky test", (jane, "jane"), 1_767_607_200)
    });
    let g = Gatehouse::start(options()).await;
    let token = fake.pat(jane);
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    let issues = wait_idle(&g, &id, "issues", None).await;

    let manifest = g.get("/api/v1/providers/gitlab-pat").await.body;
    assert_eq!(manifest["inbound_webhook"]["events"][0], json!({"event": "Issue Hook", "model": "issues"}));
    let setup =
        g.call("PUT", &format!("/api/v1/integrations/{id}/inbound-webhook"), None, Some(crate::harness::API_KEY)).await;
    assert_eq!(setup.status, 200, "{}", setup.body);
    assert_eq!(setup.body["url"], format!("{}/api/v1/hooks/{id}", g.base));
    assert_eq!(setup.body["token_header"], "x-gitlab-token");
    let secret = setup.body["secret_token"].as_str().unwrap().to_string();

    let hook = |token: Option<&str>, event: &str, key: &str| {
        let mut req = g
            .client()
            .post(format!("{}/api/v1/hooks/{id}", g.base))
            .header("content-type", "application/json")
            .header("x-gitlab-event", event)
            .header("idempotency-key", key)
            .body(json!({"object_kind": "issue", "object_attributes": {"id": issue}}).to_string());
        if let Some(token) = token {
            req = req.header("x-gitlab-token", token);
        }
        req
    };
    for wrong in [None, Some("not-the-token")] {
        let r = g.send(hook(wrong, "Issue Hook", "k0")).await;
        assert_eq!((r.status, r.code()), (401, "unauthorized"));
    }
    fake.api(|d| d.touch_issue(issue, "Flaky test (quarantined)"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = g.send(hook(Some(&secret), "Issue Hook", "k1")).await;
    assert_eq!((r.status, &r.body), (202, &json!({"duplicate": false, "syncs_due": ["issues"]})));
    let issues = wait_idle(&g, &id, "issues", Some(&issues["last_finished_at"])).await;
    assert_eq!(issues["last_run"]["updated"], 1, "the webhook ran the issues sync");

    // GitLab redelivers with the same Idempotency-Key: nothing runs.
    let r = g.send(hook(Some(&secret), "Issue Hook", "k1")).await;
    assert_eq!((r.status, &r.body["duplicate"]), (202, &json!(true)));
    let r = g.send(hook(Some(&secret), "Pipeline Hook", "k2")).await;
    assert_eq!(r.body["syncs_due"], json!([]), "an event no model follows triggers nothing");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(syncs(&g, &id).await["issues"]["last_finished_at"], issues["last_finished_at"]);

    // Turned off, the token no longer opens anything.
    assert_eq!(g.delete(&format!("/api/v1/integrations/{id}/inbound-webhook")).await.status, 204);
    let r = g.send(hook(Some(&secret), "Issue Hook", "k3")).await;
    assert_eq!(r.status, 401);
    g.finish(&[token]);
}
