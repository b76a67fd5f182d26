//! Integration lifecycle: turns API requests into connector calls and store
//! writes — verify, connect (idempotent per account), rotate, re-verify,
//! disconnect. Provider-agnostic: it knows fields by kind, not by name.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{
    config::OAuthConfig,
    crypto::{MasterKey, Sealed},
    egress::{EgressError, Policy},
    error::{AppError, Problem},
    registry::{Registry, ReloadReport},
    runtime::{
        Plugin, Runtime,
        model::{Account, Credentials, FieldKind, Verification, VerifyError},
    },
    store::{IntegrationRow, Store},
};

/// Longest accepted credential value; real tokens are far shorter.
const MAX_VALUE_LEN: usize = 8 * 1024;

/// What a verify call learnt: a verification, or the provider's verdict
/// against the token.
pub type Verdict = Result<Verification, VerifyError>;

pub struct Integrations {
    pub runtime: Runtime,
    pub registry: Registry,
    pub store: Store,
    pub(crate) key: MasterKey,
    pub(crate) policy: Policy,
    pub(crate) oauth: OAuthConfig,
    /// One lock per integration: a refresh, re-verify or rotation runs
    /// alone, so a refresh token is never spent twice by this process.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Integrations {
    pub fn new(
        runtime: Runtime,
        registry: Registry,
        store: Store,
        key: MasterKey,
        policy: Policy,
        oauth: OAuthConfig,
    ) -> Self {
        Self { runtime, registry, store, key, policy, oauth, locks: Mutex::default() }
    }

