//! `gatehouse`: the integrations host. `serve` runs the HTTP API; `plugins`
//! inspects connector components; `keys` rotates and checks the master key.

#![allow(clippy::result_large_err)]

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use secrecy::ExposeSecret;

use gatehouse::{
    api, build_runtime, builtin,
    config::{
        ApiKeysCommand, Cli, Command, KeyStoreArgs, KeysCommand, LogFormat, PluginsCommand, SandboxLimits, ServeConfig,
        StoreArgs,
    },
    context, crypto,
    egress::Policy,
    files, keys, registry, scaffold, server,
    services::{self, Services, Settings, Verifier, syncs::SyncSettings},
    store,
};

// glibc's malloc serialises on its arena locks when many tasks allocate
// request buffers at once; the benchmark showed that contention (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Serve(config) = &mut cli.command {
        let source = matches.subcommand_matches("serve").and_then(|m| m.value_source("oauth_apps"));
        config.oauth.oauth_apps_on_command_line = source == Some(clap::parser::ValueSource::CommandLine);
    }
    init_tracing(cli.log_connectors, cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => serve(*config).await,
            Command::Plugins(cmd) => plugins_command(cmd).await,
            Command::Keys(cmd) => keys_command(cmd).await,
            Command::ApiKeys(cmd) => context::acting(context::Actor::cli(), api_keys_command(cmd)).await,
        }
    });
    // A DNS lookup the system resolver is still waiting on (a blocking
    // thread the runtime cannot cancel) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// GATEHOUSE_LOG filters the host's lines (`info` by default);
