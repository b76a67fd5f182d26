//! The author-facing CLI: `gatehouse plugins test` against a fake upstream.

use std::process::Command;

use serde_json::json;

use crate::{fake_gitlab::FakeGitlab, harness::scan_text};

const HOSTILE: &str = gatehouse_test_programs::TEST_HOSTILE_WASM;

/// Runs the CLI; its whole output is scanned for the secrets.
fn gatehouse_with(args: &[&str], secrets: &[String]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(args).output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    scan_text("the CLI's output", &format!("{stdout}\n{stderr}"), secrets);
    (out.status.success(), json, stderr.to_string())
}

fn gatehouse(args: &[&str]) -> (bool, serde_json::Value, String) {
    gatehouse_with(args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_test_calls_verify_once() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let dir = tempfile::tempdir().unwrap();
    // First-party components are built beside the test ones.
    let pat = std::path::Path::new(HOSTILE).with_file_name("gitlab_pat.wasm");
    let pat = pat.to_str().unwrap();
    let token_arg = format!("token={token}");
    let base_arg = format!("base_url={}", fake.url);
    let cache = dir.path().join("cache");
    let cache_arg = format!("--cache-dir={}", cache.display());
    let args = ["plugins", "test", pat, "--allow-private-networks", "--allow-http", &cache_arg, "--credentials"];

    let wrong = "glpat-wrong-wrong-wrong".to_string();
    let secrets = [token.clone(), wrong.clone()];
    let calls = || (fake.hits("/api/v4/personal_access_tokens/self"), fake.hits("/api/v4/user"));
    let (ok, json, stderr) = gatehouse_with(&[&args[..], &[token_arg.as_str(), base_arg.as_str()]].concat(), &secrets);
    assert!(ok, "{stderr}");
    assert_eq!(json["valid"], true);
    assert_eq!(json["account"]["username"], "jane");
    // One verify: each of its two GitLab requests made exactly once.
    assert_eq!(calls(), (1, 1), "verify ran once");
    // The compiled component is kept for the next call.
    let compiled: Vec<_> = std::fs::read_dir(cache.join("components")).unwrap().collect();
    assert_eq!(compiled.len(), 1, "{compiled:?}");
    // ...authenticated with a key of this cache's own (0600): a file that
    // does not carry its MAC is compiled again, never loaded.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cache.join("cache.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::write(compiled[0].as_ref().unwrap().path(), b"not a compiled component").unwrap();
    let (ok, json, stderr) = gatehouse_with(&[&args[..], &[token_arg.as_str(), base_arg.as_str()]].concat(), &secrets);
    assert!(ok && json["valid"] == true, "{stderr}");
    assert_eq!(calls(), (2, 2));

    let wrong_arg = format!("token={wrong}");
    let (ok, json, _) = gatehouse_with(&[&args[..], &[wrong_arg.as_str(), base_arg.as_str()]].concat(), &secrets);
    assert!(!ok);
    assert_eq!(json["error"]["code"], "invalid_token");
    let refused = json;
    assert_eq!(calls(), (3, 2), "the refused token stops at the first request, once");

    // Without --allow-private-networks the default policy refuses loopback.
    let (ok, json, _) =
        gatehouse_with(&["plugins", "test", pat, "--allow-http", "--credentials", &token_arg, &base_arg], &secrets);
    assert!(!ok);
    // The host's refusal comes in the same shape as the provider's verdict.
    assert_eq!((&json["valid"], &json["error"]["code"]), (&json!(false), &json!("egress_denied")), "{json}");
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&json), keys(&refused), "one output shape");
    assert_eq!(calls(), (3, 2), "nothing sent");

    let (ok, _, stderr) = gatehouse(&["plugins", "test", dir.path().join("missing.wasm").to_str().unwrap()]);
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn plugins_validate_lists_every_manifest_problem_and_explains_a_core_module() {
    let bad = gatehouse_test_programs::TEST_BAD_MANIFEST_WASM;
    let (ok, _, stderr) = gatehouse(&["plugins", "validate", "--no-cache", bad]);
    assert!(!ok);
    assert!(stderr.contains("breaks 4 rule(s)"), "{stderr}");
    for problem in
        ["id \"Bad Id\"", "\"not-semver\" is not a semantic version", "appears twice", "must not have a default"]
    {
        assert!(stderr.lines().any(|l| l.starts_with("  - ") && l.contains(problem)), "{problem}: {stderr}");
    }
    // A core module (what wasm32-unknown-unknown or wasm32-wasip1 builds).
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (ok, _, stderr) = gatehouse(&["plugins", "validate", "--no-cache", core.to_str().unwrap()]);
    assert!(!ok && stderr.contains("core WebAssembly module") && stderr.contains("wasm32-wasip2"), "{stderr}");
    // Not wasm at all: wasmtime's whole message, not its first line.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x02\0").unwrap();
    let (ok, _, stderr) = gatehouse(&["plugins", "validate", "--no-cache", junk.to_str().unwrap()]);
    assert!(!ok && !stderr.trim_end().ends_with('['), "{stderr}");
}

#[test]
fn plugins_list_names_the_files_serve_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(gatehouse_test_programs::TEST_BAD_MANIFEST_WASM, plugins.join("bad.wasm")).unwrap();
    std::fs::copy(HOSTILE, plugins.join("hostile.wasm")).unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["plugins", "list", "--plugins-dir"])
        .arg(&plugins)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("hostile-test\t")), "{stdout}");
    let refused = stderr.lines().find(|l| l.starts_with("refused\t")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(refused.contains("bad.wasm") && refused.contains("not a semantic version"), "{refused}");
}
