//! The author-facing CLI: `gatehouse plugins test` against a fake upstream.

use std::process::Command;

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
    let args = ["plugins", "test", pat, "--allow-private-networks", "--allow-http", "--credentials"];

    let wrong = "glpat-wrong-wrong-wrong".to_string();
    let secrets = [token.clone(), wrong.clone()];
    let calls = || (fake.hits("/api/v4/personal_access_tokens/self"), fake.hits("/api/v4/user"));
    let (ok, json, stderr) = gatehouse_with(&[&args[..], &[token_arg.as_str(), base_arg.as_str()]].concat(), &secrets);
    assert!(ok, "{stderr}");
    assert_eq!(json["valid"], true);
    assert_eq!(json["account"]["username"], "jane");
    // One verify: each of its two GitLab requests made exactly once.
    assert_eq!(calls(), (1, 1), "verify ran once");

    let wrong_arg = format!("token={wrong}");
    let (ok, json, _) = gatehouse_with(&[&args[..], &[wrong_arg.as_str(), base_arg.as_str()]].concat(), &secrets);
    assert!(!ok);
    assert_eq!(json["error"]["code"], "invalid_token");
    assert_eq!(calls(), (2, 1), "the refused token stops at the first request, once");

    // Without --allow-private-networks the default policy refuses loopback.
    let (ok, json, _) =
        gatehouse_with(&["plugins", "test", pat, "--allow-http", "--credentials", &token_arg, &base_arg], &secrets);
    assert!(!ok);
    assert_eq!(json["code"], "egress_denied");
    assert_eq!(calls(), (2, 1), "nothing sent");

    let (ok, _, stderr) = gatehouse(&["plugins", "test", dir.path().join("missing.wasm").to_str().unwrap()]);
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}
