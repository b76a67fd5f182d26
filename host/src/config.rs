//! Command line and environment configuration: every knob of `gatehouse`
//! lives here, with the defaults the README documents.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about = "Self-hosted integrations host with sandboxed WebAssembly connectors")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Level of what connectors log (the target `gatehouse::connector`),
    /// whatever GATEHOUSE_LOG says of the rest: off, error, warn, info,
    /// debug or trace.
    #[arg(long, global = true, env = "GATEHOUSE_LOG_CONNECTORS", value_name = "LEVEL")]
    pub log_connectors: Option<tracing_subscriber::filter::LevelFilter>,

    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object a line) for log shippers.
    #[arg(long, global = true, env = "GATEHOUSE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where `plugins validate` and `plugins test` keep compiled components.
#[derive(Debug, Clone, Args)]
pub struct CliCache {
    /// Directory of compiled components, so checking the same file again
    /// skips compiling it [default: $XDG_CACHE_HOME/gatehouse or ~/.cache/gatehouse].
    #[arg(long, env = "GATEHOUSE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time; keep nothing.
    #[arg(long)]
    pub no_cache: bool,
}

impl CliCache {
    /// The directory to use, if any.
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        let home_cache = || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"));
        let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(home_cache);
        self.cache_dir.clone().or_else(|| base.map(|b| b.join("gatehouse")))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP API.
    Serve(Box<ServeConfig>),
    /// Inspect and check connector components.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// The master key: rotate it, or check that it opens every stored secret.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// API keys with roles: create, list, revoke (on the data dir, with or
    /// without a server running).
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key; it is printed once (only its SHA-256 is stored).
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// What the key is for, e.g. billing-app (unique among keys in use).
        #[arg(long)]
        name: String,
        /// admin (everything), operator (connect, verify, rotate, disconnect,
        /// actions, syncs) or reader (read integrations, syncs, records;
        /// proxy GET).
        #[arg(long)]
        role: crate::store::api_keys::Role,
    },
    /// List the keys (never the keys themselves), revoked ones included.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key, by id or name: refused from the next request on.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id, or the name of a key in use.
        key: String,
    },
}

/// The database a command works on.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
    pub data_dir: PathBuf,
    #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every stored secret under a new master key. Stop the server
    /// first; an interrupted rotation finishes when run again.
    Rotate {
        #[command(flatten)]
        store: KeyStoreArgs,
        /// Take the new key from this file (base64 of 32 bytes); a missing
        /// file is created with a new random key. Needed when the key comes
        /// from GATEHOUSE_MASTER_KEY. [default: a new random key]
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<PathBuf>,
    },
    /// Show where the master key is read from, its key ids, and how many
    /// stored secrets each key seals; fails if any does not open.
    Status {
        #[command(flatten)]
        store: KeyStoreArgs,
    },
}

/// The data a `keys` command works on: the database and its key.
#[derive(Debug, Clone, Args)]
pub struct KeyStoreArgs {
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
    pub data_dir: PathBuf,
    #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub key: KeyConfig,
}

