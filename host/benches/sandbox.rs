//! What the sandbox costs. Run: `cargo bench -p gatehouse --bench sandbox`
//! (add `-- --smoke` for a few iterations, as CI does). Prints the table
//! BENCHMARKS.md records.
//!
//! Against a fast in-process fake GitLab on loopback it measures: one
//! instantiate + call on a pooled component; verify end to end through the
//! HTTP API versus the same connector source compiled natively (reqwest);
//! throughput with 64 concurrent clients; cold start with and without the
//! compiled-component cache; RSS idle and under load; start time and
//! memory with 10, 25 and 50 third-party components, and load spread over
//! all of them.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The allocator the server runs with, so instantiation costs the same here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use gatehouse::{build_runtime, builtin, config::SandboxLimits, egress::Policy, runtime::model::Credentials};
use gatehouse_plugin::{Connector, http::native};
use poem::{
    Response, Server,
    listener::{Acceptor, TcpAcceptor},
};

/// The native baseline: the connector's own source file, compiled into this
/// bench. (Not linked as the `gitlab-pat` crate: a cdylib + rlib crate's
/// files carry no hash, so with one `CARGO_TARGET_DIR` shared by both
/// workspaces the plugins workspace's build would overwrite the rlib this
/// bench links.)
#[path = "../../plugins/gitlab-pat/src/lib.rs"]
// The file's unit tests are compiled out here (no test harness), leaving
// their `use super::*` unused.
#[allow(unused_imports)]
mod gitlab_pat;

const HOSTILE: &str = gatehouse_test_programs::TEST_HOSTILE_WASM;
const API_KEY: &str = "bench-api-key";
const TOKEN: &str = "glpat-benchmark-token-0123456789";
const PAT: &str = "gitlab-pat";

struct Settings {
    iterations: usize,
    load_secs: u64,
    rounds: usize,
    starts: usize,
    /// Counts of extra components to start with.
    extra_plugins: &'static [usize],
    /// Time `manifest()` too (`--verify-only` leaves it out, to profile `verify()`).
    manifests: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    if flag("--native-server") {
        return native_server();
    }
    let smoke = flag("--smoke");
    let mut s = if smoke {
        Settings { iterations: 50, load_secs: 1, rounds: 1, starts: 1, extra_plugins: &[5], manifests: true }
    } else {
        Settings {
            iterations: 2000,
            load_secs: 10,
            rounds: 3,
            starts: 5,
            extra_plugins: &[10, 25, 50],
            manifests: true,
        }
    };
    // `--iterations N`, `--starts N`: more samples for one section.
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)?.parse().ok());
    s.iterations = value("--iterations").unwrap_or(s.iterations);
    s.starts = value("--starts").unwrap_or(s.starts);
    s.manifests = !flag("--verify-only");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // One section alone, to profile it (`perf record … -- --instantiate`).
    if flag("--instantiate") {
        return rt.block_on(instantiate_and_call(&s));
    }
    if flag("--start") {
        return rt.block_on(cold_start(&s));
    }
    rt.block_on(run(s));
}

/// Latency iterations run before measuring, to open pooled connections.
const WARM_UP: usize = 20;

/// One throughput round: each variant for `load_secs`.
struct Round {
    api_rps: f64,
    api_errors: u64,
    api_cpu: f64,
    native_rps: f64,
    native_errors: u64,
    hop_rps: f64,
    hop_errors: u64,
    hop_cpu: f64,
}

/// Median, minimum and maximum.
fn median_and_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

