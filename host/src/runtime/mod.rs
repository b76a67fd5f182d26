//! The connector runtime: compiles each component once, pre-instantiates it
//! against the host's imports, and runs every call in a fresh pooled
//! instance under a CPU/wall deadline, a memory cap and the egress policy.

pub mod connector_log;
pub mod guest_log;
pub mod model;
pub mod wit;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use url::Url;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
    component::{Component, Linker, ResourceTable, ResourceTableError},
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::{
    crypto::sha256_hex,
    egress::{CallEgress, CredentialHeader, Egress, OutboundRequest, OutboundResponse, SendError},
    metrics::CallOutcome,
};
use model::{
    Connection, Credentials, FieldKind, Manifest, OAuthClient, OAuthError, ProviderError, RateBudget, ReachItem,
    RotateError, Rotated, ScopeVerdict, SyncPage, TokenGrant, TokenReach, Verification, VerifyError,
};

/// How often the epoch advances; the granularity of deadlines and of
/// yielding a busy connector back to the scheduler.
const EPOCH_TICK: Duration = Duration::from_millis(10);
const WASM_PAGE_BYTES: u64 = 64 * 1024;
/// What a call may write to stderr; kept to explain a trap (a Rust panic
/// message, a Python traceback), then dropped with the call.
const STDERR_BYTES: usize = 4096;
/// `manifest()` is pure data; it gets a short deadline at load.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Host resources (WASI streams, pollables, …) one call may hold at once;
/// each costs host memory outside the instance's linear memory.
pub const MAX_RESOURCES: usize = 4096;
/// Largest `wasi:random` request: seeds and nonces are a few bytes.
pub const MAX_RANDOM_BYTES: u64 = 64 * 1024;
/// Table elements across all of an instance's tables.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Per component instance, and so per call (each call instantiates one
/// component); the pool is sized with the same numbers.
const MAX_CORE_INSTANCES: usize = 32;
const MAX_MEMORIES: usize = 4;
const MAX_TABLES: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct RuntimeLimits {
    pub call_timeout: Duration,
    /// All of an instance's linear memories together.
    pub memory_bytes: usize,
    pub concurrent_calls: u32,
    pub keep_resident_bytes: usize,
    /// How long a call waits for a free slot before it is refused as busy.
    pub max_call_wait: Duration,
    /// Most data a connector hands the host in one transfer: an answer, an
    /// outbound request, a log line.
    pub max_answer_bytes: usize,
    /// What one call may write to the host's log.
    pub log: guest_log::LogBudget,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: not a WebAssembly component: {why}")]
    NotAComponent { source_name: String, why: String },
    #[error(
        "{source_name}: does not implement the world gatehouse:plugin/provider (supported versions: {supported}): {why}"
    )]
    WrongWorld { source_name: String, supported: String, why: String },
    #[error("{source_name}: manifest() failed: {why}")]
    Manifest { source_name: String, why: String },
    #[error("{source_name}: invalid manifest: {}", problems.join("; "))]
    InvalidManifest { source_name: String, problems: Vec<String> },
}

/// How a connector call failed (as opposed to the connector reporting a
/// verification error, which is a normal result).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    #[error("the connector did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the connector failed: {0}")]
    Failed(String),
    /// Every call slot stayed taken for the whole wait (the wait, the slots).
    #[error("no call slot was free within {0:?}")]
    Busy(Duration, u32),
}

enum Bindings {
    V0_1_0(wit::v0_1_0::ProviderPre<CallState>),
    V0_2_0(wit::v0_2_0::ProviderPre<CallState>),
    V0_3_0(wit::v0_3_0::Pre),
    V0_4_0(wit::v0_4_0::Pre),
}

/// One call into a connector in the host's terms; each WIT version module
/// translates it to its own types and the answer back.
pub(crate) enum Call<'a> {
    Manifest,
    Verify(&'a [(String, String)]),
    AuthorizeUrl {
        base_url: &'a str,
        client_id: &'a str,
        redirect_uri: &'a str,
        state: &'a str,
        code_challenge: &'a str,
    },
    ExchangeCode {
        base_url: &'a str,
        client: &'a OAuthClient,
        code: &'a str,
        verifier: &'a str,
    },
    RefreshToken {
        base_url: &'a str,
        client: &'a OAuthClient,
        refresh_token: &'a str,
    },
    Action {
        name: &'a str,
        input: &'a str,
        connection: &'a Connection,
    },
    Sync {
        model: &'a str,
        checkpoint: Option<&'a str>,
        run_started_at: &'a str,
        connection: &'a Connection,
    },
    Describe {
        connection: &'a Connection,
    },
    CheckPath {
        scope: &'a ReachItem,
        method: &'a str,
        path: &'a str,
        connection: &'a Connection,
    },
    Rotate {
        connection: &'a Connection,
    },
}

impl Call<'_> {
    /// The function called, as the metrics name it.
    fn function(&self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Verify(_) => "verify",
            Self::AuthorizeUrl { .. } => "authorize-url",
            Self::ExchangeCode { .. } => "exchange-code",
            Self::RefreshToken { .. } => "refresh-token",
            Self::Action { .. } => "action",
            Self::Sync { .. } => "sync",
            Self::Describe { .. } => "describe",
            Self::CheckPath { .. } => "check-path",
            Self::Rotate { .. } => "rotate",
        }
    }
}

pub(crate) enum Answer {
    Manifest(Box<Manifest>),
    Verify(Result<Verification, VerifyError>),
    AuthorizeUrl(Result<String, OAuthError>),
    Grant(Result<TokenGrant, OAuthError>),
    Action(Result<String, ProviderError>),
    Sync(Result<SyncPage, ProviderError>),
    Reach(Result<TokenReach, ProviderError>),
    PathVerdict(Result<ScopeVerdict, ProviderError>),
    Rotated(Result<Rotated, RotateError>),
    /// The component does not export what the call needs.
    Unsupported,
}

/// A page of a sync, and the lowest rate-limit budget seen while making it.
pub struct SyncOutcome {
    pub page: Result<SyncPage, ProviderError>,
    pub budget: Option<RateBudget>,
}

/// A verify's verdict and, when it was asked for and could be told, what
/// the verified credential reaches.
pub struct Verified {
    pub verdict: Result<Verification, VerifyError>,
    pub reach: Option<TokenReach>,
}

/// An action's schemas, compiled once at load.
pub struct ActionSchemas {
    pub input: jsonschema::Validator,
    pub output: jsonschema::Validator,
}

/// A loaded connector.
pub struct Connector {
    pub manifest: Manifest,
    pub sha256: String,
    pub wit_version: &'static str,
    /// Where it came from: `builtin:<name>` or a file path.
    pub source: String,
    /// Linear memory a fresh instance starts with (largest memory).
    pub initial_memory_bytes: u64,
    /// Compiled schemas of each action, by name.
    pub action_schemas: BTreeMap<String, ActionSchemas>,
    /// Compiled record schema of each sync model, by name.
    pub record_schemas: BTreeMap<String, jsonschema::Validator>,
    bindings: Bindings,
}

impl Connector {
    /// The interfaces the component exports, for people reading `plugins
    /// validate`.
    pub fn exports(&self) -> Vec<&'static str> {
        let (oauth, actions, syncs) = self.optional_exports();
        let (reach, rotation) = self.token_exports();
        [
            ("connector", true),
            ("oauth", oauth),
            ("actions", actions),
            ("syncs", syncs),
            ("reach", reach),
            ("rotation", rotation),
        ]
        .into_iter()
        .filter_map(|(name, has)| has.then_some(name))
        .collect()
    }

    /// What the component exports beyond `connector`, whatever its WIT
    /// version: (oauth, actions, syncs).
    fn optional_exports(&self) -> (bool, bool, bool) {
        match &self.bindings {
            Bindings::V0_1_0(_) => (false, false, false),
            // 0.2.0 has OAuth inside `connector`.
            Bindings::V0_2_0(_) => (true, false, false),
            Bindings::V0_3_0(pre) => (pre.exports_oauth(), pre.exports_actions(), pre.exports_syncs()),
            Bindings::V0_4_0(pre) => (pre.exports_oauth(), pre.exports_actions(), pre.exports_syncs()),
        }
    }

    /// Whether the component exports `reach` and `rotation` (0.4.0 on).
    pub fn token_exports(&self) -> (bool, bool) {
        match &self.bindings {
            Bindings::V0_4_0(pre) => (pre.exports_reach(), pre.exports_rotation()),
            _ => (false, false),
        }
    }

    /// Whether the connector can tell what a credential reaches (and so
    /// whether a connection can be limited to part of the provider).
    pub fn has_reach(&self) -> bool {
        self.token_exports().0
    }

    /// Whether the connector can replace a credential at the provider.
    pub fn can_rotate(&self) -> bool {
        self.token_exports().1
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("id", &self.manifest.id)
            .field("source", &self.source)
            .field("wit_version", &self.wit_version)
            .finish_non_exhaustive()
    }
}

