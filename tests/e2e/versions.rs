//! WIT versions: components built against the frozen
//! `gatehouse:plugin@0.1.0` and `@0.2.0` load beside 0.3.0 ones and verify
//! end to end.

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
    assert_eq!(g.get("/api/v1/providers/gitlab-pat").await.body["plugin"]["wit_version"], "0.3.0");
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