/// `POST /api/v1/providers/{provider}/verify`; whether it answered 200 with
/// `valid: true`.
async fn api_verify(client: reqwest::Client, base: String, provider: impl std::fmt::Display, body: String) -> bool {
    let r = client
        .post(format!("{base}/api/v1/providers/{provider}/verify"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match r {
        Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|t| t.contains("\"valid\":true")),
        _ => false,
    }
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    (median, p99)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn fake_gitlab() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let app = poem::endpoint::make_sync(|req: poem::Request| {
        let body = if req.uri().path() == "/api/v4/personal_access_tokens/self" {
            r#"{"id":1,"name":"bench","revoked":false,"created_at":"2026-01-01T00:00:00.000Z","scopes":["api"],"user_id":7,"last_used_at":null,"active":true,"expires_at":"2027-01-01"}"#
        } else {
            r#"{"id":7,"username":"jane","name":"Jane","state":"active","avatar_url":null,"web_url":"https://gitlab.example.com/jane","email":"jane@example.com","bot":false}"#
        };
        Response::builder().content_type("application/json").body(body)
    });
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    format!("http://127.0.0.1:{port}")
}

async fn run(s: Settings) {
    let fake = fake_gitlab().await;
    println!("| measurement | median | p99 / note |\n|---|---|---|");
    instantiate_and_call(&s).await;
    // 2. verify end to end through the HTTP API vs the native baselines.
    // The variants take turns within each iteration, so a change in this
    // shared machine's load shifts all of them alike instead of one.
    let mut host = Host::start(&[], true).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"credentials": {"token": TOKEN, "base_url": fake}}).to_string();
    // The API hop alone (authenticated, no connector call): what the native
    // baseline does not pay and the sandbox does not cause.
    let api_hop = |client: reqwest::Client, base: String| async move {
        let r = client.get(format!("{base}/api/v1/providers/gitlab-pat")).bearer_auth(API_KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    };
    install_native_transport();
    let native_verify = |fake: String| {
        let creds = gatehouse_plugin::Credentials::new(vec![("token".into(), TOKEN.into()), ("base_url".into(), fake)]);
        gitlab_pat::GitlabPat::verify(&creds).is_ok()
    };
    // The same native call behind an HTTP endpoint of the same shape: the
    // sandboxed path without the sandbox (and without Gatehouse's store,
    // policy and problem mapping).
    let (mut hop_server, hop_base) = native_behind_http();
    let (mut sandboxed, mut hop, mut native_times, mut hop_native_times) = (vec![], vec![], vec![], vec![]);
    // The first rounds open the pooled connections; they are not measured.
    for i in 0..s.iterations + WARM_UP {
        let t = Instant::now();
        assert!(api_verify(client.clone(), host.base.clone(), PAT, body.clone()).await);
        let sandboxed_time = t.elapsed();
        let t = Instant::now();
        api_hop(client.clone(), host.base.clone()).await;
        let hop_time = t.elapsed();
        let fake = fake.clone();
        let t = Instant::now();
        assert!(tokio::task::spawn_blocking(move || native_verify(fake)).await.unwrap());
        let native_time = t.elapsed();
        let t = Instant::now();
        assert!(api_verify(client.clone(), hop_base.clone(), PAT, body.clone()).await);
        let hop_native_time = t.elapsed();
        if i >= WARM_UP {
            sandboxed.push(sandboxed_time);
            hop.push(hop_time);
            native_times.push(native_time);
            hop_native_times.push(hop_native_time);
        }
    }
    let (sm, sp) = stats(sandboxed);
    let (nm, np) = stats(native_times);
    let (hnm, hnp) = stats(hop_native_times);
    println!("| verify via `POST /api/v1/providers/gitlab-pat/verify` (sandboxed) | {} | {} |", ms(sm), ms(sp));
    println!("| verify, same connector source compiled natively (reqwest) | {} | {} |", ms(nm), ms(np));
    println!("| ratio sandboxed / native (median) | {:.2}× | |", sm.as_secs_f64() / nm.as_secs_f64());
    println!("| verify, native connector behind an HTTP endpoint of the same shape | {} | {} |", ms(hnm), ms(hnp));
    println!("| ratio sandboxed / native behind HTTP (median) | {:.2}× | |", sm.as_secs_f64() / hnm.as_secs_f64());
    let (hm, hp) = stats(hop);
    println!(
        "| API round trip without a connector call (`GET /api/v1/providers/gitlab-pat`) | {} | {} |",
        ms(hm),
        ms(hp)
    );

    // 3. throughput, 64 concurrent clients: the three variants in turn, for
    // several rounds; each figure is the median over the rounds and each
    // ratio the median of the rounds' ratios (with their range).
    let rss_idle = host.rss_kib();
    let mut rounds = Vec::new();
    for _ in 0..s.rounds {
        let cpu_before = cpu_time(host.child.id());
        let (api_rps, api_errors) = {
            let (client, base, body) = (client.clone(), host.base.clone(), body.clone());
            throughput(s.load_secs, move || api_verify(client.clone(), base.clone(), PAT, body.clone())).await
        };
        let api_cpu = (cpu_time(host.child.id()) - cpu_before) / (api_rps * s.load_secs as f64);
        let (native_rps, native_errors) = {
            let fake = fake.clone();
            throughput(s.load_secs, move || {
                let fake = fake.clone();
                async move { tokio::task::spawn_blocking(move || native_verify(fake)).await.unwrap_or(false) }
            })
            .await
        };
        let cpu_before = cpu_time(hop_server.id());
        let (hop_rps, hop_errors) = {
            let (client, base, body) = (client.clone(), hop_base.clone(), body.clone());
            throughput(s.load_secs, move || api_verify(client.clone(), base.clone(), PAT, body.clone())).await
        };
        let hop_cpu = (cpu_time(hop_server.id()) - cpu_before) / (hop_rps * s.load_secs as f64);
        check_load("sandboxed via HTTP API", api_rps, api_errors);
        check_load("native baseline", native_rps, native_errors);
        check_load("native behind HTTP", hop_rps, hop_errors);
        rounds.push(Round { api_rps, api_errors, api_cpu, native_rps, native_errors, hop_rps, hop_errors, hop_cpu });
    }
    let rss_peak = host.peak_rss_kib();
    let _ = hop_server.kill();
    let _ = hop_server.wait();
    let over = |f: fn(&Round) -> f64| median_and_range(rounds.iter().map(f).collect());
    let errors = |f: fn(&Round) -> u64| rounds.iter().map(f).sum::<u64>();
    let note = format!("median of {} rounds of {} s", s.rounds, s.load_secs);
    let (api_rps, ..) = over(|r| r.api_rps);
    let (native_rps, ..) = over(|r| r.native_rps);
    let (hop_rps, ..) = over(|r| r.hop_rps);
    let (to_native, lo_native, hi_native) = over(|r| r.api_rps / r.native_rps);
    let (to_hop, lo_hop, hi_hop) = over(|r| r.api_rps / r.hop_rps);
    let (api_cpu, ..) = over(|r| r.api_cpu);
    let (hop_cpu, ..) = over(|r| r.hop_cpu);
    println!(
        "| throughput, 64 clients, sandboxed via HTTP API | {api_rps:.0} req/s | {} errors, {note} |",
        errors(|r| r.api_errors)
    );
    println!(
        "| throughput, 64 clients, native baseline | {native_rps:.0} req/s | {} errors, {note} |",
        errors(|r| r.native_errors)
    );
    println!("| throughput ratio sandboxed / native | {to_native:.2}× | rounds {lo_native:.2}–{hi_native:.2}× |");
    println!(
        "| throughput, 64 clients, native behind HTTP | {hop_rps:.0} req/s | {} errors, {note} |",
        errors(|r| r.hop_errors)
    );
    println!("| throughput ratio sandboxed / native behind HTTP | {to_hop:.2}× | rounds {lo_hop:.2}–{hi_hop:.2}× |");
    println!(
        "| server CPU per request under load: Gatehouse / native behind HTTP | {:.0} µs / {:.0} µs | user + system |",
        api_cpu * 1e6,
        hop_cpu * 1e6
    );
    println!("| RSS idle (2 connectors) | {:.1} MiB | |", rss_idle as f64 / 1024.0);
    println!("| RSS peak under the throughput run | {:.1} MiB | VmHWM |", rss_peak as f64 / 1024.0);
    host.stop();

    cold_start(&s).await;

    // 5. many third-party components: start time and memory at several
    // counts, then load spread over all of them against load on one.
    let dir = tempfile::tempdir().unwrap();
    let most = s.extra_plugins.iter().copied().max().unwrap_or(0);
    let plugins = variants_of_hostile(dir.path(), most);
    let mut many = None;
    for &n in s.extra_plugins {
        let data = tempfile::tempdir().unwrap();
        let (uncached, mut h) = Host::timed_start(data.path(), &plugins[..n], true).await;
        h.expect_components(2 + n).await;
        let rss_uncached = h.rss_kib();
        h.stop();
        let (cached, mut h) = Host::timed_start(data.path(), &plugins[..n], true).await;
        h.expect_components(2 + n).await;
        println!(
            "| start with {n} extra components: uncached / cached | {} / {} | RSS idle {:.1} MiB (uncached start), {:.1} MiB (cached) |",
            ms(uncached),
            ms(cached),
            rss_uncached as f64 / 1024.0,
            h.rss_kib() as f64 / 1024.0
        );
        // The host with the most components stays up for the load test.
        if n == most && many.is_none() {
            many = Some((h, data));
        } else {
            h.stop();
        }
    }
    let Some((mut many, _data)) = many else { return };
    // Each request calls the next component in turn (no upstream I/O), so
    // every one of them is instantiated over and over; against the same
    // load on a single component.
    let spread_over = |components: usize| {
        let (client, base, next) = (client.clone(), many.base.clone(), Arc::new(AtomicU64::new(0)));
        let body = serde_json::json!({"credentials": {"mode": "ok", "base_url": fake}}).to_string();
        move || {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize % components;
            api_verify(client.clone(), base.clone(), format!("hostile-{i:04}"), body.clone())
        }
    };
    let (one_rps, one_errors) = throughput(s.load_secs, spread_over(1)).await;
    let (all_rps, all_errors) = throughput(s.load_secs, spread_over(most)).await;
    check_load("load on one component", one_rps, one_errors);
    check_load("load spread over all components", all_rps, all_errors);
    println!(
        "| load on 1 of the {most} components / spread over all {most} (64 clients, no upstream) | {one_rps:.0} / {all_rps:.0} req/s | {} errors, RSS peak {:.1} MiB |",
        one_errors + all_errors,
        many.peak_rss_kib() as f64 / 1024.0
    );
    many.stop();
}

