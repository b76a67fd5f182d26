//! Starts the real `gatehouse` binary on a free loopback port with a temp
//! data dir, talks to it over HTTP, and on `finish` checks that no secret
//! leaked — in plain text, base64 (also inside e.g. a Basic `id:secret`),
//! hex or URL encoding — into the data dir (read while the host still runs,
//! so SQLite's WAL is there, and again after it stopped), the logs, or any
//! response's headers or body. The API key is always among the secrets.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

pub const API_KEY: &str = "test-api-key-0123456789abcdef";

#[derive(Clone)]
pub struct Options {
    pub lax_network: bool,
    pub plugins: Vec<PathBuf>,
    pub extra_args: Vec<String>,
    /// Environment variables set last (over the harness's own).
    pub env: Vec<(String, String)>,
    /// Listen on port 0 and learn the port from the log.
    pub any_port: bool,
    /// The database to use [default: the SQLite file in the data dir, or a
    /// new database on the shared test cluster with GATEHOUSE_TEST_POSTGRES].
    pub database_url: Option<String>,
}

impl Options {
    /// Private networks and plain http allowed, as the fake GitLab needs.
    pub fn lax() -> Self {
        Self {
            lax_network: true,
            plugins: Vec::new(),
            extra_args: Vec::new(),
            env: Vec::new(),
            any_port: false,
            database_url: None,
        }
    }

    /// The default egress policy.
    pub fn strict() -> Self {
        Self { lax_network: false, ..Self::lax() }
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.extra_args.push(a.to_string());
        self
    }

