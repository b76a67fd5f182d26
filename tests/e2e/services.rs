//! The services driven directly, without spawning the binary or HTTP to
//! Gatehouse: a real SQLite file, the real embedded GitLab components, the fake GitLab
//! on loopback. Where the e2e tests show what a client sees, these pin the
//! lifecycle rules themselves: one integration per account, a re-check
//! that never writes credentials back, rotation within one account, a
//! refresh spent once, single-use OAuth states.

use std::{collections::BTreeMap, time::Duration};

use crate::fake_gitlab::{FakeGitlab, TokenState};
use gatehouse::{
    build_runtime, builtin,
    config::{OAuthConfig, ProxySettings, SandboxLimits},
    crypto::MasterKey,
    egress::Policy,
    error::{AppError, ErrorCode},
    registry::Registry,
    services::{
        Services, Settings,
        grants::OAuthAppInput,
        oauth::CallbackParams,
        sessions::{Access, SessionSettings},
        syncs::SyncSettings,
    },
    store::{Owner, Status, Store},
};
use secrecy::{SecretSlice, SecretString};

struct World {
    services: Services,
    fake: FakeGitlab,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let fake = FakeGitlab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy { allow_private_networks: true, allow_http: true, ..Policy::default() };
    let runtime = build_runtime(&SandboxLimits::default(), policy.clone(), None, None).unwrap();
    let registry = Registry::load(&runtime, builtin::BUILTIN, dir.path().join("plugins")).await.unwrap();
    let url = match crate::postgres::enabled() {
        true => Some(crate::postgres::shared().create_database().await),
        false => None,
    };
    let store = Store::open(url.as_deref(), dir.path()).await.unwrap();
    let key = MasterKey::from_bytes(&SecretSlice::from(vec![3u8; 32]));
    let settings = Settings {
        oauth: OAuthConfig {
            public_url: Some("http://127.0.0.1:9".parse().unwrap()),
            oauth_apps: None,
            oauth_apps_file: None,
            oauth_apps_on_command_line: false,
            oauth_state_ttl: Duration::from_secs(600),
            refresh_window: Duration::from_secs(300),
            refresh_interval: Duration::ZERO,
        },
        syncs: SyncSettings {
            poll: Duration::ZERO,
            concurrency: 1,
            lease: Duration::from_secs(60),
            retry_after_failure: Duration::from_secs(60),
            pause_below_remaining: 0,
        },
        webhook_retry: Duration::from_secs(1),
        expiry_warning: Duration::from_secs(14 * 86_400),
        proxy: ProxySettings {
            timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_retry_wait: Duration::from_secs(1),
        },
        environment_api_key: None,
        audit_retention: Duration::ZERO,
        sessions: SessionSettings { default_ttl: Duration::from_secs(1800), max_ttl: Duration::from_secs(86_400) },
    };
    let services = Services::new(runtime, registry, store.clone(), key, policy, settings).unwrap();
    World { services, fake, store, _dir: dir }
}

fn pat_fields(w: &World, token: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("base_url".into(), w.fake.url.clone()), ("token".into(), token.into())])
}