/// Per-call store data. Nothing here outlives the call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    log: guest_log::CallLog,
    egress: CallEgress,
    plugin_id: String,
    secrets: Vec<SecretString>,
    /// Set when the connector broke a limit; the call then fails whatever
    /// the connector returns.
    violation: Option<String>,
    /// The last transport failure, so a connector that misreports it is
    /// still answered with the right code.
    last_send_error: Option<SendError>,
    /// The lowest rate-limit budget the provider reported in this call.
    budget: Option<RateBudget>,
    /// The call's stderr, bounded: the last words of a connector that traps.
    stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
    /// When the running call is interrupted.
    deadline: Instant,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl CallState {
    /// Removes every credential value from text that came out of a
    /// connector, so a careless or hostile one cannot leak it through us.
    pub fn redact(&self, text: &str) -> String {
        guest_log::redact(text, &self.secrets).into_owned()
    }

    /// What the connector wrote to stderr before it trapped (a panic
    /// message, a traceback's last line), credentials removed, as a
    /// sentence to append; empty when it wrote nothing.
    fn last_words(&self) -> String {
        let bytes = self.stderr.contents();
        let Some(said) = last_words_of(&String::from_utf8_lossy(&bytes)) else {
            return String::new();
        };
        let said: String = self.redact(&said).chars().take(300).collect();
        // Escaped for the log line and the problem detail alike.
        let said = guest_log::escape_controls(&said);
        tracing::warn!(target: connector_log::TARGET, connector = %self.plugin_id, stderr = %said, "connector trapped");
        format!("; it wrote: {said}")
    }

    /// The `http.send` import of every WIT version. Running out of the
    /// request budget traps (the `Err`), not returns an error: a connector
    /// that loops on failures must not keep the call alive.
    async fn send(&mut self, request: OutboundRequest) -> wasmtime::Result<Result<OutboundResponse, SendError>> {
        match self.egress.send(request).await {
            Err(SendError::BudgetExhausted(limit)) => {
                let why = format!("the connector exceeded its limit of {limit} outbound requests per call");
                self.violation = Some(why.clone());
                Err(wasmtime::Error::msg(why))
            }
            Err(e) => {
                self.last_send_error = Some(e.clone());
                Ok(Err(e))
            }
            Ok(r) => {
                if let Some(seen) = rate_budget(&r.headers) {
                    self.budget = Some(match self.budget {
                        Some(b) if b.remaining <= seen.remaining => b,
                        _ => seen,
                    });
                }
                Ok(Ok(r))
            }
        }
    }

    fn plugin_log(&mut self, level: tracing::Level, message: &str, fields: &[(String, String)]) {
        let guest_log::Line { message, fields } = match self.log.admit(message, fields, &self.secrets) {
            guest_log::Admitted::Write(line) => line,
            guest_log::Admitted::Dropped => return,
            guest_log::Admitted::Exhausted(budget) => {
                return tracing::warn!(
                    target: connector_log::TARGET,
                    connector = %self.plugin_id,
                    "…log budget exhausted: the connector wrote more than {} lines or {} bytes in this call; \
                     its further log lines in this call are dropped",
                    budget.lines,
                    budget.bytes
                );
            }
        };
        connector_log::emit(level, &self.plugin_id, &message, &fields);
    }
}

