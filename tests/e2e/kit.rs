//! The plugin kit as a stranger uses it: `gatehouse plugins new` in a
//! directory outside the repository, the project's own native tests, its
//! build, and the component loaded into a running host and verifying a
//! token — in Rust, Python and JavaScript; and the JavaScript connector of
//! `plugins/bitbucket-js`, built with componentize-js.
//!
//! Nothing here reaches a network: Rust builds run `--offline` (the
//! repository's `plugins/Cargo.lock` pins crates the plugins build already
//! fetched), and JavaScript projects link the `node_modules` that
//! tests/setup.sh installed in `plugins/bitbucket-js`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::json;

use crate::{
    fake_gitlab::{FakeGitlab, Kind},
    harness::{Gatehouse, Options},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a command to success, showing its output when it fails.
fn run(what: &str, command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

/// `gatehouse plugins new NAME --lang LANG --dir DIR`.
fn scaffold(name: &str, lang: &str, dir: &Path) {
    let out = run(
        "plugins new",
        Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["plugins", "new", name, "--lang", lang, "--dir"]).arg(dir),
    );
    assert!(out.contains(&format!("created {}", dir.display())), "{out}");
}

/// A cargo command for a project outside this build: none of the outer
/// build's settings, no network.
fn cargo(dir: &Path, target_dir: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(dir).env("CARGO_TARGET_DIR", target_dir).env("CARGO_NET_OFFLINE", "true");
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER"] {
        command.env_remove(var);
    }
    command
}

/// Loads `wasm` from --plugins-dir and verifies a token of the fake through
/// it (its `GET {base_url}/user`, with the base URL on GitLab's `/api/v4`),
/// and a wrong token.
async fn loads_and_verifies(id: &str, wasm: &Path) {
    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("stranger", false), Kind::Pat, &["read_api"]);
    let g = Gatehouse::start(Options::lax().plugin(wasm.to_str().unwrap())).await;
    let plugins = g.get("/api/v1/plugins").await;
    let loaded = plugins.body["loaded"].as_array().cloned().unwrap_or_default();
    assert!(loaded.iter().any(|p| p["id"] == id), "{id} is not loaded: {}\n{}", plugins.body, g.logs());
    let creds = json!({"token": token, "base_url": format!("{}/api/v4", fake.url)});
    let v = g.post(&format!("/api/v1/providers/{id}/verify"), json!({"credentials": creds})).await;
    assert_eq!((v.status, &v.body["valid"]), (200, &json!(true)), "{}", v.body);
    assert_eq!(v.body["account"]["username"], "stranger");
    let wrong = json!({"credentials": {"token": "not-a-token-000000", "base_url": format!("{}/api/v4", fake.url)}});
    let v = g.post(&format!("/api/v1/providers/{id}/verify"), wrong).await;
    assert_eq!(v.body["error"]["code"], "invalid_token", "{}", v.body);
    g.finish(&fake.all_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_connector_from_plugins_new_builds_tests_and_loads() {
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("acme-widgets");
    scaffold("acme-widgets", "rust", &dir);
    assert!(dir.join("vendor/gatehouse-plugin/wit/provider.wit").is_file(), "the SDK is vendored with its WIT");
    let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
    assert!(config.contains("-zstack-size=65536"), "{config}");
    // The versions the plugins build already fetched, so no network is needed.
    std::fs::copy(repo().join("plugins/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    // Kept between runs (the dependencies compile once).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-rust");

    let tests = run("cargo test", cargo(&dir, &target).arg("test"));
    assert!(tests.contains("test result: ok. 3 passed"), "{tests}");
    run("cargo build", cargo(&dir, &target).args(["build", "--release", "--target", "wasm32-wasip2"]));
    let wasm = target.join("wasm32-wasip2/release/acme_widgets.wasm");
    let size = std::fs::metadata(&wasm).unwrap().len();
    assert!(size < 1024 * 1024, "the release profile keeps it small: {size} bytes");
    let validated =
        run("plugins validate", Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["plugins", "validate"]).arg(&wasm));
    assert!(validated.contains("starts with 128 KiB"), "the stack setting applies: {validated}");
    loads_and_verifies("acme-widgets", &wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_componentize_py), ignore = "needs componentize-py: run tests/setup.sh")]
