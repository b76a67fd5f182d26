//! The connector written in plugins/README.md, built from the guide's code,
//! loaded from --plugins-dir and verifying end to end.

use serde_json::json;

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{Gatehouse, Options},
};

const ACME: &str = gatehouse_test_programs::EXAMPLE_ACME_WASM;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_example_connects() {
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("ada", false), Kind::OAuth, &[]);
    let g = Gatehouse::start(Options::lax().plugin(ACME)).await;
    let creds = json!({"token": token, "base_url": fake.url});
    let c = g.post("/api/v1/integrations", json!({"provider": "acme-token", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["account"]["username"], "ada");
    let bad = json!({"credentials": {"token": "acme-wrong-token-00000000", "base_url": fake.url}});
    let v = g.post("/api/v1/providers/acme-token/verify", bad).await;
    assert_eq!(v.body["error"]["code"], "invalid_token", "{}", v.body);
    g.finish(&fake.all_tokens());
}