/// 1. Instantiate + call on a pooled component, no upstream I/O.
async fn instantiate_and_call(s: &Settings) {
    let policy = Policy { allow_private_networks: true, allow_http: true, allow_networks: Vec::new() };
    let runtime = build_runtime(&SandboxLimits::default(), policy, None, None).unwrap();
    let builtin = builtin::BUILTIN.iter().find(|b| b.name.ends_with("gitlab-pat")).unwrap();
    let pat = runtime.load(builtin.name, builtin.wasm).await.unwrap();
    let hostile = runtime.load(HOSTILE, &std::fs::read(HOSTILE).unwrap()).await.unwrap();
    let mut ok = Credentials::default();
    ok.insert("mode".into(), "ok".into());
    let mut manifest_times = Vec::new();
    let mut verify_times = Vec::new();
    for _ in 0..s.iterations {
        if s.manifests {
            let t = Instant::now();
            runtime.manifest(&pat).await.unwrap();
            manifest_times.push(t.elapsed());
        }
        let t = Instant::now();
        runtime.verify(&hostile, &ok, &[]).await.unwrap().unwrap();
        verify_times.push(t.elapsed());
    }
    if s.manifests {
        let (m, p) = stats(manifest_times);
        println!("| instantiate + `manifest()` (gitlab-pat, pooled) | {} | {} |", us(m), us(p));
    }
    let (m, p) = stats(verify_times);
    println!("| instantiate + `verify()` without I/O (test component) | {} | {} |", us(m), us(p));
}