/// The last two lines worth reading of a trapped call's stderr: a Rust
/// panic says where on one line and what on the next, a Python traceback
/// ends with its exception; SpiderMonkey (JavaScript) prints the error, then
/// its stack frames (`name@file:line:col`) and an abort notice, which are
/// skipped so the error itself is what remains.
fn last_words_of(stderr: &str) -> Option<String> {
    let frame = |l: &str| {
        l.rsplit_once('@').is_some_and(|(name, place)| {
            !name.contains(' ')
                && place.rsplitn(3, ':').take(2).all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .filter(|l| !l.starts_with("Redirecting call to abort()") && !frame(l) && *l != "Stack:")
        .collect();
    (!lines.is_empty()).then(|| lines.iter().rev().take(2).rev().copied().collect::<Vec<_>>().join(" "))
}

/// Caps the instance's linear memories and tables in total (a component
/// may hold several of each), and remembers that it refused, so the
/// failure is reported as a broken limit rather than a bare trap.
struct MemoryCap {
    bytes: usize,
    used_bytes: usize,
    used_elements: usize,
    /// The last growth allowed, undone if the growth then fails.
    last_growth: usize,
    denied: bool,
    tables_denied: bool,
}

impl MemoryCap {
    fn new(bytes: usize) -> Self {
        Self { bytes, used_bytes: 0, used_elements: 0, last_growth: 0, denied: false, tables_denied: false }
    }
}

impl ResourceLimiter for MemoryCap {
    // Also called when a memory is created (current = 0).
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.used_bytes.saturating_add(growth) > self.bytes {
            self.denied = true;
            return Ok(false);
        }
        // Beyond the memory's own maximum the growth fails without our help.
        if maximum.is_none_or(|max| desired <= max) {
            self.used_bytes += growth;
            self.last_growth = growth;
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used_bytes -= std::mem::take(&mut self.last_growth);
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.used_elements.saturating_add(growth) > MAX_TABLE_ELEMENTS {
            self.tables_denied = true;
            return Ok(false);
        }
        if maximum.is_none_or(|max| desired <= max) {
            self.used_elements += growth;
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    egress: Arc<Egress>,
    limits: RuntimeLimits,
    slots: Arc<Semaphore>,
    cache: Option<ComponentCache>,
}

/// Compiled components on disk, keyed by the component's SHA-256 and the
/// engine's compatibility hash (wasmtime version, target, settings), so a
/// changed component or a changed engine never picks up a stale artifact.
/// The files are native code the host runs: each carries a keyed BLAKE3
/// tag (a MAC; keyed from the master key) over its name's parts and its
/// bytes, and is loaded only when the tag is right. BLAKE3 rather than
/// HMAC-SHA256 because every start checks megabytes of code: it is several
/// times faster here. Whoever can write the cache directory
/// but lacks the key (which lives outside the data dir) can make the host
/// compile again, not run their code.
struct ComponentCache {
    dir: std::path::PathBuf,
    engine_hash: String,
    mac_key: secrecy::SecretSlice<u8>,
}

/// What a cache file starts with, before the tag and the compiled bytes.
/// Files of an earlier format fail the check and are compiled again.
const CACHE_MAGIC: &[u8; 8] = b"GHCACHE2";

impl ComponentCache {
    fn path(&self, component_sha256: &str) -> std::path::PathBuf {
        self.dir.join(format!("{component_sha256}-{}.cwasm", self.engine_hash))
    }

    fn mac(&self, component_sha256: &str) -> blake3::Hasher {
        let key: &[u8; 32] = self.mac_key.expose_secret().try_into().expect("the derived cache key is 32 bytes");
        let mut mac = blake3::Hasher::new_keyed(key);
        mac.update(CACHE_MAGIC);
        mac.update(component_sha256.as_bytes());
        mac.update(b"\0");
        mac.update(self.engine_hash.as_bytes());
        mac.update(b"\0");
        mac
    }

    fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        // Read into memory, then check, then load from that memory: a file
        // checked and then mapped could be swapped in between.
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the compiled component; compiling it again");
                return None;
            }
        };
        let header = CACHE_MAGIC.len() + blake3::OUT_LEN;
        let authentic = bytes.len() > header && bytes.starts_with(CACHE_MAGIC) && {
            let mut mac = self.mac(sha256);
            mac.update(&bytes[header..]);
            let tag: [u8; blake3::OUT_LEN] = bytes[CACHE_MAGIC.len()..header].try_into().expect("sliced to OUT_LEN");
            // `Hash` compares in constant time.
            mac.finalize() == blake3::Hash::from_bytes(tag)
        };
        if !authentic {
            tracing::warn!(
                file = %path.display(),
                "compiled component failed authentication (tampered with, damaged, or written under another master key); rebuilding it"
            );
            return None;
        }
        // SAFETY: the bytes carry this host's tag, so this cache wrote them
        // from `Component::serialize` of the same engine configuration.
        match unsafe { Component::deserialize(engine, &bytes[header..]) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring unusable compiled component");
                None
            }
        }
    }

    fn store(&self, sha256: &str, component: &Component) {
        let write = || -> anyhow::Result<()> {
            crate::files::create_private_dir(&self.dir)?;
            let code = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut mac = self.mac(sha256);
            mac.update(&code);
            let mut bytes = Vec::with_capacity(CACHE_MAGIC.len() + blake3::OUT_LEN + code.len());
            bytes.extend_from_slice(CACHE_MAGIC);
            bytes.extend_from_slice(mac.finalize().as_bytes());
            bytes.extend_from_slice(&code);
            // Not fsynced: a file lost or torn by a crash fails its tag and
            // is compiled again.
            crate::files::write_private(&self.path(sha256), &bytes, crate::files::Existing::Replace, false)?;
            Ok(())
        };
        match write() {
            Ok(()) => tracing::debug!(component = sha256, "compiled component cached"),
            Err(e) => tracing::warn!(dir = %self.dir.display(), error = %e, "cannot cache the compiled component"),
        }
    }
}

/// Checks what a connector's manifest declares against what it exports,
/// and compiles the JSON Schemas of its actions and records.
fn check_manifest(mut plugin: Connector, manifest: Manifest) -> Result<Connector, LoadError> {
    let mut problems = manifest_problems(&manifest);
    let (oauth, actions, syncs) = plugin.optional_exports();
    if manifest.oauth.is_some() && !oauth {
        problems.push("it declares oauth but does not export gatehouse:plugin/oauth".into());
    }
    if !manifest.actions.is_empty() && !actions {
        problems.push("it lists actions but does not export gatehouse:plugin/actions".into());
    }
    if !manifest.sync_models.is_empty() && !syncs {
        problems.push("it lists sync models but does not export gatehouse:plugin/syncs".into());
    }
    match compile_action_schemas(&manifest) {
        Ok(schemas) => plugin.action_schemas = schemas,
        Err(why) => problems.push(why),
    }
    match compile_record_schemas(&manifest) {
        Ok(schemas) => plugin.record_schemas = schemas,
        Err(why) => problems.push(why),
    }
    if !problems.is_empty() {
        return Err(LoadError::InvalidManifest { source_name: plugin.source, problems });
    }
    plugin.manifest = manifest;
    Ok(plugin)
}

/// `work` over `items` on scoped threads, one per core (inline for one
/// item or one core); the answers in the items' order. For load-time CPU
/// work that needs no async runtime.
fn on_every_core<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < 2 || cores < 2 {
        return items.into_iter().map(work).collect();
    }
    let count = items.len();
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let mut answers: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cores.min(count))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                        let Some((i, item)) = next else { break };
                        done.push((i, work(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

impl Runtime {
    /// Whether a fresh instance of `plugin` lies within the part of a slot
    /// kept resident, so a call resets it in place instead of faulting it in.
    pub fn fits_resident_slot(&self, plugin: &Connector) -> bool {
        plugin.initial_memory_bytes <= self.limits.keep_resident_bytes as u64
    }

    /// The shared outbound client and policy, for the proxy.
    pub fn egress(&self) -> &Arc<Egress> {
        &self.egress
    }

    pub fn keep_resident_kib(&self) -> usize {
        self.limits.keep_resident_bytes / 1024
    }

    pub fn new(egress: Arc<Egress>, limits: RuntimeLimits) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        // Slots for every call that may run at once plus load-time calls;
        // callers wait on `slots` before they can take one.
        let instances = limits.concurrent_calls + 8;
        let slot_bytes = limits.memory_bytes.max(1 << 20);
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_memories_per_component(MAX_MEMORIES as u32)
            .max_tables_per_component(MAX_TABLES as u32)
            .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
            .max_memory_size(slot_bytes);
        let keep_resident = limits.keep_resident_bytes.min(slot_bytes);
        // A slot's first `keep_resident_bytes` are reset with `memset` and
        // stay mapped; only memory beyond that goes back to the kernel with
        // `madvise`. On a busy host that syscall, the page faults refilling
        // the slot and the TLB-shootdown IPIs they cause were the largest
        // cost of a call (BENCHMARKS.md); connectors with a small stack fit
        // entirely. What stays resident is at most one slot per concurrent
        // call times this size, and never another call's data: it is zeroed
        // or restored to the component's initial image before reuse.
        pool.linear_memory_keep_resident(keep_resident).table_keep_resident(keep_resident);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        wit::v0_1_0::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        wit::v0_2_0::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        wit::v0_3_0::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        wit::v0_4_0::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;

        let weak = engine.weak();
        std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;

        Ok(Self {
            engine,
            linker,
            egress,
            limits,
            slots: Arc::new(Semaphore::new(limits.concurrent_calls as usize)),
            cache: None,
        })
    }

    /// Keeps compiled components in `dir`, so later starts skip compilation,
    /// authenticated with `mac_key` (derived from the master key).
    pub fn with_component_cache(mut self, dir: std::path::PathBuf, mac_key: secrecy::SecretSlice<u8>) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        self.cache = Some(ComponentCache { dir, engine_hash: format!("{:016x}", hasher.finish()), mac_key });
        self
    }

    pub fn supported_wit_versions() -> &'static [&'static str] {
        &[wit::v0_1_0::VERSION, wit::v0_2_0::VERSION, wit::v0_3_0::VERSION, wit::v0_4_0::VERSION]
    }

    /// Compiles, links and asks for the manifest. Every connector, builtin
    /// or from `--plugins-dir`, comes through here or `load_all`.
    pub async fn load(&self, source_name: &str, bytes: &[u8]) -> Result<Connector, LoadError> {
        let sha256 = sha256_hex(bytes);
        self.load_all(&[(source_name, bytes, &sha256)]).await.pop().expect("one answer per source")
    }

    /// `load` for several components: compiling (or reading the compiled
    /// code from the cache and authenticating it) and linking is CPU work
    /// that takes milliseconds each, so it runs on every core at once;
    /// the manifests are then asked for in turn. `sources` are (name,
    /// bytes, their SHA-256 in hex); the answers come in the same order.
    pub async fn load_all(&self, sources: &[(&str, &[u8], &str)]) -> Vec<Result<Connector, LoadError>> {
        let linked = on_every_core(sources.to_vec(), |(name, bytes, sha256)| self.link(name, bytes, sha256));
        // One instance at a time: a manifest call is a fraction of a
        // millisecond, and load-time calls share the few spare slots.
        let mut asked = Vec::with_capacity(linked.len());
        for linked in linked {
            asked.push(match linked {
                Ok(plugin) => self.ask_manifest(plugin).await,
                Err(e) => Err(e),
            });
        }
        // Compiling the JSON Schemas of actions and records is CPU work again.
        on_every_core(asked, |asked| asked.and_then(|(plugin, manifest)| check_manifest(plugin, manifest)))
    }

    /// The compiled, linked component, its manifest not yet asked for.
    fn link(&self, source_name: &str, bytes: &[u8], sha256: &str) -> Result<Connector, LoadError> {
        let cached = self.cache.as_ref().and_then(|c| c.load(&self.engine, sha256));
        let component = match cached {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::NotAComponent {
                    source_name: source_name.to_string(),
                    why: not_a_component(bytes, &e),
                })?;
                if let Some(cache) = &self.cache {
                    cache.store(sha256, &component);
                }
                component
            }
        };
        let wrong_world = |why: String| LoadError::WrongWorld {
            source_name: source_name.to_string(),
            supported: Self::supported_wit_versions().join(", "),
            why,
        };
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let (bindings, wit_version) = if exports.iter().any(|e| e == wit::v0_4_0::CONNECTOR_EXPORT) {
            let pre = self.linker.instantiate_pre(&component).map_err(|e| wrong_world(format!("{e:#}")))?;
            let pre = wit::v0_4_0::Pre::new(pre).map_err(|e| wrong_world(format!("{e:#}")))?;
            (Bindings::V0_4_0(pre), wit::v0_4_0::VERSION)
        } else if exports.iter().any(|e| e == wit::v0_3_0::CONNECTOR_EXPORT) {
            let pre = self.linker.instantiate_pre(&component).map_err(|e| wrong_world(format!("{e:#}")))?;
            let pre = wit::v0_3_0::Pre::new(pre).map_err(|e| wrong_world(format!("{e:#}")))?;
            (Bindings::V0_3_0(pre), wit::v0_3_0::VERSION)
        } else if exports.iter().any(|e| e == wit::v0_2_0::CONNECTOR_EXPORT) {
            let pre = self.linker.instantiate_pre(&component).map_err(|e| wrong_world(format!("{e:#}")))?;
            let pre = wit::v0_2_0::ProviderPre::new(pre).map_err(|e| wrong_world(format!("{e:#}")))?;
            (Bindings::V0_2_0(pre), wit::v0_2_0::VERSION)
        } else if exports.iter().any(|e| e == wit::v0_1_0::CONNECTOR_EXPORT) {
            let pre = self.linker.instantiate_pre(&component).map_err(|e| wrong_world(format!("{e:#}")))?;
            let pre = wit::v0_1_0::ProviderPre::new(pre).map_err(|e| wrong_world(format!("{e:#}")))?;
            (Bindings::V0_1_0(pre), wit::v0_1_0::VERSION)
        } else {
            return Err(wrong_world(format!(
                "it exports [{}] but no supported gatehouse:plugin/connector",
                exports.join(", ")
            )));
        };
        let initial_memory_bytes = component
            .resources_required()
            .and_then(|r| r.max_initial_memory_size)
            .unwrap_or(0)
            .saturating_mul(WASM_PAGE_BYTES);
        Ok(Connector {
            manifest: placeholder_manifest(),
            sha256: sha256.to_string(),
            wit_version,
            source: source_name.to_string(),
            initial_memory_bytes,
            action_schemas: BTreeMap::new(),
            record_schemas: BTreeMap::new(),
            bindings,
        })
    }

    /// Asks a linked component for its manifest.
    async fn ask_manifest(&self, plugin: Connector) -> Result<(Connector, Manifest), LoadError> {
        if !self.fits_resident_slot(&plugin) {
            tracing::info!(
                source = plugin.source,
                initial_memory_kib = plugin.initial_memory_bytes / 1024,
                keep_resident_kib = self.keep_resident_kib(),
                "the connector starts with more linear memory than is kept resident per slot; each call \
                 returns the excess to the OS and faults it back in (see plugins/README.md on stack size)"
            );
        }
        match self.manifest(&plugin).await {
            Ok(manifest) => Ok((plugin, manifest)),
            Err(e) => Err(LoadError::Manifest { source_name: plugin.source, why: e.to_string() }),
        }
    }

    /// Calls `manifest()` in a fresh instance (the loaded manifest is cached
    /// on the plugin; this is for measuring the call itself).
    pub async fn manifest(&self, plugin: &Connector) -> Result<Manifest, CallError> {
        let egress = CallEgress::new(self.egress.clone(), &[], None);
        let deadline = Deadline::after(MANIFEST_TIMEOUT);
        let (answer, _, _) = self.invoke(plugin, "(loading)", Call::Manifest, egress, Vec::new(), deadline).await?;
        match answer {
            Answer::Manifest(m) => Ok(*m),
            _ => Err(CallError::Failed("manifest() answered something else".into())),
        }
    }

    /// Runs `verify` in a fresh instance. `allowed` are the only URLs whose
    /// origins the connector may reach. Their hosts are resolved and checked
    /// first, inside the call's deadline, so a refused address is answered
    /// as `egress_denied` before the connector runs and a resolver that does
    /// not answer cannot hold the request past the deadline.
    pub async fn verify(
        &self,
        plugin: &Connector,
        credentials: &Credentials,
        allowed: &[Url],
    ) -> Result<Result<Verification, VerifyError>, CallError> {
        Ok(self.verify_with_reach(plugin, credentials, allowed, None::<fn(&Verification) -> Connection>).await?.verdict)
    }

    /// `verify`, then, for a valid credential whose connector exports
    /// `reach`, `reach.describe` on the connection `connection` builds from
    /// the verification, in the same instance: both calls are one operation
    /// on one credential, so the instance never serves anything else, and
    /// what verify read (the account) is still there for describe to reuse.
    /// Each call has its own deadline and request budget. A describe that
    /// fails is logged and leaves the reach unknown: it never fails the
    /// verification.
    pub async fn verify_with_reach(
        &self,
        plugin: &Connector,
        credentials: &Credentials,
        allowed: &[Url],
        connection: Option<impl FnOnce(&Verification) -> Connection>,
    ) -> Result<Verified, CallError> {
        let secrets = secret_values(plugin, credentials);
        let pairs: Vec<(String, String)> = credentials.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // `authenticate` in verify presents the credentials being verified.
        let credential = match allowed.first() {
            Some(base) => credential_header(&plugin.manifest, credentials, base).ok(),
            None => None,
        };
        let _slot = self.slot(&plugin.manifest.id, "verify").await?;
        let deadline = Deadline::after(self.limits.call_timeout);
        for url in allowed {
            match tokio::time::timeout_at(deadline.at.into(), self.egress.policy.check_reachable(url)).await {
                Err(_) => return Err(CallError::Timeout(deadline.budget)),
                Ok(Err(refused)) => {
                    return Ok(Verified { verdict: Err(VerifyError::EgressDenied(refused.to_string())), reach: None });
                }
                Ok(Ok(())) => {}
            }
        }
        // Describe needs the credential presented on the one base URL.
        let connection = connection.filter(|_| plugin.has_reach() && allowed.len() == 1 && credential.is_some());
        let egress = CallEgress::new(self.egress.clone(), allowed, credential).for_connector(&plugin.manifest.id);
        let (answer, last_send_error, reach) = match (&plugin.bindings, connection) {
            (Bindings::V0_4_0(pre), Some(connection)) => {
                self.verify_then_describe(pre, &plugin.manifest.id, &pairs, connection, egress, secrets, deadline)
                    .await?
            }
            _ => {
                let (answer, last_send_error, _) =
                    self.invoke(plugin, &plugin.manifest.id, Call::Verify(&pairs), egress, secrets, deadline).await?;
                (answer, last_send_error, None)
            }
        };
        let Answer::Verify(result) = answer else {
            return Err(CallError::Failed("verify() answered something else".into()));
        };
        // A connector cannot turn a policy refusal or a transport failure
        // into something else: what the host saw wins.
        let verdict = result.map_err(|e| match (last_send_error, e) {
            (Some(SendError::Denied(why)), e) if !matches!(e, VerifyError::EgressDenied(_)) && !e.is_verdict() => {
                VerifyError::EgressDenied(why)
            }
            (_, e) => e,
        });
        Ok(Verified { verdict, reach })
    }

    /// The two calls of `verify_with_reach` in one instance. The answer is
    /// verify's (with its last transport failure) and what describe found.
    #[allow(clippy::too_many_arguments)]
    async fn verify_then_describe(
        &self,
        pre: &wit::v0_4_0::Pre,
        plugin_id: &str,
        pairs: &[(String, String)],
        connection: impl FnOnce(&Verification) -> Connection,
        egress: CallEgress,
        secrets: Vec<SecretString>,
        deadline: Deadline,
    ) -> Result<(Answer, Option<SendError>, Option<TokenReach>), CallError> {
        let started = Instant::now();
        let mut store = self.new_store(plugin_id, egress, secrets, deadline.at);
        let run = async {
            let instance = wit::v0_4_0::instantiate(pre, &mut store).await?;
            let answer = wit::v0_4_0::call_in(pre, &mut store, &instance, Call::Verify(pairs)).await?;
            Ok((instance, answer))
        };
        let outcome = tokio::time::timeout_at(deadline.at.into(), run).await;
        let (instance, answer) = self.ended(outcome, &store, plugin_id, "verify", started, &deadline)?;
        let last_send_error = store.data_mut().last_send_error.take();
        let Answer::Verify(Ok(verification)) = &answer else {
            return Ok((answer, last_send_error, None));
        };
        let connection = connection(verification);

        let started = Instant::now();
        let deadline = Deadline::after(self.limits.call_timeout);
        self.next_call(&mut store, deadline.at);
        let outcome = tokio::time::timeout_at(
            deadline.at.into(),
            wit::v0_4_0::call_in(pre, &mut store, &instance, Call::Describe { connection: &connection }),
        )
        .await;
        let reach = match self.ended(outcome, &store, plugin_id, "describe", started, &deadline) {
            Ok(Answer::Reach(Ok(reach))) => Some(reach),
            Ok(Answer::Reach(Err(e))) => {
                let e = denied_wins(store.data_mut().last_send_error.take(), e);
                tracing::warn!(connector = %plugin_id, error = ?e, "the connector could not tell what the credential reaches");
                None
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(connector = %plugin_id, error = %e, "the connector could not tell what the credential reaches");
                None
            }
        };
        Ok((answer, last_send_error, reach))
    }

    /// Asks an OAuth connector for the authorization URL.
    pub async fn authorize_url(
        &self,
        plugin: &Connector,
        base_url: &Url,
        client_id: &str,
        redirect_uri: &str,
        state: &SecretString,
        code_challenge: &str,
    ) -> Result<Result<String, OAuthError>, CallError> {
        let base = base_url_text(base_url);
        let call = Call::AuthorizeUrl {
            base_url: &base,
            client_id,
            redirect_uri,
            state: state.expose_secret(),
            code_challenge,
        };
        // The state is a bearer secret until the callback spends it.
        match self.guarded(plugin, call, &[], None, vec![state.clone()]).await?.0 {
            Answer::AuthorizeUrl(result) => Ok(result),
            _ => Err(CallError::Failed("authorize-url() answered something else".into())),
        }
    }

    /// Trades an authorization code for tokens.
    pub async fn exchange_code(
        &self,
        plugin: &Connector,
        base_url: &Url,
        client: &OAuthClient,
        code: &SecretString,
        verifier: &SecretString,
    ) -> Result<Result<TokenGrant, OAuthError>, CallError> {
        let base = base_url_text(base_url);
        let call = Call::ExchangeCode {
            base_url: &base,
            client,
            code: code.expose_secret(),
            verifier: verifier.expose_secret(),
        };
        let secrets = vec![client.client_secret.clone(), code.clone(), verifier.clone()];
        self.grant(plugin, call, base_url, secrets).await
    }

    /// Trades a refresh token for new tokens.
    pub async fn refresh_token(
        &self,
        plugin: &Connector,
        base_url: &Url,
        client: &OAuthClient,
        refresh_token: &SecretString,
    ) -> Result<Result<TokenGrant, OAuthError>, CallError> {
        let base = base_url_text(base_url);
        let call = Call::RefreshToken { base_url: &base, client, refresh_token: refresh_token.expose_secret() };
        let secrets = vec![client.client_secret.clone(), refresh_token.clone()];
        self.grant(plugin, call, base_url, secrets).await
    }

    async fn grant(
        &self,
        plugin: &Connector,
        call: Call<'_>,
        base_url: &Url,
        secrets: Vec<SecretString>,
    ) -> Result<Result<TokenGrant, OAuthError>, CallError> {
        let (answer, last_send_error, _) =
            self.guarded(plugin, call, std::slice::from_ref(base_url), None, secrets).await?;
        let Answer::Grant(result) = answer else {
            return Err(CallError::Failed("the token call answered something else".into()));
        };
        Ok(result.map_err(|e| match (last_send_error, e) {
            (Some(SendError::Denied(why)), OAuthError::UpstreamError(_) | OAuthError::UpstreamUnreachable(_)) => {
                OAuthError::EgressDenied(why)
            }
            (_, e) => e,
        }))
    }

    /// Runs an action for a connection. The connector gets the connection's
    /// non-secret settings; requests it marks `authenticate` carry the
    /// stored credential, which it never sees. `secrets` are scrubbed from
    /// whatever it returns.
    pub async fn run_action(
        &self,
        plugin: &Connector,
        name: &str,
        input: &str,
        connection: &Connection,
        credentials: &Credentials,
        base_url: &Url,
    ) -> Result<Result<String, ProviderError>, CallError> {
        let credential = credential_header(&plugin.manifest, credentials, base_url).map_err(CallError::Failed)?;
        let call = Call::Action { name, input, connection };
        let secrets = secret_values(plugin, credentials);
        let (answer, last_send_error, _) =
            self.guarded(plugin, call, std::slice::from_ref(base_url), Some(credential), secrets).await?;
        let Answer::Action(result) = answer else {
            return Err(CallError::Failed("the action answered something else".into()));
        };
        Ok(result.map_err(|e| match (last_send_error, e) {
            (Some(SendError::Denied(why)), ProviderError::UpstreamError(_) | ProviderError::UpstreamUnreachable(_)) => {
                ProviderError::EgressDenied(why)
            }
            (_, e) => e,
        }))
    }

    /// Asks for one page of a sync run. Like actions, the connector gets
    /// the connection without its secret and the host authenticates its
    /// requests.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_sync(
        &self,
        plugin: &Connector,
        model: &str,
        checkpoint: Option<&str>,
        run_started_at: &str,
        connection: &Connection,
        credentials: &Credentials,
        base_url: &Url,
    ) -> Result<SyncOutcome, CallError> {
        let credential = credential_header(&plugin.manifest, credentials, base_url).map_err(CallError::Failed)?;
        let call = Call::Sync { model, checkpoint, run_started_at, connection };
        let secrets = secret_values(plugin, credentials);
        let (answer, last_send_error, budget) =
            self.guarded(plugin, call, std::slice::from_ref(base_url), Some(credential), secrets).await?;
        let Answer::Sync(page) = answer else {
            return Err(CallError::Failed("the sync answered something else".into()));
        };
        let page = page.map_err(|e| match (last_send_error, e) {
            (Some(SendError::Denied(why)), ProviderError::UpstreamError(_) | ProviderError::UpstreamUnreachable(_)) => {
                ProviderError::EgressDenied(why)
            }
            (_, e) => e,
        });
        Ok(SyncOutcome { page, budget })
    }

    /// Asks what the connection's credential reaches. None when the
    /// connector does not export `reach`.
    pub async fn describe(
        &self,
        plugin: &Connector,
        connection: &Connection,
        credentials: &Credentials,
        base_url: &Url,
    ) -> Result<Option<Result<TokenReach, ProviderError>>, CallError> {
        if !plugin.has_reach() {
            return Ok(None);
        }
        let credential = credential_header(&plugin.manifest, credentials, base_url).map_err(CallError::Failed)?;
        let call = Call::Describe { connection };
        let secrets = secret_values(plugin, credentials);
        let (answer, last_send_error, _) =
            self.guarded(plugin, call, std::slice::from_ref(base_url), Some(credential), secrets).await?;
        match answer {
            Answer::Reach(result) => Ok(Some(result.map_err(|e| denied_wins(last_send_error, e)))),
            Answer::Unsupported => Ok(None),
            _ => Err(CallError::Failed("describe() answered something else".into())),
        }
    }

    /// Asks whether `method path` stays inside `scope`. None when the
    /// connector does not export `reach`.
    #[allow(clippy::too_many_arguments)]
    pub async fn check_path(
        &self,
        plugin: &Connector,
        scope: &ReachItem,
        method: &str,
        path: &str,
        connection: &Connection,
        credentials: &Credentials,
        base_url: &Url,
    ) -> Result<Option<Result<ScopeVerdict, ProviderError>>, CallError> {
        if !plugin.has_reach() {
            return Ok(None);
        }
        let credential = credential_header(&plugin.manifest, credentials, base_url).map_err(CallError::Failed)?;
        let call = Call::CheckPath { scope, method, path, connection };
        let secrets = secret_values(plugin, credentials);
        let (answer, last_send_error, _) =
            self.guarded(plugin, call, std::slice::from_ref(base_url), Some(credential), secrets).await?;
        match answer {
            Answer::PathVerdict(result) => Ok(Some(result.map_err(|e| denied_wins(last_send_error, e)))),
            Answer::Unsupported => Ok(None),
            _ => Err(CallError::Failed("check-path() answered something else".into())),
        }
    }

    /// Asks the connector to have the provider replace the stored
    /// credential. None when the connector does not export `rotation`. The
    /// stored credential is presented by the host; the new one comes back
    /// as secrets.
    pub async fn rotate(
        &self,
        plugin: &Connector,
        connection: &Connection,
        credentials: &Credentials,
        base_url: &Url,
    ) -> Result<Option<Result<Rotated, RotateError>>, CallError> {
        if !plugin.can_rotate() {
            return Ok(None);
        }
        let credential = credential_header(&plugin.manifest, credentials, base_url).map_err(CallError::Failed)?;
        let call = Call::Rotate { connection };
        let secrets = secret_values(plugin, credentials);
        let (answer, last_send_error, _) =
            self.guarded(plugin, call, std::slice::from_ref(base_url), Some(credential), secrets).await?;
        match answer {
            Answer::Rotated(result) => Ok(Some(result.map_err(|e| match e {
                RotateError::Provider(p) => RotateError::Provider(denied_wins(last_send_error, p)),
                other => other,
            }))),
            Answer::Unsupported => Ok(None),
            _ => Err(CallError::Failed("rotate() answered something else".into())),
        }
    }

    /// A call that takes a concurrency slot and the per-call deadline.
    async fn guarded(
        &self,
        plugin: &Connector,
        call: Call<'_>,
        allowed: &[Url],
        credential: Option<CredentialHeader>,
        secrets: Vec<SecretString>,
    ) -> Result<(Answer, Option<SendError>, Option<RateBudget>), CallError> {
        let _slot = self.slot(&plugin.manifest.id, call.function()).await?;
        let egress = CallEgress::new(self.egress.clone(), allowed, credential).for_connector(&plugin.manifest.id);
        let deadline = Deadline::after(self.limits.call_timeout);
        self.invoke(plugin, &plugin.manifest.id, call, egress, secrets, deadline).await
    }

    /// A concurrency slot, waited for at most `max_call_wait`: under
    /// saturation a caller is told to come back instead of queueing without
    /// end.
    async fn slot(&self, connector: &str, function: &str) -> Result<tokio::sync::SemaphorePermit<'_>, CallError> {
        // `timeout` polls once before looking at the clock, so a zero wait
        // still takes a free slot.
        match tokio::time::timeout(self.limits.max_call_wait, self.slots.acquire()).await {
            Ok(permit) => Ok(permit.expect("the semaphore is never closed")),
            Err(_) => {
                crate::metrics::connector_call(connector, function, CallOutcome::Busy, 0.0);
                Err(CallError::Busy(self.limits.max_call_wait, self.limits.concurrent_calls))
            }
        }
    }

    /// One call in a fresh instance, whatever the component's WIT version.
    async fn invoke(
        &self,
        plugin: &Connector,
        plugin_id: &str,
        call: Call<'_>,
        egress: CallEgress,
        secrets: Vec<SecretString>,
        deadline: Deadline,
    ) -> Result<(Answer, Option<SendError>, Option<RateBudget>), CallError> {
        let function = call.function();
        let started = Instant::now();
        let mut store = self.new_store(plugin_id, egress, secrets, deadline.at);
        let run = async {
            match &plugin.bindings {
                Bindings::V0_1_0(pre) => wit::v0_1_0::call(pre, &mut store, call).await,
                Bindings::V0_2_0(pre) => wit::v0_2_0::call(pre, &mut store, call).await,
                Bindings::V0_3_0(pre) => wit::v0_3_0::call(pre, &mut store, call).await,
                Bindings::V0_4_0(pre) => wit::v0_4_0::call(pre, &mut store, call).await,
            }
        };
        let outcome = tokio::time::timeout_at(deadline.at.into(), run).await;
        let answer = self.ended(outcome, &store, plugin_id, function, started, &deadline)?;
        let data = store.into_data();
        Ok((answer, data.last_send_error, data.budget))
    }

    /// The one place every connector call ends: its outcome said in the
    /// host's terms, and its metrics taken.
    fn ended<R>(
        &self,
        outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
        store: &Store<CallState>,
        plugin_id: &str,
        function: &str,
        started: Instant,
        deadline: &Deadline,
    ) -> Result<R, CallError> {
        let finished = finish(outcome, store, deadline.budget, &self.limits);
        let kind = finished.as_ref().map_or_else(|(kind, _)| *kind, |_| CallOutcome::Ok);
        crate::metrics::connector_call(plugin_id, function, kind, started.elapsed().as_secs_f64());
        finished.map_err(|(_, e)| e)
    }

    fn new_store(
        &self,
        plugin_id: &str,
        egress: CallEgress,
        secrets: Vec<SecretString>,
        deadline: Instant,
    ) -> Store<CallState> {
        let stderr = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(STDERR_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let state = CallState {
            // Nothing granted: no preopens, environment, arguments, stdin,
            // stdout or sockets; stderr goes to a small buffer that only
            // explains a trap. Clocks and randomness stay, as std needs them.
            wasi: WasiCtx::builder().stderr(stderr.clone()).max_random_size(MAX_RANDOM_BYTES).build(),
            stderr,
            table,
            memory: MemoryCap::new(self.limits.memory_bytes),
            log: guest_log::CallLog::new(self.limits.log),
            egress,
            plugin_id: plugin_id.to_string(),
            secrets,
            violation: None,
            last_send_error: None,
            budget: None,
            deadline,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        // Bounds what the host copies out of the instance in one transfer:
        // lists of strings that all point at the same bytes would otherwise
        // multiply a small linear memory into any amount of host memory.
        store.set_hostcall_fuel(self.limits.max_answer_bytes);
        store.set_max_component_handles(MAX_RESOURCES);
        store.set_epoch_deadline(1);
        // Yield every tick so a spinning connector shares the executor, and
        // interrupt it once the deadline passes.
        store.epoch_deadline_callback(|store| {
            let deadline = store.data().deadline;
            Ok(if Instant::now() >= deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store
    }

    /// Readies a store whose call ended well for the next call of the same
    /// operation: a new deadline, and fresh budgets for requests, log lines
    /// and transfers, as a call in a fresh instance would get.
    fn next_call(&self, store: &mut Store<CallState>, deadline: Instant) {
        let state = store.data_mut();
        state.deadline = deadline;
        state.egress.next_call();
        state.log = guest_log::CallLog::new(self.limits.log);
        state.last_send_error = None;
        store.set_hostcall_fuel(self.limits.max_answer_bytes);
        store.set_epoch_deadline(1);
    }
}

/// A policy refusal the host saw wins over what the connector made of it.
fn denied_wins(last_send_error: Option<SendError>, e: ProviderError) -> ProviderError {
    match (last_send_error, e) {
        (Some(SendError::Denied(why)), ProviderError::UpstreamError(_) | ProviderError::UpstreamUnreachable(_)) => {
            ProviderError::EgressDenied(why)
        }
        (_, e) => e,
    }
}

/// When a call must be over, and the budget it was given (for the error).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    fn after(budget: Duration) -> Self {
        Self { at: Instant::now() + budget, budget }
    }
}

fn finish<R>(
    outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    store: &Store<CallState>,
    timeout: Duration,
    limits: &RuntimeLimits,
) -> Result<R, (CallOutcome, CallError)> {
    let state = store.data();
    let limit = |why: String| (CallOutcome::Limit, CallError::Failed(why));
    if let Some(why) = &state.violation {
        return Err(limit(why.clone()));
    }
    let timed_out = (CallOutcome::Timeout, CallError::Timeout(timeout));
    match outcome {
        Err(_) => Err(timed_out),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => Err(timed_out),
        Ok(Err(_)) if state.memory.denied => Err(limit(format!(
            "the connector exceeded its memory limit of {} MiB (all its linear memories together)",
            state.memory.bytes / (1024 * 1024)
        ))),
        Ok(Err(_)) if state.memory.tables_denied => Err(limit(format!(
            "the connector exceeded its limit of {MAX_TABLE_ELEMENTS} table elements (all its tables together)"
        ))),
        Ok(Err(e)) => match (host_limit(&e, limits), e.downcast_ref::<Trap>()) {
            (Some(why), _) => Err(limit(why)),
            (None, Some(trap)) => Err((
                CallOutcome::Trap,
                CallError::Failed(format!("the connector trapped ({trap}){}", state.last_words())),
            )),
            (None, None) => Err((CallOutcome::Error, CallError::Failed(state.redact(&first_line(&e))))),
        },
    }
}

/// The limits wasmtime enforces for the host, said in the host's terms.
/// wasmtime reports the transfer and randomness limits only as text, so
/// that text is matched (the e2e tests notice if a new wasmtime changes it).
fn host_limit(e: &wasmtime::Error, limits: &RuntimeLimits) -> Option<String> {
    if matches!(e.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full)) {
        return Some(format!(
            "the connector held more than {MAX_RESOURCES} host resources (streams, pollables) at once"
        ));
    }
    let text = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        return Some(format!(
            "the connector handed the host more than {} at once (its answer, an outbound request or a log line); \
             the limit is --plugin-max-answer-bytes",
            bytes_text(limits.max_answer_bytes as u64)
        ));
    }
    if text.contains("requested len") && text.contains("exceeds limit") {
        return Some(format!(
            "the connector asked for more than {} of randomness at once",
            bytes_text(MAX_RANDOM_BYTES)
        ));
    }
    None
}

