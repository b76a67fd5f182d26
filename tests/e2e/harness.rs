//! Starts the real `gatehouse` binary on a free loopback port with a temp
//! data dir, talks to it over HTTP, and on `finish` stops it and checks that
//! no token leaked into the data dir, the logs or any response body.

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
}

impl Options {
    /// Private networks and plain http allowed, as the fake GitLab needs.
    pub fn lax() -> Self {
        Self { lax_network: true, plugins: Vec::new(), extra_args: Vec::new() }
    }

    /// The default egress policy.
    pub fn strict() -> Self {
        Self { lax_network: false, ..Self::lax() }
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.extra_args.push(a.to_string());
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
    starts: usize,
}

impl Gatehouse {
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
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
            starts: 0,
        };
        g.spawn().await;
        g
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("log-{n}.txt"))
    }

    pub fn logs(&self) -> String {
        (1..=self.starts).map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default()).collect()
    }

    async fn spawn(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--plugins-dir")
            .arg(self.dir.path().join("plugins"))
            .args(&self.options.extra_args)
            .env("GATEHOUSE_API_KEY", API_KEY)
            .env("GATEHOUSE_LOG", "debug")
            .env_remove("GATEHOUSE_MASTER_KEY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if self.options.lax_network {
            cmd.args(["--allow-private-networks", "--allow-http"]);
        }
        self.child = Some(cmd.spawn().expect("start gatehouse"));
        self.base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(format!("{}/api/v1/health", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("gatehouse exited with {status} before becoming healthy:\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "gatehouse did not become healthy:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn stop(&mut self) {
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
        self.bodies.lock().unwrap().push(text.clone());
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

    /// Stops the host and checks that none of `secrets` appears in any file
    /// of the data dir (SQLite, WAL, key file), the logs, or any response.
    pub fn finish(mut self, secrets: &[String]) {
        self.stop();
        let logs = self.logs();
        let bodies = self.bodies.lock().unwrap().join("\n");
        for secret in secrets {
            let leaked: Vec<&str> = logs.lines().filter(|l| l.contains(secret.as_str())).collect();
            assert!(leaked.is_empty(), "a token appears in the logs: {leaked:#?}");
            assert!(!bodies.contains(secret.as_str()), "a token appears in a response body");
            for file in files_under(&self.data_dir()) {
                let bytes = std::fs::read(&file).unwrap();
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "a token appears in plain text in {}",
                    file.display()
                );
            }
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
