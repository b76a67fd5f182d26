//! `gatehouse:plugin@0.3.0`, frozen: its types converted into the latest
//! version's. Its `gatehouse:host` imports are the latest version's own
//! (the same package, `gatehouse:host@0.1.0`), so only its `types` are
//! linked here. A 0.3.0 connector has no `reach` or `rotation` and its
//! connection carries no scope.

use wasmtime::component::{HasSelf, InstancePre};

use super::{
    super::{Answer, Call, CallState, model},
    frozen, latest,
};

wasmtime::component::bindgen!({
    world: "full",
    path: "../wit/v0.3.0",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "gatehouse:host/http": crate::runtime::wit::latest::http,
        "gatehouse:host/log": crate::runtime::wit::latest::log,
    },
});

use self::{
    exports::gatehouse::plugin::{actions, connector, oauth, syncs},
    gatehouse::plugin::types,
};

pub const VERSION: &str = "0.3.0";
pub const CONNECTOR_EXPORT: &str = "gatehouse:plugin/connector@0.3.0";
const OAUTH_EXPORT: &str = "gatehouse:plugin/oauth@0.3.0";
const ACTIONS_EXPORT: &str = "gatehouse:plugin/actions@0.3.0";
const SYNCS_EXPORT: &str = "gatehouse:plugin/syncs@0.3.0";

/// Only `types`: `http` and `log` are linked once, by the latest version.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

/// A pre-instantiated 0.3.0 component and the exports it has.
pub struct Pre {
    instance: InstancePre<CallState>,
    connector: connector::GuestIndices,
    oauth: Option<oauth::GuestIndices>,
    actions: Option<actions::GuestIndices>,
    syncs: Option<syncs::GuestIndices>,
}

impl Pre {
    pub fn new(instance: InstancePre<CallState>) -> wasmtime::Result<Self> {
        let exported = |name: &str| instance.component().get_export_index(None, name).is_some();
        Ok(Self {
            connector: connector::GuestIndices::new(&instance)?,
            oauth: exported(OAUTH_EXPORT).then(|| oauth::GuestIndices::new(&instance)).transpose()?,
            actions: exported(ACTIONS_EXPORT).then(|| actions::GuestIndices::new(&instance)).transpose()?,
            syncs: exported(SYNCS_EXPORT).then(|| syncs::GuestIndices::new(&instance)).transpose()?,
            instance,
        })
    }

    pub fn exports_oauth(&self) -> bool {
        self.oauth.is_some()
    }

    pub fn exports_actions(&self) -> bool {
        self.actions.is_some()
    }

    pub fn exports_syncs(&self) -> bool {
        self.syncs.is_some()
    }
}

pub(crate) async fn call(
    pre: &Pre,
    store: &mut wasmtime::Store<CallState>,
    call: Call<'_>,
) -> wasmtime::Result<Answer> {
    match (&call, &pre.oauth, &pre.actions, &pre.syncs) {
        (Call::Describe { .. } | Call::CheckPath { .. } | Call::Rotate { .. }, ..) => return Ok(Answer::Unsupported),
        (Call::Sync { .. }, _, _, None) => {
            return Ok(Answer::Sync(Err(model::ProviderError::Unsupported(
                "The connector does not export syncs.".into(),
            ))));
        }
        (Call::AuthorizeUrl { .. }, None, ..) => return Ok(Answer::AuthorizeUrl(Err(model::OAuthError::Unsupported))),
        (Call::ExchangeCode { .. } | Call::RefreshToken { .. }, None, ..) => {
            return Ok(Answer::Grant(Err(model::OAuthError::Unsupported)));
        }
        (Call::Action { .. }, _, None, _) => {
            return Ok(Answer::Action(Err(model::ProviderError::Unsupported(
                "The connector does not export actions.".into(),
            ))));
        }
        _ => {}
    }
    let instance = pre.instance.instantiate_async(&mut *store).await?;
    Ok(match call {
        Call::Manifest => {
            let connector = pre.connector.load(&mut *store, &instance)?;
            let manifest = connector.call_manifest(&mut *store).await?;
            if let Some(oauth) = &pre.oauth {
                oauth.load(&mut *store, &instance)?;
            }
            if let Some(actions) = &pre.actions {
                actions.load(&mut *store, &instance)?;
            }
            if let Some(syncs) = &pre.syncs {
                syncs.load(&mut *store, &instance)?;
            }
            Answer::Manifest(Box::new(latest::manifest(manifest.into())?))
        }
        Call::Verify(credentials) => {
            let connector = pre.connector.load(&mut *store, &instance)?;
            let result = connector.call_verify(&mut *store, credentials).await?;
            let state = store.data();
            Answer::Verify(latest::verify_result(result.map(Into::into).map_err(Into::into), &|s| state.redact(&s)))
        }
        Call::AuthorizeUrl { base_url, client_id, redirect_uri, state, code_challenge } => {
            let oauth = pre.oauth.as_ref().expect("checked above").load(&mut *store, &instance)?;
            let result =
                oauth.call_authorize_url(&mut *store, base_url, client_id, redirect_uri, state, code_challenge).await?;
            let data = store.data();
            Answer::AuthorizeUrl(result.map_err(|e| latest::oauth_error(e.into(), &|s| data.redact(&s))))
        }
        Call::ExchangeCode { base_url, client, code, verifier } => {
            let oauth = pre.oauth.as_ref().expect("checked above").load(&mut *store, &instance)?;
            let client = latest::oauth_client(client).into();
            let result = oauth.call_exchange_code(&mut *store, base_url, &client, code, verifier).await?;
            let data = store.data();
            Answer::Grant(
                result
                    .map(|g| latest::token_grant(g.into()))
                    .map_err(|e| latest::oauth_error(e.into(), &|s| data.redact(&s))),
            )
        }
        Call::RefreshToken { base_url, client, refresh_token } => {
            let oauth = pre.oauth.as_ref().expect("checked above").load(&mut *store, &instance)?;
            let client = latest::oauth_client(client).into();
            let result = oauth.call_refresh_token(&mut *store, base_url, &client, refresh_token).await?;
            let data = store.data();
            Answer::Grant(
                result
                    .map(|g| latest::token_grant(g.into()))
                    .map_err(|e| latest::oauth_error(e.into(), &|s| data.redact(&s))),
            )
        }
        Call::Action { name, input, connection } => {
            let actions = pre.actions.as_ref().expect("checked above").load(&mut *store, &instance)?;
            let result = actions.call_run(&mut *store, name, input, &self::connection(connection)).await?;
            let data = store.data();
            Answer::Action(
                result.map(|out| data.redact(&out)).map_err(|e| latest::provider_error(e.into(), &|s| data.redact(&s))),
            )
        }
        Call::Sync { model, checkpoint, run_started_at, connection } => {
            let syncs = pre.syncs.as_ref().expect("checked above").load(&mut *store, &instance)?;
            let result =
                syncs.call_run(&mut *store, model, checkpoint, run_started_at, &self::connection(connection)).await?;
            let data = store.data();
            let redact = |s: String| data.redact(&s);
            Answer::Sync(
                result
                    .map(|page| model::SyncPage {
                        records: page.records.into_iter().map(|r| (redact(r.id), redact(r.data))).collect(),
                        deleted: page.deleted.into_iter().map(redact).collect(),
                        checkpoint: page.checkpoint.map(redact),
                        has_more: page.has_more,
                    })
                    .map_err(|e| latest::provider_error(e.into(), &redact)),
            )
        }
        Call::Describe { .. } | Call::CheckPath { .. } | Call::Rotate { .. } => unreachable!("answered above"),
    })
}

