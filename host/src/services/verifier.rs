//! Checking credentials against a connector's manifest and asking the
//! connector to verify them: the one verifier behind the API's verify,
//! connect, rotate and OAuth callback, and the CLI's `plugins test`.

use std::{collections::BTreeMap, sync::Arc};

use url::Url;

use crate::{
    egress::{EgressError, Policy},
    error::AppError,
    runtime::{
        Connector, Runtime,
        model::{Connection, Credentials, FieldKind, ReachItem, TokenReach, Verification, VerifyError},
    },
};

/// Longest accepted credential value; real tokens are far shorter.
const MAX_VALUE_LEN: usize = 8 * 1024;

/// What a verify call learnt: a verification, or the provider's verdict
/// against the token.
pub type Verdict = Result<Verification, VerifyError>;

pub struct Verifier {
    runtime: Arc<Runtime>,
    policy: Policy,
}

impl Verifier {
    pub fn new(runtime: Arc<Runtime>, policy: Policy) -> Self {
        Self { runtime, policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Checks submitted credentials against the manifest: no unknown keys,
    /// defaults applied, required fields present, url fields acceptable.
    pub fn prepare(
        &self,
        plugin: &Connector,
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
                    return Err(AppError::Validation(format!(
                        "The field {:?} ({}) is required.",
                        field.key, field.label
                    )));
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
                let url = self.policy.parse_base_url(&value).map_err(|e| match e {
                    EgressError::InvalidUrl(s) | EgressError::Denied(s) => AppError::InvalidBaseUrl(s),
                })?;
                let text = base_url_text(Some(&url));
                base_url = Some(url);
                text
            } else {
                value
            };
            credentials.insert(field.key.clone(), value);
        }
        Ok((credentials, base_url))
    }

    /// Runs the connector once (the runtime checks the base URL's addresses
    /// first, within the call's deadline). Transport, policy and sandbox
    /// failures are errors; the provider's verdict on the token is a value.
    pub async fn verify(
        &self,
        plugin: &Connector,
        credentials: &Credentials,
        base_url: Option<&Url>,
    ) -> Result<Verdict, AppError> {
        Ok(self.run(plugin, credentials, base_url, false).await?.0)
    }

    /// `verify`, and for a valid credential what it reaches, when its
    /// connector can tell (asked in the same instance; a failure to tell
    /// leaves the reach unknown and never fails the verification).
    pub async fn verify_with_reach(
        &self,
        plugin: &Connector,
        credentials: &Credentials,
        base_url: Option<&Url>,
    ) -> Result<(Verdict, Option<TokenReach>), AppError> {
        self.run(plugin, credentials, base_url, true).await
    }

    async fn run(
        &self,
        plugin: &Connector,
        credentials: &Credentials,
        base_url: Option<&Url>,
        reach: bool,
    ) -> Result<(Verdict, Option<TokenReach>), AppError> {
        let allowed: Vec<Url> = base_url.cloned().into_iter().collect();
        let connection = base_url
            .filter(|_| reach)
            .map(|base_url| |v: &Verification| connection_of(plugin, credentials, base_url, &v.account.id, None));
        let verified = self.runtime.verify_with_reach(plugin, credentials, &allowed, connection).await?;
        match verified.verdict {
            Err(e) if !e.is_verdict() => Err(AppError::Verify(e)),
            verdict => Ok((verdict, verified.reach)),
        }
    }
}

/// What a connector is told about a connection: its base URL, account and
/// settings (the credential fields that are not secret), and the scope it
/// is limited to.
pub fn connection_of(
    plugin: &Connector,
    credentials: &Credentials,
    base_url: &Url,
    account_id: &str,
    scope: Option<ReachItem>,
) -> Connection {
    let settings = plugin
        .manifest
        .fields
        .iter()
        .filter(|f| f.kind != FieldKind::Secret)
        .filter_map(|f| credentials.get(&f.key).map(|v| (f.key.clone(), v.to_string())))
        .collect();
    Connection { base_url: base_url_text(Some(base_url)), account_id: account_id.to_string(), settings, scope }
}

/// A base URL as stored and compared: no trailing slash, "" for none.
pub fn base_url_text(url: Option<&Url>) -> String {
    url.map(|u| u.as_str().trim_end_matches('/').to_string()).unwrap_or_default()
}
