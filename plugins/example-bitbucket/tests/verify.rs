//! The Bitbucket connector against a scripted Bitbucket, natively.
#![cfg(not(target_arch = "wasm32"))]

use example_bitbucket::BitbucketPat;
use gatehouse_plugin::{
    Connector, Credentials, VerifyError,
    log::Level,
    testkit::{self, Reply, Upstream},
};
use serde_json::json;

const BASE: &str = "https://bitbucket.example.com";

fn credentials() -> Credentials {
    Credentials::new(vec![("token".into(), "BBDC-secret".into()), ("base_url".into(), BASE.into())])
}

#[test]
fn a_valid_token_names_its_user() {
    let upstream = Upstream::new();
    upstream
        .on(
            "GET",
            "/rest/api/1.0/application-properties",
            Reply::json(200, json!({"version": "9.4.0"})).header("X-AUSERNAME", "jdoe"),
        )
        .on(
            "GET",
            "/rest/api/1.0/users/jdoe",
            Reply::json(
                200,
                json!({"id": 101, "slug": "jdoe", "displayName": "Jane Doe", "emailAddress": "jane@example.com"}),
            ),
        );
    let verified = BitbucketPat::verify(&credentials()).unwrap();
    assert_eq!((verified.account.id.as_str(), verified.account.username.as_str()), ("101", "jdoe"));
    assert_eq!(verified.account.name.as_deref(), Some("Jane Doe"));
    let sent = upstream.requests();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|r| r.authenticated), "the host presents the token");
    assert!(sent.iter().all(|r| r.header("authorization").is_none()), "the connector never sets it");
    let logs = testkit::logs();
    assert_eq!((logs[0].level, logs[0].field("user")), (Level::Debug, Some("jdoe")));
}

#[test]
fn refusals_map_to_the_standard_errors() {
    let upstream = Upstream::new();
    let path = "/rest/api/1.0/application-properties";
    upstream.on("GET", path, Reply::status(401)).on("GET", path, Reply::status(429).header("Retry-After", "30")).on(
        "GET",
        path,
        Reply::status(503),
    );
    assert!(matches!(BitbucketPat::verify(&credentials()), Err(VerifyError::InvalidToken(_))));
    assert!(matches!(BitbucketPat::verify(&credentials()), Err(VerifyError::RateLimited(Some(30)))));
    assert!(matches!(BitbucketPat::verify(&credentials()), Err(VerifyError::UpstreamError(_))));
}

#[test]
fn an_anonymous_answer_is_an_invalid_token_and_a_missing_url_is_named() {
    let upstream = Upstream::new();
    upstream.on("GET", "/rest/api/1.0/application-properties", Reply::json(200, json!({})));
    assert!(matches!(BitbucketPat::verify(&credentials()), Err(VerifyError::InvalidToken(_))));
    let no_url = Credentials::new(vec![("token".into(), "BBDC-secret".into())]);
    assert!(matches!(BitbucketPat::verify(&no_url), Err(VerifyError::InvalidInput(m)) if m.contains("base_url")));
}

#[test]
fn the_manifest_passes_the_hosts_rules() {
    let m = BitbucketPat::manifest();
    assert_eq!((m.id.as_str(), m.fields.len()), ("bitbucket-pat", 2));
    assert_eq!(m.credential_presentation.unwrap().value, "Bearer {token}");
}
