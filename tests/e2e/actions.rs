//! Actions as a client uses them: the GitLab connectors' `create-issue`,
//! `add-merge-request-note` and `list-projects` against the fake GitLab,
//! input validation with the failing JSON pointer, output validation, each
//! error code, and a hostile component that tries every way to learn the
//! credential it acts with.

use serde_json::{Value, json};

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{API_KEY, Gatehouse, Options, connect_pat},
};

const SNOOP: &str = gatehouse_test_programs::TEST_SNOOP_WASM;

fn action(id: &str, name: &str) -> String {
    format!("/api/v1/integrations/{id}/actions/{name}")
}

/// Jane with projects 1..=3 (merge request !7 in project 1) and joe's
/// project 4.
fn projects(fake: &FakeGitlab) -> u64 {
    let jane = fake.add_user("jane", false);
    let joe = fake.add_user("joe", false);
    fake.api(|d| {
        d.add_project(1, "acme/api", &[jane], &[7]);
        d.add_project(2, "acme/web", &[jane], &[]);
        d.add_project(3, "acme/infra/terraform", &[jane], &[]);
        d.add_project(4, "joe/private", &[joe], &[]);
    });
    jane
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_actions_through_both_connectors() {
    let fake = FakeGitlab::start().await;
    let jane = projects(&fake);
    let g = Gatehouse::start(Options::lax()).await;

    let manifest = g.get("/api/v1/providers/gitlab-pat").await.body;
    let names: Vec<&str> =
        manifest["actions"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["create-issue", "add-merge-request-note", "list-projects"]);
    assert_eq!(manifest["credential_presentation"], json!({"header": "private-token", "value": "{token}"}));
    let create = &manifest["actions"][0];
    assert_eq!(create["input_schema"]["required"], json!(["project", "title"]));
    let oauth = g.get("/api/v1/providers/gitlab-oauth").await.body;
    assert_eq!(oauth["actions"].as_array().unwrap().len(), 3, "both connectors offer the same actions");
    assert_eq!(oauth["credential_presentation"]["value"], "Bearer {access_token}");
    let spec = g.call("GET", "/api/openapi.json", None, None).await.body;
    assert!(spec["paths"]["/api/v1/integrations/{id}/actions/{name}"]["post"].is_object());

    let pat = fake.token(jane, Kind::Pat, &["api"]);
    let id =
        g.post("/api/v1/integrations", connect_pat(&pat, &fake.url)).await.body["id"].as_str().unwrap().to_string();

    let r = g
        .post(
            &action(&id, "create-issue"),
            json!({"project": "acme/api", "title": "Build fails on main", "description": "Since 10:02.", "labels": ["ci", "bug"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["iid"], 1);
    assert_eq!(r.body["project_id"], 1);
    assert_eq!(r.body["state"], "opened");
    assert_eq!(r.body["web_url"], "https://gitlab.example.com/acme/api/-/issues/1");
    let issue = fake.api(|d| d.issues(1))[0].clone();
    assert_eq!(issue["labels"], json!(["ci", "bug"]));
    assert_eq!(issue["description"], "Since 10:02.");
    let seen = fake.api(|d| d.requests.last().cloned().unwrap());
    assert_eq!(
        (seen.path.as_str(), seen.auth_header.as_str()),
        ("/api/v4/projects/acme%2Fapi/issues", "private-token")
    );

    let r = g
        .post(
            &action(&id, "add-merge-request-note"),
            json!({"project": 1, "merge_request_iid": 7, "body": "Looks good to me."}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["author_username"].as_str(), r.body["merge_request_iid"].as_u64()), (Some("jane"), Some(7)));
    assert_eq!(fake.api(|d| d.notes(1))[0]["body"], "Looks good to me.");

    // Paginated read: every project jane reaches, two at a time.
    let mut all = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..5 {
        let mut input = json!({"per_page": 2});
        if !cursor.is_null() {
            input["cursor"] = cursor.clone();
        }
        let r = g.post(&action(&id, "list-projects"), input).await;
        assert_eq!(r.status, 200, "{}", r.body);
        all.extend(r.body["projects"].as_array().unwrap().iter().map(|p| p["path_with_namespace"].clone()));
        cursor = r.body["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(all, [json!("acme/api"), json!("acme/web"), json!("acme/infra/terraform")]);

    // The OAuth connector acts with a Bearer token.
    let access = fake.token(jane, Kind::OAuth, &["api"]);
    let o = g
        .post(
            "/api/v1/integrations",
            json!({"provider": "gitlab-oauth", "credentials": {"access_token": access, "base_url": fake.url}}),
        )
        .await;
    let oid = o.body["id"].as_str().unwrap();
    let r = g.post(&action(oid, "create-issue"), json!({"project": 2, "title": "From OAuth"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.api(|d| d.requests.last().cloned().unwrap()).auth_header, "authorization");
    g.finish(&[pat, access]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_is_validated_before_the_connector_runs() {
    let fake = FakeGitlab::start().await;
    let jane = projects(&fake);
    let g = Gatehouse::start(Options::lax()).await;
    let pat = fake.token(jane, Kind::Pat, &["api"]);
    let id =
        g.post("/api/v1/integrations", connect_pat(&pat, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    let before = fake.api(|d| d.requests.len());
    for (input, pointer) in [
        (json!({"project": "acme/api", "title": 42}), "/title"),
        (json!({"project": "acme/api", "title": "t", "labels": ["ok", 7]}), "/labels/1"),
        (json!({"project": "acme/api", "title": ""}), "/title"),
        (json!({"project": "acme/api", "title": "x".repeat(256)}), "/title"),
        (json!({"project": true, "title": "t"}), "/project"),
        (json!({"title": "t"}), ""),
        (json!({"project": 1, "title": "t", "assignee": "joe"}), ""),
        (json!("not an object"), ""),
    ] {
        let r = g.post(&action(&id, "create-issue"), input.clone()).await;
        assert_eq!((r.status, r.code()), (400, "validation_error"), "{input}: {}", r.body);
        assert_eq!(r.body["pointer"], pointer, "{input}: {}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains("create-issue"), "{}", r.body);
    }
    let r = g
        .post(&action(&id, "add-merge-request-note"), json!({"project": 1, "merge_request_iid": 0, "body": "x"}))
        .await;
    assert_eq!((r.status, r.body["pointer"].as_str()), (400, Some("/merge_request_iid")));
    let r = g.post(&action(&id, "list-projects"), json!({"per_page": 101})).await;
    assert_eq!((r.status, r.body["pointer"].as_str()), (400, Some("/per_page")));
    assert_eq!(fake.api(|d| d.requests.len()), before, "invalid input reached the provider");

    let r = g.post(&action(&id, "delete-everything"), json!({})).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    assert!(r.body["detail"].as_str().unwrap().contains("create-issue"), "the detail lists the actions: {}", r.body);
    let r = g.post(&action("0b7e3e2c-5d2a-4f7e-9a55-3f1f6d2b8c11", "create-issue"), json!({})).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = g.call("POST", &action(&id, "create-issue"), Some(json!({})), None).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    g.finish(&[pat]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_refusals_become_stable_codes() {
    let fake = FakeGitlab::start().await;
    let jane = projects(&fake);
    let g = Gatehouse::start(Options::lax()).await;
    let read_only = fake.token(jane, Kind::Pat, &["read_api"]);
    let ro = g.post("/api/v1/integrations", connect_pat(&read_only, &fake.url)).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = g.post(&action(&ro, "create-issue"), json!({"project": 1, "title": "t"})).await;
    assert_eq!((r.status, r.code()), (403, "provider_forbidden"), "{}", r.body);
    // The same account again replaces the credentials of the same integration.
    let writer = fake.token(jane, Kind::Pat, &["api"]);
    let rw =
        g.post("/api/v1/integrations", connect_pat(&writer, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(rw, ro);
    let r = g.post(&action(&rw, "create-issue"), json!({"project": "joe/private", "title": "t"})).await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.body);
    let r = g
        .post(&action(&rw, "add-merge-request-note"), json!({"project": 1, "merge_request_iid": 99, "body": "x"}))
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.body);
    fake.api(|d| d.fail_next = vec![429]);
    let r = g.post(&action(&ro, "list-projects"), json!({})).await;
    assert_eq!((r.status, r.code(), r.body["retry_after"].as_u64()), (429, "rate_limited", Some(1)), "{}", r.body);
    fake.api(|d| d.fail_next = vec![500]);
    let r = g.post(&action(&ro, "list-projects"), json!({})).await;
    assert_eq!((r.status, r.code()), (502, "upstream_error"), "{}", r.body);
    // The stored token was revoked: invalid_token, with what to do next.
    fake.set_state(&writer, crate::fake_gitlab::TokenState::Revoked);
    let r = g.post(&action(&rw, "list-projects"), json!({})).await;
    assert_eq!((r.status, r.code()), (422, "invalid_token"), "{}", r.body);

    // Every variant a connector can answer, through the test component.
    let g2 = Gatehouse::start(Options::lax().plugin(SNOOP)).await;
    let token = fake.pat(jane);
    let c = g2
        .post(
            "/api/v1/integrations",
            json!({"provider": "test-snoop", "credentials": {"token": token, "base_url": fake.url}}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap();
    for (variant, status, code) in [
        ("invalid-input", 400, "validation_error"),
        ("not-found", 404, "not_found"),
        ("unauthorized", 422, "invalid_token"),
        ("forbidden", 403, "provider_forbidden"),
        ("rate-limited", 429, "rate_limited"),
        ("upstream-error", 502, "upstream_error"),
        ("upstream-unreachable", 502, "upstream_unreachable"),
        ("upstream-timeout", 504, "upstream_timeout"),
        ("egress-denied", 403, "egress_denied"),
        ("unsupported", 404, "not_found"),
    ] {
        let r = g2.post(&action(id, "fail"), json!({"error": variant})).await;
        assert_eq!((r.status, r.code()), (status, code), "{variant}: {}", r.body);
        if variant == "rate-limited" {
            assert_eq!(r.body["retry_after"], 7);
            assert_eq!(r.headers["retry-after"], "7");
        }
    }
    let r = g2.post(&action(id, "bad-output"), json!({})).await;
    assert_eq!((r.status, r.code(), r.body["pointer"].as_str()), (502, "plugin_failed", Some("/found")), "{}", r.body);
    g2.finish(std::slice::from_ref(&token));
    g.finish(&[read_only, writer, token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_acting_for_a_connection_never_sees_its_credential() {
    let fake = FakeGitlab::start().await;
    let jane = projects(&fake);
    let g = Gatehouse::start(Options::lax().plugin(SNOOP)).await;
    let token = fake.pat(jane);
    // Its verify only asks the host to authenticate; the host presents the
    // credentials being verified.
    let c = g
        .post(
            "/api/v1/integrations",
            json!({"provider": "test-snoop", "credentials": {"token": token, "base_url": fake.url}}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["account"]["username"], "jane");
    let id = c.body["id"].as_str().unwrap();
    let snoop = g.get("/api/v1/providers/test-snoop").await.body;
    assert_eq!(snoop["plugin"]["wit_version"], "0.4.0");

    let r = g.post(&action(id, "whoami"), json!({})).await;
    assert_eq!((r.status, r.body["username"].as_str()), (200, Some("jane")), "authenticated requests work: {}", r.body);

    let r = g.post(&action(id, "snoop"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let found = r.body["found"].as_str().unwrap();
    assert!(!found.contains(&token), "the connector learnt the credential: {found}");
    assert!(found.contains("[redacted]"), "the echoed credential was scrubbed: {found}");
    assert!(found.contains(&fake.url), "it did see its connection: {found}");
    assert!(found.to_lowercase().contains("denied"), "an authenticated request to another origin is refused: {found}");
    assert!(!found.contains(API_KEY));
    g.finish(&[token]);
}
