//! Loopback-only network namespaces for the tests whose target would be
//! contacted if the code under test were wrong (SSRF corpora, proxies): the
//! test binary runs the one test again under `unshare -rnm`, where the only
//! interface is `lo` and `/etc/hosts` is the test's own, so a name can
//! resolve to any address without a DNS server, and an address the host
//! fails to refuse reaches nothing. Such tests are compiled as ignored
//! where namespaces are unavailable (see build.rs), never as passed.

use std::{future::Future, process::Command};

const INSIDE: &str = "GATEHOUSE_TEST_NETNS";

/// Runs `body` inside a fresh loopback-only network namespace whose
/// `/etc/hosts` maps `hosts` (name, address), besides localhost. `test` is
/// the test's path as libtest names it (`egress::some_test`).
pub fn isolated<F, Fut>(test: &str, hosts: &[(&str, &str)], body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var_os(INSIDE).is_some() {
        let interfaces = std::fs::read_to_string("/proc/self/net/dev").unwrap();
        let names: Vec<&str> = interfaces.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
        assert_eq!(names, ["lo"], "refusing to run outside a loopback-only namespace");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(body());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts_file = dir.path().join("hosts");
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for (name, address) in hosts {
        text.push_str(&format!("{address} {name}\n"));
    }
    std::fs::write(&hosts_file, text).unwrap();
    let script = r#"PATH="$PATH:/usr/sbin:/sbin"; mount --bind "$1" /etc/hosts && ip link set lo up && exec "$2" "$3" --exact --nocapture --test-threads 1"#;
    let output = Command::new("unshare")
        .args(["-rnm", "sh", "-c", script, "sh"])
        .arg(&hosts_file)
        .arg(std::env::current_exe().unwrap())
        .arg(test)
        .env(INSIDE, "1")
        .output()
        .expect("run unshare (util-linux)");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{test} failed inside its network namespace:\n{said}");
    // A filter that matched nothing would pass with "0 passed".
    assert!(said.contains("1 passed"), "{test} did not run inside its network namespace:\n{said}");
}
