//! `verify` against a scripted upstream, natively: `cargo test`.
#![cfg(not(target_arch = "wasm32"))]

use gatehouse_plugin::{
    Connector, Credentials, VerifyError,
    log::Level,
    testkit::{self, Reply, Upstream},
};
use serde_json::json;
use {{crate_name}}::{ME_PATH, Plugin};

fn credentials() -> Credentials {
    Credentials::new(vec![("token".into(), "test-token".into()), ("base_url".into(), "https://api.example.com".into())])
}

#[test]
fn a_valid_token_names_its_user() {
    let upstream = Upstream::new();
    upstream.on("GET", ME_PATH, Reply::json(200, json!({"id": 7, "username": "jane", "name": "Jane Doe"})));
    let verified = Plugin::verify(&credentials()).unwrap();
    assert_eq!((verified.account.id.as_str(), verified.account.username.as_str()), ("7", "jane"));
    let sent = upstream.requests();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].authenticated, "the host presents the token");
    let logs = testkit::logs();
    assert_eq!((logs[0].level, logs[0].field("user")), (Level::Debug, Some("jane")));
}

#[test]
fn refusals_map_to_the_standard_errors() {
    let upstream = Upstream::new();
    upstream
        .on("GET", ME_PATH, Reply::status(401))
        .on("GET", ME_PATH, Reply::status(429).header("retry-after", "30"))
        .on("GET", ME_PATH, Reply::status(503));
    assert!(matches!(Plugin::verify(&credentials()), Err(VerifyError::InvalidToken(_))));
    assert!(matches!(Plugin::verify(&credentials()), Err(VerifyError::RateLimited(Some(30)))));
    assert!(matches!(Plugin::verify(&credentials()), Err(VerifyError::UpstreamError(_))));
}

#[test]
fn the_manifest_names_the_connector() {
    assert_eq!(Plugin::manifest().id, "{{id}}");
}
