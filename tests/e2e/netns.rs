//! Loopback-only network namespaces for the tests whose target would be
//! contacted if the code under test were wrong (SSRF corpora, proxies, a
//! silent resolver): the test binary runs the one test again under
//! `unshare -rnm`, where the only interface is `lo` and files such as
//! `/etc/hosts` or `/etc/resolv.conf` are the test's own, so a name can
//! resolve to any address without a DNS server, and an address the host
//! fails to refuse reaches nothing. Such tests are compiled as ignored
//! where namespaces are unavailable (see build.rs), never as passed.

use std::{future::Future, process::Command};

const INSIDE: &str = "GATEHOUSE_TEST_NETNS";

/// Whether this process is the re-run inside the namespace. Outside, runs
/// `test` (its path as libtest names it) again inside one, with each
/// `(contents, path)` of `files` bind-mounted over `path`, asserts that it
/// ran and passed there, and returns false.
fn inside_or_rerun(test: &str, files: &[(&str, &str)]) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        let interfaces = std::fs::read_to_string("/proc/self/net/dev").unwrap();
        let names: Vec<&str> = interfaces.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
        assert_eq!(names, ["lo"], "refusing to run outside a loopback-only namespace");
        return true;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut script = String::from(r#"set -e; PATH="$PATH:/usr/sbin:/sbin"; ip link set lo up; "#);
    for (i, (contents, path)) in files.iter().enumerate() {
        let file = dir.path().join(format!("file{i}"));
        std::fs::write(&file, contents).unwrap();
        script.push_str(&format!("mount --bind '{}' '{path}'; ", file.display()));
    }
    script.push_str(r#"exec "$@""#);
    let output = Command::new("unshare")
        .args(["-rnm", "sh", "-c", &script, "sh"])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--include-ignored", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("run unshare (util-linux)");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{test} failed inside its network namespace:\n{said}");
    // A filter that matched nothing would pass with "0 passed".
    assert!(said.contains("1 passed"), "{test} did not run inside its network namespace:\n{said}");
    false
}

/// Runs `body` inside a fresh loopback-only network namespace whose
/// `/etc/hosts` maps `hosts` (name, address), besides localhost.
pub fn isolated<F, Fut>(test: &str, hosts: &[(&str, &str)], body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for (name, address) in hosts {
        text.push_str(&format!("{address} {name}\n"));
    }
    if inside_or_rerun(test, &[(&text, "/etc/hosts")]) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(body());
    }
}

/// Whether the caller is inside the namespace (with `resolv_conf` as its
/// `/etc/resolv.conf`) and should run its body; outside, the test has
/// been run inside one, and the caller returns.
pub fn enter(test: &str, resolv_conf: &str) -> bool {
    inside_or_rerun(test, &[(resolv_conf, "/etc/resolv.conf")])
}