    pub(crate) async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.locks.lock().expect("lock map poisoned").entry(id.to_string()).or_default().clone();
        lock.lock_owned().await
    }

    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.registry.all()
    }

    /// Re-reads the plugins directory.
    pub async fn reload_plugins(&self) -> anyhow::Result<ReloadReport> {
        self.registry.reload(&self.runtime).await
    }

    /// The connector of a stored integration; `provider_unavailable` when it
    /// is no longer loaded (the credentials stay stored until it is back).
    pub fn plugin_of(&self, row: &IntegrationRow) -> Result<Arc<Plugin>, AppError> {
        self.registry.get(&row.provider).ok_or_else(|| AppError::ProviderUnavailable(row.provider.clone()))
    }

    /// Files of the plugins directory refused now, and why.
    pub fn refused_plugins(&self) -> Vec<(String, String)> {
        self.registry.refused()
    }

    pub fn plugin(&self, id: &str) -> Result<Arc<Plugin>, AppError> {
        // The detail does not echo `id`: a pasted secret may be in it.
        self.registry.get(id).ok_or_else(|| {
            AppError::NotFound(format!(
                "No such provider is loaded; GET /api/v1/providers lists the available ones ({}).",
                self.plugins().iter().map(|p| p.manifest.id.clone()).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    pub fn prepare(
        &self,
        plugin: &Plugin,
        raw: BTreeMap<String, String>,
    ) -> Result<(Credentials, Option<Url>), AppError> {
        prepare(&self.policy, plugin, raw)
    }

    pub(crate) async fn run_verify(
        &self,
        plugin: &Plugin,
        credentials: &Credentials,
        base_url: Option<&Url>,
    ) -> Result<Verdict, AppError> {
        run_verify(&self.runtime, &self.policy, plugin, credentials, base_url).await
    }

    /// `POST /providers/{id}/verify`: stores nothing.
    pub async fn verify(&self, provider: &str, raw: BTreeMap<String, String>) -> Result<Verdict, AppError> {
        let plugin = self.plugin(provider)?;
        let (credentials, base_url) = self.prepare(&plugin, raw)?;
        self.run_verify(&plugin, &credentials, base_url.as_ref()).await
    }

    /// Verifies and stores. Returns the row and whether it is new; the same
    /// account on the same base URL replaces the existing credentials.
    pub async fn connect(
        &self,
        provider: &str,
        raw: BTreeMap<String, String>,
        label: Option<String>,
    ) -> Result<(IntegrationRow, bool), AppError> {
        let plugin = self.plugin(provider)?;
        let (credentials, base_url) = self.prepare(&plugin, raw)?;
        let verification =
            self.run_verify(&plugin, &credentials, base_url.as_ref()).await?.map_err(AppError::Verify)?;
        self.store_verified(&plugin, &credentials, base_url.as_ref(), &verification, label, None).await
    }

    /// Stores verified credentials (and a refresh token, from the OAuth
    /// flow) as a new integration, or over the one of the same account.
    pub(crate) async fn store_verified(
        &self,
        plugin: &Plugin,
        credentials: &Credentials,
        base_url: Option<&Url>,
        verification: &Verification,
        label: Option<String>,
        refresh_token: Option<&SecretString>,
    ) -> Result<(IntegrationRow, bool), AppError> {
        let provider = plugin.manifest.id.as_str();
        let base_url = base_url_text(base_url);
        let now = now();
        let seal_refresh = |id: &str| refresh_token.map(|t| self.seal_refresh(id, t));
        if let Some(existing) = self.store.find_account(provider, &base_url, &verification.account.id).await? {
            let _guard = self.lock(&existing.id).await;
            let refresh = seal_refresh(&existing.id);
            let row = self.replaced(existing, plugin, credentials, verification, label, &now, refresh);
            self.store.update(&row).await?;
            return Ok((row, false));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let row = IntegrationRow {
            id: id.clone(),
            provider: provider.to_string(),
            label: label.clone(),
            status: "connected".into(),
            base_url: base_url.clone(),
            account_id: verification.account.id.clone(),
            account_json: account_json(&verification.account),
            scopes: verification.scopes.clone(),
            missing_scopes: Vec::new(),
            token_kind: Some(verification.token_kind.clone()),
            token_hint: token_hint(plugin, credentials),
            token_expires_at: verification.expires_at.clone(),
            created_at: now.clone(),
            updated_at: now.clone(),
            last_verified_at: Some(now.clone()),
            last_error_json: None,
            secret: self.key.seal(&id, credentials.to_json().expose_secret().as_bytes()),
            refresh: seal_refresh(&id),
        };
        if self.store.insert(&row).await? {
            return Ok((row, true));
        }
        // Another request connected the same account meanwhile: update it.
        let existing =
            self.store.find_account(provider, &base_url, &verification.account.id).await?.ok_or_else(|| {
                AppError::Validation("The integration was removed while connecting; try again.".into())
            })?;
        let _guard = self.lock(&existing.id).await;
        let refresh = seal_refresh(&existing.id);
        let row = self.replaced(existing, plugin, credentials, verification, label, &now, refresh);
        self.store.update(&row).await?;
        Ok((row, false))
    }

    pub(crate) fn seal_refresh(&self, id: &str, token: &SecretString) -> Sealed {
        self.key.seal(&format!("{id}/refresh"), token.expose_secret().as_bytes())
    }

    pub(crate) fn open_refresh(&self, id: &str, sealed: &Sealed) -> Result<SecretString, AppError> {
        let plain = self.key.open(&format!("{id}/refresh"), sealed)?;
        let text = std::str::from_utf8(plain.expose_secret()).map_err(|_| crate::crypto::CryptoError::Open)?;
        Ok(SecretString::from(text.to_string()))
    }

    /// `existing` with new credentials and what their verification said.
    /// `refresh` replaces the stored refresh token (None: not refreshable).
    #[allow(clippy::too_many_arguments)]
    fn replaced(
        &self,
        existing: IntegrationRow,
        plugin: &Plugin,
        credentials: &Credentials,
        v: &Verification,
        label: Option<String>,
        now: &str,
        refresh: Option<Sealed>,
    ) -> IntegrationRow {
        IntegrationRow {
            label: label.or(existing.label),
            status: "connected".into(),
            account_id: v.account.id.clone(),
            account_json: account_json(&v.account),
            scopes: v.scopes.clone(),
            missing_scopes: Vec::new(),
            token_kind: Some(v.token_kind.clone()),
            token_hint: token_hint(plugin, credentials),
            token_expires_at: v.expires_at.clone(),
            updated_at: now.to_string(),
            last_verified_at: Some(now.to_string()),
            last_error_json: None,
            secret: self.key.seal(&existing.id, credentials.to_json().expose_secret().as_bytes()),
            refresh,
            ..existing
        }
    }

    pub async fn list(&self) -> Result<Vec<IntegrationRow>, AppError> {
        Ok(self.store.list().await?)
    }

    pub async fn get(&self, id: &str) -> Result<IntegrationRow, AppError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("No integration {id}; GET /api/v1/integrations lists them.")))
    }

    pub async fn delete(&self, id: &str) -> Result<(), AppError> {
        let guard = self.lock(id).await;
        let deleted = self.store.delete(id).await?;
        drop(guard);
        self.locks.lock().expect("lock map poisoned").remove(id);
        if deleted {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("No integration {id}; it may already be disconnected.")))
        }
    }

    pub(crate) fn open_credentials(&self, row: &IntegrationRow) -> Result<Credentials, AppError> {
        let plain = self.key.open(&row.id, &row.secret)?;
        let text = std::str::from_utf8(plain.expose_secret()).map_err(|_| crate::crypto::CryptoError::Open)?;
        Ok(Credentials::from_json(text).map_err(|_| crate::crypto::CryptoError::Open)?)
    }

    /// Re-checks stored credentials. A verdict updates the status and is
    /// answered with the row; a failure to reach the provider marks it
    /// `unreachable` and is returned as the error.
    pub async fn reverify(&self, id: &str) -> Result<IntegrationRow, AppError> {
        let _guard = self.lock(id).await;
        let row = self.get(id).await?;
        // An access token about to expire is refreshed before it is used.
        let row = match self.refresh_if_due(row).await? {
            crate::oauth::Refreshed::Failed(row) => return Ok(row),
            crate::oauth::Refreshed::Current(row) | crate::oauth::Refreshed::Renewed(row) => row,
        };
        let plugin = self.plugin_of(&row)?;
        let credentials = self.open_credentials(&row)?;
        let base_url = self.stored_base_url(&plugin, &credentials)?;
        let now = now();
        let outcome = self.run_verify(&plugin, &credentials, base_url.as_ref()).await;
        let mut updated = IntegrationRow { updated_at: now.clone(), ..row.clone() };
        let result = match outcome {
            Ok(Ok(v)) => {
                updated = IntegrationRow {
                    status: "connected".into(),
                    account_json: account_json(&v.account),
                    scopes: v.scopes,
                    missing_scopes: Vec::new(),
                    token_kind: Some(v.token_kind),
                    token_expires_at: v.expires_at,
                    last_verified_at: Some(now),
                    last_error_json: None,
                    ..updated
                };
                Ok(())
            }
            Ok(Err(verdict)) => {
                updated.status = status_of(&verdict).into();
                if let VerifyError::InsufficientScope { scopes, missing_scopes, .. } = &verdict {
                    updated.scopes = scopes.clone();
                    updated.missing_scopes = missing_scopes.clone();
                }
                updated.last_verified_at = Some(now);
                updated.last_error_json = Some(problem_json(&AppError::Verify(verdict).problem()));
                Ok(())
            }
            Err(e) => {
                if matches!(e, AppError::Verify(_) | AppError::EgressDenied(_)) {
                    updated.status = "unreachable".into();
                }
                updated.last_error_json = Some(problem_json(&e.problem()));
                Err(e)
            }
        };
        self.store.update(&updated).await?;
        result.map(|()| updated)
    }

    /// Replaces the credentials of an integration with ones for the same
    /// account. Fields left out keep their stored value.
    pub async fn rotate(&self, id: &str, raw: BTreeMap<String, String>) -> Result<IntegrationRow, AppError> {
        let _guard = self.lock(id).await;
        let row = self.get(id).await?;
        let plugin = self.plugin_of(&row)?;
        let stored = self.open_credentials(&row)?;
        let mut merged = raw;
        for field in plugin.manifest.fields.iter().filter(|f| f.kind != FieldKind::Secret) {
            if !merged.contains_key(&field.key)
                && let Some(v) = stored.get(&field.key)
            {
                merged.insert(field.key.clone(), v.to_string());
            }
        }
        let (credentials, base_url) = self.prepare(&plugin, merged)?;
        if base_url_text(base_url.as_ref()) != row.base_url {
            return Err(AppError::Validation(format!(
                "The base URL of an integration cannot change (it is {}); connect a new integration instead.",
                row.base_url
            )));
        }
        let verification =
            self.run_verify(&plugin, &credentials, base_url.as_ref()).await?.map_err(AppError::Verify)?;
        if verification.account.id != row.account_id {
            let current: Account =
                serde_json::from_str(&row.account_json).map_err(|_| crate::crypto::CryptoError::Open)?;
            return Err(AppError::AccountMismatch(format!(
                "The new token belongs to {:?}, but this integration is connected to {:?}; use a token of {:?}, or connect the other account as a new integration.",
                verification.account.username, current.username, current.username
            )));
        }
        let now = now();
        // A pasted token replaces an OAuth grant: its refresh token is dropped.
        let updated = self.replaced(row, &plugin, &credentials, &verification, None, &now, None);
        self.store.update(&updated).await?;
        Ok(updated)
    }

    pub(crate) fn stored_base_url(&self, plugin: &Plugin, credentials: &Credentials) -> Result<Option<Url>, AppError> {
        let Some(field) = plugin.manifest.fields.iter().find(|f| f.kind == FieldKind::Url) else {
            return Ok(None);
        };
        let Some(value) = credentials.get(&field.key) else {
            return Ok(None);
        };
        // Re-checked with today's policy: a URL allowed when connected may
        // have been refused since.
        self.policy.parse_base_url(value).map(Some).map_err(|e| AppError::InvalidBaseUrl(e.to_string()))
    }
}