/// The code of the error `r` must be.
fn code<T>(r: Result<T, AppError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn one_integration_per_account_and_base_url() {
    let w = world().await;
    let jane = w.fake.add_user("jane", false);
    let (first, created) = w
        .services
        .integrations
        .connect(&Access::ApiKey, "gitlab-pat", pat_fields(&w, &w.fake.pat(jane)), None, Owner::default())
        .await
        .unwrap();
    assert!(created);
    let (second, created) = w
        .services
        .integrations
        .connect(
            &Access::ApiKey,
            "gitlab-pat",
            pat_fields(&w, &w.fake.pat(jane)),
            Some("work".into()),
            Owner::default(),
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(first.id, second.id);
    assert_eq!(second.label.as_deref(), Some("work"));
    assert_ne!(first.secret.ciphertext, second.secret.ciphertext, "the new token replaced the old");
    assert_eq!(w.services.integrations.list(&Access::ApiKey, None, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_recheck_records_the_verdict_and_keeps_the_credentials() {
    let w = world().await;
    let jane = w.fake.add_user("jane", false);
    let token = w.fake.pat(jane);
    let (row, _) = w
        .services
        .integrations
        .connect(&Access::ApiKey, "gitlab-pat", pat_fields(&w, &token), None, Owner::default())
        .await
        .unwrap();
    w.fake.set_state(&token, TokenState::Revoked);
    let checked = w.services.integrations.reverify(&Access::ApiKey, &row.id).await.unwrap();
    assert_eq!(checked.status, Status::Invalid);
    assert_eq!(checked.last_error.as_ref().unwrap().0.code, "token_revoked");
    assert_eq!(checked.secret.ciphertext, row.secret.ciphertext);
    assert!(checked.last_verified_at.is_some());
    // Valid again: connected, and the last error is gone.
    w.fake.set_state(&token, TokenState::Active);
    let checked = w.services.integrations.reverify(&Access::ApiKey, &row.id).await.unwrap();
    assert_eq!(checked.status, Status::Connected);
    assert!(checked.last_error.is_none());
}

#[tokio::test]
async fn rotation_stays_within_one_account() {
    let w = world().await;
    let jane = w.fake.add_user("jane", false);
    let john = w.fake.add_user("john", false);
    let (row, _) = w
        .services
        .integrations
        .connect(&Access::ApiKey, "gitlab-pat", pat_fields(&w, &w.fake.pat(jane)), None, Owner::default())
        .await
        .unwrap();
    let theirs = BTreeMap::from([("token".to_string(), w.fake.pat(john))]);
    assert_eq!(
        code(w.services.integrations.rotate(&Access::ApiKey, &row.id, theirs).await),
        ErrorCode::AccountMismatch
    );
    let stored = w.store.get(&row.id).await.unwrap().unwrap();
    assert_eq!(stored.secret.ciphertext, row.secret.ciphertext, "a refused rotation writes nothing");
    // The base URL is kept from the stored credentials when left out.
    let mine = BTreeMap::from([("token".to_string(), w.fake.pat(jane))]);
    let rotated = w.services.integrations.rotate(&Access::ApiKey, &row.id, mine).await.unwrap();
    assert_eq!(rotated.id, row.id);
    assert_ne!(rotated.secret.ciphertext, row.secret.ciphertext);
}

/// Connects through the OAuth flow as the signed-in user; returns the
/// integration id.
async fn connect_oauth(w: &World) -> String {
    let redirect_uri = w.services.grants.default_redirect_uri("gitlab-oauth");
    w.fake.register_app("app-1", "app-secret", &redirect_uri);
    let app = OAuthAppInput {
        provider: "gitlab-oauth".into(),
        base_url: Some(w.fake.url.clone()),
        client_id: "app-1".into(),
        client_secret: SecretString::from("app-secret"),
        redirect_uri: None,
    };
    w.services.grants.save_app(app, "test").await.unwrap();
    let auth =
        w.services.oauth.authorize(&Access::ApiKey, "gitlab-oauth", Some(&w.fake.url), None, false).await.unwrap();
    let back = approve(&auth.url).await;
    let (row, created) = w.services.oauth.callback("gitlab-oauth", back).await.result.unwrap();
    assert!(created && row.refresh.is_some());
    row.id
}

/// What the provider's redirect back carries after the user approves.
async fn approve(authorize_url: &str) -> CallbackParams {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = client.get(authorize_url).send().await.unwrap();
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    let url = url::Url::parse(&location).unwrap();
    let get = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.to_string());
    CallbackParams {
        code: get("code").map(SecretString::from),
        state: get("state").map(SecretString::from),
        error: get("error"),
        error_description: None,
        browser: None,
    }
}

#[tokio::test]
async fn an_oauth_state_is_spent_once_and_only_for_its_provider() {
    let w = world().await;
    w.fake.sign_in(Some(w.fake.add_user("jane", false)));
    connect_oauth(&w).await;
    let auth =
        w.services.oauth.authorize(&Access::ApiKey, "gitlab-oauth", Some(&w.fake.url), None, false).await.unwrap();
    let back = approve(&auth.url).await;
    let state = back.state.clone();
    assert_eq!(code(w.services.oauth.callback("gitlab-pat", back).await.result), ErrorCode::OAuthStateInvalid);
    // Presented to the wrong provider, the state is spent all the same.
    let again = CallbackParams { state, code: Some(SecretString::from("x")), ..CallbackParams::default() };
    assert_eq!(code(w.services.oauth.callback("gitlab-oauth", again).await.result), ErrorCode::OAuthStateInvalid);
    let unknown = CallbackParams { state: Some(SecretString::from("nope")), ..CallbackParams::default() };
    assert_eq!(code(w.services.oauth.callback("gitlab-oauth", unknown).await.result), ErrorCode::OAuthStateInvalid);
}

#[tokio::test]
async fn a_flow_started_in_a_browser_finishes_only_there() {
    let w = world().await;
    w.fake.sign_in(Some(w.fake.add_user("jane", false)));
    connect_oauth(&w).await;
    let auth =
        w.services.oauth.authorize(&Access::ApiKey, "gitlab-oauth", Some(&w.fake.url), None, true).await.unwrap();
    let cookie = auth.browser_cookie.expect("a bound flow sets a cookie");
    let back = approve(&auth.url).await;
    assert_eq!(
        cookie.name,
        gatehouse::services::oauth::browser_cookie_name(
            back.state.as_ref().map(secrecy::ExposeSecret::expose_secret).unwrap()
        )
    );
    // Another browser, with the state and code but not the cookie: refused.
    let elsewhere = CallbackParams { browser: Some(SecretString::from("guess")), ..back };
    assert_eq!(code(w.services.oauth.callback("gitlab-oauth", elsewhere).await.result), ErrorCode::OAuthStateInvalid);
    // The browser that started it (a new flow: the state above is spent).
    let auth =
        w.services.oauth.authorize(&Access::ApiKey, "gitlab-oauth", Some(&w.fake.url), None, true).await.unwrap();
    let back = CallbackParams { browser: auth.browser_cookie.map(|c| c.value), ..approve(&auth.url).await };
    w.services.oauth.callback("gitlab-oauth", back).await.result.unwrap();
}

#[tokio::test]
async fn a_refresh_token_is_spent_once_across_uses() {
    let w = world().await;
    w.fake.sign_in(Some(w.fake.add_user("jane", false)));
    let id = connect_oauth(&w).await;
    let stale = w.store.get(&id).await.unwrap().unwrap();
    // Two uses refused by the provider at once: one refresh between them.
    let (a, b) = tokio::join!(
        w.services.integrations.refresh_after_rejection(&stale),
        w.services.integrations.refresh_after_rejection(&stale)
    );
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert_eq!(a.row.secret.ciphertext, b.row.secret.ciphertext, "both use the one new token");
    assert_eq!(w.fake.refresh_tokens().len(), 2, "the grant's refresh token, and one from one refresh");
    let now = w.store.get(&id).await.unwrap().unwrap();
    assert_eq!(now.status, Status::Connected);
    assert_ne!(now.refresh.unwrap().ciphertext, stale.refresh.unwrap().ciphertext);
}

#[tokio::test]
async fn a_refused_refresh_token_marks_the_integration_expired() {
    let w = world().await;
    w.fake.sign_in(Some(w.fake.add_user("jane", false)));
    let id = connect_oauth(&w).await;
    w.fake.revoke_refresh_tokens();
    let row = w.services.grants.refresh(&id).await.unwrap();
    assert_eq!(row.status, Status::Expired);
    assert!(row.refresh.is_none());
    assert_eq!(row.last_error.unwrap().0.code, "invalid_grant");
    assert_eq!(code(w.services.grants.refresh(&id).await), ErrorCode::NotRefreshable);
}
