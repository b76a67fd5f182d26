//! Keys and data at rest: the master key in its own private file outside
//! the data dir, an earlier version's key in the data dir moved (never
//! replaced), `gatehouse keys rotate` (also finishing an interrupted one),
//! private modes of the data dir and the database files, and commits and
//! the key file reaching the disk.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Output};

use base64::Engine;
use serde_json::json;

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{Gatehouse, Options, connect_pat, scan_text},
    oauth::{CLIENT_SECRET, connect_through_oauth, setup},
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// The key file's lines (its keys).
fn key_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

/// Runs `gatehouse keys …` on `g`'s data dir; the output must not show any
/// key of the key file (before or after).
fn keys_cli(g: &Gatehouse, args: &[&str], keys: &[String]) -> (bool, String) {
    let data_dir = g.data_dir();
    let out: Output = g
        .command()
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("GATEHOUSE_LOG", "info")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let mut secrets = keys.to_vec();
    secrets.extend(key_lines(&g.key_file()));
    scan_text("the keys command's output", &text, &secrets);
    (out.status.success(), text)
}

async fn reverify(g: &Gatehouse, id: &str) -> (u16, String) {
    let r = g.post(&format!("/api/v1/integrations/{id}/verify"), json!({})).await;
    let what = if r.status == 200 { r.body["status"].as_str().unwrap().to_string() } else { r.code().to_string() };
    (r.status, what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_lives_outside_the_data_dir_and_everything_is_private() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let mut g = Gatehouse::start(Options::lax()).await;
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();

    // The first start created the key outside the data dir, 0600 in 0700.
    let key_file = g.key_file();
    assert_eq!((mode(&key_file), mode(key_file.parent().unwrap())), (0o600, 0o700));
    assert!(!g.data_dir().join("master.key").exists());
    assert!(g.logs().contains("created the master key"), "{}", g.logs());
    // The data dir, the database with its WAL and shared memory, the cache.
    let data = g.data_dir();
    assert_eq!(mode(&data), 0o700);
    // The SQLite files, unless the database is PostgreSQL's.
    let sqlite: &[&str] =
        if g.database_url().is_some() { &[] } else { &["gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm"] };
    for file in sqlite.iter().chain(&["gatehouse.lock"]) {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data.join("cache")), 0o700);
    for entry in std::fs::read_dir(data.join("cache")).unwrap().flatten() {
        assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
    }

    // A data dir left by an earlier version (0755, database 0644): the
    // files are narrowed, the directory is reported with what to run.
    g.stop();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in sqlite {
        if data.join(file).exists() {
            std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    g.restart().await;
    assert_eq!(reverify(&g, &id).await, (200, "connected".into()));
    for file in sqlite {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert!(g.logs().contains("the data dir is mode 755") && g.logs().contains("chmod 700"), "{}", g.logs());

    // A key file named inside the data dir is refused, with the way out.
    let inside = data.join("keys").join("master.key");
    g.options_mut().extra_args.extend(["--master-key-file".into(), inside.display().to_string()]);
    let refused = g.restart_refused().await;
    assert!(refused.contains("is inside the data directory"), "{refused}");
    assert!(refused.contains(&format!("such as {}", g.key_file().display())), "{refused}");
    assert!(!inside.exists(), "nothing was created");
    // An existing one is refused with the command that moves it.
    std::fs::create_dir(data.join("keys")).unwrap();
    std::fs::copy(g.key_file(), &inside).unwrap();
    let refused = g.restart_refused().await;
    let command = format!("mv {} {}", inside.display(), g.key_file().display());
    assert!(refused.contains("mkdir -p -m 700") && refused.contains(&command), "{refused}");
    std::fs::remove_dir_all(data.join("keys")).unwrap();
    g.options_mut().extra_args.clear();
    g.restart().await;
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_an_earlier_version_left_in_the_data_dir_is_moved_not_replaced() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let mut g = Gatehouse::start(Options::lax()).await;
    let id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    g.stop();
    // How earlier versions laid it out: the key beside the database.
    let legacy = g.data_dir().join("master.key");
    std::fs::rename(g.key_file(), &legacy).unwrap();

    let refused = g.restart_refused().await;
    assert!(!g.key_file().exists(), "no second key was created: {refused}");
    let command = refused.split('`').nth(1).unwrap_or_else(|| panic!("a command to run: {refused}"));
    assert!(command.contains(&format!("mv {} {}", legacy.display(), g.key_file().display())), "{refused}");

    // Accepted where it is with the flag…
    g.options_mut().extra_args.push("--allow-key-in-data-dir".into());
    g.restart().await;
    assert_eq!(reverify(&g, &id).await, (200, "connected".into()));
    assert!(g.logs().contains("a copy of the data dir opens every stored secret"), "the risk is logged");
    g.stop();
    g.options_mut().extra_args.clear();

    // …or moved by the command the refusal gave, after which it just works.
    let status = std::process::Command::new("sh").args(["-c", command]).status().unwrap();
    assert!(status.success(), "{command}");
    assert!(!legacy.exists());
    g.restart().await;
    assert_eq!(reverify(&g, &id).await, (200, "connected".into()));

    // A copy left behind in the data dir is refused too: delete it.
    g.stop();
    std::fs::copy(g.key_file(), &legacy).unwrap();
    let refused = g.restart_refused().await;
    assert!(refused.contains(&format!("rm {}", legacy.display())), "{refused}");
    std::fs::remove_file(&legacy).unwrap();
    g.restart().await;
    g.finish(&[token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_every_secret_under_a_new_key() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    fake.sign_in(Some(jane));
    let mut g = Gatehouse::start(Options::lax().arg("--sync-poll").arg("0s")).await;
    // One of each sealed value: PAT credentials, OAuth credentials and
    // refresh token, the OAuth application's client secret, a verifier in
    // flight, a webhook's signing secret, an inbound webhook's token.
    setup(&g, &fake).await;
    let oauth_id = connect_through_oauth(&g, &fake).await;
    let token = fake.pat(jane);
    let pat_id =
        g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    let r = g.get(&format!("/api/v1/oauth/gitlab-oauth/authorize?base_url={}&redirect=false", fake.url)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let w = g.post("/api/v1/webhooks", json!({"url": "http://127.0.0.1:9/hook"})).await;
    let webhook_secret = w.body["secret"].as_str().unwrap().to_string();
    let inbound = g
        .call("PUT", &format!("/api/v1/integrations/{pat_id}/inbound-webhook"), None, Some(crate::harness::API_KEY))
        .await;
    let inbound_token = inbound.body["secret_token"].as_str().unwrap().to_string();

    let old_key = key_lines(&g.key_file());
    assert_eq!(old_key.len(), 1);
    let (ok, status) = keys_cli(&g, &["status"], &[]);
    assert!(ok && status.contains("all 7 stored secrets open"), "{status}");

    // Not while a server uses the data dir.
    let (ok, refused) = keys_cli(&g, &["rotate"], &[]);
    assert!(!ok && refused.contains("stop every server"), "{refused}");
    assert_eq!(key_lines(&g.key_file()), old_key);

    g.stop();
    let (ok, rotated) = keys_cli(&g, &["rotate"], &old_key);
    assert!(ok, "{rotated}");
    assert!(rotated.contains("Re-sealed 7 stored secrets"), "{rotated}");
    let new_key = key_lines(&g.key_file());
    assert_eq!(new_key.len(), 1, "the key file holds the new key alone");
    assert_ne!(new_key, old_key);
    assert_eq!(mode(&g.key_file()), 0o600);

    // Restarted with only the new key: everything still works.
    g.restart().await;
    assert_eq!(reverify(&g, &pat_id).await, (200, "connected".into()));
    let r = g.post(&format!("/api/v1/integrations/{oauth_id}/refresh"), json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("connected")), "{}", r.body);
    let hook = g
        .client()
        .post(format!("{}/api/v1/hooks/{pat_id}", g.base))
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Issue Hook")
        .header("x-gitlab-token", &inbound_token)
        .body("{}");
    assert_eq!(g.send(hook).await.status, 202);
    let (ok, status) = keys_cli(&g, &["status"], &old_key);
    assert!(ok && status.contains("all 7 stored secrets open"), "{status}");

    // The old key opens nothing any more.
    let old_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(old_file.path(), &old_key[0]).unwrap();
    let (ok, status) = keys_cli(
        &g,
        &["status", "--master-key-file", old_file.path().to_str().unwrap()],
        &[old_key.clone(), new_key.clone()].concat(),
    );
    assert!(!ok && status.contains("7 of 7 stored secrets do not open"), "{status}");
    g.stop();
    std::fs::write(g.key_file(), &old_key[0]).unwrap();
    g.restart().await;
    assert_eq!(reverify(&g, &pat_id).await, (503, "secret_unavailable".into()));
    g.stop();
    std::fs::write(g.key_file(), &new_key[0]).unwrap();
    g.restart().await;

    let mut secrets = fake.all_tokens();
    secrets.extend([CLIENT_SECRET.to_string(), old_key[0].clone()]);
    // Shown once, in the answers that created them.
    let shown = [fake.oauth_states(), vec![webhook_secret, inbound_token]].concat();
    g.finish_scan(&secrets, &shown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rotation_keeps_everything_readable_and_finishes_when_run_again() {
    let fake = FakeGitlab::start().await;
    let jane = fake.add_user("jane", false);
    let mut g = Gatehouse::start(Options::lax().arg("--sync-poll").arg("0s")).await;
    let first = fake.pat(jane);
    let a =
        g.post("/api/v1/integrations", connect_pat(&first, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    g.stop();

    // Where a rotation stands when stopped after its first step: the key
    // file holds the new key (sealing) and the old one; values are sealed
    // with either.
    let old_key = key_lines(&g.key_file());
    let new_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    std::fs::write(g.key_file(), format!("{new_key}\n{}\n", old_key[0])).unwrap();
    g.restart().await;
    assert!(g.logs().contains("a rotation did not finish"), "{}", g.logs());
    let second = fake.pat(fake.add_user("joe", false));
    let b =
        g.post("/api/v1/integrations", connect_pat(&second, &fake.url)).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(reverify(&g, &a).await, (200, "connected".into()));
    assert_eq!(reverify(&g, &b).await, (200, "connected".into()));
    g.stop();

    let (ok, finished) = keys_cli(&g, &["rotate"], &[new_key.clone(), old_key[0].clone()]);
    assert!(ok, "{finished}");
    assert!(finished.contains("Finished the rotation"), "{finished}");
    assert!(finished.contains("Re-sealed 1 stored secrets"), "only the value under the old key: {finished}");
    assert_eq!(key_lines(&g.key_file()), vec![new_key]);
    g.restart().await;
    assert_eq!(reverify(&g, &a).await, (200, "connected".into()));
    assert_eq!(reverify(&g, &b).await, (200, "connected".into()));
    g.finish(&[first, second, old_key[0].clone()]);
}

/// Traced with strace (`fsync`/`fdatasync` with the paths of their file
/// descriptors): the first start fsyncs the directory it created the key
/// file in, and a credential written through the API is synced to the WAL
/// before the answer (synchronous=FULL; NORMAL syncs only at checkpoints).
/// The harness does not run the host under a tracer, so this test does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(gatehouse_strace), ignore = "needs strace, allowed to trace: run tests/setup.sh")]
async fn the_key_file_and_each_commit_reach_the_disk() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let dir = tempfile::tempdir().unwrap();
    let (trace, config) = (dir.path().join("trace"), dir.path().join("config"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let strace = std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--sync-poll", "0s", "--plugins-poll", "0s"])
        .args(["--allow-private-networks", "--allow-http", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("GATEHOUSE_API_KEY", crate::harness::API_KEY)
        .env("XDG_CONFIG_HOME", &config)
        .env_remove("GATEHOUSE_MASTER_KEY")
        .env_remove("GATEHOUSE_MASTER_KEY_FILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let traced = Traced(strace);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !client.get(format!("{base}/api/v1/health")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(std::time::Instant::now() < deadline, "gatehouse did not start under strace");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let synced = |what: &Path| {
        let needle = format!("{}>", what.display());
        let text = std::fs::read_to_string(&trace).unwrap();
        text.lines().filter(|l| (l.contains("fsync(") || l.contains("fdatasync(")) && l.contains(&needle)).count()
    };
    let key_dir = config.join("gatehouse");
    assert!(synced(&key_dir) >= 1, "the key's directory was fsynced:\n{}", std::fs::read_to_string(&trace).unwrap());
    let wal = dir.path().join("data").join("gatehouse.db-wal");
    let before = synced(&wal);
    let r = client
        .post(format!("{base}/api/v1/integrations"))
        .bearer_auth(crate::harness::API_KEY)
        .header("content-type", "application/json")
        .body(connect_pat(&token, &fake.url).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(synced(&wal) > before, "the commit was synced before the answer");
    drop(traced);
}

/// strace and the host it runs: the host is stopped first (strace then
/// exits with it), so no traced process outlives the test.
struct Traced(std::process::Child);

impl Drop for Traced {
    fn drop(&mut self) {
        let pid = self.0.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = std::process::Command::new("kill").args(["-TERM", child]).status();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for child in children.split_whitespace() {
            let _ = std::process::Command::new("kill").args(["-KILL", child]).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
