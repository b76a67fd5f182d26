//! API keys: named keys with a role, created (the key shown once), listed
//! and revoked by an admin or the CLI, and resolved on every request. Only
//! a key's SHA-256 is stored, and it is looked up in the database each
//! time, so a revoked key is refused from the next request on, by every
//! server sharing the database. `GATEHOUSE_API_KEY`, when set, is one more
//! `admin` key that lives only in the environment.

use secrecy::{ExposeSecret, SecretString};

use crate::{
    clock::Timestamp,
    context::{self, Target},
    crypto,
    error::AppError,
    store::{
        Store,
        api_keys::{ApiKeyRow, Role},
    },
};

/// Who a presented key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Whether the caller's role includes `needed`.
    pub fn may(&self, needed: Role) -> bool {
        self.role >= needed
    }

    pub fn actor(&self) -> context::Actor {
        context::Actor::api_key(&self.id, &self.name)
    }
}

/// The id and name the environment's key acts under in the audit log.
pub const ENVIRONMENT_KEY_ID: &str = "environment";
pub const ENVIRONMENT_KEY_NAME: &str = "GATEHOUSE_API_KEY";
/// The name of the key generated at first start.
pub const FIRST_KEY_NAME: &str = "admin";

/// Needs only the store, so the CLI manages keys without the sandbox or
/// the master key.
pub struct ApiKeys {
    store: Store,
    /// SHA-256 of `GATEHOUSE_API_KEY`, when set.
    environment: Option<String>,
}

impl ApiKeys {
    pub fn new(store: Store, environment: Option<String>) -> Self {
        Self { store, environment }
    }

    async fn audit_failure(&self, action: &str, target: Target, error: &AppError) {
        let entry = context::audit_entry(action, target, error.code().as_str());
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!(error = %e, action, "cannot write the audit log");
        }
    }

    /// The key in use with this id, or else with this name (the CLI takes either).
    pub async fn find(&self, id_or_name: &str) -> Result<Option<ApiKeyRow>, AppError> {
        let keys = self.list().await?;
        let by_id = keys.iter().find(|k| k.id == id_or_name);
        let by_name = || keys.iter().find(|k| k.name == id_or_name && k.revoked_at.is_none());
        Ok(by_id.or_else(by_name).cloned())
    }

    /// The caller a presented key belongs to; None for an unknown or
    /// revoked key.
    pub async fn resolve(&self, key: &str) -> Result<Option<Caller>, AppError> {
        let hash = crypto::hash_api_key(key);
        if let Some(env) = &self.environment
            && crypto::constant_time_eq(&hash, env)
        {
            return Ok(Some(Caller {
                id: ENVIRONMENT_KEY_ID.into(),
                name: ENVIRONMENT_KEY_NAME.into(),
                role: Role::Admin,
            }));
        }
        let row = self.store.api_key_by_hash(&hash).await?;
        Ok(row.map(|row| Caller { id: row.id, name: row.name, role: row.role }))
    }

    /// Creates a key; answers its row and the key, shown this once.
    pub async fn create(&self, name: &str, role: Role) -> Result<(ApiKeyRow, SecretString), AppError> {
        let result = self.insert(name, role).await;
        if let Err(e) = &result {
            self.audit_failure("api_key.create", Target::api_key(None), e).await;
        }
        result
    }

    async fn insert(&self, name: &str, role: Role) -> Result<(ApiKeyRow, SecretString), AppError> {
        let name = valid_name(name)?;
        let key = crypto::generate_api_key();
        let row = new_row(name.clone(), role, &key);
        let audit = context::audit_entry("api_key.create", Target::api_key(Some(&row.id)), "ok");
        if !self.store.insert_api_key(&row, &audit).await? {
            return Err(AppError::Validation(format!(
                "A key named {name:?} is already in use; choose another name, or revoke that key first."
            )));
        }
        Ok((row, key))
    }

    /// The first start's key: stored as `admin` only when no key was ever
    /// stored and the environment gives none. Answers the key to print.
    pub async fn first_start(&self) -> Result<Option<SecretString>, AppError> {
        if self.environment.is_some() || self.store.api_keys_ever().await? > 0 {
            return Ok(None);
        }
        let key = crypto::generate_api_key();
        let row = new_row(FIRST_KEY_NAME.into(), Role::Admin, &key);
        let audit = context::audit_entry("api_key.create", Target::api_key(Some(&row.id)), "ok");
        Ok(self.store.insert_first_api_key(&row, &audit).await?.then_some(key))
    }

    /// Every key, revoked ones included (never the keys themselves).
    pub async fn list(&self) -> Result<Vec<ApiKeyRow>, AppError> {
        Ok(self.store.api_keys().await?)
    }

    /// Revokes a key: it is refused from the next request on.
    pub async fn revoke(&self, id: &str) -> Result<ApiKeyRow, AppError> {
        let audit = context::audit_entry("api_key.revoke", Target::api_key(Some(id)), "ok");
        match self.store.revoke_api_key(id, &audit).await? {
            Some(row) => Ok(row),
            None => {
                // The target is named only when it is a key: the id comes
                // from the caller's path, and a pasted secret may be in it.
                let mut target = Target::api_key(Some(id));
                let e = if id == ENVIRONMENT_KEY_ID {
                    AppError::Forbidden(
                        "The GATEHOUSE_API_KEY key lives in the server's environment: unset or change it there and restart the server.".into(),
                    )
                } else if self.store.api_key(id).await?.is_some() {
                    AppError::NotFound(format!(
                        "The key {id} is already revoked; GET /api/v1/api-keys lists the keys in use."
                    ))
                } else {
                    target = Target::api_key(None);
                    AppError::NotFound("No such API key; GET /api/v1/api-keys lists them.".into())
                };
                self.audit_failure("api_key.revoke", target, &e).await;
                Err(e)
            }
        }
    }
}

fn new_row(name: String, role: Role, key: &SecretString) -> ApiKeyRow {
    ApiKeyRow {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        role,
        key_sha256: crypto::hash_api_key(key.expose_secret()),
        created_at: Timestamp::now(),
        revoked_at: None,
    }
}

/// A key's name: what a person reads in lists and the audit log.
fn valid_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= 100
        && name.chars().all(|c| c.is_alphanumeric() || " -_.@".contains(c));
    if ok {
        Ok(name.to_string())
    } else {
        Err(AppError::Validation(
            "name must be 1 to 100 letters, digits, spaces or - _ . @ (e.g. \"billing-app\").".into(),
        ))
    }
}