    pub fn any_port(mut self) -> Self {
        self.any_port = true;
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_string());
        self
    }

    pub fn plugin(mut self, path: &str) -> Self {
        self.plugins.push(PathBuf::from(path));
        self
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

pub struct Gatehouse {
    child: Option<Child>,
    pub base: String,
    dir: tempfile::TempDir,
    options: Options,
    client: reqwest::Client,
    bodies: Mutex<Vec<String>>,
    /// The data dir's files (SQLite, its WAL) as they were just before
    /// each stop: a secret that passed through the WAL and was gone after a
    /// restart's checkpoint is still found.
    snapshots: Vec<(PathBuf, Vec<u8>)>,
    starts: usize,
    /// The database in use when it is not the data dir's SQLite file.
    database_url: Option<String>,
}

impl Gatehouse {
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = match &options.database_url {
            Some(url) => Some(url.clone()),
            None if crate::postgres::enabled() => Some(crate::postgres::shared().create_database().await),
            None => None,
        };
        // The data dir is left for the host to create (0700).
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        for p in &options.plugins {
            std::fs::copy(p, dir.path().join("plugins").join(p.file_name().unwrap())).unwrap();
        }
        let mut g = Self {
            child: None,
            base: String::new(),
            dir,
            options,
            client: reqwest::Client::new(),
            bodies: Mutex::new(Vec::new()),
            snapshots: Vec::new(),
            starts: 0,
            database_url,
        };
        g.spawn().await;
        g
    }

    /// The PostgreSQL database in use, if it is not the SQLite file.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// `$XDG_CONFIG_HOME` of the host: where its master key file is by default.
    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// The master key file the host uses (outside the data dir).
    pub fn key_file(&self) -> PathBuf {
        self.config_home().join("gatehouse").join("master.key")
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("log-{n}.txt"))
    }

    pub fn logs(&self) -> String {
        (1..=self.starts).map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default()).collect()
    }

    /// The `gatehouse` binary with this host's environment: the API key,
    /// and the master key file under this test's `$XDG_CONFIG_HOME`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.env("GATEHOUSE_API_KEY", API_KEY)
            // Everything of the host's at debug, but not the engine's: it
            // writes a line per compiled function (millions for a Python or
            // JavaScript component), which slows the start to minutes.
            .env("GATEHOUSE_LOG", "debug,wasmtime=info,cranelift=info,sqlx_postgres=info")
            .env_remove("GATEHOUSE_MASTER_KEY")
            .env_remove("GATEHOUSE_MASTER_KEY_FILE")
            .env_remove("GATEHOUSE_ALLOW_KEY_IN_DATA_DIR")
            .env_remove("GATEHOUSE_DATABASE_URL")
            .env("XDG_CONFIG_HOME", self.config_home())
            .stdin(Stdio::null());
        if let Some(url) = &self.database_url {
            cmd.env("GATEHOUSE_DATABASE_URL", url);
        }
        cmd
    }

    /// The options the next starts use.
    pub fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// Starts `serve` and waits until it is healthy or has exited.
    async fn launch(&mut self) -> Result<(), std::process::ExitStatus> {
        let mut port = if self.options.any_port {
            0
        } else {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        };
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let mut cmd = self.command();
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--plugins-dir")
            .arg(self.dir.path().join("plugins"))
            .args(&self.options.extra_args)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if self.options.lax_network {
            cmd.args(["--allow-private-networks", "--allow-http"]);
        }
        cmd.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(cmd.spawn().expect("start gatehouse"));
        // The host compiles its plugins before it listens: a debug build
        // compiling a 12 MB JavaScript or Python component while the rest of
        // the suite shares two cores can take more than a minute.
        let deadline = Instant::now() + Duration::from_secs(300);
        while port == 0 {
            let log = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains("gatehouse listening")) {
                let address = line.split("address=").nth(1).and_then(|a| a.split_whitespace().next()).unwrap();
                port = address.parse::<std::net::SocketAddr>().unwrap().port();
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(status);
            }
            assert!(Instant::now() < deadline, "gatehouse did not say where it listens:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.base = format!("http://127.0.0.1:{port}");
        loop {
            if let Ok(r) = self.client.get(format!("{}/api/v1/health", self.base)).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(status);
            }
            assert!(Instant::now() < deadline, "gatehouse did not become healthy:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn spawn(&mut self) {
        if let Err(status) = self.launch().await {
            panic!("gatehouse exited with {status} before becoming healthy:\n{}", self.logs());
        }
    }

    /// Stops the host and starts it again expecting a refusal: it must exit
    /// with a failure instead of serving. Returns what that start printed.
    pub async fn restart_refused(&mut self) -> String {
        self.stop();
        let status = self.launch().await.expect_err("gatehouse started, but should have refused to");
        assert!(!status.success(), "{status}");
        std::fs::read_to_string(self.log_path(self.starts)).unwrap()
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        // Compiled components (cache/) are derived from the plugins, not data.
        let cache = self.data_dir().join("cache");
        let files = if self.data_dir().exists() { files_under(&self.data_dir()) } else { Vec::new() };
        for file in files.into_iter().filter(|f| !f.starts_with(&cache)) {
            if let Ok(bytes) = std::fs::read(&file) {
                self.snapshots.push((file, bytes));
            }
        }
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "gatehouse exited with {status} on SIGTERM:\n{}", self.logs());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        panic!("gatehouse did not stop within 15 s of SIGTERM");
    }

    /// SIGKILL, as a crash or an OOM kill would: no graceful shutdown, no
    /// WAL checkpoint. Then start again on the same data dir.
    pub async fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        self.spawn().await;
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>, key: Option<&str>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        self.send(req).await
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("gatehouse answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let mut seen: String =
            headers.iter().map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes()))).collect();
        seen.push_str(&text);
        self.bodies.lock().unwrap().push(seen);
        assert_ne!(status, 500, "a 500 is a bug: {text}");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status >= 400 {
            let ct = headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            assert_eq!(ct, "application/problem+json", "errors are problem details: {body}");
            for member in ["type", "title", "status", "detail", "code"] {
                assert!(!body[member].is_null(), "problem lacks {member}: {body}");
            }
            assert_eq!(body["status"], status, "{body}");
        }
        Reply { status, headers, body }
    }

    /// A request whose answer may be the provider's own (the proxy): the
    /// body is kept for the secrets scan, but a provider's error is not a
    /// problem document. Gatehouse's own errors still are.
    pub async fn send_proxied(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("gatehouse answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        self.bodies.lock().unwrap().push(text.clone());
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        let problem = headers.get("content-type").is_some_and(|v| v == "application/problem+json");
        assert!(!(problem && status == 500), "a 500 is a bug: {body}");
        Reply { status, headers, body }
    }

    /// `GET` through the proxy with the API key.
    pub async fn get_proxied(&self, path: &str) -> Reply {
        self.send_proxied(self.client.get(format!("{}{}", self.base, path)).bearer_auth(API_KEY)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, Some(API_KEY)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(body), Some(API_KEY)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(body), Some(API_KEY)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None, Some(API_KEY)).await
    }

    /// The raw HTTP client, for requests the helpers cannot express.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Checks that none of `secrets` (nor the API key) appears in any form
    /// in the data dir (SQLite, its WAL), the logs or any response, then
    /// stops the host and checks the data dir again, for the master key too.
    pub fn finish(self, secrets: &[String]) {
        self.finish_scan(secrets, &[]);
    }

    /// Like [`finish`](Self::finish); `unstored` may legitimately appear in
    /// responses (an OAuth state is in the authorize redirect) but never in
    /// the data dir or the logs.
    pub fn finish_scan(mut self, secrets: &[String], unstored: &[String]) {
        let mut secrets = secrets.to_vec();
        secrets.push(API_KEY.to_string());
        let everything: Vec<String> = secrets.iter().chain(unstored).cloned().collect();
        // Unless the test stopped the host itself, read the files it has open.
        if self.is_running() {
            let live = files_under(&self.data_dir());
            assert!(
                self.database_url.is_some() || live.iter().any(|f| f.to_string_lossy().ends_with("-wal")),
                "the running host has no SQLite WAL to scan: {live:?}"
            );
            scan_files(&live, &everything);
        }
        // PostgreSQL: the database's own files, written out first.
        let shared = crate::postgres::enabled().then(crate::postgres::shared);
        if let (Some(url), Some(cluster)) = (&self.database_url, shared)
            && url.starts_with(&cluster.url(""))
        {
            let files = cluster.database_files(url);
            assert!(!files.is_empty(), "no files of {url} to scan");
            scan_files(&files, &everything);
        }
        self.stop();
        // The master key lives in its own file, outside the data dir: not in
        // the data dir (a copy of it must open nothing), logs or responses.
        let master_key: Vec<String> = std::fs::read_to_string(self.key_file())
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        let with_key = [everything.clone(), master_key.clone()].concat();
        scan_files(&files_under(&self.data_dir()), &with_key);
        scan_snapshots(&self.snapshots, &everything);
        scan_text("the logs", &self.logs(), &with_key);
        scan_text("a response", &self.bodies.lock().unwrap().join("\n"), &[secrets, master_key].concat());
    }
}