/// A connection ready to be used: its row (refreshed first when its access
/// token was due), its connector, its opened credentials and base URL.
pub struct InUse {
    pub row: IntegrationRow,
    pub plugin: Arc<Plugin>,
    pub credentials: Credentials,
    pub base_url: Url,
}

impl InUse {
    /// What an action or sync may know of the connection: never a secret.
    pub fn connection(&self) -> crate::runtime::model::Connection {
        let settings = self
            .plugin
            .manifest
            .fields
            .iter()
            .filter(|f| f.kind != FieldKind::Secret)
            .filter_map(|f| self.credentials.get(&f.key).map(|v| (f.key.clone(), v.to_string())))
            .collect();
        crate::runtime::model::Connection {
            base_url: base_url_text(Some(&self.base_url)),
            account_id: self.row.account_id.clone(),
            settings,
        }
    }
}

impl Integrations {
    /// Opens a connection for use by the proxy or an action. An access
    /// token due for refresh is refreshed first (under the integration's
    /// lock, so concurrent uses spend the refresh token once).
    pub async fn for_use(&self, id: &str) -> Result<InUse, AppError> {
        let mut row = self.get(id).await?;
        if self.due_for_refresh(&row) {
            let _guard = self.lock(id).await;
            row = match self.refresh_if_due(self.get(id).await?).await? {
                crate::oauth::Refreshed::Current(row)
                | crate::oauth::Refreshed::Renewed(row)
                | crate::oauth::Refreshed::Failed(row) => row,
            };
        }
        self.in_use(row).await
    }

