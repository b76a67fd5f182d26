//! The integrations API as a client uses it.

use serde_json::json;

use crate::{
    fake_gitlab::{FakeGitlab, Kind, TokenState},
    harness::{API_KEY, Gatehouse, Options, connect_pat, pat_body},
};

/// Unix seconds as the API writes them.
pub fn rfc3339(secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_docs_and_api_key() {
    let g = Gatehouse::start(Options::lax()).await;
    // Liveness is public; what runs here is not.
    for key in [None, Some("wrong-key")] {
        let health = g.call("GET", "/api/v1/health", None, key).await;
        assert_eq!((health.status, health.body.clone()), (200, json!({"status": "ok"})));
    }
    // So is readiness: the database answers with every migration applied,
    // and the connectors are loaded.
    let backend = if g.database_url().is_some() { "postgres" } else { "sqlite" };
    let ready = g.call("GET", "/api/v1/ready", None, None).await;
    assert_eq!(
        (ready.status, ready.body.clone()),
        (200, json!({"status": "ready", "database": backend, "connectors": 2}))
    );
    let health = g.get("/api/v1/health").await;
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["plugins"], json!(["gitlab-oauth", "gitlab-pat"]));
    assert_eq!(health.body["version"], env!("CARGO_PKG_VERSION"));
    // Answers are not cached nor sniffed, errors included.
    let unauthorized = g.call("GET", "/api/v1/integrations", None, None).await;
    for r in [&health, &unauthorized] {
        assert_eq!(r.headers["cache-control"], "no-store");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    let icon = g.client().get(format!("{}/favicon.ico", g.base)).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/x-icon");
    assert_eq!(icon.headers()["x-content-type-options"], "nosniff");
    assert!(icon.bytes().await.unwrap().starts_with(&[0, 0, 1, 0]), "an ICO file");

    for key in [None, Some("wrong-key")] {
        let r = g.call("GET", "/api/v1/integrations", None, key).await;
        assert_eq!((r.status, r.code()), (401, "unauthorized"));
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
    let r = g.call("POST", "/api/v1/providers/gitlab-pat/verify", Some(json!({})), None).await;
    assert_eq!(r.status, 401);

    let spec = g.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(spec.status, 200);
    for path in [
        "/api/v1/health",
        "/api/v1/providers",
        "/api/v1/providers/{provider_id}",
        "/api/v1/providers/{provider_id}/verify",
        "/api/v1/integrations",
        "/api/v1/integrations/{id}",
        "/api/v1/integrations/{id}/verify",
        "/api/v1/integrations/{id}/credentials",
    ] {
        assert!(spec.body["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    assert_eq!(spec.body["components"]["securitySchemes"]["ApiKey"]["scheme"], "bearer");
    // Built on the first request (not at start): the same page every time,
    // with the document in it.
    let docs = g.client().get(format!("{}/docs", g.base)).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let page = docs.text().await.unwrap();
    assert!(page.contains("swagger"));
    assert!(page.contains("/api/v1/providers/{provider_id}/verify"), "the page lacks the document");
    let again = g.client().get(format!("{}/docs", g.base)).send().await.unwrap();
    assert_eq!(again.text().await.unwrap(), page);
    let receiver = g.client().get(format!("{}/docs/oauth-receiver.html", g.base)).send().await.unwrap();
    assert_eq!(receiver.status(), 200);
    g.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_show_the_product_page_fields() {
    let g = Gatehouse::start(Options::lax()).await;
    let list = g.get("/api/v1/providers").await;
    assert_eq!(list.body["providers"].as_array().unwrap().len(), 2);
    let pat = g.get("/api/v1/providers/gitlab-pat").await.body;
    assert_eq!(pat["name"], "Connect using Personal Access Tokens (PAT)");
    assert_eq!(pat["auth_method"], "personal_access_token");
    assert_eq!(
        pat["notes"],
        json!([
            "A PAT has access to only a single organization in GitLab. Please make sure you enter the correct PAT here."
        ])
    );
    assert_eq!(pat["fields"][0]["label"], "Personal Access Token (PAT)");
    assert_eq!(pat["fields"][0]["kind"], "secret");
    assert_eq!(pat["fields"][1]["label"], "GitLab Base URL");
    assert_eq!(pat["fields"][1]["default"], "https://gitlab.com");
    assert_eq!(pat["required_scopes"], json!(["api", "read_api"]));
    assert_eq!(pat["required_scopes_rule"], "any_of");
    assert_eq!(pat["plugin"]["wit_version"], "0.4.0");
    assert_eq!(pat["plugin"]["sha256"].as_str().unwrap().len(), 64);
    let oauth = g.get("/api/v1/providers/gitlab-oauth").await.body;
    assert_eq!(oauth["name"], "Connect using OAuth v2");
    assert_eq!(oauth["auth_method"], "oauth2");
    assert_eq!(oauth["fields"][0]["key"], "access_token");
    assert_eq!(oauth["fields"][0]["label"], "Access Token");
    let missing = g.get("/api/v1/providers/nope").await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"));
    g.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_stores_nothing_and_connect_stores() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let token = fake.pat(jane);
    let g = Gatehouse::start(Options::lax()).await;

    let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &fake.url)).await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.body["valid"], true);
    assert_eq!(v.body["account"]["username"], "jane");
    assert_eq!(v.body["account"]["id"], jane.to_string());
    assert_eq!(v.body["scopes"], json!(["api"]));
    assert_eq!(v.body["token_kind"], "personal");
    let pat_expiry = time::OffsetDateTime::from_unix_timestamp(fake.expires_at(&token)).unwrap();
    assert_eq!(v.body["expires_at"], pat_expiry.date().to_string());
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));

    let c = g.post("/api/v1/integrations", connect_pat(&token, &format!("{}/", fake.url))).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap().to_string();
    assert_eq!(c.headers["location"], format!("/api/v1/integrations/{id}"));
    assert_eq!(c.body["status"], "connected");
    assert_eq!(c.body["base_url"], fake.url, "the trailing slash is normalised away");
    assert_eq!(c.body["token_hint"], &token[token.len() - 4..]);
    assert_eq!(c.body["account"]["username"], "jane");
    assert!(c.body["last_verified_at"].is_string());
    assert!(c.body["last_error"].is_null());

    let list = g.get("/api/v1/integrations").await;
    assert_eq!(list.body["integrations"].as_array().unwrap().len(), 1);
    let one = g.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(one.body["id"], id);

    // OAuth access tokens connect the same way.
    let oauth = fake.token(jane, Kind::OAuth, &["read_api"]);
    let body = json!({"provider": "gitlab-oauth", "credentials": {"access_token": oauth, "base_url": fake.url}});
    let c = g.post("/api/v1/integrations", body).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["token_kind"], "oauth");
    assert_eq!(c.body["token_expires_at"], rfc3339(fake.expires_at(&oauth)));
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"].as_array().unwrap().len(), 2);

    // The document marks no field nullable, so no answer carries a null: a
    // strict generated client refuses one. An absent optional field is left out.
    let revoked = fake.pat(jane);
    fake.set_state(&revoked, crate::fake_gitlab::TokenState::Revoked);
    let answers = [
        g.get("/api/v1/providers").await.body,
        g.get("/api/v1/integrations").await.body,
        g.get(&format!("/api/v1/integrations/{id}")).await.body,
        g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &fake.url)).await.body,
        g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&revoked, &fake.url)).await.body,
        g.get("/api/v1/health").await.body,
    ];
    for answer in answers {
        assert_no_null(&answer, "");
    }
    g.finish(&fake.all_tokens());
}