/// 4. Cold start to healthy, with and without the compiled-component cache.
async fn cold_start(s: &Settings) {
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..s.starts {
        let dir = tempfile::tempdir().unwrap();
        let (t, mut h) = Host::timed_start(dir.path(), &[], true).await;
        cold.push(t);
        h.stop();
        let (t, mut h) = Host::timed_start(dir.path(), &[], true).await;
        warm.push(t);
        h.stop();
    }
    let (c, _) = stats(cold);
    let (w, _) = stats(warm);
    println!("| cold start to healthy, no cache (first start) | {} | {} starts |", ms(c), s.starts);
    println!("| cold start to healthy, with the component cache | {} | {} starts |", ms(w), s.starts);
}

/// A load run whose requests failed measured nothing: stop the benchmark
/// (and the CI smoke run) instead of printing its figures.
fn check_load(what: &str, rps: f64, errors: u64) {
    assert!(errors == 0 && rps > 0.0, "{what}: {errors} failed requests, {rps:.0} successful per second");
}

/// Runs `request` in 64 concurrent loops for `secs` seconds; returns
/// successful requests per second and the error count.
async fn throughput<F, Fut>(secs: u64, request: F) -> (f64, u64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let request = Arc::new(request);
    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let loops: Vec<_> = (0..64)
        .map(|_| {
            let (request, done, errors) = (request.clone(), done.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let counter = if request().await { &done } else { &errors };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
    (done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(), errors.load(Ordering::Relaxed))
}

/// Serves `POST /api/v1/providers/gitlab-pat/verify` from the native
/// connector in a process of its own, as Gatehouse has (this binary run
/// with `--native-server`): bearer check, JSON credentials in, JSON
/// verdict out. The sandboxed path without the sandbox and without
/// Gatehouse's policy, limits and problem mapping.
fn native_behind_http() -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--native-server")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    (child, line.trim().to_string())
}

fn native_server() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        install_native_transport();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        println!("http://127.0.0.1:{port}");
        let verify = poem::endpoint::make(|req: poem::Request| async move {
            let expected = format!("Bearer {API_KEY}");
            if req.headers().get("authorization").is_none_or(|v| v.as_bytes() != expected.as_bytes()) {
                return Response::builder().status(poem::http::StatusCode::UNAUTHORIZED).finish();
            }
            let body: serde_json::Value = match req.into_body().into_json().await {
                Ok(body) => body,
                Err(_) => return Response::builder().status(poem::http::StatusCode::BAD_REQUEST).finish(),
            };
            let fields = body["credentials"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default();
            let creds = gatehouse_plugin::Credentials::new(fields);
            let verdict =
                tokio::task::spawn_blocking(move || gitlab_pat::GitlabPat::verify(&creds).ok()).await.unwrap();
            let json = match verdict {
                Some(v) => serde_json::json!({
                    "valid": true,
                    "account": {"id": v.account.id, "username": v.account.username},
                    "scopes": v.scopes,
                }),
                None => serde_json::json!({"valid": false}),
            };
            Response::builder().content_type("application/json").body(json.to_string())
        });
        let app = poem::Route::new().at("/api/v1/providers/gitlab-pat/verify", poem::post(verify));
        Server::new_with_acceptor(acceptor).run(app).await.unwrap();
    });
}

