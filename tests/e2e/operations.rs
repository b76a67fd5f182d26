//! Operating Gatehouse: API keys with roles (each role against each
//! route), the audit log, request ids in headers, problems and JSON logs,
//! and the Prometheus metrics after a scripted workload.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{
    fake_gitlab::{Behavior, FakeGitlab, TokenState},
    harness::{API_KEY, Gatehouse, Options, connect_pat, pat_body},
};

const HOSTILE: &str = gatehouse_test_programs::TEST_HOSTILE_WASM;
const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

/// Creates a key with the admin key; answers (id, key).
async fn create_key(g: &Gatehouse, name: &str, role: &str) -> (String, String) {
    let r = g.post("/api/v1/api-keys", json!({"name": name, "role": role})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["role"], role);
    (r.body["id"].as_str().unwrap().to_string(), r.body["key"].as_str().unwrap().to_string())
}

fn rank(role: &str) -> u8 {
    match role {
        "reader" => 0,
        "operator" => 1,
        "admin" => 2,
        other => panic!("no role {other}"),
    }
}

/// Every route of the API, with the role it needs: each key is refused
/// (403 `forbidden`, naming the role) below it and let through at or above
/// it; the OpenAPI document says the same role for each operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_against_each_route() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let g = Gatehouse::start(Options::lax().arg("--metrics").arg("key")).await;
    let token = fake.pat(jane);
    let connected = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    let id = connected.body["id"].as_str().unwrap().to_string();
    let (_, reader) = create_key(&g, "dashboard", "reader").await;
    let (_, operator) = create_key(&g, "provisioner", "operator").await;
    let keys = [("reader", reader.clone()), ("operator", operator.clone()), ("admin", API_KEY.to_string())];
    let i = format!("/api/v1/integrations/{id}");
    let u = format!("/api/v1/integrations/{UNKNOWN}");
    let routes: Vec<(&str, String, Option<Value>, &str)> = vec![
        ("GET", "/api/v1/providers".into(), None, "reader"),
        ("GET", "/api/v1/providers/gitlab-pat".into(), None, "reader"),
        ("POST", "/api/v1/providers/gitlab-pat/verify".into(), Some(pat_body(&token, &fake.url)), "operator"),
        ("GET", "/api/v1/plugins".into(), None, "reader"),
        ("POST", "/api/v1/plugins/reload".into(), None, "admin"),
        ("POST", "/api/v1/integrations".into(), Some(connect_pat(&token, &fake.url)), "operator"),
        ("GET", "/api/v1/integrations".into(), None, "reader"),
        ("GET", i.clone(), None, "reader"),
        ("DELETE", u.clone(), None, "operator"),
        ("POST", format!("{i}/verify"), None, "operator"),
        ("POST", format!("{i}/refresh"), None, "operator"),
        ("PUT", format!("{i}/credentials"), Some(json!({"credentials": {"token": token}})), "operator"),
        ("POST", format!("{u}/rotate"), None, "operator"),
        ("PUT", format!("{u}/scope"), Some(json!({"scope": null})), "operator"),
        ("POST", "/api/v1/connect-sessions".into(), Some(json!({"end_user_id": "user-1"})), "operator"),
        ("GET", format!("/api/v1/connect-sessions/{UNKNOWN}"), None, "reader"),
        ("DELETE", format!("/api/v1/connect-sessions/{UNKNOWN}"), None, "operator"),
        ("GET", "/api/v1/oauth-apps".into(), None, "operator"),
        (
            "POST",
            "/api/v1/oauth-apps".into(),
            Some(
                json!({"provider": "gitlab-oauth", "base_url": fake.url, "client_id": "app", "client_secret": "app-secret-0123456789"}),
            ),
            "admin",
        ),
        ("GET", format!("/api/v1/oauth-apps/{UNKNOWN}"), None, "operator"),
        ("DELETE", format!("/api/v1/oauth-apps/{UNKNOWN}"), None, "admin"),
        ("GET", format!("/api/v1/oauth/gitlab-oauth/authorize?base_url={}&redirect=false", fake.url), None, "operator"),
        ("POST", format!("{u}/actions/list-projects"), Some(json!({})), "operator"),
        ("GET", format!("{i}/syncs"), None, "reader"),
        ("PATCH", format!("{i}/syncs/projects"), Some(json!({"enabled": true})), "operator"),
        ("POST", format!("{u}/syncs/projects/run"), None, "operator"),
        ("POST", format!("{u}/syncs/projects/reset"), None, "operator"),
        ("PUT", format!("{u}/inbound-webhook"), None, "operator"),
        ("DELETE", format!("{u}/inbound-webhook"), None, "operator"),
        ("GET", format!("{i}/records"), None, "reader"),
        ("POST", "/api/v1/webhooks".into(), Some(json!({"url": "http://127.0.0.1:9/hook"})), "admin"),
        ("GET", "/api/v1/webhooks".into(), None, "operator"),
        ("DELETE", format!("/api/v1/webhooks/{UNKNOWN}"), None, "admin"),
        ("GET", format!("/api/v1/webhooks/{UNKNOWN}/deliveries"), None, "operator"),
        ("POST", "/api/v1/api-keys".into(), Some(json!({"name": "made-in-test", "role": "reader"})), "admin"),
        ("GET", "/api/v1/api-keys".into(), None, "admin"),
        ("DELETE", format!("/api/v1/api-keys/{UNKNOWN}"), None, "admin"),
        ("GET", "/api/v1/audit".into(), None, "admin"),
        ("GET", format!("{i}/proxy/api/v4/user"), None, "reader"),
        ("HEAD", format!("{i}/proxy/api/v4/user"), None, "reader"),
        ("POST", format!("{i}/proxy/api/v4/projects"), Some(json!({"name": "x"})), "operator"),
        ("DELETE", format!("{i}/proxy/api/v4/projects/1"), None, "operator"),
        ("GET", "/metrics".into(), None, "reader"),
    ];
    for (method, path, body, needed) in &routes {
        for (role, key) in &keys {
            let mut req = g
                .client()
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", g.base))
                .bearer_auth(key);
            if let Some(body) = body {
                req = req.header("content-type", "application/json").body(body.to_string());
            }
            let r = if path.contains("/proxy/") { g.send_proxied(req).await } else { g.send(req).await };
            if rank(role) < rank(needed) {
                assert_eq!((r.status, r.code()), (403, "forbidden"), "{role} {method} {path}: {}", r.body);
                let detail = r.body["detail"].as_str().unwrap();
                assert!(detail.contains(&format!("needs the {needed} role")), "{detail}");
                assert!(detail.contains(&format!("has the {role} role")), "{detail}");
            } else {
                assert!(![401, 403].contains(&r.status), "{role} {method} {path} let through: {} {}", r.status, r.body);
            }
        }
    }
    // Without a key: 401 everywhere but health.
    for (method, path, _, _) in &routes {
        let req =
            g.client().request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", g.base));
        let r = g.send_proxied(req).await;
        assert_eq!(r.status, 401, "{method} {path}");
    }
    // The OpenAPI document states the role of every operation that needs a key.
    let doc = g.call("GET", "/api/openapi.json", None, None).await.body;
    let mut stated = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let description = op["description"].as_str().unwrap_or_default();
            if op.get("security").is_some() {
                assert!(description.contains("Role: "), "{method} {path} does not state its role");
                stated += 1;
            }
        }
    }
    assert!(stated >= 33, "{stated}");
    g.finish_scan(&fake.all_tokens(), &[reader, operator]);
}