/// Where the master key lives. `GATEHOUSE_MASTER_KEY` (base64 of 32 bytes,
/// read from the environment only so it never shows in the process list)
/// replaces the file when set.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyConfig {
    /// The master key file: base64 keys, one a line; the first seals, any
    /// others (left by an unfinished rotation) only open. Created 0600, in a
    /// 0700 directory, on the first start. Keep it outside the data dir.
    /// [default: $XDG_CONFIG_HOME/gatehouse/master.key, else
    /// ~/.config/gatehouse/master.key]
    #[arg(long, env = "GATEHOUSE_MASTER_KEY_FILE", value_name = "PATH")]
    pub master_key_file: Option<PathBuf>,

    /// Accept a master key file inside the data dir, such as the
    /// <data-dir>/master.key of earlier versions (a copy of the data dir
    /// then opens every stored secret).
    #[arg(long, env = "GATEHOUSE_ALLOW_KEY_IN_DATA_DIR")]
    pub allow_key_in_data_dir: bool,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the connectors `serve` would load (first-party and --plugins-dir).
    List {
        #[arg(long, env = "GATEHOUSE_PLUGINS_DIR")]
        plugins_dir: Option<PathBuf>,
        #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
        data_dir: PathBuf,
    },
    /// Print a component's manifest, WIT version and SHA-256.
    Inspect { file: PathBuf },
    /// Check that a component implements the `provider` world and that its
    /// manifest follows the host's rules (every problem is listed).
    Validate {
        file: PathBuf,
        #[command(flatten)]
        cache: CliCache,
    },
    /// Create a connector project: source, native tests (scripted upstream,
    /// captured logs) and build settings, ready to build outside this
    /// repository.
    New {
        /// The connector's id, also the directory name: lowercase letters,
        /// digits and dashes.
        name: String,
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// Where to create it [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust: depend on the SDK at this path instead of a copy of it in
        /// vendor/ (e.g. a checkout's plugins/sdk).
        #[arg(long, env = "GATEHOUSE_SDK_PATH")]
        sdk_path: Option<PathBuf>,
    },
    /// Call `verify` once with the given credentials and print the result.
    Test {
        file: PathBuf,
        /// A credential as key=value; repeat for each field.
        #[arg(long = "credentials", value_name = "KEY=VALUE", num_args = 1.., value_parser = parse_pair)]
        credentials: Vec<(String, String)>,
        /// Allow loopback, private and link-local targets (e.g. a local fake upstream).
        #[arg(long)]
        allow_private_networks: bool,
        /// Open one network (a CIDR or an address); repeatable.
        #[arg(long = "allow-network", value_name = "CIDR", value_parser = crate::egress::parse_network)]
        allow_networks: Vec<ipnet::IpNet>,
        /// Allow plain-http base URLs.
        #[arg(long)]
        allow_http: bool,
        /// Reach the provider through this HTTP proxy (CONNECT).
        #[arg(long, value_name = "URL", env = "GATEHOUSE_EGRESS_PROXY", hide_env_values = true)]
        egress_proxy: Option<crate::egress::EgressProxy>,
        #[command(flatten)]
        cache: CliCache,
    },
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| "expected KEY=VALUE".to_string())
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "GATEHOUSE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the SQLite file and the compiled-component cache
    /// (created 0700).
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub keys: KeyConfig,

    /// Directory of extra `.wasm` connector components [default: <data-dir>/plugins].
    #[arg(long, env = "GATEHOUSE_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,

    /// How often to rescan the plugins dir for added, replaced or removed
    /// components; 0 turns it off (POST /api/v1/plugins/reload still works).
    #[arg(long, env = "GATEHOUSE_PLUGINS_POLL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub plugins_poll: Duration,

    /// Do not keep compiled components in <data-dir>/cache (every start
    /// compiles them again).
    #[arg(long, env = "GATEHOUSE_NO_COMPONENT_CACHE")]
    pub no_component_cache: bool,

    /// Database URL: `sqlite:PATH`, or `postgres://user:password@host/db`
    /// for a database several processes share [default: SQLite file in
    /// the data dir].
    #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Database connections this process keeps at most.
    #[arg(long, env = "GATEHOUSE_DATABASE_MAX_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// How long a request waits for a database connection (all busy, or
    /// the database down) before it answers 503 database_unavailable.
    #[arg(long, env = "GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_acquire_timeout: Duration,

    /// PostgreSQL: statements running longer are cancelled (and answered
    /// 503 database_unavailable).
    #[arg(long, env = "GATEHOUSE_DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub database_statement_timeout: Duration,

    /// Allow connectors to reach loopback, private-use, shared, link-local
    /// and unique-local addresses (all of them; --allow-network opens one
    /// network). Cloud metadata addresses stay refused.
    #[arg(long, env = "GATEHOUSE_ALLOW_PRIVATE_NETWORKS")]
    pub allow_private_networks: bool,

    /// Allow connectors to reach one network that is not on the public
    /// internet: a CIDR such as 10.0.4.0/24, or one address; repeatable
    /// (comma-separated in the environment variable). Cloud metadata and
    /// unroutable addresses stay refused.
    #[arg(
        long = "allow-network",
        value_name = "CIDR",
        env = "GATEHOUSE_ALLOW_NETWORKS",
        value_delimiter = ',',
        value_parser = crate::egress::parse_network
    )]
    pub allow_networks: Vec<ipnet::IpNet>,

    /// Allow plain-http base URLs.
    #[arg(long, env = "GATEHOUSE_ALLOW_HTTP")]
    pub allow_http: bool,

    /// Extra PEM root certificates (e.g. for a self-hosted GitLab).
    #[arg(long, env = "GATEHOUSE_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,

    /// Reach providers through this HTTP proxy, as
    /// http://[user:password@]host:port. Gatehouse resolves and checks the
    /// target itself, then asks the proxy to CONNECT to the checked address;
    /// TLS runs end to end. Without it no proxy is used (HTTP_PROXY and
    /// HTTPS_PROXY are ignored).
    #[arg(long, value_name = "URL", env = "GATEHOUSE_EGRESS_PROXY", hide_env_values = true)]
    pub egress_proxy: Option<crate::egress::EgressProxy>,

    #[command(flatten)]
    pub limits: SandboxLimits,

    #[command(flatten)]
    pub oauth: OAuthConfig,

    #[command(flatten)]
    pub proxy: ProxyConfig,

    #[command(flatten)]
    pub syncs: SyncConfig,

    #[command(flatten)]
    pub clients: ClientConfig,

    #[command(flatten)]
    pub operations: OperationsConfig,
    #[command(flatten)]
    pub embedding: EmbedConfig,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsMode {
    /// Not served.
    Off,
    /// Without a key, on its own address (--metrics-listen), for a
    /// Prometheus on a private network.
    Public,
    /// On the API's address, to any API key (reader or above).
    Key,
}