/// CPU seconds (user + system, all threads) a process has used so far.
fn cpu_time(pid: u32) -> f64 {
    // Clock ticks are 1/100 s on Linux (USER_HZ).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; counting from 0 after
    // the name (field 2), that is 11 and 12.
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

fn install_native_transport() {
    let handle = tokio::runtime::Handle::current();
    let client = reqwest::Client::new();
    native::set_transport(move |req: &native::Request| {
        let request = client.get(&req.url).headers(
            req.headers
                .iter()
                .map(|(k, v)| (k.parse::<reqwest::header::HeaderName>().unwrap(), v.parse().unwrap()))
                .collect(),
        );
        handle.block_on(async {
            let r = request.send().await.map_err(|e| native::Error::Unreachable(e.to_string()))?;
            let status = r.status().as_u16();
            let headers =
                r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
            let body = r.bytes().await.map_err(|e| native::Error::Unreachable(e.to_string()))?.to_vec();
            Ok(native::Response { status, headers, body })
        })
    });
}

/// Copies of the hostile test component with distinct ids (same-length
/// edits of the id string), so each one is a separate connector.
fn variants_of_hostile(dir: &Path, n: usize) -> Vec<PathBuf> {
    let bytes = std::fs::read(HOSTILE).unwrap();
    let needle = b"hostile-test";
    (0..n)
        .map(|i| {
            let id = format!("hostile-{i:04}");
            let mut copy = bytes.clone();
            let mut at = 0;
            while let Some(pos) = copy[at..].windows(needle.len()).position(|w| w == needle) {
                copy[at + pos..at + pos + needle.len()].copy_from_slice(id.as_bytes());
                at += pos + needle.len();
            }
            let path = dir.join(format!("{id}.wasm"));
            std::fs::write(&path, copy).unwrap();
            path
        })
        .collect()
}

struct Host {
    child: Child,
    base: String,
    _dir: Option<tempfile::TempDir>,
}

impl Host {
    async fn start(plugins: &[PathBuf], lax: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut host) = Self::timed_start(dir.path(), plugins, lax).await;
        host._dir = Some(dir);
        host
    }

    async fn timed_start(data: &Path, plugins: &[PathBuf], lax: bool) -> (Duration, Self) {
        let plugins_dir = data.join("plugins");
        std::fs::create_dir_all(&plugins_dir).unwrap();
        for p in plugins {
            std::fs::copy(p, plugins_dir.join(p.file_name().unwrap())).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--plugins-poll", "0s", "--data-dir"])
            .arg(data)
            // Kept in the temporary directory, so the run leaves nothing behind.
            .arg("--master-key-file")
            .arg(data.join("master.key"))
            .arg("--allow-key-in-data-dir")
            .env("GATEHOUSE_API_KEY", API_KEY)
            .env("GATEHOUSE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if lax {
            cmd.args(["--allow-private-networks", "--allow-http"]);
        }
        let started = Instant::now();
        let child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut host = Self { child, base, _dir: None };
        // A host that cannot start fails the run instead of hanging it.
        let deadline = started + Duration::from_secs(120);
        loop {
            if let Ok(r) = client.get(format!("{}/api/v1/health", host.base)).send().await
                && r.status() == 200
            {
                break;
            }
            if let Some(status) = host.child.try_wait().unwrap() {
                panic!("gatehouse exited with {status} before becoming healthy (data dir {})", data.display());
            }
            if Instant::now() > deadline {
                host.stop();
                panic!("gatehouse did not become healthy within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (started.elapsed(), host)
    }

    /// The first-party connectors and every copied component loaded: a
    /// component that failed to load would answer 404 to every request.
    async fn expect_components(&self, count: usize) {
        let request = reqwest::Client::new().get(format!("{}/api/v1/health", self.base)).bearer_auth(API_KEY);
        let text = request.send().await.unwrap().text().await.unwrap();
        let health: serde_json::Value = serde_json::from_str(&text).unwrap();
        let loaded = health["plugins"].as_array().map_or(0, Vec::len);
        assert_eq!(loaded, count, "components loaded: {health}");
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}