/// `--log-connectors` sets the level of the connectors' own lines alone, so
/// reading them needs no debug flood from the engine.
fn init_tracing(log_connectors: Option<tracing_subscriber::filter::LevelFilter>, format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt};
    let mut filter = EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if let Some(level) = log_connectors
        && let Ok(directive) = format!("{}={level}", gatehouse::runtime::connector_log::TARGET).parse()
    {
        filter = filter.add_directive(directive);
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // JSON lines keep the event's fields under `fields` (a connector's
    // field named `level` or `target` cannot shadow the line's own) and the
    // request's span (its request_id) under `span`, where a log shipper
    // indexes them.
    match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let shutdown = shutdown_signal().context("cannot handle SIGTERM and SIGINT")?;
    // Bound before anything slow starts and never let go: the address
    // cannot be taken by another process between a check and the serving.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let metrics_listener = match config.operations.metrics_listener()? {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?,
        ),
        None => None,
    };
    let local = listener.local_addr()?;
    let data_dir = &config.data_dir;
    let created = files::create_private_dir(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    if !created && let Ok(Some(mode)) = files::shared_mode(data_dir) {
        tracing::warn!(
            data_dir = %data_dir.display(),
            "the data dir is mode {mode:o}: other local users can list it; `chmod 700` it (new data dirs are created 0700)"
        );
    }
    let _in_use = keys::DataDirLock::shared(data_dir)?;
    let limits = store::PoolOptions {
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_acquire_timeout,
        statement_timeout: config.database_statement_timeout,
    };
    let store = store::Store::open_with(config.database_url.as_deref(), data_dir, &limits).await?;
    tracing::info!(database = store.backend(), "database open, migrations applied");
    let loaded = keys::load(&keys::Locator::from_env(&config.keys, data_dir), &store, keys::Create::IfMissing).await?;
    if loaded.created {
        tracing::info!(
            key_id = loaded.ring.id(),
            file = %loaded.source,
            "created the master key: back it up, apart from the data dir (without it stored secrets cannot be opened)"
        );
    } else {
        tracing::info!(key_id = loaded.ring.id(), from = %loaded.source, "master key loaded");
    }
    if loaded.ring.ids().len() > 1 {
        tracing::warn!(
            keys = ?loaded.ring.ids(),
            "the key file holds more than one key: a rotation did not finish; stop the server and run `gatehouse keys rotate` again"
        );
    }
    for (id, count) in &loaded.missing {
        tracing::warn!(
            key_id = id,
            "{count} stored secrets are sealed with a key that is not loaded: they answer secret_unavailable until it is back (as a line of the key file)"
        );
    }
    let key = loaded.ring;
    let environment_api_key =
        std::env::var("GATEHOUSE_API_KEY").ok().filter(|v| !v.is_empty()).map(|key| crypto::hash_api_key(&key));

    let policy = config.policy();
    let mut runtime =
        build_runtime(&config.limits, policy.clone(), config.ca_bundle.as_deref(), config.egress_proxy.clone())?;
    if !config.no_component_cache {
        runtime = runtime.with_component_cache(data_dir.join("cache"), key.derive(keys::COMPONENT_CACHE_PURPOSE));
    }
    let registry = registry::Registry::load(&runtime, builtin::BUILTIN, config.plugins_dir()).await?;
    let mut oauth_config = config.oauth.clone();
    if oauth_config.public_url.is_none() {
        oauth_config.public_url = Some(format!("http://{local}").parse()?);
    }
    let sync_settings = SyncSettings {
        poll: config.syncs.sync_poll,
        concurrency: config.syncs.sync_concurrency,
        lease: config.syncs.sync_lease,
        retry_after_failure: config.syncs.sync_retry,
        pause_below_remaining: config.syncs.sync_pause_below_remaining,
    };
    if config.syncs.sync_lease <= config.limits.plugin_timeout {
        tracing::warn!(
            "--sync-lease is not longer than --plugin-timeout: a slow page may lose its lease and the run start over from its last page"
        );
    }
    let settings = Settings {
        oauth: oauth_config,
        syncs: sync_settings,
        webhook_retry: config.syncs.webhook_retry,
        proxy: config.proxy.settings(),
        environment_api_key,
        audit_retention: config.operations.audit_retention,
        expiry_warning: config.syncs.expiry_warning,
        sessions: gatehouse::services::sessions::SessionSettings {
            default_ttl: config.embedding.connect_session_ttl,
            max_ttl: config.embedding.connect_session_max_ttl,
        },
    };
    let services = Arc::new(Services::new(runtime, registry, store.clone(), key, policy, settings)?);
    if let Some(key) = services.api_keys.first_start().await? {
        // stdout, not the log: the one time the key is shown.
        println!("Generated API key \"admin\" (role admin; shown only now; store it safely): {}", key.expose_secret());
    }
    tokio::spawn(services.audit.clone().prune_in_background());
    if let Some(apps) = config.oauth.apps_json()?.filter(|s| !s.trim().is_empty()) {
        services.grants.load_configured_apps(&apps).await.context("the configured OAuth applications")?;
    }
    if !config.plugins_poll.is_zero() {
        tokio::spawn(watch_plugins(services.clone(), config.plugins_poll));
    }
    if !config.oauth.refresh_interval.is_zero() {
        tokio::spawn(services.grants.clone().refresh_in_background(config.oauth.refresh_interval));
    }
    if !config.syncs.sync_poll.is_zero() {
        tokio::spawn(services.syncs.clone().run_scheduler());
        tokio::spawn(services.webhooks.clone().deliver_in_background(config.syncs.sync_poll));
    }
    if !config.syncs.expiry_check_interval.is_zero() {
        tokio::spawn(services.expiry.clone().watch(config.syncs.expiry_check_interval));
    }
    let options = api::RouteOptions {
        max_body_bytes: config.limits.max_body_bytes,
        body_timeout: config.clients.client_body_timeout,
        address: api::observe::AddressSource { trust_forwarded_for: config.operations.trust_forwarded_for },
        metrics_behind_key: config.operations.metrics == gatehouse::config::MetricsMode::Key,
        frame_ancestors: config.embedding.frame_ancestors.clone(),
    };
    let app = api::routes(&services, options);
    let timeouts = config.clients.timeouts();
    let metrics_server = async move {
        match metrics_listener {
            Some(listener) => {
                if let Ok(address) = listener.local_addr() {
                    tracing::info!(%address, "metrics listening (no key: keep this address private)");
                }
                server::serve(listener, api::public_metrics(), timeouts, std::future::pending(), Duration::ZERO).await
            }
            None => std::future::pending().await,
        }
    };
    tracing::info!(address = %local, data_dir = %config.data_dir.display(), "gatehouse listening");
    let api_server = server::serve(listener, app, config.clients.timeouts(), shutdown, Duration::from_secs(10));
    // The metrics listener serves until the API's server has stopped.
    tokio::select! {
        () = api_server => {}
        () = metrics_server => {}
    }
    store.close().await;
    tracing::info!("gatehouse stopped");
    Ok(())
}