/// The forms a secret can leak in: as is, hex, URL-encoded, and base64
/// (standard and URL-safe) at each of the three alignments, so it is found
/// inside the base64 of a longer text too (e.g. Basic `client_id:secret`).
pub fn leak_forms(secret: &str) -> Vec<(&'static str, String)> {
    use base64::Engine;
    let bytes = secret.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        ("plain", secret.to_string()),
        ("url-encoded", url::form_urlencoded::byte_serialize(bytes).collect()),
        ("hex", hex.clone()),
        ("HEX", hex.to_uppercase()),
    ];
    forms.dedup_by(|a, b| a.1 == b.1);
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(bytes);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&shifted);
        // Only the 4-character groups made of the secret's bytes alone.
        let start = if shift == 0 { 0 } else { 4 };
        let end = shifted.len() / 3 * 4;
        if end > start + 8 {
            let core = encoded[start..end].to_string();
            forms.push(("base64url", core.replace('+', "-").replace('/', "_")));
            forms.push(("base64", core));
        }
    }
    forms
}

/// Fails if any form of any of `secrets` appears in `text`.
pub fn scan_text(place: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        for (form, needle) in leak_forms(secret) {
            if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
                panic!("a secret appears ({form}) in {place}: {line}");
            }
        }
    }
}

fn scan_snapshots(snapshots: &[(PathBuf, Vec<u8>)], secrets: &[String]) {
    for (form, needle) in secrets.iter().flat_map(|s| leak_forms(s)) {
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        for (file, bytes) in snapshots {
            assert!(finder.find(bytes).is_none(), "a secret appears ({form}) in {} before a stop", file.display());
        }
    }
}

fn scan_files(files: &[PathBuf], secrets: &[String]) {
    let needles: Vec<(&str, memchr::memmem::Finder)> = secrets
        .iter()
        .flat_map(|s| leak_forms(s))
        .map(|(form, needle)| (form, memchr::memmem::Finder::new(needle.as_bytes()).into_owned()))
        .collect();
    for file in files {
        // A file can vanish between listing and reading (the WAL at stop).
        let Ok(bytes) = std::fs::read(file) else { continue };
        for (form, needle) in &needles {
            assert!(needle.find(&bytes).is_none(), "a secret appears ({form}) in {}", file.display());
        }
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `{"credentials": {"token": …, "base_url": …}}` for gitlab-pat.
pub fn pat_body(token: &str, base_url: &str) -> Value {
    serde_json::json!({"credentials": {"token": token, "base_url": base_url}})
}

pub fn connect_pat(token: &str, base_url: &str) -> Value {
    serde_json::json!({"provider": "gitlab-pat", "credentials": {"token": token, "base_url": base_url}})
}

/// The scan finds a secret in each form it claims to, wherever it sits.
#[test]
fn the_scan_finds_encoded_secrets() {
    use base64::Engine;
    let secret = "gloas-client-secret-5d41402abc4b2a76".to_string();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let hex: String = secret.bytes().map(|b| format!("{b:02X}")).collect();
    let leaks = [
        format!("token={secret}"),
        format!("authorization: Basic {}", b64(&format!("app:{secret}"))),
        format!("authorization: Basic {}", b64(&format!("app-1:{secret}"))),
        format!("authorization: Basic {}", b64(&format!("app-12:{secret}"))),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"t\":\"{secret}\"}}")),
        format!("x{hex}y"),
    ];
    for leak in leaks {
        let caught = std::panic::catch_unwind(|| scan_text("a test", &leak, std::slice::from_ref(&secret)));
        assert!(caught.is_err(), "not found in {leak}");
    }
    scan_text("a test", &format!("{} {}", b64("app:another-secret-0123456789"), &secret[..20]), &[secret]);
}