/// Metrics, the audit log and the callers' addresses.
#[derive(Debug, Clone, clap::Args)]
pub struct OperationsConfig {
    /// Serve Prometheus metrics at /metrics: off, public (no key, on
    /// --metrics-listen) or key (on the API's address, with an API key).
    #[arg(long, env = "GATEHOUSE_METRICS", value_enum, default_value = "off")]
    pub metrics: MetricsMode,

    /// The address of /metrics with --metrics public, e.g. 127.0.0.1:9090.
    #[arg(long, env = "GATEHOUSE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// How long audit entries are kept; older ones are removed at start
    /// and every hour (0 keeps them for ever).
    #[arg(long, env = "GATEHOUSE_AUDIT_RETENTION", default_value = "90days", value_parser = humantime::parse_duration)]
    pub audit_retention: Duration,

    /// The server is behind a reverse proxy that sets X-Forwarded-For:
    /// the audit log and logs take the caller's address from its last entry.
    /// Without it the peer's address is used (a client could write anything
    /// into the header).
    #[arg(long, env = "GATEHOUSE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
}

impl OperationsConfig {
    /// The metrics listener's address with `--metrics public`; refuses a
    /// combination that would not serve what was asked.
    pub fn metrics_listener(&self) -> anyhow::Result<Option<SocketAddr>> {
        match (self.metrics, self.metrics_listen) {
            (MetricsMode::Public, Some(addr)) => Ok(Some(addr)),
            (MetricsMode::Public, None) => anyhow::bail!(
                "--metrics public serves /metrics without a key on an address of its own: give it with --metrics-listen (e.g. 127.0.0.1:9090)"
            ),
            (_, Some(_)) => anyhow::bail!("--metrics-listen is only used with --metrics public"),
            (_, None) => Ok(None),
        }
    }
}

