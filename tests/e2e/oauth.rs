//! OAuth 2.0 through the host: the authorization-code flow with PKCE against
//! the fake GitLab's `/oauth/authorize` and `/oauth/token`, state handling,
//! refresh before use and in the background, refresh-token rotation and
//! revocation, and the paste path.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{API_KEY, Gatehouse, Options},
};

const CLIENT_ID: &str = "gatehouse-app-0123456789";
pub(crate) const CLIENT_SECRET: &str = "gloas-client-secret-5d41402abc4b2a76b9719d911017c592";

/// The browser: follows no redirects, so each hop can be checked, and keeps
/// cookies (the flow's browser binding) across the tests' flows.
fn browser() -> reqwest::Client {
    static BROWSER: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
    });
    BROWSER.clone()
}

/// Another browser, with no cookies.
fn stranger() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// The fake with an application whose redirect URI points at `g`, and the
/// same application added to `g`.
pub(crate) async fn setup(g: &Gatehouse, fake: &FakeGitlab) {
    let redirect_uri = format!("{}/api/v1/oauth/gitlab-oauth/callback", g.base);
    fake.register_app(CLIENT_ID, CLIENT_SECRET, &redirect_uri);
    let r = g
        .post(
            "/api/v1/oauth-apps",
            json!({"provider": "gitlab-oauth", "base_url": fake.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["redirect_uri"], redirect_uri);
    assert!(r.body.get("client_secret").is_none(), "the client secret is write-only");
}

/// Starts an authorization; returns the provider's authorize URL.
pub(crate) async fn start(g: &Gatehouse, fake: &FakeGitlab) -> String {
    let r = browser()
        .get(format!("{}/api/v1/oauth/gitlab-oauth/authorize?base_url={}&label=work", g.base, fake.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    location(&r)
}

/// The user approves at the fake; returns the callback URL it redirects to.
pub(crate) async fn approve(authorize_url: &str) -> String {
    let r = browser().get(authorize_url).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    location(&r)
}

/// Delivers the callback; returns the status and the Location or problem.
pub(crate) async fn deliver(g: &Gatehouse, callback_url: &str) -> (u16, Value) {
    let path = &callback_url[callback_url.find("/api/v1/").unwrap()..];
    let r = g.send(browser().get(format!("{}{path}", g.base))).await;
    let body = if r.status == 302 { json!(r.headers["location"].to_str().unwrap()) } else { r.body };
    (r.status, body)
}

pub(crate) async fn connect_through_oauth(g: &Gatehouse, fake: &FakeGitlab) -> String {
    let callback = approve(&start(g, fake).await).await;
    let (status, location) = deliver(g, &callback).await;
    assert_eq!(status, 302, "{location}");
    location.as_str().unwrap().strip_prefix("/?connected=").expect("back to the settings page").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_with_pkce_then_refresh_and_reuse_refused() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    fake.sign_in(Some(jane));
    let g = Gatehouse::start(Options::lax()).await;
    setup(&g, &fake).await;
    let apps = g.get("/api/v1/oauth-apps").await;
    assert_eq!(apps.body["oauth_apps"][0]["client_id"], CLIENT_ID);
    assert!(!apps.body.to_string().contains(CLIENT_SECRET));
    // The same provider and base URL again replaces it in place; the flows
    // below then run on the replaced (re-sealed) secret.
    let again = json!({"provider": "gitlab-oauth", "base_url": fake.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET});
    let r = g.post("/api/v1/oauth-apps", again).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], apps.body["oauth_apps"][0]["id"]);
    assert_eq!(g.get("/api/v1/oauth-apps").await.body["oauth_apps"].as_array().unwrap().len(), 1);

    let authorize_url = start(&g, &fake).await;
    assert!(authorize_url.starts_with(&format!("{}/oauth/authorize?", fake.url)), "{authorize_url}");
    let q = query(&authorize_url);
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 43);
    assert_eq!(q["scope"], "read_api");

    let callback = approve(&authorize_url).await;
    let (status, location) = deliver(&g, &callback).await;
    assert_eq!(status, 302);
    let id = location.as_str().unwrap().strip_prefix("/?connected=").unwrap().to_string();
    let it = g.get(&format!("/api/v1/integrations/{id}")).await.body;
    assert_eq!(it["status"], "connected");
    assert_eq!(it["provider"], "gitlab-oauth");
    assert_eq!(it["label"], "work");
    assert_eq!(it["account"]["username"], "jane");
    assert_eq!(it["refreshable"], true);
    assert!(it["refresh_note"].is_null());
    assert_eq!(it["scopes"], json!(["read_api"]));

    // The state is single use.
    let (status, problem) = deliver(&g, &callback).await;
    assert_eq!((status, problem["code"].as_str().unwrap()), (400, "oauth_state_invalid"));

    // Refresh on demand: GitLab rotates the pair; the old access token dies.
    let before = fake.hits("/oauth/token");
    let r = g.post(&format!("/api/v1/integrations/{id}/refresh"), json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str().unwrap()), (200, "connected"), "{}", r.body);
    assert_eq!(fake.hits("/oauth/token"), before + 1);
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str().unwrap()), (200, "connected"), "{}", r.body);
    assert_eq!(fake.refresh_tokens().len(), 2);

    // Reconnecting the same account through OAuth keeps the id.
    assert_eq!(connect_through_oauth(&g, &fake).await, id);
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"].as_array().unwrap().len(), 1);

    let mut secrets = fake.all_tokens();
    secrets.push(CLIENT_SECRET.into());
    g.finish_scan(&secrets, &fake.oauth_states());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_expired_replayed_and_foreign_states_are_refused() {
    let fake = FakeGitlab::start().await;
    fake.sign_in(Some(fake.add_user("jane", false)));
    let g = Gatehouse::start(Options::lax().arg("--oauth-state-ttl").arg("2s")).await;
    setup(&g, &fake).await;

    let callback = approve(&start(&g, &fake).await).await;
    let q = query(&callback);
    let tampered = format!("/api/v1/oauth/gitlab-oauth/callback?code={}&state={}x", q["code"], q["state"]);
    let (status, p) = deliver(&g, &tampered).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (400, "oauth_state_invalid"));
    let (status, p) = deliver(&g, &format!("/api/v1/oauth/gitlab-oauth/callback?code={}", q["code"])).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (400, "oauth_state_invalid"));
    // Presented to another provider's callback, the state is spent and refused.
    let foreign = callback.replace("/oauth/gitlab-oauth/", "/oauth/gitlab-pat/");
    let (status, p) = deliver(&g, &foreign).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (400, "oauth_state_invalid"));
    assert!(p["detail"].as_str().unwrap().contains("another provider"), "{p}");

    let callback = approve(&start(&g, &fake).await).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, p) = deliver(&g, &callback).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (400, "oauth_state_invalid"));
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));
    g.finish_scan(&fake.all_tokens(), &fake.oauth_states());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_wrong_verifier_and_missing_configuration() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let g = Gatehouse::start(Options::lax()).await;

    // No application yet; and a connector without OAuth.
    let r = g.get(&format!("/api/v1/oauth/gitlab-oauth/authorize?base_url={}&redirect=false", fake.url)).await;
    assert_eq!((r.status, r.code()), (409, "oauth_not_configured"));
    let r = g.get("/api/v1/oauth/gitlab-pat/authorize?redirect=false").await;
    assert_eq!((r.status, r.code()), (400, "oauth_unsupported"));
    let r = g.call("GET", "/api/v1/oauth/gitlab-oauth/authorize", None, None).await;
    assert_eq!(r.status, 401);

    setup(&g, &fake).await;
    // redirect=false answers the URL, for Swagger UI and scripts.
    let r = g.get(&format!("/api/v1/oauth/gitlab-oauth/authorize?base_url={}&redirect=false", fake.url)).await;
    assert_eq!(r.status, 200);
    assert!(r.body["authorize_url"].as_str().unwrap().contains("code_challenge="));

    // The user declines at GitLab.
    fake.sign_in(None);
    let callback = approve(&start(&g, &fake).await).await;
    let (status, p) = deliver(&g, &callback).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (400, "oauth_denied"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("denied"), "{p}");

    // A code delivered with another authorization's state: the verifier
    // does not match the code's challenge and GitLab refuses the grant.
    fake.sign_in(Some(jane));
    let first = approve(&start(&g, &fake).await).await;
    let second = approve(&start(&g, &fake).await).await;
    let mixed =
        format!("/api/v1/oauth/gitlab-oauth/callback?code={}&state={}", query(&first)["code"], query(&second)["state"]);
    let (status, p) = deliver(&g, &mixed).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "invalid_grant"), "{p}");

    // Wrong client secret at GitLab.
    fake.register_app(CLIENT_ID, "rotated-at-gitlab", &format!("{}/api/v1/oauth/gitlab-oauth/callback", g.base));
    let callback = approve(&start(&g, &fake).await).await;
    let (status, p) = deliver(&g, &callback).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "oauth_client_invalid"), "{p}");
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));
    let mut secrets = fake.all_tokens();
    secrets.push(CLIENT_SECRET.into());
    g.finish_scan(&secrets, &fake.oauth_states());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_before_use_once_even_concurrently() {
    let fake = FakeGitlab::start().await;
    fake.sign_in(Some(fake.add_user("jane", false)));
    // 60 s tokens: always inside the 5-minute refresh window.
    fake.set_token_lifetime(60);
    let g = Gatehouse::start(Options::lax().arg("--refresh-interval").arg("0s")).await;
    setup(&g, &fake).await;
    let id = connect_through_oauth(&g, &fake).await;
    assert_eq!(fake.hits("/oauth/token"), 1);

    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str().unwrap()), (200, "connected"), "{}", r.body);
    assert_eq!(fake.hits("/oauth/token"), 2, "refreshed before use");

    // Eight uses at once: each refreshes in turn, none spends a refresh
    // token twice (the fake would answer invalid_grant).
    let path = format!("/api/v1/integrations/{id}/verify");
    let uses = (0..8).map(|_| g.post(&path, json!({})));
    for r in futures::future::join_all(uses).await {
        assert_eq!((r.status, r.body["status"].as_str().unwrap()), (200, "connected"), "{}", r.body);
    }
    assert_eq!(fake.hits("/oauth/token"), 10);

    // The user revokes the application at GitLab: the next refresh fails
    // and the integration says to reconnect.
    fake.revoke_refresh_tokens();
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "expired");
    assert_eq!(r.body["refreshable"], false);
    assert_eq!(r.body["last_error"]["code"], "invalid_grant");
    assert!(r.body["last_error"]["detail"].as_str().unwrap().contains("reconnect"), "{}", r.body);
    let r = g.post(&format!("/api/v1/integrations/{id}/refresh"), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "not_refreshable"));
    let mut secrets = fake.all_tokens();
    secrets.push(CLIENT_SECRET.into());
    g.finish_scan(&secrets, &fake.oauth_states());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_task_refreshes_and_restart_mid_flow_completes() {
    let fake = FakeGitlab::start().await;
    fake.sign_in(Some(fake.add_user("jane", false)));
    let mut g = Gatehouse::start(Options::lax().arg("--refresh-interval").arg("1s")).await;
    setup(&g, &fake).await;

    // Restart between authorize and callback: the state survives.
    let callback = approve(&start(&g, &fake).await).await;
    g.restart().await;
    let (status, location) = deliver(&g, &callback).await;
    assert_eq!(status, 302, "{location}");
    let id = location.as_str().unwrap().strip_prefix("/?connected=").unwrap().to_string();

    // A 2-hour token is not due: the background task leaves it alone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.hits("/oauth/token"), 1);
    // Short-lived ones are refreshed with nobody using them.
    fake.set_token_lifetime(60);
    let r = g.post(&format!("/api/v1/integrations/{id}/refresh"), json!({})).await;
    assert_eq!(r.status, 200);
    let hits = fake.hits("/oauth/token");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.hits("/oauth/token") == hits {
        assert!(std::time::Instant::now() < deadline, "the background task never refreshed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let it = g.get(&format!("/api/v1/integrations/{id}")).await.body;
    assert_eq!(it["status"], "connected");
    // The fake counts the hit before the host has stored and logged the
    // new pair: under load the line comes a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !g.logs().contains("access token refreshed") {
        assert!(std::time::Instant::now() < deadline, "the refresh was not logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut secrets = fake.all_tokens();
    secrets.push(CLIENT_SECRET.into());
    g.finish_scan(&secrets, &fake.oauth_states());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasted_access_token_is_verified_but_not_refreshable() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let token = fake.token(jane, Kind::OAuth, &["api"]);
    let g = Gatehouse::start(Options::lax()).await;
    let r = g
        .post(
            "/api/v1/integrations",
            json!({"provider": "gitlab-oauth", "credentials": {"access_token": token, "base_url": fake.url}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["refreshable"], false);
    assert!(r.body["refresh_note"].as_str().unwrap().contains("pasted"), "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = g.post(&format!("/api/v1/integrations/{id}/refresh"), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "not_refreshable"));
    let manifest = g.get("/api/v1/providers/gitlab-oauth").await.body;
    assert_eq!(manifest["oauth"]["authorize_path"], "/oauth/authorize");
    assert_eq!(manifest["oauth"]["token_path"], "/oauth/token");
    g.finish(&fake.all_tokens());
}

/// GitLab's token info answers the seconds that REMAIN; an hour-old 2-hour
/// token has 3600 left. Its expiry is the same however often it is checked,
/// and is not an hour early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aged_token_keeps_its_expiry_across_reverifies() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let token = fake.aged_token(jane, Kind::OAuth, &["api"], 3600);
    let expected = fake.expires_at(&token);
    let g = Gatehouse::start(Options::lax()).await;
    let close_to_expected = |body: &Value| {
        let at = body["token_expires_at"].as_str().unwrap_or_else(|| panic!("no expiry: {body}"));
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
        let off = at.unix_timestamp() - expected;
        assert!(off.abs() <= 2, "stored expiry {at} is {off} s from the token's real expiry: {body}");
    };
    let body = json!({"provider": "gitlab-oauth", "credentials": {"access_token": token, "base_url": fake.url}});
    let c = g.post("/api/v1/integrations", body).await;
    assert_eq!(c.status, 201, "{}", c.body);
    close_to_expected(&c.body);
    let id = c.body["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
        // A pasted access token cannot be refreshed and ends within the
        // hour: valid, and shown as expiring.
        assert_eq!(r.body["status"], "expiring", "{}", r.body);
        close_to_expected(&r.body);
    }
    close_to_expected(&g.get(&format!("/api/v1/integrations/{id}")).await.body);
    g.finish(&fake.all_tokens());
}

/// `invalid_grant` (422) when GitLab refuses a refresh token or a code that
/// was already exchanged; `oauth_client_invalid` (422) when it refuses the
/// application on refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_refresh_tokens_reused_codes_and_a_rotated_client_secret() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    fake.sign_in(Some(jane));
    let g = Gatehouse::start(Options::lax()).await;
    setup(&g, &fake).await;

    // A code is exchanged once; delivered again with a fresh state, GitLab
    // refuses it.
    let first = approve(&start(&g, &fake).await).await;
    let (status, location) = deliver(&g, &first).await;
    assert_eq!(status, 302, "{location}");
    let id = location.as_str().unwrap().strip_prefix("/?connected=").unwrap().to_string();
    let second = approve(&start(&g, &fake).await).await;
    let reused =
        format!("/api/v1/oauth/gitlab-oauth/callback?code={}&state={}", query(&first)["code"], query(&second)["state"]);
    let (status, p) = deliver(&g, &reused).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "invalid_grant"), "{p}");

    // GitLab no longer knows the application's secret: refresh is refused
    // as the application's fault, and the refresh token is kept.
    let refresh = format!("/api/v1/integrations/{id}/refresh");
    let redirect_uri = format!("{}/api/v1/oauth/gitlab-oauth/callback", g.base);
    fake.register_app(CLIENT_ID, "rotated-at-gitlab", &redirect_uri);
    let r = g.post(&refresh, json!({})).await;
    assert_eq!((r.status, r.code()), (422, "oauth_client_invalid"), "{}", r.body);
    fake.register_app(CLIENT_ID, CLIENT_SECRET, &redirect_uri);
    let r = g.post(&refresh, json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("connected")), "{}", r.body);

    // The user revoked the application: the refresh token is refused, and
    // the integration says so (as documented: expired, with the 422
    // invalid_grant problem as its last error).
    fake.revoke_refresh_tokens();
    let r = g.post(&refresh, json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("expired")), "{}", r.body);
    assert_eq!(
        (&r.body["last_error"]["code"], &r.body["last_error"]["status"]),
        (&json!("invalid_grant"), &json!(422))
    );
    assert_eq!(r.body["refreshable"], false);
    let mut secrets = fake.all_tokens();
    secrets.push(CLIENT_SECRET.into());
    g.finish_scan(&secrets, &fake.oauth_states());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_finishes_only_in_the_browser_that_started_it() {
    let fake = FakeGitlab::start().await;
    fake.sign_in(Some(fake.add_user("jane", false)));
    let g = Gatehouse::start(Options::lax()).await;
    setup(&g, &fake).await;

    // The authorize answer binds the flow to this browser with a cookie
    // scripts cannot read, sent back only to the OAuth routes.
    let r = browser()
        .get(format!("{}/api/v1/oauth/gitlab-oauth/authorize?base_url={}", g.base, fake.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("gatehouse_oauth_"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/api/v1/oauth/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // Someone else's browser brings the code and state back: refused.
    let callback = approve(&location(&r)).await;
    let path = &callback[callback.find("/api/v1/").unwrap()..];
    let r = g.send(stranger().get(format!("{}{path}", g.base))).await;
    assert_eq!((r.status, r.code()), (400, "oauth_state_invalid"), "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("another browser"), "{}", r.body);
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"].as_array().unwrap().len(), 0);

    // The browser that started it finishes, and forgets the binding.
    let callback = approve(&start(&g, &fake).await).await;
    let path = &callback[callback.find("/api/v1/").unwrap()..];
    let r = browser().get(format!("{}{path}", g.base)).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));

    // An API client handing the URL to a browser it does not control opts out.
    let r = g
        .get(&format!("/api/v1/oauth/gitlab-oauth/authorize?base_url={}&redirect=false&bind_browser=false", fake.url))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("set-cookie").is_none());
    let callback = approve(r.body["authorize_url"].as_str().unwrap()).await;
    let path = &callback[callback.find("/api/v1/").unwrap()..];
    assert_eq!(g.send(stranger().get(format!("{}{path}", g.base))).await.status, 302);

    // A label longer than the connect body allows is refused here too.
    let long = "x".repeat(201);
    let r =
        g.get(&format!("/api/v1/oauth/gitlab-oauth/authorize?base_url={}&redirect=false&label={long}", fake.url)).await;
    assert_eq!((r.status, r.code()), (400, "validation_error"));
}
