//! GitLab in depth: what a token reaches (personal, group and project
//! tokens), limiting a connection to one group (the proxy refuses what lies
//! outside, actions and syncs stay inside), `expiring` ahead of time with
//! one webhook event per expiry, and regenerating a token through the
//! connector (the old one revoked, a missing scope refused, a connector
//! without rotation answered by the host).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{Gatehouse, Options, connect_pat, pat_body},
    syncs::{read_feed, receiver, wait_idle},
};

/// jane: a member of acme (with its subgroup acme/infra) and tools; of the
/// projects acme/api (31), acme/infra/deploy (32) and tools/ci (41). mallory
/// owns other/secret (51), which jane cannot see.
fn world(fake: &FakeGitlab) -> u64 {
    let jane = fake.add_user("jane", false);
    let mallory = fake.add_user("mallory", false);
    fake.api(|d| {
        d.add_group(9, "acme", &[jane]);
        d.add_group(10, "acme/infra", &[jane]);
        d.add_group(20, "tools", &[jane]);
        d.add_group(50, "other", &[mallory]);
        d.add_project(31, "acme/api", &[jane], &[7]);
        d.add_project(32, "acme/infra/deploy", &[jane], &[]);
        d.add_project(41, "tools/ci", &[jane], &[3]);
        d.add_project(51, "other/secret", &[mallory], &[]);
    });
    jane
}