async fn a_python_connector_from_plugins_new_builds_tests_and_loads() {
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("acme-py");
    scaffold("acme-py", "python", &dir);
    let tests = run("python3 test_app.py", Command::new("python3").arg("test_app.py").current_dir(&dir));
    assert!(tests.contains("Ran 3 tests") && tests.contains("OK"), "{tests}");
    let wasm = dir.join("acme_py.wasm");
    run(
        "componentize-py",
        Command::new("componentize-py")
            .args(["-d", "wit", "-w", "provider", "componentize", "app", "-o"])
            .arg(&wasm)
            .current_dir(&dir),
    );
    loads_and_verifies("acme-py", &wasm).await;
}

/// A JavaScript project in `dir` using the componentize-js that
/// tests/setup.sh installed (`npm ci` in plugins/bitbucket-js).
fn link_node_modules(dir: &Path) {
    let installed = repo().join("plugins/bitbucket-js/node_modules");
    assert!(
        installed.join("@bytecodealliance/componentize-js/package.json").is_file(),
        "componentize-js is not installed: run tests/setup.sh (npm ci in plugins/bitbucket-js)"
    );
    std::os::unix::fs::symlink(installed, dir.join("node_modules")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_componentize_js), ignore = "needs node and componentize-js: run tests/setup.sh")]
async fn a_javascript_connector_from_plugins_new_builds_tests_and_loads() {
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("acme-js");
    scaffold("acme-js", "js", &dir);
    let package = std::fs::read_to_string(dir.join("package.json")).unwrap();
    let pinned = format!("\"@bytecodealliance/componentize-js\": \"{}\"", gatehouse::scaffold::COMPONENTIZE_JS_VERSION);
    assert!(package.contains(&pinned), "{package}");
    link_node_modules(&dir);
    let tests = run("npm test", Command::new("npm").arg("test").current_dir(&dir));
    assert!(tests.contains("# pass 3") && tests.contains("# fail 0"), "{tests}");
    run("npm run build", Command::new("npm").args(["run", "build"]).current_dir(&dir));
    loads_and_verifies("acme-js", &dir.join("acme_js.wasm")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_componentize_js), ignore = "needs node and componentize-js: run tests/setup.sh")]
async fn the_javascript_bitbucket_connector_builds_tests_and_verifies() {
    let source = repo().join("plugins/bitbucket-js");
    let build = tempfile::tempdir().unwrap();
    for file in ["connector.js", "package.json"] {
        std::fs::copy(source.join(file), build.path().join(file)).unwrap();
    }
    let tests = run("npm test", Command::new("npm").arg("test").current_dir(&source));
    assert!(tests.contains("# fail 0") && !tests.contains("# pass 0"), "{tests}");
    let wasm = build.path().join("bitbucket_js.wasm");
    run(
        "componentize-js",
        Command::new(source.join("node_modules/.bin/componentize-js"))
            .arg(source.join("connector.js"))
            .arg("--wit")
            .arg(repo().join("wit"))
            .args(["--world-name", "provider", "--disable", "http", "fetch-event", "-o"])
            .arg(&wasm),
    );

    let fake = FakeGitlab::start().await;
    let token = fake.token(fake.add_user("jdoe", false), Kind::Pat, &[]);
    let g = Gatehouse::start(Options::lax().plugin(wasm.to_str().unwrap())).await;
    let creds = json!({"token": token, "base_url": fake.url});
    let v = g.post("/api/v1/providers/bitbucket-js/verify", json!({"credentials": creds})).await;
    assert_eq!((v.status, &v.body["valid"]), (200, &json!(true)), "{}\n{}", v.body, g.logs());
    assert_eq!((&v.body["account"]["username"], &v.body["account"]["name"]), (&json!("jdoe"), &json!("jdoe Example")));
    let c = g.post("/api/v1/integrations", json!({"provider": "bitbucket-js", "credentials": creds})).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let wrong = json!({"credentials": {"token": "BBDC-wrong-000000", "base_url": fake.url}});
    let v = g.post("/api/v1/providers/bitbucket-js/verify", wrong).await;
    assert_eq!(v.body["error"]["code"], "invalid_token", "{}", v.body);
    g.finish(&fake.all_tokens());
}