    /// After the provider refused `used`'s credential: refreshes once if
    /// the integration can be refreshed (or takes the credentials another
    /// use refreshed meanwhile). None when there is nothing newer to try.
    pub async fn refresh_after_rejection(&self, used: &IntegrationRow) -> Result<Option<InUse>, AppError> {
        if used.refresh.is_none() {
            return Ok(None);
        }
        let _guard = self.lock(&used.id).await;
        let current = self.get(&used.id).await?;
        if current.secret.ciphertext != used.secret.ciphertext {
            return Ok(Some(self.in_use(current).await?));
        }
        match self.renew(current).await? {
            crate::oauth::Refreshed::Renewed(row) => Ok(Some(self.in_use(row).await?)),
            crate::oauth::Refreshed::Current(_) | crate::oauth::Refreshed::Failed(_) => Ok(None),
        }
    }

    async fn in_use(&self, row: IntegrationRow) -> Result<InUse, AppError> {
        let plugin = self.plugin_of(&row)?;
        let credentials = self.open_credentials(&row)?;
        let base_url = self.stored_base_url(&plugin, &credentials)?.ok_or_else(|| {
            AppError::ProxyUnsupported(format!(
                "The connector {} has no base URL field, so Gatehouse cannot tell where its API is.",
                plugin.manifest.id
            ))
        })?;
        // No resolution here: every request resolves through the egress
        // client's resolver, which refuses a forbidden address itself, and a
        // lookup per proxied request would double the DNS traffic.
        Ok(InUse { row, plugin, credentials, base_url })
    }
}