/// Keys are created, listed and revoked through the API and the CLI; a
/// revoked key is refused at once; the first start's key is `admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_and_revoked() {
    let g = Gatehouse::start(Options::lax()).await;
    let (id, key) = create_key(&g, "billing-app", "reader").await;
    assert_eq!(g.call("GET", "/api/v1/integrations", None, Some(&key)).await.status, 200);
    let same = g.post("/api/v1/api-keys", json!({"name": "billing-app", "role": "admin"})).await;
    assert_eq!((same.status, same.code()), (400, "validation_error"));
    let bad = g.post("/api/v1/api-keys", json!({"name": "x", "role": "root"})).await;
    assert_eq!(bad.status, 400);
    let list = g.get("/api/v1/api-keys").await;
    let listed = list.body["api_keys"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", list.body);
    assert!(listed[0].get("key").is_none() && listed[0].get("key_sha256").is_none());
    let revoked = g.delete(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(revoked.status, 200);
    assert!(revoked.body["revoked_at"].is_string());
    let r = g.call("GET", "/api/v1/integrations", None, Some(&key)).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    assert_eq!(g.delete(&format!("/api/v1/api-keys/{id}")).await.status, 404, "already revoked");
    assert_eq!(g.delete("/api/v1/api-keys/environment").await.status, 403, "the environment's key");

    // The CLI works on the data dir, next to the running server.
    let data_dir = g.data_dir();
    let cli = |args: &[&str]| {
        let out = g.command().arg("api-keys").args(args).arg("--data-dir").arg(&data_dir).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let created = cli(&["create", "--name", "ops", "--role", "operator"]);
    let cli_key = created.lines().find_map(|l| l.split("store it safely): ").nth(1)).unwrap().trim().to_string();
    let r =
        g.call("POST", "/api/v1/providers/gitlab-pat/verify", Some(json!({"credentials": {}})), Some(&cli_key)).await;
    assert_ne!(r.status, 403, "an operator may verify");
    assert_eq!(g.call("GET", "/api/v1/api-keys", None, Some(&cli_key)).await.status, 403);
    let listed = cli(&["list"]);
    assert!(listed.contains("ops\toperator") && listed.contains("billing-app\treader"), "{listed}");
    assert!(!listed.contains(&cli_key));
    cli(&["revoke", "ops"]);
    assert_eq!(g.call("GET", "/api/v1/providers", None, Some(&cli_key)).await.status, 401);
    let bad = g.command().args(["api-keys", "create", "--name", "x", "--role", "root"]).output().unwrap();
    assert!(!bad.status.success());
    // The CLI's changes are in the audit log as the CLI's.
    let audit = g.get("/api/v1/audit?target_kind=api_key").await;
    let actors: Vec<(&str, &str)> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"]["kind"].as_str().unwrap()))
        .collect();
    assert!(actors.contains(&("api_key.create", "cli")) && actors.contains(&("api_key.revoke", "cli")), "{actors:?}");
    g.finish_scan(&[], &[key, cli_key]);
}

/// Without GATEHOUSE_API_KEY the first start generates one key, named and
/// role `admin`, printed once; a restart does not make another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_key_is_admin() {
    let mut g = Gatehouse::start(Options::lax().env("GATEHOUSE_API_KEY", "")).await;
    let logs = g.logs();
    let line = logs.lines().find(|l| l.contains("Generated API key")).expect("the key is printed");
    let key = line.rsplit(' ').next().unwrap().to_string();
    let list = g.call("GET", "/api/v1/api-keys", None, Some(&key)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["api_keys"][0]["name"], "admin");
    assert_eq!(list.body["api_keys"][0]["role"], "admin");
    g.restart().await;
    assert_eq!(g.logs().matches("Generated API key").count(), 1);
    assert_eq!(g.call("GET", "/api/v1/api-keys", None, Some(&key)).await.body["api_keys"].as_array().unwrap().len(), 1);
}

/// Every change is in the audit log with who, what, outcome, address and
/// request id; the log pages and filters; it holds no secret (the scan at
/// the end reads the database, audit rows included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_audited() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let g = Gatehouse::start(Options::lax()).await;
    let (t1, t2, revoked) = (fake.pat(jane), fake.pat(jane), fake.pat(jane));
    fake.set_state(&revoked, TokenState::Revoked);
    let c = g.post("/api/v1/integrations", connect_pat(&t1, &fake.url)).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    let request_id = c.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(g.post("/api/v1/integrations", connect_pat(&t1, &fake.url)).await.status, 200, "replaced");
    assert_eq!(g.post("/api/v1/integrations", connect_pat(&revoked, &fake.url)).await.code(), "token_revoked");
    assert_eq!(
        g.put(&format!("/api/v1/integrations/{id}/credentials"), json!({"credentials": {"token": t2}})).await.status,
        200
    );
    let app = g
        .post(
            "/api/v1/oauth-apps",
            json!({"provider": "gitlab-oauth", "base_url": fake.url, "client_id": "app", "client_secret": "the-client-secret-123"}),
        )
        .await;
    let app_id = app.body["id"].as_str().unwrap().to_string();
    assert_eq!(g.delete(&format!("/api/v1/oauth-apps/{app_id}")).await.status, 204);
    let (key_id, key) = create_key(&g, "temporary", "reader").await;
    g.delete(&format!("/api/v1/api-keys/{key_id}")).await;
    std::fs::copy(HOSTILE, g.plugins_dir().join("hostile.wasm")).unwrap();
    let reload = g.post("/api/v1/plugins/reload", json!({})).await;
    assert_eq!(reload.status, 200, "{}", reload.body);
    assert_eq!(g.delete(&format!("/api/v1/integrations/{id}")).await.status, 204);
    assert_eq!(g.delete(&format!("/api/v1/integrations/{id}")).await.status, 404);

    let all = g.get("/api/v1/audit?limit=1000").await;
    let entries = all.body["entries"].as_array().unwrap().clone();
    let summary: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["action"].as_str().unwrap(),
                e["target"]["kind"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect();
    let expected = [
        "integration.connect integration ok",
        "integration.replace integration ok",
        "integration.connect integration token_revoked",
        "integration.rotate integration ok",
        "oauth_app.save oauth_app ok",
        "oauth_app.delete oauth_app ok",
        "api_key.create api_key ok",
        "api_key.revoke api_key ok",
        "connector.load connector ok",
        "integration.disconnect integration ok",
        "integration.disconnect integration not_found",
    ];
    assert_eq!(summary, expected, "{}", all.body);
    let first = &entries[0];
    assert_eq!(first["actor"], json!({"kind": "api_key", "id": "environment", "name": "GATEHOUSE_API_KEY"}));
    assert_eq!(first["target"]["id"], id.as_str());
    assert_eq!(first["target"]["provider"], "gitlab-pat");
    assert_eq!(first["address"], "127.0.0.1");
    assert_eq!(first["request_id"], request_id.as_str());
    assert_eq!(entries[4]["target"]["id"], app_id.as_str(), "the saved application's id");

    // Filters: by target, and by time.
    let mine = g.get(&format!("/api/v1/audit?target={id}")).await;
    let actions: Vec<&str> =
        mine.body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "integration.connect",
            "integration.replace",
            "integration.rotate",
            "integration.disconnect",
            "integration.disconnect"
        ]
    );
    assert_eq!(g.get("/api/v1/audit?since=2999-01-01T00:00:00Z").await.body["entries"], json!([]));
    assert_eq!(g.get("/api/v1/audit?until=2000-01-01T00:00:00Z").await.body["entries"], json!([]));
    assert_eq!(g.get("/api/v1/audit?since=yesterday").await.code(), "validation_error");
    // Pages: two at a time, the cursor continuing where the last ended.
    let mut cursor = String::new();
    let mut paged = Vec::new();
    loop {
        let page = g.get(&format!("/api/v1/audit?limit=2&cursor={cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let got = page.body["entries"].as_array().unwrap().clone();
        if got.is_empty() {
            break;
        }
        assert!(got.len() <= 2);
        paged.extend(got);
        cursor = page.body["next_cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(paged, entries);
    assert_eq!(g.get("/api/v1/audit?cursor=abc").await.code(), "validation_error");
    let text = all.body.to_string();
    assert!(!text.contains(&t1) && !text.contains("the-client-secret") && !text.contains(&key));
    g.finish_scan(&[fake.all_tokens(), vec!["the-client-secret-123".into()]].concat(), &[key]);
}

/// Each request has an id: a valid incoming `X-Request-Id` is kept, else
/// one is made; it is echoed in the header and in problem details, and
/// every JSON log line written while serving the request carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_in_headers_problems_and_json_logs() {
    let g = Gatehouse::start(Options::lax().arg("--log-format").arg("json")).await;
    let req = g
        .client()
        .get(format!("{}/api/v1/integrations/{UNKNOWN}", g.base))
        .bearer_auth(API_KEY)
        .header("X-Request-Id", "support-ticket-42");
    let r = g.send(req).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-request-id"], "support-ticket-42");
    assert_eq!(r.body["request_id"], "support-ticket-42");
    // An id that could forge a log line or header is replaced.
    let req = g.client().get(format!("{}/api/v1/providers", g.base)).header("X-Request-Id", "a b\"c");
    let r = g.send(req).await;
    let made = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    assert_eq!(r.body["request_id"], made.as_str());
    let ok = g.get("/api/v1/providers").await;
    assert!(ok.headers.contains_key("x-request-id"));
    assert!(ok.body.get("request_id").is_none());

    let logs = g.logs();
    let mut lines = Vec::new();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        lines.push(value);
    }
    let tagged: Vec<&Value> = lines.iter().filter(|l| l["span"]["request_id"] == "support-ticket-42").collect();
    let served = tagged.iter().find(|l| l["fields"]["message"] == "request").expect("the request line carries the id");
    assert_eq!(served["fields"]["status"], 404);
    assert_eq!(served["fields"]["path"], format!("/api/v1/integrations/{UNKNOWN}"));
    assert!(lines.iter().any(|l| l["span"]["request_id"] == made.as_str()));
    g.finish(&[]);
}

/// The value of one series in a scrape, 0 when absent.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (metric, rest) = head.split_once('{').unwrap_or((head, "}"));
            if metric != name {
                return None;
            }
            let set: BTreeMap<&str, &str> = rest
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            labels.iter().all(|(k, v)| set.get(k) == Some(v)).then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

/// After a scripted workload the counters moved by exactly what happened:
/// verifies, a trapping connector, an egress denial, a 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_scripted_workload_exactly() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let g = Gatehouse::start(Options::lax().plugin(HOSTILE).arg("--metrics").arg("key")).await;
    let scrape = || async {
        let r = g.client().get(format!("{}/metrics", g.base)).bearer_auth(API_KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
        r.text().await.unwrap()
    };
    let before = scrape().await;
    let (ok1, ok2, limited) = (fake.pat(jane), fake.pat(jane), fake.pat(jane));
    fake.set_behavior(&limited, Behavior::RateLimited);
    for t in [&ok1, &ok2] {
        assert_eq!(g.post("/api/v1/providers/gitlab-pat/verify", pat_body(t, &fake.url)).await.body["valid"], true);
    }
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&limited, &fake.url)).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.body);
    for mode in ["trap", "egress"] {
        let body = json!({"credentials": {"mode": mode, "base_url": fake.url}});
        let r = g.post("/api/v1/providers/hostile-test/verify", body).await;
        let expected = if mode == "trap" { (502, "plugin_failed") } else { (403, "egress_denied") };
        assert_eq!((r.status, r.code()), expected, "{}", r.body);
    }
    let c = g.post("/api/v1/integrations", connect_pat(&ok1, &fake.url)).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    assert_eq!(g.get(&format!("/api/v1/integrations/{id}")).await.status, 200);
    let after = scrape().await;
    let delta = |name: &str, labels: &[(&str, &str)]| series(&after, name, labels) - series(&before, name, labels);

    let verify_route = [("method", "POST"), ("route", "/api/v1/providers/{provider_id}/verify"), ("status", "200")];
    assert_eq!(delta("gatehouse_http_requests_total", &verify_route), 2.0, "{after}");
    for (status, n) in [("429", 1.0), ("502", 1.0), ("403", 1.0)] {
        let labels = [verify_route[0], verify_route[1], ("status", status)];
        assert_eq!(delta("gatehouse_http_requests_total", &labels), n, "status {status}: {after}");
    }
    let get_route = [("route", "/api/v1/integrations/{id}"), ("status", "200")];
    assert_eq!(delta("gatehouse_http_requests_total", &get_route), 1.0);
    assert_eq!(delta("gatehouse_http_request_duration_seconds_count", &verify_route[..2]), 5.0);
    let pat_ok = [("connector", "gitlab-pat"), ("function", "verify"), ("outcome", "ok")];
    assert_eq!(delta("gatehouse_connector_calls_total", &pat_ok), 4.0, "three verifies and a connect");
    let trapped = [("connector", "hostile-test"), ("function", "verify"), ("outcome", "trap")];
    assert_eq!(delta("gatehouse_connector_calls_total", &trapped), 1.0);
    assert_eq!(delta("gatehouse_sandbox_faults_total", &[("connector", "hostile-test"), ("kind", "trap")]), 1.0);
    assert_eq!(delta("gatehouse_sandbox_faults_total", &[]), 1.0);
    assert_eq!(delta("gatehouse_egress_denials_total", &[]), 1.0, "{after}");
    // The hostile connector asks for the metadata address, outside the base URL's host.
    assert_eq!(delta("gatehouse_egress_denials_total", &[("reason", "origin")]), 1.0, "{after}");
    assert_eq!(delta("gatehouse_provider_rate_limited_total", &[("connector", "gitlab-pat")]), 1.0);
    assert_eq!(series(&after, "gatehouse_provider_rate_limit_remaining", &[("connector", "gitlab-pat")]), 0.0);
    assert!(after.contains("gatehouse_provider_rate_limit_remaining{connector=\"gitlab-pat\"}"));
    // Labels are templates and ids of connectors, never an integration's id.
    assert!(!after.contains(&id), "an integration id in a label");
    // A key is needed here; without --metrics there is no /metrics at all.
    let r = g.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 401);
    g.finish(&fake.all_tokens());
}

/// `--metrics public` serves /metrics without a key on its own address
/// only; the default serves none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_public_on_their_own_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let g = Gatehouse::start(Options::lax().arg("--metrics").arg("public").arg("--metrics-listen").arg(&address)).await;
    let text = reqwest::get(format!("http://{address}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("# TYPE gatehouse_http_requests counter"), "{text}");
    assert_eq!(g.get("/metrics").await.status, 404, "not on the API's address");
    g.finish(&[]);
    let g = Gatehouse::start(Options::lax()).await;
    assert_eq!(g.get("/metrics").await.status, 404);
    g.finish(&[]);
    // A public mode without its address is refused at start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--metrics", "public", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-listen"));
}