fn paths(items: &Value) -> Vec<String> {
    items.as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_token_says_which_groups_it_reaches() {
    let fake = FakeGitlab::start().await;
    let jane = world(&fake);
    let token = fake.pat(jane);
    let g = Gatehouse::start(Options::lax()).await;
    let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &fake.url)).await;
    assert_eq!(v.status, 200, "{}", v.body);
    let reach = &v.body["reach"];
    assert_eq!(reach["kind"], "personal", "{reach}");
    assert_eq!((reach["group_count"].as_u64(), reach["project_count"].as_u64()), (Some(3), Some(3)));
    // acme/infra is below acme: the top of what the token reaches is acme and tools.
    assert_eq!(paths(&reach["top_level"]), ["acme", "tools"]);
    assert_eq!(reach["summary"], "This token reaches 3 groups: acme, tools (and 3 projects).");
    assert!(reach["note"].as_str().unwrap().contains("not a single organization"), "{reach}");
    assert!(reach.get("bound_to").is_none());
    // Verify and reach run in one instance: the user verify read is not
    // read again to tell the token's kind.
    assert_eq!(fake.hits("/api/v4/user"), 1);
    assert_eq!(fake.hits("/api/v4/personal_access_tokens/self/associations"), 1);
    // Connected, the integration carries it, in get and list.
    let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["reach"]["summary"], reach["summary"]);
    assert_eq!(c.body["rotatable"], true);
    let listed = g.get("/api/v1/integrations").await;
    assert_eq!(listed.body["integrations"][0]["reach"]["kind"], "personal");
    assert!(fake.hits("/api/v4/personal_access_tokens/self/associations") >= 2);
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_project_access_tokens_are_recognized() {
    let fake = FakeGitlab::start().await;
    world(&fake);
    // GitLab's bot users: members of the one group or project their token
    // belongs to; `GET /user` says `bot: true`.
    let group_bot = fake.add_user("group_9_bot_5f3a1c", true);
    let project_bot = fake.add_user("project_31_bot_77d0e2", true);
    fake.api(|d| {
        d.add_group(9, "acme", &[group_bot]);
        d.add_project(31, "acme/api", &[project_bot], &[7]);
    });
    let g = Gatehouse::start(Options::lax()).await;

    let group_token = fake.token(group_bot, Kind::Pat, &["api"]);
    let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&group_token, &fake.url)).await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.body["token_kind"], "bot");
    let reach = &v.body["reach"];
    assert_eq!(reach["kind"], "group", "{reach}");
    assert_eq!(reach["bound_to"]["path"], "acme");
    assert_eq!(
        reach["summary"],
        "This is a group token for acme: it reaches that group, its subgroups and projects (0 projects)."
    );
    assert!(reach["note"].as_str().unwrap().contains("single-organization"), "{reach}");

    let project_token = fake.token(project_bot, Kind::Pat, &["read_api"]);
    let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&project_token, &fake.url)).await;
    assert_eq!(v.status, 200, "{}", v.body);
    let reach = &v.body["reach"];
    assert_eq!(reach["kind"], "project", "{reach}");
    assert_eq!(reach["bound_to"], json!({"id": "31", "path": "acme/api", "name": "api", "kind": "project"}));
    assert_eq!(reach["summary"], "This is a project token for acme/api: it reaches that project only.");
    assert_eq!(reach["group_count"], 0);

    // Connected, a group token's connection can be limited to its group.
    let c = g.post("/api/v1/integrations", connect_pat(&group_token, &fake.url)).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap();
    let s = g.put(&format!("/api/v1/integrations/{id}/scope"), json!({"scope": "acme"})).await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["scope"]["path"], "acme");
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_limited_to_a_group_stays_inside_it() {
    let fake = FakeGitlab::start().await;
    let jane = world(&fake);
    let token = fake.pat(jane);
    let g = Gatehouse::start(Options::lax().arg("--sync-poll").arg("200ms")).await;
    let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    let scope = async |s: Value| g.put(&format!("/api/v1/integrations/{id}/scope"), json!({ "scope": s })).await;

    // Only what the token reaches can be chosen.
    let r = scope(json!("other")).await;
    assert_eq!((r.status, r.code()), (422, "scope_not_reached"), "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("acme, tools"), "{}", r.body);
    let r = g.put(&format!("/api/v1/integrations/{id}/scope"), json!({})).await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    let r = scope(json!("9")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["scope"], json!({"id": "9", "path": "acme", "name": "acme", "kind": "group"}));
    assert_eq!(g.get(&format!("/api/v1/integrations/{id}")).await.body["scope"]["path"], "acme");

    // The proxy: inside by path, by encoded path of a subgroup's project, by id.
    let proxied = async |path: &str| g.get_proxied(&format!("/api/v1/integrations/{id}/proxy/{path}")).await;
    for inside in [
        "api/v4/projects/acme%2Fapi",
        "api/v4/projects/acme%2Finfra%2Fdeploy",
        "api/v4/projects/31",
        "api/v4/user",
        "api/v4/groups/acme/projects?include_subgroups=true",
    ] {
        let r = proxied(inside).await;
        assert_eq!(r.status, 200, "{inside}: {}", r.body);
    }
    // Outside: another group's project by path and by numeric id, lists
    // across groups, a group outside, something GitLab does not show.
    for (outside, says) in [
        ("api/v4/projects/tools%2Fci", "tools/ci is outside acme"),
        ("api/v4/projects/41/issues", "tools/ci is outside acme"),
        ("api/v4/projects", "limited to acme"),
        ("api/v4/issues?scope=all", "limited to acme"),
        ("api/v4/groups/20", "tools is outside acme"),
        ("api/v4/projects/51", "knows no project"),
        ("api/v4/projects/acme%252Fapi", "encoded twice"),
        ("api/v4/projects/31/fork", "beyond acme"),
    ] {
        let r = proxied(outside).await;
        assert_eq!((r.status, r.code()), (403, "outside_scope"), "{outside}: {}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains(says), "{outside}: {}", r.body);
    }
    // Dot segments hidden in an encoded project path never reach the check.
    let r = proxied("api/v4/projects/acme%2F..%2Ftools%2Fci").await;
    assert_eq!((r.status, r.code()), (400, "validation_error"), "{}", r.body);
    // Nothing outside reached GitLab's project routes for tools/ci.
    let touched =
        fake.api(|d| d.requests.iter().filter(|s| s.path.ends_with("/issues") && s.path.contains("41")).count());
    assert_eq!(touched, 0, "a refused request was forwarded");

    // Actions: a project outside is refused before anything is written.
    let r = g
        .post(&format!("/api/v1/integrations/{id}/actions/create-issue"), json!({"project": "tools/ci", "title": "x"}))
        .await;
    assert_eq!((r.status, r.code()), (403, "provider_forbidden"), "{}", r.body);
    assert!(fake.api(|d| d.issues(41)).is_empty());
    let r = g
        .post(&format!("/api/v1/integrations/{id}/actions/create-issue"), json!({"project": 31, "title": "Inside"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = g.post(&format!("/api/v1/integrations/{id}/actions/list-projects"), json!({})).await;
    let listed: Vec<&str> =
        r.body["projects"].as_array().unwrap().iter().map(|p| p["path_with_namespace"].as_str().unwrap()).collect();
    assert_eq!(listed, ["acme/api", "acme/infra/deploy"]);

    // Syncs: the limit started them over; what lies outside (mirrored by
    // the first runs, before the limit) is deleted from the mirror, what
    // lies inside stays.
    for (model, field, want) in [
        ("projects", "path_with_namespace", ["acme/api", "acme/infra/deploy"]),
        ("groups", "full_path", ["acme", "acme/infra"]),
    ] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            wait_idle(&g, &id, model, None).await;
            let (records, _) = read_feed(&g, &id, model, "", 100).await;
            let mut mirrored: Vec<&str> = records
                .iter()
                .filter(|r| r["action"] != "deleted")
                .map(|r| r["data"][field].as_str().unwrap())
                .collect();
            mirrored.sort();
            if mirrored == want {
                break;
            }
            assert!(Instant::now() < deadline, "{model} mirrors {mirrored:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Lifting the limit lets the rest through again.
    let r = scope(Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("scope").is_none());
    assert_eq!(proxied("api/v4/projects/tools%2Fci").await.status, 200);
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_close_to_expiry_is_expiring_and_announced_once() {
    let fake = FakeGitlab::start().await;
    let jane = world(&fake);
    let lin = fake.add_user("lin", false);
    let g = Gatehouse::start(Options::lax().arg("--expiry-check-interval").arg("300ms")).await;
    let (url, got) = receiver().await;
    assert_eq!(g.post("/api/v1/webhooks", json!({"url": url})).await.status, 201);
    // 30 days out: connected. 5 days out: expiring (default window 14 days).
    let later = fake.pat(lin);
    let soon = fake.pat(jane);
    fake.expire_in(&soon, 5 * 86_400 + 3600);
    let a = g.post("/api/v1/integrations", connect_pat(&later, &fake.url)).await;
    assert_eq!(a.body["status"], "connected", "{}", a.body);
    let b = g.post("/api/v1/integrations", connect_pat(&soon, &fake.url)).await;
    assert_eq!(b.body["status"], "expiring", "{}", b.body);
    let soon_id = b.body["id"].as_str().unwrap().to_string();
    let expires_at = b.body["token_expires_at"].as_str().unwrap().to_string();
    assert!(expires_at.ends_with("T00:00:00Z"), "GitLab tokens end at 00:00 UTC: {expires_at}");
    assert!(b.body["expiry_warning"].as_str().unwrap().contains(&expires_at), "{}", b.body);
    let listed = g.get("/api/v1/integrations").await;
    let status_of = |id: &Value| {
        let all = listed.body["integrations"].as_array().unwrap();
        all.iter().find(|i| &i["id"] == id).unwrap()["status"].as_str().unwrap().to_string()
    };
    assert_eq!((status_of(&a.body["id"]), status_of(&b.body["id"])), ("connected".into(), "expiring".into()));

    // One event for the expiring one (should the receiver's refusal of the
    // first delivery hit it, the retry is the same event, not a second one).
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| b.contains("integration.expiring"))
            .map(|(h, b)| (h["webhook-id"].clone(), serde_json::from_str::<Value>(b).unwrap()))
            .collect::<Vec<_>>()
    };
    while events().is_empty() {
        assert!(Instant::now() < deadline, "no expiring event delivered: {:?}", got.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several more checks pass: still that one event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = events();
    assert!(seen.iter().all(|(id, _)| *id == seen[0].0), "one event per expiry: {seen:?}");
    let event = &seen[0].1;
    assert_eq!(event["type"], "integration.expiring");
    assert_eq!(event["data"]["integration_id"], soon_id.as_str());
    assert_eq!(event["data"]["token_expires_at"], expires_at.as_str());
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_window_is_configurable() {
    let fake = FakeGitlab::start().await;
    let jane = world(&fake);
    let token = fake.pat(jane);
    let g = Gatehouse::start(Options::lax().arg("--expiry-warning").arg("60days")).await;
    let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    assert_eq!(c.body["status"], "expiring", "30 days is inside a 60-day window: {}", c.body);
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_replaces_the_token_and_the_old_one_stops_working() {
    let fake = FakeGitlab::start().await;
    let jane = world(&fake);
    let old = fake.pat(jane);
    let g = Gatehouse::start(Options::lax()).await;
    let c = g.post("/api/v1/integrations", connect_pat(&old, &fake.url)).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    let before = c.body["token_expires_at"].as_str().unwrap().to_string();
    let r = g.post(&format!("/api/v1/integrations/{id}/rotate"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.rotations(), 1);
    assert!(!fake.is_active(&old), "GitLab revoked the old token");
    assert_eq!(r.body["status"], "connected");
    assert_ne!(r.body["token_hint"], c.body["token_hint"], "a new token is stored");
    assert!(r.body.get("rotation_started_at").is_none(), "{}", r.body);
    // The old token's lifetime is kept (30 days), not GitLab's default week.
    assert_eq!(r.body["token_expires_at"].as_str().unwrap(), before);
    // The connection works with the new token, which nobody outside saw.
    let user = g.get_proxied(&format!("/api/v1/integrations/{id}/proxy/api/v4/user")).await;
    assert_eq!((user.status, user.body["username"].as_str()), (200, Some("jane")));
    let v = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(v.body["status"], "connected", "{}", v.body);
    // Again: the new token rotates itself too.
    assert_eq!(g.post(&format!("/api/v1/integrations/{id}/rotate"), json!({})).await.status, 200);
    assert_eq!(fake.rotations(), 2);
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_without_the_scope_is_refused_and_changes_nothing() {
    let fake = FakeGitlab::start().await;
    let jane = world(&fake);
    let token = fake.token(jane, Kind::Pat, &["read_api"]);
    let g = Gatehouse::start(Options::lax()).await;
    let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    let r = g.post(&format!("/api/v1/integrations/{id}/rotate"), json!({})).await;
    assert_eq!((r.status, r.code()), (422, "insufficient_scope"), "{}", r.body);
    assert_eq!(r.body["missing_scopes"], json!(["api", "self_rotate"]));
    assert!(r.body["detail"].as_str().unwrap().contains("needs api or self_rotate"), "{}", r.body);
    assert!(fake.is_active(&token), "the token still works");
    let after = g.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(after.body["token_hint"], c.body["token_hint"]);
    assert_eq!(after.body["status"], "connected");
    assert!(after.body.get("rotation_started_at").is_none(), "{}", after.body);
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_without_rotation_answers_rotation_unsupported() {
    let fake = FakeGitlab::start().await;
    let jane = world(&fake);
    let token = fake.token(jane, Kind::OAuth, &["api"]);
    let g = Gatehouse::start(Options::lax()).await;
    let creds = json!({"access_token": token, "base_url": fake.url});
    let c = g.post("/api/v1/integrations", json!({"provider": "gitlab-oauth", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["rotatable"], false);
    // An OAuth token reaches what its user reaches, counted another way.
    assert_eq!(c.body["reach"]["kind"], "oauth", "{}", c.body);
    assert_eq!(c.body["reach"]["group_count"], 3);
    assert_eq!(c.body["reach"]["project_count"], 3);
    let id = c.body["id"].as_str().unwrap();
    let r = g.post(&format!("/api/v1/integrations/{id}/rotate"), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "rotation_unsupported"), "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("/credentials"), "{}", r.body);
    assert!(fake.is_active(&token));
    g.finish(&fake.all_tokens());
}