/// Checks submitted credentials against the manifest: no unknown keys,
/// defaults applied, required fields present, url fields acceptable.
pub fn prepare(
    policy: &Policy,
    plugin: &Plugin,
    raw: BTreeMap<String, String>,
) -> Result<(Credentials, Option<Url>), AppError> {
    let fields = &plugin.manifest.fields;
    let known = || fields.iter().map(|f| f.key.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(unknown) = raw.keys().find(|k| !fields.iter().any(|f| &f.key == *k)) {
        return Err(AppError::Validation(format!(
            "Unknown credential field {unknown:?} for provider {:?}; expected: {}.",
            plugin.manifest.id,
            known()
        )));
    }
    let mut credentials = Credentials::default();
    let mut base_url = None;
    let mut raw = raw;
    for field in fields {
        let value = raw.remove(&field.key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let Some(value) = value.or_else(|| field.default.clone()) else {
            if field.required {
                return Err(AppError::Validation(format!("The field {:?} ({}) is required.", field.key, field.label)));
            }
            continue;
        };
        if value.len() > MAX_VALUE_LEN {
            return Err(AppError::Validation(format!(
                "The field {:?} is longer than {MAX_VALUE_LEN} characters.",
                field.key
            )));
        }
        let value = if field.kind == FieldKind::Url {
            let url = policy.parse_base_url(&value).map_err(|e| match e {
                EgressError::InvalidUrl(s) | EgressError::Denied(s) => AppError::InvalidBaseUrl(s),
            })?;
            let text = url.as_str().trim_end_matches('/').to_string();
            base_url = Some(url);
            text
        } else {
            value
        };
        credentials.insert(field.key.clone(), value);
    }
    Ok((credentials, base_url))
}

/// Runs the connector once. Transport, policy and sandbox failures are
/// errors; the provider's verdict on the token is a value.
pub async fn run_verify(
    runtime: &Runtime,
    policy: &Policy,
    plugin: &Plugin,
    credentials: &Credentials,
    base_url: Option<&Url>,
) -> Result<Verdict, AppError> {
    if let Some(url) = base_url {
        policy.check_reachable(url).await.map_err(|e| AppError::EgressDenied(e.to_string()))?;
    }
    let allowed: Vec<Url> = base_url.cloned().into_iter().collect();
    let verdict = runtime.verify(plugin, credentials, &allowed).await?;
    match verdict {
        Err(e) if !e.is_verdict() => Err(AppError::Verify(e)),
        other => Ok(other),
    }
}

pub fn status_of(verdict: &VerifyError) -> &'static str {
    match verdict {
        VerifyError::InvalidToken(_) | VerifyError::TokenRevoked(_) => "invalid",
        VerifyError::TokenExpired(_) => "expired",
        VerifyError::InsufficientScope { .. } => "insufficient_scope",
        _ => "unreachable",
    }
}

pub(crate) fn base_url_text(url: Option<&Url>) -> String {
    url.map(|u| u.as_str().trim_end_matches('/').to_string()).unwrap_or_default()
}

fn account_json(account: &Account) -> String {
    serde_json::to_string(account).expect("an account serialises")
}

pub(crate) fn problem_json(problem: &Problem) -> String {
    serde_json::to_string(problem).expect("a problem serialises")
}

/// At most the last 4 characters of the first secret field, and nothing
/// for short values, where 4 characters would be too much of it.
pub(crate) fn token_hint(plugin: &Plugin, credentials: &Credentials) -> Option<String> {
    let field = plugin.manifest.fields.iter().find(|f| f.kind == FieldKind::Secret)?;
    let value = credentials.get(&field.key)?;
    let chars: Vec<char> = value.chars().collect();
    (chars.len() >= 16).then(|| chars[chars.len() - 4..].iter().collect())
}

pub fn now() -> String {
    crate::clock::now().1
}