/// Polls the plugins directory so added, replaced and removed components
/// take effect without a restart (and without a file-watcher dependency).
async fn watch_plugins(services: Arc<Services>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = services.reload_plugins().await {
            tracing::warn!(error = %e, "plugins dir scan failed");
        }
    }
}

/// Registers the signal handlers now and resolves on SIGTERM or SIGINT.
/// Registered before the socket is bound: a signal that comes while the
/// server starts, or right after its first answer, is then a graceful stop
/// rather than the default kill.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let stopped = {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
    };
    #[cfg(not(unix))]
    let stopped = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(async move {
        stopped.await;
        tracing::info!("shutting down");
    })
}

async fn keys_command(cmd: KeysCommand) -> anyhow::Result<()> {
    async fn open(args: &KeyStoreArgs) -> anyhow::Result<store::Store> {
        let dir = &args.data_dir;
        anyhow::ensure!(dir.is_dir(), "the data dir {} does not exist; name it with --data-dir", dir.display());
        Ok(store::Store::open(args.database_url.as_deref(), dir).await?)
    }
    match cmd {
        KeysCommand::Rotate { store: args, new_key_file } => {
            let _alone = args.data_dir.is_dir().then(|| keys::DataDirLock::exclusive(&args.data_dir)).transpose()?;
            let store = open(&args).await?;
            let locator = keys::Locator::from_env(&args.key, &args.data_dir);
            let rotation = keys::rotate(&locator, &store, new_key_file.as_deref()).await;
            store.close().await;
            println!("{}", rotation?);
        }
        KeysCommand::Status { store: args } => {
            let store = open(&args).await?;
            let status = keys::status(&keys::Locator::from_env(&args.key, &args.data_dir), &store).await;
            store.close().await;
            let status = status?;
            println!("{status}");
            if status.unreadable > 0 {
                anyhow::bail!(
                    "{} stored secrets cannot be opened with this master key; restore the key they were sealed with",
                    status.unreadable
                );
            }
        }
    }
    Ok(())
}

async fn api_keys_command(cmd: ApiKeysCommand) -> anyhow::Result<()> {
    async fn open(args: &StoreArgs) -> anyhow::Result<services::api_keys::ApiKeys> {
        let dir = &args.data_dir;
        anyhow::ensure!(dir.is_dir(), "the data dir {} does not exist; name it with --data-dir", dir.display());
        let store = store::Store::open(args.database_url.as_deref(), dir).await?;
        Ok(services::api_keys::ApiKeys::new(store, None))
    }
    let failed = |e: gatehouse::error::AppError| anyhow::anyhow!("{}", e.detail());
    match cmd {
        ApiKeysCommand::Create { store, name, role } => {
            let keys = open(&store).await?;
            let (row, key) = keys.create(&name, role).await.map_err(failed)?;
            println!("created API key {:?} (role {}, id {})", row.name, row.role, row.id);
            println!("key (shown only now; store it safely): {}", key.expose_secret());
        }
        ApiKeysCommand::List { store } => {
            let keys = open(&store).await?;
            println!("id\tname\trole\tcreated\trevoked");
            for k in keys.list().await.map_err(failed)? {
                let revoked = k.revoked_at.map_or_else(|| "-".to_string(), |t| t.to_string());
                println!("{}\t{}\t{}\t{}\t{}", k.id, k.name, k.role, k.created_at, revoked);
            }
        }
        ApiKeysCommand::Revoke { store, key } => {
            let keys = open(&store).await?;
            let Some(found) = keys.find(&key).await.map_err(failed)? else {
                anyhow::bail!("no API key with the id or name {key:?}; `gatehouse api-keys list` shows them");
            };
            let row = keys.revoke(&found.id).await.map_err(failed)?;
            println!("revoked API key {:?} (id {})", row.name, row.id);
        }
    }
    Ok(())
}