/// Connect sessions and embedding the settings page in the consuming
/// system's own pages.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedConfig {
    /// An origin allowed to frame the settings page (CSP `frame-ancestors`)
    /// and to receive its `postMessage` events, e.g.
    /// `https://app.example.com`; repeatable. Default: none (the page cannot
    /// be framed).
    #[arg(long = "frame-ancestors", value_name = "ORIGIN", env = "GATEHOUSE_FRAME_ANCESTORS", value_delimiter = ',', value_parser = parse_origin)]
    pub frame_ancestors: Vec<String>,

    /// Lifetime of a connect session when its creator does not say.
    #[arg(long, env = "GATEHOUSE_CONNECT_SESSION_TTL", default_value = "30m", value_parser = humantime::parse_duration)]
    pub connect_session_ttl: Duration,

    /// Longest lifetime a connect session may ask for.
    #[arg(long, env = "GATEHOUSE_CONNECT_SESSION_MAX_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub connect_session_max_ttl: Duration,
}

/// An origin as browsers compare them: scheme, host and port, nothing else.
fn parse_origin(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| format!("{text:?} is not an origin such as https://app.example.com: {e}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "{text:?} is not an origin: give only scheme, host and port, such as https://app.example.com"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// How long API clients may take to send a request: slow or stalled
/// clients are cut instead of holding a connection.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientConfig {
    /// From the first byte of a request to the end of its headers.
    #[arg(long, env = "GATEHOUSE_CLIENT_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub client_header_timeout: Duration,

    /// From the end of the headers to the end of the body (answered 408
    /// `request_timeout`); raise it with --proxy-max-body-bytes for large
    /// uploads over slow links.
    #[arg(long, env = "GATEHOUSE_CLIENT_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub client_body_timeout: Duration,

    /// How long a kept-alive connection may wait for its next request.
    #[arg(long, env = "GATEHOUSE_CLIENT_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub client_idle_timeout: Duration,
}

impl ClientConfig {
    pub fn timeouts(&self) -> crate::server::ClientTimeouts {
        crate::server::ClientTimeouts { header: self.client_header_timeout, idle: self.client_idle_timeout }
    }
}

/// Syncs and outgoing webhooks.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncConfig {
    /// How often this process looks for due syncs and webhook deliveries;
    /// 0 turns syncs off in this process (it still serves the API).
    #[arg(long, env = "GATEHOUSE_SYNC_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub sync_poll: Duration,

    /// Syncs this process runs at once.
    #[arg(long, env = "GATEHOUSE_SYNC_CONCURRENCY", default_value_t = 4)]
    pub sync_concurrency: usize,

    /// A failed sync run is retried after this long (it continues from its
    /// last committed page).
    #[arg(long, env = "GATEHOUSE_SYNC_RETRY", default_value = "5m", value_parser = humantime::parse_duration)]
    pub sync_retry: Duration,

    /// How long a sync's lease lasts without a committed page; after a
    /// crash, another process (or this one restarted) continues the run
    /// once it expires. Keep it above --plugin-timeout.
    #[arg(long, env = "GATEHOUSE_SYNC_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub sync_lease: Duration,

    /// Pause a connection's syncs until the provider's rate limit resets
    /// when its `RateLimit-Remaining` falls to this.
    #[arg(long, env = "GATEHOUSE_SYNC_PAUSE_BELOW_REMAINING", default_value_t = 10)]
    pub sync_pause_below_remaining: u64,

    /// Delay before a failed webhook delivery is retried; each later retry
    /// waits five times longer, 8 attempts in all.
    #[arg(long, env = "GATEHOUSE_WEBHOOK_RETRY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub webhook_retry: Duration,

    /// A connected integration whose token expires within this window is
    /// shown as `expiring`, and webhooks get one `integration.expiring`
    /// event per expiry.
    #[arg(long, env = "GATEHOUSE_EXPIRY_WARNING", default_value = "14days", value_parser = humantime::parse_duration)]
    pub expiry_warning: Duration,

    /// How often this process looks for tokens entering the expiry window
    /// (0 turns the `integration.expiring` events off in this process).
    #[arg(long, env = "GATEHOUSE_EXPIRY_CHECK_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub expiry_check_interval: Duration,
}