/// 0.3.0 has no scope: a connector of that version is never offered one.
fn connection(c: &model::Connection) -> types::Connection {
    types::Connection { base_url: c.base_url.clone(), account_id: c.account_id.clone(), settings: c.settings.clone() }
}

use latest::types as l;

impl From<types::ProviderManifest> for l::ProviderManifest {
    fn from(m: types::ProviderManifest) -> Self {
        Self {
            id: m.id,
            name: m.name,
            vendor: m.vendor,
            auth_method: match m.auth_method {
                types::AuthMethod::Oauth2 => l::AuthMethod::Oauth2,
                types::AuthMethod::PersonalAccessToken => l::AuthMethod::PersonalAccessToken,
            },
            description: m.description,
            notes: m.notes,
            fields: m.fields.into_iter().map(Into::into).collect(),
            required_scopes: m.required_scopes,
            required_scopes_rule: m.required_scopes_rule.into(),
            version: m.version,
            oauth: m.oauth.map(|o| l::OauthSettings {
                authorize_path: o.authorize_path,
                token_path: o.token_path,
                scopes: o.scopes,
                url_field: o.url_field,
                token_field: o.token_field,
            }),
            credential_presentation: m
                .credential_presentation
                .map(|p| l::CredentialPresentation { header: p.header, value: p.value }),
            actions: m
                .actions
                .into_iter()
                .map(|a| l::ActionDefinition {
                    name: a.name,
                    description: a.description,
                    input_schema: a.input_schema,
                    output_schema: a.output_schema,
                })
                .collect(),
            sync_models: m
                .sync_models
                .into_iter()
                .map(|s| l::SyncModel {
                    name: s.name,
                    description: s.description,
                    record_schema: s.record_schema,
                    default_interval_seconds: s.default_interval_seconds,
                    incremental: s.incremental,
                })
                .collect(),
            inbound_webhook: m.inbound_webhook.map(|w| l::InboundWebhook {
                token_header: w.token_header,
                event_header: w.event_header,
                idempotency_header: w.idempotency_header,
                events: w.events,
                setup: w.setup,
            }),
        }
    }
}

frozen::field_conversions!();
frozen::verify_conversions!();
frozen::oauth_conversions!();
impl From<types::ProviderError> for l::ProviderError {
    fn from(e: types::ProviderError) -> Self {
        use types::ProviderError as P;
        match e {
            P::InvalidInput(s) => Self::InvalidInput(s),
            P::NotFound(s) => Self::NotFound(s),
            P::Unauthorized(s) => Self::Unauthorized(s),
            P::Forbidden(s) => Self::Forbidden(s),
            P::RateLimited(after) => Self::RateLimited(after),
            P::UpstreamError(s) => Self::UpstreamError(s),
            P::UpstreamUnreachable(s) => Self::UpstreamUnreachable(s),
            P::UpstreamTimeout => Self::UpstreamTimeout,
            P::EgressDenied(s) => Self::EgressDenied(s),
            P::Unsupported(s) => Self::Unsupported(s),
        }
    }
}

impl types::Host for CallState {}
