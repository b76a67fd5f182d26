//! `gatehouse`: the integrations host. `serve` runs the HTTP API; `plugins`
//! inspects connector components; `keys` rotates and checks the master key.

#![allow(clippy::result_large_err)]

use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use secrecy::ExposeSecret;

use gatehouse::{
    api, build_runtime, builtin,
    config::{Cli, Command, KeyStoreArgs, KeysCommand, PluginsCommand, SandboxLimits, ServeConfig},
    crypto,
    egress::Policy,
    files, keys, registry, scaffold, server,
    services::{Services, Settings, Verifier, syncs::SyncSettings},
    store,
};

// glibc's malloc serialises on its arena locks when many tasks allocate
// request buffers at once; the benchmark showed that contention (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const API_KEY_SETTING: &str = "api_key_sha256";

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Serve(config) = &mut cli.command {
        let source = matches.subcommand_matches("serve").and_then(|m| m.value_source("oauth_apps"));
        config.oauth.oauth_apps_on_command_line = source == Some(clap::parser::ValueSource::CommandLine);
    }
    init_tracing(cli.log_connectors);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => serve(*config).await,
            Command::Plugins(cmd) => plugins_command(cmd).await,
            Command::Keys(cmd) => keys_command(cmd).await,
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
fn init_tracing(log_connectors: Option<tracing_subscriber::filter::LevelFilter>) {
    use tracing_subscriber::{EnvFilter, fmt};
    let mut filter = EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if let Some(level) = log_connectors
        && let Ok(directive) = format!("{}={level}", gatehouse::runtime::connector_log::TARGET).parse()
    {
        filter = filter.add_directive(directive);
    }
    let json = std::env::var("GATEHOUSE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json { builder.json().init() } else { builder.init() }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let shutdown = shutdown_signal().context("cannot handle SIGTERM and SIGINT")?;
    // Bound before anything slow starts and never let go: the address
    // cannot be taken by another process between a check and the serving.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
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
    let store = store::Store::open(config.database_url.as_deref(), data_dir).await?;
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
    let api_key_hash = api_key_hash(&store).await?;

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
        expiry_warning: config.syncs.expiry_warning,
        sessions: gatehouse::services::sessions::SessionSettings {
            default_ttl: config.embedding.connect_session_ttl,
            max_ttl: config.embedding.connect_session_max_ttl,
        },
    };
    let services = Arc::new(Services::new(runtime, registry, store.clone(), key, policy, settings)?);
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
    let app = api::routes(
        &services,
        api_key_hash,
        config.limits.max_body_bytes,
        config.clients.client_body_timeout,
        config.embedding.frame_ancestors.clone(),
    );
    tracing::info!(address = %local, data_dir = %config.data_dir.display(), "gatehouse listening");
    server::serve(listener, app, config.clients.timeouts(), shutdown, std::time::Duration::from_secs(10)).await;
    store.close().await;
    tracing::info!("gatehouse stopped");
    Ok(())
}

/// The API key's hash: from GATEHOUSE_API_KEY when set, else the stored
/// one, else a new key printed once.
async fn api_key_hash(store: &store::Store) -> anyhow::Result<String> {
    if let Some(key) = std::env::var("GATEHOUSE_API_KEY").ok().filter(|v| !v.is_empty()) {
        return Ok(crypto::hash_api_key(&key));
    }
    if let Some(hash) = store.setting(API_KEY_SETTING).await? {
        return Ok(hash);
    }
    let key = crypto::generate_api_key();
    let hash = crypto::hash_api_key(key.expose_secret());
    if store.init_setting(API_KEY_SETTING, &hash).await? {
        // stdout, not the log: the one time the key is shown.
        println!("Generated API key (shown only now; store it safely): {}", key.expose_secret());
        Ok(hash)
    } else {
        Ok(store.setting(API_KEY_SETTING).await?.unwrap_or(hash))
    }
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
