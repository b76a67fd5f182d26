//! The services: what the API and the CLI ask for, one concern per file,
//! built on the layers below (`runtime`, `store`, `crypto`, `egress`) and
//! never on `api`. Dependencies point one way:
//!
//! ```text
//! oauth (authorization flow) ─┐
//! actions, proxy, syncs ──────┼─> integrations ─> grants ─┐
//! webhooks ───────────────────┘                           ├─> Shared (+ verifier)
//!                                                         ┘
//! ```
//!
//! `Shared` holds what every service uses; its fields are private to this
//! layer, so the API reaches the store or the key only through a service.

pub mod actions;
pub mod grants;
pub mod integrations;
pub mod oauth;
pub mod proxy;
pub mod syncs;
pub mod verifier;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use url::Url;

use crate::{
    config::{OAuthConfig, ProxySettings},
    crypto::{Binding, CryptoError, MasterKey},
    error::AppError,
    locks::{KeyedGuard, KeyedLocks},
    registry::{Registry, ReloadReport},
    runtime::{
        Plugin, Runtime,
        model::{Credentials, FieldKind},
    },
    store::{IntegrationRow, Store},
};

pub use verifier::{Verdict, Verifier};

/// The parts every service shares, built once at start.
pub struct Shared {
    runtime: Arc<Runtime>,
    registry: Registry,
    store: Store,
    key: MasterKey,
    verifier: Verifier,
    /// Where browsers and providers reach this server (redirect URIs,
    /// inbound webhook URLs).
    public_url: Option<Url>,
    /// One lock per integration: a refresh, re-verify or rotation runs
    /// alone, so a refresh token is never spent twice by this process.
    locks: KeyedLocks,
}

impl Shared {
    fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.registry.all()
    }

    fn plugin(&self, id: &str) -> Result<Arc<Plugin>, AppError> {
        // The detail does not echo `id`: a pasted secret may be in it.
        self.registry.get(id).ok_or_else(|| {
            AppError::NotFound(format!(
                "No such provider is loaded; GET /api/v1/providers lists the available ones ({}).",
                self.plugins().iter().map(|p| p.manifest.id.clone()).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The connector of a stored integration; `provider_unavailable` when it
    /// is no longer loaded (the credentials stay stored until it is back).
    fn plugin_of(&self, row: &IntegrationRow) -> Result<Arc<Plugin>, AppError> {
        self.registry.get(&row.provider).ok_or_else(|| AppError::ProviderUnavailable(row.provider.clone()))
    }

    async fn lock(&self, id: &str) -> KeyedGuard {
        self.locks.lock(id).await
    }

    fn open_credentials(&self, row: &IntegrationRow) -> Result<Credentials, AppError> {
        let text = self.key.open(Binding::Credentials(&row.id), &row.secret)?;
        Ok(Credentials::from_json(secrecy::ExposeSecret::expose_secret(&text)).map_err(|_| CryptoError::Open)?)
    }

    /// The base URL stored in the credentials, re-checked with today's
    /// policy: a URL allowed when connected may have been refused since.
    fn stored_base_url(&self, plugin: &Plugin, credentials: &Credentials) -> Result<Option<Url>, AppError> {
        let Some(field) = plugin.manifest.fields.iter().find(|f| f.kind == FieldKind::Url) else {
            return Ok(None);
        };
        let Some(value) = credentials.get(&field.key) else {
            return Ok(None);
        };
        self.verifier.policy().parse_base_url(value).map(Some).map_err(|e| AppError::InvalidBaseUrl(e.to_string()))
    }
}

/// How the services are tuned (from the command line).
pub struct Settings {
    pub oauth: OAuthConfig,
    pub syncs: syncs::SyncSettings,
    pub webhook_retry: Duration,
    pub proxy: ProxySettings,
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
        let integrations = Arc::new(integrations::Integrations::new(shared.clone(), grants.clone()));
        let oauth = Arc::new(oauth::OAuthFlow::new(shared.clone(), grants.clone(), integrations.clone()));
        let webhooks = Arc::new(webhooks::Webhooks::new(shared.clone(), settings.webhook_retry)?);
        let syncs = Arc::new(syncs::Syncs::new(shared.clone(), integrations.clone(), webhooks.clone(), settings.syncs));
        Ok(Self {
            actions: Arc::new(actions::Actions::new(shared.clone(), integrations.clone())),
            proxy: Arc::new(proxy::Proxy::new(shared.clone(), integrations.clone(), settings.proxy)),
            integrations,
            grants,
            oauth,
            syncs,
            webhooks,
        })
    }

    /// Re-reads the plugins directory.
    pub async fn reload_plugins(&self) -> anyhow::Result<ReloadReport> {
        self.integrations.reload_plugins().await
    }
}
