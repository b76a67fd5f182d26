//! The author-facing CLI: `gatehouse plugins test` against a fake upstream.

use std::process::Command;

use crate::fake_gitlab::FakeGitlab;

const HOSTILE: &str = env!("GATEHOUSE_TEST_HOSTILE_WASM");

fn gatehouse(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(args).output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).to_string())
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
    let args = ["plugins", "test", pat, "--allow-private-networks", "--allow-http", "--credentials"];

    let (ok, json, stderr) = gatehouse(&[&args[..], &[token_arg.as_str(), base_arg.as_str()]].concat());
    assert!(ok, "{stderr}");
    assert_eq!(json["valid"], true);
    assert_eq!(json["account"]["username"], "jane");

    let (ok, json, _) = gatehouse(&[&args[..], &["token=glpat-wrong-wrong-wrong", base_arg.as_str()]].concat());
    assert!(!ok);
    assert_eq!(json["error"]["code"], "invalid_token");

    // Without --allow-private-networks the default policy refuses loopback.
    let (ok, json, _) = gatehouse(&["plugins", "test", pat, "--allow-http", "--credentials", &token_arg, &base_arg]);
    assert!(!ok);
    assert_eq!(json["code"], "egress_denied");

    let (ok, _, stderr) = gatehouse(&["plugins", "test", dir.path().join("missing.wasm").to_str().unwrap()]);
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}
