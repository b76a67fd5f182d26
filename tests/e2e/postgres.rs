//! Throwaway PostgreSQL clusters for the tests: Debian's server binaries
//! (`initdb`, `pg_ctl`; as root run as the `postgres` user, which the
//! server insists on), a temp directory, a free loopback port, trust
//! authentication on loopback only. With `GATEHOUSE_TEST_POSTGRES=1` every
//! harness-started host gets its own database on one shared cluster; tests
//! that restart the server start a cluster of their own. A watcher process
//! stops a cluster and removes its directory once the test process is gone,
//! however it ended.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use sqlx::Connection;

/// Whether the e2e suite runs against PostgreSQL instead of SQLite. Not
/// inside a loopback-only network namespace (`netns`): the cluster is out
/// of its reach, and those tests are about egress, not storage.
pub fn enabled() -> bool {
    std::env::var("GATEHOUSE_TEST_POSTGRES").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
        && std::env::var_os("GATEHOUSE_TEST_NETNS").is_none()
}

/// Where Debian puts the server binaries (they are not on PATH there).
fn bin(name: &str) -> PathBuf {
    let versioned = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .max();
    versioned.unwrap_or_else(|| PathBuf::from(name))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program args…`, as the `postgres` user when this process is root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

pub struct Cluster {
    pub port: u16,
    root: PathBuf,
}

impl Cluster {
    /// initdb and start a cluster; it is stopped and removed when the test
    /// process exits (or by `Drop`).
    pub fn start() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "gatehouse-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        if is_root() {
            let ok = Command::new("chown").arg("postgres:postgres").arg(&root).status().unwrap().success();
            assert!(ok, "chown {} to postgres", root.display());
        }
        let out = as_server_user(&bin("initdb"))
            .arg("-D")
            .arg(root.join("data"))
            .args(["-U", "postgres", "-A", "trust", "--no-locale", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb (install Debian's postgresql package: tests/setup.sh does)");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self { port, root };
        cluster.pg_ctl_start();
        // Stops the server once this process is gone, however it ended.
        let watcher = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            stop = cluster.stop_command_line(),
            root = cluster.root.display()
        );
        // In the background of a shell that exits at once, so the watcher
        // is nobody's child to wait for.
        let started =
            Command::new("sh").args(["-c", &format!("( {watcher} ) </dev/null >/dev/null 2>&1 &")]).status().unwrap();
        assert!(started.success());
        cluster
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn stop_command_line(&self) -> String {
        let prefix = if is_root() { "runuser -u postgres -- " } else { "" };
        format!("{prefix}'{}' -D '{}' -m immediate stop", bin("pg_ctl").display(), self.data().display())
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c full_page_writes=off",
            self.port,
            self.root.display()
        );
        let out = as_server_user(&bin("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server at once (as a crash or a kill would).
    pub fn stop(&self) {
        let out = as_server_user(&bin("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts the stopped server again on the same port and data.
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new empty database; its URL.
    pub async fn create_database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("gh_{}", N.fetch_add(1, Ordering::Relaxed));
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres")).await.expect("connect to the test cluster");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
        self.url(&name)
    }

    /// The files of one database (written out first), for the secrets scan.
    pub fn database_files(&self, url: &str) -> Vec<PathBuf> {
        let name = url.rsplit('/').next().unwrap();
        let psql = bin("psql");
        let out = Command::new(&psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-Atc"])
            .arg(format!("CHECKPOINT; SELECT oid FROM pg_database WHERE datname = '{name}'"))
            .output()
            .unwrap();
        let oid = String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default().to_string();
        if !out.status.success() || oid.is_empty() {
            return Vec::new();
        }
        let dir = self.data().join("base").join(oid);
        std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_file()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_server_user(&bin("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The cluster every harness-started host shares in PostgreSQL mode.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(Cluster::start)
}