fn bytes_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// The values of the credentials' secret fields.
fn secret_values(plugin: &Connector, credentials: &Credentials) -> Vec<SecretString> {
    plugin
        .manifest
        .fields
        .iter()
        .filter(|f| f.kind == FieldKind::Secret)
        .filter_map(|f| credentials.get(&f.key))
        .map(|s| SecretString::from(s.to_string()))
        .collect()
}

/// The header the manifest's credential presentation makes of
/// `credentials`, bound to `base_url`'s origin.
pub fn credential_header(
    manifest: &Manifest,
    credentials: &Credentials,
    base_url: &Url,
) -> Result<CredentialHeader, String> {
    let presentation = manifest
        .credential_presentation
        .as_ref()
        .ok_or_else(|| format!("the connector {} declares no credential presentation", manifest.id))?;
    let mut value = String::new();
    let mut used = Vec::new();
    for part in template_parts(&presentation.value)? {
        match part {
            TemplatePart::Text(text) => value.push_str(text),
            TemplatePart::Key(key) => {
                let field_value =
                    credentials.get(key).ok_or_else(|| format!("the credential field {key:?} is empty"))?;
                value.push_str(field_value);
                used.push(SecretString::from(field_value.to_string()));
            }
        }
    }
    CredentialHeader::new(base_url, &presentation.header, &SecretString::from(value), used)
}