async fn plugins_command(cmd: PluginsCommand) -> anyhow::Result<()> {
    if let PluginsCommand::New { name, lang, dir, sdk_path } = &cmd {
        let dir = dir.clone().unwrap_or_else(|| std::path::PathBuf::from(name));
        let request = scaffold::Request { name, lang: *lang, dir: &dir, sdk_path: sdk_path.as_deref() };
        let written = scaffold::create(&request)?;
        println!("created {} ({} files)\nnext: {}", dir.display(), written.len(), scaffold::next_steps(*lang, &dir));
        return Ok(());
    }
    let (policy, proxy) = match &cmd {
        PluginsCommand::Test { allow_private_networks, allow_networks, allow_http, egress_proxy, .. } => (
            Policy {
                allow_private_networks: *allow_private_networks,
                allow_http: *allow_http,
                allow_networks: allow_networks.clone(),
            },
            egress_proxy.clone(),
        ),
        _ => (Policy::default(), None),
    };
    let mut runtime = build_runtime(&SandboxLimits::default(), policy.clone(), None, proxy)?;
    if let PluginsCommand::Test { cache, .. } | PluginsCommand::Validate { cache, .. } = &cmd
        && let Some(dir) = cache.dir()
    {
        runtime = runtime.with_component_cache(dir.join("components"), keys::local_cache_key(&dir)?);
    }
    let runtime = Arc::new(runtime);
    let verifier = Verifier::new(runtime.clone(), policy);
    match cmd {
        PluginsCommand::List { plugins_dir, data_dir } => {
            let dir = plugins_dir.unwrap_or_else(|| data_dir.join("plugins"));
            let registry = registry::Registry::load(&runtime, builtin::BUILTIN, dir).await?;
            for p in registry.all() {
                println!(
                    "{}\t{}\twit {}\t{}\t{}",
                    p.manifest.id, p.manifest.version, p.wit_version, p.source, p.manifest.name
                );
            }
            // What `serve` would refuse, and why, where a person reads it.
            for (file, why) in registry.refused() {
                eprintln!("refused\t{file}\t{why}");
            }
        }
        PluginsCommand::New { .. } => unreachable!("handled above"),
        PluginsCommand::Inspect { file }
        | PluginsCommand::Validate { file, .. }
        | PluginsCommand::Test { file, .. }
            if !file.exists() =>
        {
            anyhow::bail!("{} does not exist", file.display());
        }
        PluginsCommand::Inspect { file } => {
            let bytes = std::fs::read(&file)?;
            let plugin = runtime.load(&file.display().to_string(), &bytes).await?;
            let manifest = api::models::ProviderManifest::from(&plugin);
            let doc = poem_openapi::types::ToJSON::to_json(&manifest).unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        PluginsCommand::Test { file, credentials, .. } => {
            let bytes = std::fs::read(&file)?;
            let plugin = runtime.load(&file.display().to_string(), &bytes).await?;
            let raw = credentials.into_iter().collect();
            let outcome = match verifier.prepare(&plugin, raw) {
                Ok((creds, base_url)) => verifier.verify(&plugin, &creds, base_url.as_ref()).await,
                Err(e) => Err(e),
            };
            // One shape whatever happened: the verification result, with
            // the problem in `error` when the credentials were not verified.
            let result = match outcome {
                Ok(verdict) => api::models::VerificationResult::from(verdict),
                Err(e) => api::models::VerificationResult::failed(e.problem()),
            };
            let valid = result.valid;
            let doc = poem_openapi::types::ToJSON::to_json(&result).unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&doc)?);
            if !valid {
                anyhow::bail!("the credentials were not verified");
            }
        }
        PluginsCommand::Validate { file, .. } => {
            let bytes = std::fs::read(&file)?;
            let plugin = match runtime.load(&file.display().to_string(), &bytes).await {
                Ok(plugin) => plugin,
                Err(gatehouse::runtime::LoadError::InvalidManifest { problems, .. }) => {
                    eprintln!("{}: the manifest breaks {} rule(s) of the host:", file.display(), problems.len());
                    for problem in &problems {
                        eprintln!("  - {problem}");
                    }
                    anyhow::bail!("{} is not a loadable connector", file.display());
                }
                Err(e) => return Err(e.into()),
            };
            println!(
                "{}: ok — implements gatehouse:plugin@{} as {:?} {} (exports {}; {} actions); starts with {} KiB of linear memory",
                file.display(),
                plugin.wit_version,
                plugin.manifest.id,
                plugin.manifest.version,
                plugin.exports().join(", "),
                plugin.manifest.actions.len(),
                plugin.initial_memory_bytes / 1024
            );
            // `runtime` runs with the default limits, so this is the default's answer.
            if !runtime.fits_resident_slot(&plugin) {
                println!(
                    "note: more than the {} KiB a host keeps resident per instance by default, so every call \
                     pays page faults; a smaller stack helps (plugins/README.md, \"Keep the component small\")",
                    runtime.keep_resident_kib()
                );
            }
        }
    }
    Ok(())
}
