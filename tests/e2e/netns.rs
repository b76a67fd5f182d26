//! Runs a test again inside a loopback-only network namespace (`unshare
//! -rn`, then `ip link set lo up`) with its own mount namespace, so the test
//! can give it its own `/etc/resolv.conf`: whatever the code under test gets
//! wrong, nothing leaves the machine. Tests using it are compiled as ignored
//! where namespaces are unavailable (host/build.rs, `gatehouse_netns`).

use std::process::Command;

/// Set in the re-run test's environment.
const INSIDE: &str = "GATEHOUSE_TEST_IN_NETNS";

/// Whether the caller is already inside the namespace and should run its
/// body. Outside, re-runs `test` (its path as `cargo test` names it) inside
/// one, with `resolv_conf` bind-mounted over `/etc/resolv.conf`, asserts
/// that it ran and passed there, and returns false.
pub fn enter(test: &str, resolv_conf: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, resolv_conf).unwrap();
    let script = "set -e; ip link set lo up; mount --bind \"$1\" /etc/resolv.conf; shift; exec \"$@\"";
    let out = Command::new("unshare")
        .args(["-rnm", "sh", "-c", script, "sh"])
        .arg(&resolv)
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--include-ignored", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed inside the network namespace ({}):\n{stdout}\n{stderr}",
        out.status
    );
    false
}
