//! A whole session of use — connect, verify, rotate, errors, restart,
//! disconnect — after which no token appears anywhere it should not.

use serde_json::json;

use crate::{
    fake_gitlab::{Behavior, FakeGitlab, Kind, TokenState},
    harness::{Gatehouse, Options, connect_pat, pat_body},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_leaks_anywhere() {
    let fake = FakeGitlab::start().await;
    let (jane, joe) = (fake.add_user("jane", false), fake.add_user("joe", true));
    let mut g = Gatehouse::start(Options::lax().arg("--http-timeout").arg("1s")).await;

    let t1 = fake.pat(jane);
    let c = g.post("/api/v1/integrations", connect_pat(&t1, &fake.url)).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    let bot = fake.pat(joe);
    let b = g.post("/api/v1/integrations", connect_pat(&bot, &fake.url)).await;
    assert_eq!(b.body["token_kind"], "bot");
    let oauth = fake.token(jane, Kind::OAuth, &["api"]);
    let o = g
        .post(
            "/api/v1/integrations",
            json!({"provider": "gitlab-oauth", "credentials": {"access_token": oauth, "base_url": fake.url}}),
        )
        .await;
    assert_eq!(o.status, 201);

    let t2 = fake.pat(jane);
    g.put(&format!("/api/v1/integrations/{id}/credentials"), json!({"credentials": {"token": t2}})).await;
    g.put(&format!("/api/v1/integrations/{id}/credentials"), json!({"credentials": {"token": bot}})).await;
    for behavior in [Behavior::RateLimited, Behavior::Status(500), Behavior::Hang, Behavior::Huge] {
        let t = fake.pat(jane);
        fake.set_behavior(&t, behavior);
        g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&t, &fake.url)).await;
    }
    let revoked = fake.pat(jane);
    fake.set_state(&revoked, TokenState::Revoked);
    g.post("/api/v1/integrations", connect_pat(&revoked, &fake.url)).await;
    // Secrets pasted into the wrong place come back without their value.
    let r = g.post("/api/v1/integrations", json!({"provider": "gitlab-pat", "credentials": t1})).await;
    assert_eq!(r.status, 400);
    let r = g.post("/api/v1/integrations", json!({"provider": t1, "credentials": {}})).await;
    assert_eq!(r.status, 404);

    fake.set_state(&t2, TokenState::Revoked);
    g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    g.restart().await;
    let list = g.get("/api/v1/integrations").await;
    assert_eq!(list.body["integrations"].as_array().unwrap().len(), 3);
    for i in list.body["integrations"].as_array().unwrap() {
        assert!(i["token_hint"].as_str().unwrap().len() <= 4);
    }
    assert_eq!(g.delete(&format!("/api/v1/integrations/{id}")).await.status, 204);
    g.finish(&fake.all_tokens());
}