/// The IETF `RateLimit-Remaining` / `RateLimit-Reset` header fields, which
/// providers such as GitLab send. A reset larger than a day of seconds is a Unix time, else a
/// delay.
fn rate_budget(headers: &[(String, String)]) -> Option<RateBudget> {
    let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim());
    let remaining = get("ratelimit-remaining")?.parse().ok()?;
    let reset_at = get("ratelimit-reset")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|v| if v > 86_400 { v } else { time::OffsetDateTime::now_utc().unix_timestamp() + v });
    Some(RateBudget { remaining, reset_at })
}

/// A credential presentation template split into literal text and `{key}`
/// placeholders, in order.
enum TemplatePart<'a> {
    Text(&'a str),
    Key(&'a str),
}

fn template_parts(template: &str) -> Result<Vec<TemplatePart<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close =
            rest[open..].find('}').map(|c| open + c).ok_or("credential presentation value has an unclosed {")?;
        parts.push(TemplatePart::Text(&rest[..open]));
        parts.push(TemplatePart::Key(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    parts.push(TemplatePart::Text(rest));
    Ok(parts)
}

fn compile_record_schemas(m: &Manifest) -> Result<BTreeMap<String, jsonschema::Validator>, String> {
    m.sync_models
        .iter()
        .map(|s| {
            jsonschema::validator_for(&s.record_schema)
                .map(|v| (s.name.clone(), v))
                .map_err(|e| format!("the record schema of sync model {:?} is not a usable JSON Schema: {e}", s.name))
        })
        .collect()
}

fn compile_action_schemas(m: &Manifest) -> Result<BTreeMap<String, ActionSchemas>, String> {
    let compile = |what: String, schema: &serde_json::Value| {
        jsonschema::validator_for(schema).map_err(|e| format!("{what} is not a usable JSON Schema: {e}"))
    };
    m.actions
        .iter()
        .map(|a| {
            let input = compile(format!("the input schema of action {:?}", a.name), &a.input_schema)?;
            let output = compile(format!("the output schema of action {:?}", a.name), &a.output_schema)?;
            Ok((a.name.clone(), ActionSchemas { input, output }))
        })
        .collect()
}

fn base_url_text(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// The error on one line, whole: wasmtime's messages run over several
/// lines (`expected=[\n 0x0, …]`), and a first line alone stops mid-sentence.
fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.replace("[ ", "[").replace(" ]", "]");
    if text.chars().count() > 500 { text.chars().take(499).chain(['…']).collect() } else { text }
}

/// Why `bytes` did not compile as a component, saying what to do when it
/// is a core module (a build for wasm32-unknown-unknown or wasm32-wasip1).
fn not_a_component(bytes: &[u8], e: &wasmtime::Error) -> String {
    // Both start with `\0asm`; a core module's version is 1, a component's
    // layer field is 1.
    if bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
        return "it is a core WebAssembly module, not a component: build the connector for wasm32-wasip2 \
                (`cargo build --release --target wasm32-wasip2`), which links a component"
            .into();
    }
    first_line(e)
}

fn placeholder_manifest() -> Manifest {
    Manifest {
        id: String::new(),
        name: String::new(),
        vendor: String::new(),
        auth_method: model::AuthMethod::PersonalAccessToken,
        description: String::new(),
        notes: Vec::new(),
        fields: Vec::new(),
        required_scopes: Vec::new(),
        required_scopes_rule: model::ScopeRule::AllOf,
        version: String::new(),
        oauth: None,
        credential_presentation: None,
        actions: Vec::new(),
        sync_models: Vec::new(),
        inbound_webhook: None,
    }
}

/// What the host relies on: a usable id, a semver version, unique field
/// keys, defaults that fit their kind. Every problem is reported at once,
/// joined with "; ".
pub fn validate_manifest(m: &Manifest) -> Result<(), String> {
    let problems = manifest_problems(m);
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// Every way `m` breaks the host's rules, in manifest order.
pub fn manifest_problems(m: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    let id_ok = !m.id.is_empty()
        && m.id.len() <= 64
        && m.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !m.id.starts_with('-');
    if !id_ok {
        problems.push(format!("id {:?} must be 1-64 lowercase letters, digits or dashes", m.id));
    }
    if let Err(e) = semver::Version::parse(&m.version) {
        problems.push(format!("version {:?} is not a semantic version such as \"1.2.0\" ({e})", m.version));
    }
    if m.fields.is_empty() {
        problems.push("it declares no credential fields".into());
    }
    let mut keys = std::collections::BTreeSet::new();
    for f in &m.fields {
        if f.key.is_empty() || !f.key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            problems.push(format!("field key {:?} must be letters, digits or underscores", f.key));
        }
        if !keys.insert(f.key.as_str()) {
            problems.push(format!("field key {:?} appears twice", f.key));
        }
        if f.kind == FieldKind::Url
            && let Some(d) = &f.default
            && !(d.starts_with("https://") || d.starts_with("http://"))
        {
            problems.push(format!("default of url field {:?} is not an http(s) URL", f.key));
        }
        if f.kind == FieldKind::Secret && f.default.is_some() {
            problems.push(format!("secret field {:?} must not have a default", f.key));
        }
    }
    let mut scopes = std::collections::BTreeSet::new();
    for scope in &m.required_scopes {
        if scope.trim().is_empty() || scope.contains(char::is_whitespace) {
            problems.push(format!("required scope {scope:?} must be one word"));
        }
        if !scopes.insert(scope.as_str()) {
            problems.push(format!("required scope {scope:?} is listed twice"));
        }
    }
    if m.fields.iter().filter(|f| f.kind == FieldKind::Url).count() > 1 {
        problems.push("at most one url field is supported".into());
    }
    if let Some(o) = &m.oauth {
        let kind_of = |key: &str| m.fields.iter().find(|f| f.key == key).map(|f| f.kind);
        if kind_of(&o.url_field) != Some(FieldKind::Url) {
            problems.push(format!("oauth.url_field {:?} is not a url field", o.url_field));
        }
        if kind_of(&o.token_field) != Some(FieldKind::Secret) {
            problems.push(format!("oauth.token_field {:?} is not a secret field", o.token_field));
        }
        for path in [&o.authorize_path, &o.token_path] {
            if !path.starts_with('/') || path.contains(['?', '#']) {
                problems.push(format!("oauth endpoint {path:?} must be a path starting with /"));
            }
        }
    }
    if let Some(p) = &m.credential_presentation
        && let Err(why) = validate_presentation(m, p)
    {
        problems.push(why);
    }
    let mut names = std::collections::BTreeSet::new();
    for a in &m.actions {
        let ok = !a.name.is_empty()
            && a.name.len() <= 64
            && a.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            problems.push(format!("action name {:?} must be 1-64 lowercase letters, digits or dashes", a.name));
        }
        if !names.insert(a.name.as_str()) {
            problems.push(format!("action {:?} is listed twice", a.name));
        }
    }
    if let Some(w) = &m.inbound_webhook {
        for header in
            [Some(&w.token_header), Some(&w.event_header), w.idempotency_header.as_ref()].into_iter().flatten()
        {
            if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
                problems.push(format!("inbound webhook header {header:?} is not a header name"));
            }
        }
        if let Some((event, model)) = w.events.iter().find(|(_, model)| !m.sync_models.iter().any(|s| &s.name == model))
        {
            problems.push(format!("inbound webhook event {event:?} names {model:?}, which is not a sync model"));
        }
    }
    if !m.actions.is_empty() && m.credential_presentation.is_none() {
        problems
            .push("it lists actions but declares no credential presentation, so they could not authenticate".into());
    }
    let mut models = std::collections::BTreeSet::new();
    for s in &m.sync_models {
        let ok = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            problems
                .push(format!("sync model name {:?} must be 1-64 lowercase letters, digits or underscores", s.name));
        }
        if !models.insert(s.name.as_str()) {
            problems.push(format!("sync model {:?} is listed twice", s.name));
        }
    }
    problems
}