/// Free-form JSON (an action's JSON Schemas, where `null` is a value) is
/// not the document's to describe and is skipped.
fn assert_no_null(value: &serde_json::Value, at: &str) {
    if at.ends_with("_schema") {
        return;
    }
    match value {
        serde_json::Value::Null => panic!("null at {at:?}"),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| assert_no_null(v, &format!("{at}/{i}")))
        }
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| assert_no_null(v, &format!("{at}/{k}"))),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_the_same_account_replaces_credentials() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let (first, second) = (fake.pat(jane), fake.pat(jane));
    let g = Gatehouse::start(Options::lax()).await;
    let a = g.post("/api/v1/integrations", connect_pat(&first, &fake.url)).await;
    assert_eq!(a.status, 201);
    let b = g.post("/api/v1/integrations", connect_pat(&second, &fake.url)).await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(a.body["id"], b.body["id"]);
    assert_eq!(b.body["token_hint"], &second[second.len() - 4..]);
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"].as_array().unwrap().len(), 1);

    // The stored token is now the second one: revoking the first changes nothing.
    fake.set_state(&first, TokenState::Revoked);
    let id = a.body["id"].as_str().unwrap();
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(r.body["status"], "connected");
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_account_and_refuses_another() {
    let fake = FakeGitlab::start().await;
    let (jane, joe) = (fake.add_user("jane", false), fake.add_user("joe", false));
    let (old, new, joes) = (fake.pat(jane), fake.pat(jane), fake.pat(joe));
    let g = Gatehouse::start(Options::lax()).await;
    let id =
        g.post("/api/v1/integrations", connect_pat(&old, &fake.url)).await.body["id"].as_str().unwrap().to_string();

    let other = g.put(&format!("/api/v1/integrations/{id}/credentials"), json!({"credentials": {"token": joes}})).await;
    assert_eq!((other.status, other.code()), (409, "account_mismatch"));
    assert!(other.body["detail"].as_str().unwrap().contains("jane"));
    let still = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(still.body["status"], "connected", "the old token is kept after a refused rotation");

    let bad = g
        .put(
            &format!("/api/v1/integrations/{id}/credentials"),
            json!({"credentials": {"token": "glpat-nope-nope-nope"}}),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (422, "invalid_token"));

    let rotated =
        g.put(&format!("/api/v1/integrations/{id}/credentials"), json!({"credentials": {"token": new}})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["id"], id);
    assert_eq!(rotated.body["token_hint"], &new[new.len() - 4..]);
    fake.set_state(&old, TokenState::Revoked);
    let after = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(after.body["status"], "connected", "the new token is the one in use");
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverify_after_revocation_and_expiry_upstream() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let token = fake.pat(jane);
    let g = Gatehouse::start(Options::lax()).await;
    let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    let first_check = c.body["last_verified_at"].as_str().unwrap().to_string();

    fake.set_state(&token, TokenState::Revoked);
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "invalid");
    assert_eq!(r.body["last_error"]["code"], "token_revoked");
    assert!(r.body["last_verified_at"].as_str().unwrap() >= first_check.as_str());
    assert_eq!(g.get(&format!("/api/v1/integrations/{id}")).await.body["status"], "invalid");

    fake.set_state(&token, TokenState::Expired);
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(
        (r.body["status"].as_str(), r.body["last_error"]["code"].as_str()),
        (Some("expired"), Some("token_expired"))
    );

    fake.set_state(&token, TokenState::Active);
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(r.body["status"], "connected");
    assert!(r.body["last_error"].is_null());
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_erases_the_integration() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let mut g = Gatehouse::start(Options::lax()).await;
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    if let Some(url) = g.database_url().map(str::to_string) {
        // PostgreSQL: erased from the database (a deleted row's bytes stay
        // in its files until VACUUM; they are sealed, as everything there).
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let count = |sql: &'static str| {
            let pool = pool.clone();
            let id = id.clone();
            async move { sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(&pool).await.unwrap() }
        };
        assert_eq!(count("SELECT COUNT(*) FROM integrations WHERE id = $1").await, 1);
        assert_eq!(g.delete(&format!("/api/v1/integrations/{id}")).await.status, 204);
        assert_eq!(count("SELECT COUNT(*) FROM integrations WHERE id = $1").await, 0);
        let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log WHERE target_id = $1 ORDER BY seq")
            .bind(&id)
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(actions, ["integration.connect", "integration.disconnect"]);
        pool.close().await;
        assert_eq!(g.delete(&format!("/api/v1/integrations/{id}")).await.status, 404);
        return g.finish(&fake.all_tokens());
    }
    let db = g.data_dir().join("gatehouse.db");
    let ciphertext: Vec<u8> = {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let c = sqlx::query_scalar("SELECT secret_ciphertext FROM integrations WHERE id = ?")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        c
    };
    assert!(ciphertext.len() >= 16, "the sealed token is stored");
    assert_eq!(g.delete(&format!("/api/v1/integrations/{id}")).await.status, 204);
    for path in [format!("/api/v1/integrations/{id}"), format!("/api/v1/integrations/{id}/verify")] {
        let method = if path.ends_with("verify") { "POST" } else { "GET" };
        let r = g.call(method, &path, None, Some(API_KEY)).await;
        assert_eq!((r.status, r.code()), (404, "not_found"));
    }
    assert_eq!(g.delete(&format!("/api/v1/integrations/{id}")).await.status, 404);
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));
    // Erased from the database file itself, not only from the API's view.
    g.stop();
    let file = std::fs::read(&db).unwrap();
    let count = |needle: &[u8]| file.windows(needle.len()).filter(|w| *w == needle).count();
    assert_eq!(count(&ciphertext), 0, "the ciphertext is still in {}", db.display());
    // The id stays only where the audit log names the connect and the
    // disconnect: once in each entry and once in its target index.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log WHERE target_id = ? ORDER BY seq")
        .bind(&id)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(actions, ["integration.connect", "integration.disconnect", "integration.disconnect"]);
    assert_eq!(count(id.as_bytes()), 2 * actions.len(), "the id is still in {} outside the audit log", db.display());
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_credentials_survive_a_restart() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let mut g = Gatehouse::start(Options::lax()).await;
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    let calls_before = fake.hits("/api/v4/personal_access_tokens/self");
    g.restart().await;
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "connected");
    assert_eq!(
        fake.hits("/api/v4/personal_access_tokens/self"),
        calls_before + 1,
        "the decrypted token was sent upstream"
    );
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_validation_errors() {
    let fake = FakeGitlab::start().await;
    let g = Gatehouse::start(Options::lax()).await;
    let malformed = g
        .send(
            g.client()
                .post(format!("{}/api/v1/integrations", g.base))
                .bearer_auth(API_KEY)
                .header("content-type", "application/json")
                .body("{\"provider\": "),
        )
        .await;
    assert_eq!((malformed.status, malformed.code()), (400, "validation_error"));
    let cases = [
        json!({"provider": "gitlab-pat"}),
        json!({"provider": "gitlab-pat", "credentials": {}, "extra": 1}),
        json!({"provider": "gitlab-pat", "credentials": {"base_url": fake.url}}),
        json!({"provider": "gitlab-pat", "credentials": {"token": "glpat-x", "colour": "red"}}),
        json!({"provider": "gitlab-pat", "credentials": {"token": 12345}}),
    ];
    for body in cases {
        let r = g.post("/api/v1/integrations", body.clone()).await;
        assert_eq!((r.status, r.code()), (400, "validation_error"), "{body}: {}", r.body);
    }
    let r = g.post("/api/v1/integrations", json!({"provider": "nope", "credentials": {}})).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = g.get("/api/v1/integrations/not-a-uuid").await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    let r = g.get("/api/v1/integrations/8d5e2bb4-3a59-4c4e-9b8f-6f0f1e7a2c11").await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let huge = json!({"provider": "gitlab-pat", "credentials": {"token": "x".repeat(200_000)}});
    let r = g.post("/api/v1/integrations", huge).await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]), "nothing half-written");
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_verifies() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let g = std::sync::Arc::new(Gatehouse::start(Options::lax()).await);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (g, body) = (g.clone(), pat_body(&token, &fake.url));
            tokio::spawn(async move { g.post("/api/v1/providers/gitlab-pat/verify", body).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!((r.status, &r.body["valid"]), (200, &json!(true)), "{}", r.body);
    }
    let g = std::sync::Arc::into_inner(g).unwrap();
    g.finish(&fake.all_tokens());
}
