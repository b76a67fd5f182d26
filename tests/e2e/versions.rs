//! WIT versions: components built against the frozen
//! `gatehouse:plugin@0.1.0`, `@0.2.0` and `@0.3.0` load beside 0.4.0 ones
//! and verify end to end; a 0.3.0 one runs its actions, and what 0.4.0
//! added (reach, a scope, rotation) is answered for it by the host.

use serde_json::json;

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{Gatehouse, Options},
};

const LEGACY: &str = gatehouse_test_programs::TEST_V0_1_WASM;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_component_still_loads_and_verifies() {
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("lin", false), Kind::OAuth, &["api"]);
    let g = Gatehouse::start(Options::lax().plugin(LEGACY)).await;
    let legacy = g.get("/api/v1/providers/legacy-bearer").await;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    assert_eq!(legacy.body["plugin"]["wit_version"], "0.1.0");
    assert!(legacy.body["oauth"].is_null());
    assert_eq!(g.get("/api/v1/providers/gitlab-pat").await.body["plugin"]["wit_version"], "0.4.0");
    let creds = json!({"token": token, "base_url": fake.url});
    let c = g.post("/api/v1/integrations", json!({"provider": "legacy-bearer", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["account"]["username"], "lin");
    // OAuth calls to a 0.1.0 connector are answered by the host.
    let r = g.get("/api/v1/oauth/legacy-bearer/authorize?redirect=false").await;
    assert_eq!((r.status, r.code()), (400, "oauth_unsupported"));
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_0_component_still_loads_and_verifies() {
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("lin", false), Kind::OAuth, &["api"]);
    let g = Gatehouse::start(Options::lax().plugin(gatehouse_test_programs::TEST_V0_2_WASM)).await;
    let legacy = g.get("/api/v1/providers/legacy-v2").await;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    assert_eq!(legacy.body["plugin"]["wit_version"], "0.2.0");
    assert_eq!(legacy.body["actions"], json!([]));
    assert!(legacy.body["credential_presentation"].is_null());
    let creds = json!({"token": token, "base_url": fake.url});
    let c = g.post("/api/v1/integrations", json!({"provider": "legacy-v2", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["account"]["username"], "lin");
    let id = c.body["id"].as_str().unwrap();
    // A 0.2.0 connector has no actions: the host answers without calling it.
    let r = g.post(&format!("/api/v1/integrations/{id}/actions/anything"), json!({})).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_3_0_component_still_loads_verifies_and_acts() {
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("lin", false), Kind::OAuth, &["api"]);
    let g = Gatehouse::start(Options::lax().plugin(gatehouse_test_programs::TEST_V0_3_WASM)).await;
    let legacy = g.get("/api/v1/providers/legacy-v3").await;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    assert_eq!(legacy.body["plugin"]["wit_version"], "0.3.0");
    assert_eq!(legacy.body["actions"][0]["name"], "whoami");
    let plugins = g.get("/api/v1/plugins").await;
    let loaded = plugins.body["loaded"].as_array().unwrap();
    let exports = &loaded.iter().find(|p| p["id"] == "legacy-v3").unwrap()["exports"];
    assert_eq!(exports, &json!(["connector", "actions"]));
    let pat = &loaded.iter().find(|p| p["id"] == "gitlab-pat").unwrap()["exports"];
    assert_eq!(pat, &json!(["connector", "actions", "syncs", "reach", "rotation"]));
    let creds = json!({"token": token, "base_url": fake.url});
    let c = g.post("/api/v1/integrations", json!({"provider": "legacy-v3", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["account"]["username"], "lin");
    assert!(c.body.get("reach").is_none(), "0.3.0 cannot tell what a token reaches: {}", c.body);
    assert_eq!(c.body["rotatable"], false);
    let id = c.body["id"].as_str().unwrap();
    // Its action runs, its request authenticated by the host.
    let r = g.post(&format!("/api/v1/integrations/{id}/actions/whoami"), json!({})).await;
    assert_eq!((r.status, &r.body), (200, &json!({"login": "lin"})));
    // What 0.4.0 added is answered by the host, without calling it.
    let r = g.post(&format!("/api/v1/integrations/{id}/rotate"), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "rotation_unsupported"), "{}", r.body);
    let r = g.put(&format!("/api/v1/integrations/{id}/scope"), json!({"scope": "acme"})).await;
    assert_eq!((r.status, r.code()), (409, "scope_unsupported"), "{}", r.body);
    g.finish(&fake.all_tokens());
}