/// The authenticated proxy (`/api/v1/integrations/{id}/proxy/{path}`).
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyConfig {
    /// Deadline of one proxied exchange with the provider, body included.
    #[arg(long, env = "GATEHOUSE_PROXY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub proxy_timeout: Duration,

    /// Largest request body the proxy forwards, in bytes.
    #[arg(long, env = "GATEHOUSE_PROXY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub proxy_max_body_bytes: usize,

    /// Longest `Retry-After` the proxy waits out when a caller asks for
    /// retries (`Gatehouse-Retries`); a longer one is answered as is.
    #[arg(long, env = "GATEHOUSE_PROXY_MAX_RETRY_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub proxy_max_retry_wait: Duration,
}

impl ProxyConfig {
    pub fn settings(&self) -> ProxySettings {
        ProxySettings {
            timeout: self.proxy_timeout,
            max_body_bytes: self.proxy_max_body_bytes,
            max_retry_wait: self.proxy_max_retry_wait,
        }
    }
}

/// What the proxy needs of `ProxyConfig`.
#[derive(Debug, Clone, Copy)]
pub struct ProxySettings {
    /// Deadline of one upstream exchange, body included.
    pub timeout: Duration,
    /// Largest request body forwarded.
    pub max_body_bytes: usize,
    /// Longest `Retry-After` the proxy waits out; a longer one is answered.
    pub max_retry_wait: Duration,
}

/// The OAuth 2.0 client: where the provider redirects back to, applications
/// given by configuration, and the timing of states and refreshes.
#[derive(Debug, Clone, clap::Args)]
pub struct OAuthConfig {
    /// The address users' browsers reach this server at; redirect URIs
    /// default to `<public-url>/api/v1/oauth/<provider>/callback`.
    /// Default: `http://<listen>`.
    #[arg(long, env = "GATEHOUSE_PUBLIC_URL")]
    pub public_url: Option<url::Url>,

    /// OAuth applications as a JSON array of
    /// `{"provider","base_url","client_id","client_secret","redirect_uri"?}`,
    /// stored (secret sealed) at start, like `POST /api/v1/oauth-apps`.
    /// Prefer the environment variable or --oauth-apps-file: on the command
    /// line the client secrets are visible to every local user.
    #[arg(long, env = "GATEHOUSE_OAUTH_APPS", hide_env_values = true, conflicts_with = "oauth_apps_file")]
    pub oauth_apps: Option<String>,

    /// A file holding the --oauth-apps JSON; keep it readable by the
    /// server's user only.
    #[arg(long, env = "GATEHOUSE_OAUTH_APPS_FILE", value_name = "PATH")]
    pub oauth_apps_file: Option<PathBuf>,

    /// Whether --oauth-apps came on the command line (set by `main`).
    #[arg(skip)]
    pub oauth_apps_on_command_line: bool,

    /// How long a started authorization may take before its state expires.
    #[arg(long, env = "GATEHOUSE_OAUTH_STATE_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub oauth_state_ttl: Duration,

    /// Refresh an access token this long before it expires.
    #[arg(long, env = "GATEHOUSE_REFRESH_WINDOW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub refresh_window: Duration,

    /// How often the background task looks for tokens to refresh.
    #[arg(long, env = "GATEHOUSE_REFRESH_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub refresh_interval: Duration,
}

impl OAuthConfig {
    /// The configured applications' JSON, from the file or the flag (or its
    /// environment variable). Warns where the secrets are exposed: on the
    /// command line, or in a file other users can read.
    pub fn apps_json(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context;
        if let Some(path) = &self.oauth_apps_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --oauth-apps-file {}", path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                    tracing::warn!(
                        file = %path.display(),
                        "the OAuth applications file can be read by other users; make it readable by the server's user only (chmod 600)"
                    );
                }
            }
            return Ok(Some(text));
        }
        if self.oauth_apps_on_command_line {
            tracing::warn!(
                "--oauth-apps on the command line shows the client secrets to every local user (ps, /proc); give them in GATEHOUSE_OAUTH_APPS or --oauth-apps-file instead"
            );
        }
        Ok(self.oauth_apps.clone())
    }
}

