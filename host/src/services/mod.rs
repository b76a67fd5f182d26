//! The services: what the API and the CLI ask for, one concern per file,
//! built on the layers below (`runtime`, `store`, `crypto`, `egress`) and
//! never on `api`. Dependencies point one way:
//!
//! ```text
//! mod.rs (wiring) ─> oauth ─> integrations ─> grants ─> shared ─> verifier
//!                    oauth ─> sessions ─> shared
//!                    actions, proxy, syncs ─> integrations
//!                    integrations, syncs, expiry ─> webhooks ─> shared
//!                    api_keys, audit ─> shared
//! ```

pub mod actions;
pub mod api_keys;
pub mod audit;
pub mod expiry;
pub mod grants;
pub mod integrations;
pub mod oauth;
pub mod proxy;
pub mod sessions;
mod shared;
pub mod syncs;
pub mod verifier;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use crate::{
    config::{OAuthConfig, ProxySettings},
    crypto::MasterKey,
    locks::KeyedLocks,
    registry::{Registry, ReloadReport},
    runtime::Runtime,
    store::Store,
};

use shared::Shared;
pub use verifier::{Verdict, Verifier};

/// How the services are tuned (from the command line).
pub struct Settings {
    pub oauth: OAuthConfig,
    pub syncs: syncs::SyncSettings,
    pub webhook_retry: Duration,
    pub proxy: ProxySettings,
    /// SHA-256 of `GATEHOUSE_API_KEY`, when set.
    pub environment_api_key: Option<String>,
    /// How long audit entries are kept (zero: for ever).
    pub audit_retention: Duration,
    /// How long before a credential expires it is shown as `expiring`.
    pub expiry_warning: Duration,
    pub sessions: sessions::SessionSettings,
}

/// Every service, wired together once.
pub struct Services {
    pub integrations: Arc<integrations::Integrations>,
    pub grants: Arc<grants::Grants>,
    pub oauth: Arc<oauth::OAuthFlow>,
    pub actions: Arc<actions::Actions>,
    pub proxy: Arc<proxy::Proxy>,
    pub syncs: Arc<syncs::Syncs>,
    pub webhooks: Arc<webhooks::Webhooks>,
    pub api_keys: Arc<api_keys::ApiKeys>,
    pub audit: Arc<audit::Audit>,
    pub expiry: Arc<expiry::Expiry>,
    pub sessions: Arc<sessions::Sessions>,
}

impl Services {
    pub fn new(
        runtime: Runtime,
        registry: Registry,
        store: Store,
        key: MasterKey,
        policy: crate::egress::Policy,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let runtime = Arc::new(runtime);
        let shared = Arc::new(Shared {
            verifier: Verifier::new(runtime.clone(), policy),
            runtime,
            registry,
            store,
            key,
            public_url: settings.oauth.public_url.clone(),
            locks: KeyedLocks::default(),
        });
        let grants = Arc::new(grants::Grants::new(shared.clone(), settings.oauth));
        let webhooks = Arc::new(webhooks::Webhooks::new(shared.clone(), settings.webhook_retry)?);
        let integrations = Arc::new(integrations::Integrations::new(shared.clone(), grants.clone(), webhooks.clone()));
        let sessions = Arc::new(sessions::Sessions::new(shared.clone(), settings.sessions));
        let oauth =
            Arc::new(oauth::OAuthFlow::new(shared.clone(), grants.clone(), integrations.clone(), sessions.clone()));
        let syncs = Arc::new(syncs::Syncs::new(shared.clone(), integrations.clone(), webhooks.clone(), settings.syncs));
        let expiry = Arc::new(expiry::Expiry::new(shared.clone(), webhooks.clone(), settings.expiry_warning));
        Ok(Self {
            actions: Arc::new(actions::Actions::new(shared.clone(), integrations.clone())),
            proxy: Arc::new(proxy::Proxy::new(shared.clone(), integrations.clone(), settings.proxy)),
            integrations,
            grants,
            oauth,
            syncs,
            webhooks,
            api_keys: Arc::new(api_keys::ApiKeys::new(shared.store.clone(), settings.environment_api_key)),
            audit: Arc::new(audit::Audit::new(shared, settings.audit_retention)),
            expiry,
            sessions,
        })
    }

    /// Re-reads the plugins directory.
    pub async fn reload_plugins(&self) -> anyhow::Result<ReloadReport> {
        self.integrations.reload_plugins().await
    }
}