/// The header must be one the host may set, and the template may only name
/// declared fields: a presentation is how a secret leaves the host.
fn validate_presentation(m: &Manifest, p: &model::CredentialPresentation) -> Result<(), String> {
    let header = p.header.to_ascii_lowercase();
    let is_token = !header.is_empty() && header.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !is_token || ["host", "content-length", "transfer-encoding", "connection", "cookie", "te"].contains(&&*header) {
        return Err(format!("credential presentation header {:?} is not a header the host may set", p.header));
    }
    let keys: Vec<&str> = template_parts(&p.value)?
        .into_iter()
        .filter_map(|part| match part {
            TemplatePart::Key(key) => Some(key),
            TemplatePart::Text(_) => None,
        })
        .collect();
    if let Some(key) = keys.iter().find(|key| !m.fields.iter().any(|f| &f.key == *key && f.kind == FieldKind::Secret)) {
        return Err(format!("credential presentation names {key:?}, which is not a secret field"));
    }
    if keys.is_empty() {
        return Err("credential presentation value names no secret field (e.g. \"Bearer {access_token}\")".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{HttpLimits, Policy};

    #[test]
    fn work_on_every_core_answers_in_the_items_order() {
        // The first item waits until another thread has taken an item, so
        // the work is known to run in parallel and to finish out of order.
        let first = std::thread::current().id();
        let elsewhere = std::sync::atomic::AtomicBool::new(false);
        let parallel = std::thread::available_parallelism().map_or(1, |n| n.get()) > 1;
        let items: Vec<u64> = (0..40).collect();
        let answers = on_every_core(items, |i| {
            let me = std::thread::current().id();
            if i == 0 && parallel {
                let until = Instant::now() + Duration::from_secs(20);
                while !elsewhere.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                elsewhere.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            (i, me)
        });
        assert_eq!(answers.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
        if parallel {
            let threads: std::collections::BTreeSet<String> = answers.iter().map(|(_, id)| format!("{id:?}")).collect();
            assert!(threads.len() > 1, "the work ran on one thread: {threads:?}");
            assert!(answers.iter().all(|(_, id)| *id != first), "scoped threads, not the caller's");
        }
        assert!(on_every_core(Vec::<u8>::new(), |i| i).is_empty());
        assert_eq!(on_every_core(vec![7], |i| i * 2), vec![14]);
    }

    fn runtime(memory_mib: usize) -> Runtime {
        let policy = Policy::default();
        let http = HttpLimits { timeout: Duration::from_secs(1), max_response_bytes: 1024, max_requests_per_call: 1 };
        let egress = Arc::new(Egress::new(policy, http, None, None).unwrap());
        let limits = RuntimeLimits {
            call_timeout: Duration::from_secs(5),
            memory_bytes: memory_mib << 20,
            concurrent_calls: 2,
            keep_resident_bytes: 0,
            max_call_wait: Duration::from_secs(1),
            max_answer_bytes: 1 << 20,
            log: guest_log::LogBudget { lines: 10, bytes: 1000 },
        };
        Runtime::new(egress, limits).unwrap()
    }

    /// A component may hold several linear memories (one per core
    /// instance); the cap is on all of them together, not on each.
    #[tokio::test]
    async fn linear_memories_are_capped_together() {
        let runtime = runtime(64);
        let grow_funcs: String = ["a", "b", "c", "d"]
            .iter()
            .map(|m| {
                format!(
                    "(core instance ${m} (instantiate $m))
                     (func (export \"grow-{m}\") (param \"pages\" u32) (result s32) (canon lift (core func ${m} \"grow\")))"
                )
            })
            .collect();
        let wat = format!(
            "(component
               (core module $m
                 (memory 0)
                 (func (export \"grow\") (param i32) (result i32) (memory.grow (local.get 0))))
               {grow_funcs})"
        );
        let component = Component::new(&runtime.engine, wat::parse_str(&wat).unwrap()).unwrap();
        let egress = CallEgress::new(runtime.egress.clone(), &[], None);
        let mut store = runtime.new_store("test", egress, Vec::new(), Instant::now() + Duration::from_secs(5));
        let instance = Linker::new(&runtime.engine).instantiate_async(&mut store, &component).await.unwrap();
        let twenty_mib = ((20 << 20) / WASM_PAGE_BYTES) as u32;
        // 20 MiB each: three fit in 64 MiB, the fourth would make 80.
        for (name, previous_pages) in [("grow-a", 0), ("grow-b", 0), ("grow-c", 0), ("grow-d", -1)] {
            let grow = instance.get_typed_func::<(u32,), (i32,)>(&mut store, name).unwrap();
            let (answer,) = grow.call_async(&mut store, (twenty_mib,)).await.unwrap();
            assert_eq!(answer, previous_pages, "{name}");
        }
        assert!(store.data().memory.denied);
        // What is left is still usable.
        let grow = instance.get_typed_func::<(u32,), (i32,)>(&mut store, "grow-d").unwrap();
        let (answer,) = grow.call_async(&mut store, (twenty_mib / 5,)).await.unwrap();
        assert_eq!(answer, 0, "4 MiB more fits");
    }

    /// Tables too: their elements are counted across all of them (the pool
    /// caps each table at 20,000).
    #[tokio::test]
    async fn table_elements_are_capped_together() {
        let runtime = runtime(64);
        let names = ["a", "b", "c", "d", "e", "f"];
        let grow_funcs: String = names
            .iter()
            .map(|t| {
                format!(
                    "(core instance ${t} (instantiate $m))
                     (func (export \"grow-{t}\") (param \"n\" u32) (result s32) (canon lift (core func ${t} \"grow\")))"
                )
            })
            .collect();
        let wat = format!(
            "(component
               (core module $m
                 (table 0 funcref)
                 (func (export \"grow\") (param i32) (result i32) (table.grow (ref.null func) (local.get 0))))
               {grow_funcs})"
        );
        let component = Component::new(&runtime.engine, wat::parse_str(&wat).unwrap()).unwrap();
        let egress = CallEgress::new(runtime.egress.clone(), &[], None);
        let mut store = runtime.new_store("test", egress, Vec::new(), Instant::now() + Duration::from_secs(5));
        let instance = Linker::new(&runtime.engine).instantiate_async(&mut store, &component).await.unwrap();
        // 18,000 each: five fit in 100,000, the sixth would make 108,000.
        for (i, name) in names.iter().enumerate() {
            let grow = instance.get_typed_func::<(u32,), (i32,)>(&mut store, &format!("grow-{name}")).unwrap();
            let (answer,) = grow.call_async(&mut store, (18_000,)).await.unwrap();
            assert_eq!(answer, if i < 5 { 0 } else { -1 }, "table {name}");
        }
        assert!(store.data().memory.tables_denied);
    }

    fn manifest() -> Manifest {
        Manifest {
            id: "acme".into(),
            version: "1.0.0".into(),
            fields: vec![
                model::Field {
                    key: "token".into(),
                    label: "Token".into(),
                    kind: FieldKind::Secret,
                    required: true,
                    default: None,
                    placeholder: None,
                    help: None,
                },
                model::Field {
                    key: "base_url".into(),
                    label: "Base URL".into(),
                    kind: FieldKind::Url,
                    required: false,
                    default: Some("https://acme.example".into()),
                    placeholder: None,
                    help: None,
                },
            ],
            credential_presentation: Some(model::CredentialPresentation {
                header: "authorization".into(),
                value: "Bearer {token}".into(),
            }),
            ..placeholder_manifest()
        }
    }

    fn presenting(header: &str, value: &str) -> Manifest {
        Manifest {
            credential_presentation: Some(model::CredentialPresentation { header: header.into(), value: value.into() }),
            ..manifest()
        }
    }

    #[test]
    fn a_presentation_may_only_name_secret_fields_in_a_settable_header() {
        assert!(validate_manifest(&manifest()).is_ok());
        for (header, value) in [
            ("authorization", "Bearer {base_url}"),
            ("authorization", "Bearer {nope}"),
            ("authorization", "Bearer static"),
            ("authorization", "Bearer {token"),
            ("host", "{token}"),
            ("content-length", "{token}"),
            ("bad header", "{token}"),
        ] {
            assert!(validate_manifest(&presenting(header, value)).is_err(), "{header}: {value}");
        }
    }

    #[test]
    fn the_presentation_renders_the_stored_secret_for_its_origin_only() {
        let mut credentials = Credentials::default();
        credentials.insert("token".into(), "acme-secret-0123456789".into());
        let base = Url::parse("https://acme.example/api").unwrap();
        let header = credential_header(&manifest(), &credentials, &base).unwrap();
        assert_eq!(header.header_name().as_str(), "authorization");
        assert!(!format!("{header:?}").contains("acme-secret"), "{header:?}");
        let mut echoed = b"{\"authorization\":\"Bearer acme-secret-0123456789\"}".to_vec();
        header.scrub(&mut echoed);
        assert_eq!(echoed, b"{\"authorization\":\"Bearer [redacted]\"}");
        assert!(credential_header(&manifest(), &Credentials::default(), &base).is_err());
    }

    #[test]
    fn last_words_keep_the_error_and_skip_javascript_stack_frames() {
        let rust = "thread '<unnamed>' panicked at src/lib.rs:9:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(last_words_of(rust).unwrap(), "thread '<unnamed>' panicked at src/lib.rs:9:5: boom");
        let js = "Error: boom in js\nverify@connector.js:12:11\nexport_connector_0_3_0$verify@/tmp/x/sources/initializer.js:1150:17\n\nRedirecting call to abort() to mozalloc_abort\n";
        assert_eq!(last_words_of(js).unwrap(), "Error: boom in js");
        assert_eq!(last_words_of("\n\n"), None);
    }

    #[test]
    fn every_problem_is_reported_at_once_and_versions_are_semver() {
        let broken = Manifest {
            id: "Bad Id".into(),
            version: "not-semver".into(),
            credential_presentation: None,
            fields: vec![manifest().fields[0].clone(), manifest().fields[0].clone()],
            ..manifest()
        };
        let problems = manifest_problems(&broken);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("id \"Bad Id\""), "{problems:?}");
        assert!(problems[1].contains("\"not-semver\" is not a semantic version"), "{problems:?}");
        assert!(problems[2].contains("appears twice"), "{problems:?}");
        for ok in ["0.1.0", "1.2.3-beta.1+build.5"] {
            assert!(manifest_problems(&Manifest { version: ok.into(), ..manifest() }).is_empty(), "{ok}");
        }
        for bad in ["1.2", "v1.2.3", ""] {
            assert_eq!(manifest_problems(&Manifest { version: bad.into(), ..manifest() }).len(), 1, "{bad}");
        }
    }

    #[test]
    fn actions_need_a_presentation_and_unique_names() {
        let action = |name: &str| model::ActionDefinition {
            name: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
            output_schema: serde_json::json!({"type": "object"}),
        };
        let ok = Manifest { actions: vec![action("create-issue")], ..manifest() };
        assert!(validate_manifest(&ok).is_ok());
        let twice = Manifest { actions: vec![action("a"), action("a")], ..manifest() };
        assert!(validate_manifest(&twice).is_err());
        let bad_name = Manifest { actions: vec![action("Create Issue")], ..manifest() };
        assert!(validate_manifest(&bad_name).is_err());
        let no_presentation = Manifest { actions: vec![action("a")], credential_presentation: None, ..manifest() };
        assert!(validate_manifest(&no_presentation).is_err());
        let bad_schema = Manifest {
            actions: vec![model::ActionDefinition { input_schema: serde_json::json!({"type": 7}), ..action("a") }],
            ..manifest()
        };
        assert!(compile_action_schemas(&bad_schema).is_err());
    }
}
