//! The plugins directory as an operator sees it: `GET /api/v1/plugins`
//! (loaded connectors, refused files with reasons), a second file with a
//! serving connector's id refused, half-copied (dot) files ignored, a
//! removed connector's connections shown as `provider_unavailable`, and the
//! connectors' own log lines under `--log-connectors`.

use serde_json::{Value, json};

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{Gatehouse, Options},
};

const HOSTILE: &str = gatehouse_test_programs::TEST_HOSTILE_WASM;
const BAD_MANIFEST: &str = gatehouse_test_programs::TEST_BAD_MANIFEST_WASM;
const BITBUCKET: &str = gatehouse_test_programs::EXAMPLE_BITBUCKET_WASM;

/// The hostile component with its display name edited (same length): the
/// same id, different bytes.
fn renamed_hostile() -> Vec<u8> {
    let (from, to) = (b"Hostile test connector", b"Hostile newcomer here!");
    let mut bytes = std::fs::read(HOSTILE).unwrap();
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the name is in the component");
    bytes[at..at + from.len()].copy_from_slice(to);
    bytes
}

fn refused_reason<'a>(status: &'a Value, file_name: &str) -> Option<&'a str> {
    status["refused"]
        .as_array()?
        .iter()
        .find(|r| r["file"].as_str().is_some_and(|f| f.ends_with(file_name)))
        .and_then(|r| r["error"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_route_lists_loaded_and_refused_files_and_serving_ids_are_kept() {
    let g = Gatehouse::start(Options::lax().arg("--plugins-poll").arg("0s")).await;
    let dir = g.plugins_dir();
    std::fs::copy(HOSTILE, dir.join("z-hostile.wasm")).unwrap();
    std::fs::copy(BAD_MANIFEST, dir.join("bad-manifest.wasm")).unwrap();
    std::fs::write(dir.join("broken.wasm"), b"\0asm broken").unwrap();
    // A copy still being written: a dot file, not read at all.
    std::fs::write(dir.join(".incoming.wasm"), &std::fs::read(HOSTILE).unwrap()[..1000]).unwrap();
    let r = g.post("/api/v1/plugins/reload", json!({})).await;
    assert_eq!(r.body["loaded"], json!(["hostile-test"]), "{}", r.body);

    let status = g.get("/api/v1/plugins").await;
    assert_eq!(status.status, 200, "{}", status.body);
    let loaded: Vec<&str> =
        status.body["loaded"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(loaded, ["gitlab-oauth", "gitlab-pat", "hostile-test"]);
    let hostile = &status.body["loaded"][2];
    assert!(hostile["source"].as_str().unwrap().ends_with("z-hostile.wasm"), "{hostile}");
    assert_eq!((&hostile["wit_version"], &hostile["exports"]), (&json!("0.4.0"), &json!(["connector"])));
    let bad = refused_reason(&status.body, "bad-manifest.wasm").expect("the bad manifest is listed");
    for problem in
        ["id \"Bad Id\"", "\"not-semver\" is not a semantic version", "appears twice", "must not have a default"]
    {
        assert!(bad.contains(problem), "{problem} missing from: {bad}");
    }
    let broken = refused_reason(&status.body, "broken.wasm").expect("the broken file is listed");
    assert!(broken.contains("not a WebAssembly component") && !broken.ends_with('['), "{broken}");
    assert_eq!(refused_reason(&status.body, ".incoming.wasm"), None, "dot files are not read");
    assert_eq!(status.body["refused"].as_array().unwrap().len(), 2, "{}", status.body);

    // A newcomer with the same id whose name sorts first does not take the
    // id from the connector serving it; it is refused, saying why.
    std::fs::write(dir.join("a-hostile.wasm"), renamed_hostile()).unwrap();
    let r = g.post("/api/v1/plugins/reload", json!({})).await;
    assert_eq!(r.body["loaded"], json!([]), "{}", r.body);
    let why = refused_reason(&r.body, "a-hostile.wasm").expect("the newcomer is refused in the reload's answer");
    assert!(why.contains("already served from") && why.contains("z-hostile.wasm"), "{why}");
    assert!(refused_reason(&r.body, "broken.wasm").is_some(), "a reload lists every refused file, not only new ones");
    let provider = g.get("/api/v1/providers/hostile-test").await;
    assert_eq!(provider.body["name"], "Hostile test connector", "the serving connector keeps its id");
    assert!(g.logs().lines().any(|l| l.contains("a-hostile.wasm") && l.contains("already served")), "{}", g.logs());
    // Removing the one that served lets the other take the id.
    std::fs::remove_file(dir.join("z-hostile.wasm")).unwrap();
    g.post("/api/v1/plugins/reload", json!({})).await;
    assert_eq!(g.get("/api/v1/providers/hostile-test").await.body["name"], "Hostile newcomer here!");
    assert_eq!(refused_reason(&g.get("/api/v1/plugins").await.body, "a-hostile.wasm"), None);
    g.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_connector_is_gone_is_provider_unavailable() {
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("jdoe", false), Kind::Pat, &[]);
    let g = Gatehouse::start(Options::lax().arg("--plugins-poll").arg("0s").plugin(BITBUCKET)).await;
    let creds = json!({"token": token, "base_url": fake.url});
    let c = g.post("/api/v1/integrations", json!({"provider": "bitbucket-pat", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap().to_string();
    let file = g.plugins_dir().join(std::path::Path::new(BITBUCKET).file_name().unwrap());
    let kept = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(g.post("/api/v1/plugins/reload", json!({})).await.body["unloaded"], json!(["bitbucket-pat"]));

    let list = g.get("/api/v1/integrations").await;
    let shown = &list.body["integrations"][0];
    assert_eq!(shown["status"], "provider_unavailable", "{}", list.body);
    assert_eq!(shown["last_error"]["code"], "provider_unavailable");
    assert_eq!(g.get(&format!("/api/v1/integrations/{id}")).await.body["status"], "provider_unavailable");
    let again = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!((again.status, again.code()), (503, "provider_unavailable"), "{}", again.body);
    assert!(again.body["detail"].as_str().unwrap().contains("bitbucket-pat"), "{}", again.body);

    // Back in place, the connection is what it was.
    std::fs::write(&file, kept).unwrap();
    g.post("/api/v1/plugins/reload", json!({})).await;
    let again = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    assert_eq!((again.status, &again.body["status"]), (200, &json!("connected")), "{}", again.body);
    g.finish(&fake.all_tokens());
}

/// The JSON log lines of `g` on the connectors' target.
fn connector_lines(g: &Gatehouse) -> Vec<Value> {
    g.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "gatehouse::connector")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_logs_have_their_own_switch_and_structured_fields() {
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("jdoe", false), Kind::Pat, &[]);
    let creds = json!({"credentials": {"token": token, "base_url": fake.url}});
    let options = || Options::lax().plugin(BITBUCKET).env("GATEHOUSE_LOG", "info").env("GATEHOUSE_LOG_FORMAT", "json");

    // By default a connector's debug line is not written.
    let g = Gatehouse::start(options()).await;
    assert_eq!(g.post("/api/v1/providers/bitbucket-pat/verify", creds.clone()).await.body["valid"], true);
    assert!(connector_lines(&g).iter().all(|l| l["level"] != "DEBUG"), "{}", g.logs());
    g.finish(&fake.all_tokens());

    // --log-connectors debug shows it, with the connector's fields as
    // fields, and nothing of the engine's debug output.
    let g = Gatehouse::start(options().arg("--log-connectors").arg("debug")).await;
    assert_eq!(g.post("/api/v1/providers/bitbucket-pat/verify", creds).await.body["valid"], true);
    let lines = connector_lines(&g);
    let line =
        lines.iter().find(|l| l["fields"]["message"] == "token accepted").unwrap_or_else(|| panic!("{}", g.logs()));
    assert_eq!(line["level"], "DEBUG");
    assert_eq!((&line["fields"]["connector"], &line["fields"]["user"]), (&json!("bitbucket-pat"), &json!("jdoe")));
    let logs = g.logs();
    assert!(
        logs.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .all(|l| l["level"] != "DEBUG" || l["target"] == "gatehouse::connector"),
        "only the connectors' debug lines: {logs}"
    );
    g.finish(&fake.all_tokens());
}