/// Limits applied to every connector call.
#[derive(Debug, Clone, Args)]
pub struct SandboxLimits {
    /// Timeout of one outbound HTTP request, body included.
    #[arg(long, env = "GATEHOUSE_HTTP_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_timeout: Duration,

    /// Deadline of one connector call (CPU and waiting together).
    #[arg(long, env = "GATEHOUSE_PLUGIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub plugin_timeout: Duration,

    /// Linear memory cap of one connector instance (all its memories
    /// together), in MiB.
    #[arg(long, env = "GATEHOUSE_PLUGIN_MEMORY_MIB", default_value_t = 64)]
    pub plugin_memory_mib: u64,

    /// Most data a connector may hand the host at once (its answer, an
    /// outbound request, a log message), in bytes.
    #[arg(long, env = "GATEHOUSE_PLUGIN_MAX_ANSWER_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub plugin_max_answer_bytes: usize,

    /// Log lines one connector call may write; then one line says the
    /// budget is exhausted and the rest are dropped.
    #[arg(long, env = "GATEHOUSE_PLUGIN_LOG_LINES", default_value_t = 100)]
    pub plugin_log_lines: u32,

    /// Bytes of log one connector call may write (messages and fields).
    #[arg(long, env = "GATEHOUSE_PLUGIN_LOG_BYTES", default_value_t = 32 * 1024)]
    pub plugin_log_bytes: usize,

    /// Outbound requests one connector call may make.
    #[arg(long, env = "GATEHOUSE_MAX_OUTBOUND_REQUESTS", default_value_t = 16)]
    pub max_outbound_requests: u32,

    /// Largest upstream response body a connector may read, in bytes.
    #[arg(long, env = "GATEHOUSE_MAX_RESPONSE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_response_bytes: u64,

    /// Connector calls running at once; more wait for a slot.
    #[arg(long, env = "GATEHOUSE_MAX_CONCURRENT_CALLS", default_value_t = 128)]
    pub max_concurrent_calls: u32,

    /// How long a request waits for a call slot when all are taken; then it
    /// is answered 503 `host_busy` with `Retry-After`.
    #[arg(long, env = "GATEHOUSE_MAX_CALL_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_call_wait: Duration,

    /// Memory of each pooled connector slot kept mapped between calls and
    /// reset in place, in KiB (0: give it all back to the OS after every
    /// call, slower under load). At most one slot per concurrent call.
    #[arg(long, env = "GATEHOUSE_PLUGIN_KEEP_RESIDENT_KIB", default_value_t = 1024)]
    pub plugin_keep_resident_kib: u64,

    /// Largest accepted API request body, in bytes.
    #[arg(long, env = "GATEHOUSE_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            http_timeout: Duration::from_secs(10),
            plugin_timeout: Duration::from_secs(30),
            plugin_memory_mib: 64,
            plugin_max_answer_bytes: 16 * 1024 * 1024,
            plugin_log_lines: 100,
            plugin_log_bytes: 32 * 1024,
            max_outbound_requests: 16,
            max_response_bytes: 4 * 1024 * 1024,
            max_concurrent_calls: 128,
            max_call_wait: Duration::from_secs(5),
            plugin_keep_resident_kib: 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

impl ServeConfig {
    pub fn policy(&self) -> crate::egress::Policy {
        crate::egress::Policy {
            allow_private_networks: self.allow_private_networks,
            allow_http: self.allow_http,
            allow_networks: self.allow_networks.clone(),
        }
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir.clone().unwrap_or_else(|| self.data_dir.join("plugins"))
    }
}
