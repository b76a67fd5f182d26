//! `gatehouse:plugin@0.1.0`, frozen: its types converted into the latest
//! version's, and its `http` and `log` imports forwarded to the latest
//! implementation. A 0.1.0 connector has no OAuth, actions, syncs or
//! credential presentation: those calls are answered without
//! instantiating it.

use wasmtime::component::HasSelf;

use super::{
    super::{Answer, Call, CallState, model},
    frozen, latest,
};

wasmtime::component::bindgen!({
    world: "provider",
    path: "../wit/v0.1.0",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::gatehouse::plugin::{http, log, types};

pub const VERSION: &str = "0.1.0";
pub const CONNECTOR_EXPORT: &str = "gatehouse:plugin/connector@0.1.0";

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Provider::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

pub(crate) async fn call(
    pre: &ProviderPre<CallState>,
    store: &mut wasmtime::Store<CallState>,
    call: Call<'_>,
) -> wasmtime::Result<Answer> {
    match call {
        Call::AuthorizeUrl { .. } => return Ok(Answer::AuthorizeUrl(Err(model::OAuthError::Unsupported))),
        Call::ExchangeCode { .. } | Call::RefreshToken { .. } => {
            return Ok(Answer::Grant(Err(model::OAuthError::Unsupported)));
        }
        Call::Action { .. } => {
            return Ok(Answer::Action(Err(model::ProviderError::Unsupported(
                "The connector implements gatehouse:plugin@0.1.0, which has no actions.".into(),
            ))));
        }
        Call::Sync { .. } => {
            return Ok(Answer::Sync(Err(model::ProviderError::Unsupported(
                "The connector implements gatehouse:plugin@0.1.0, which has no syncs.".into(),
            ))));
        }
        Call::Describe { .. } | Call::CheckPath { .. } | Call::Rotate { .. } => return Ok(Answer::Unsupported),
        Call::Manifest | Call::Verify(_) => {}
    }
    let instance = pre.instantiate_async(&mut *store).await?;
    let connector = instance.gatehouse_plugin_connector();
    Ok(match call {
        Call::Verify(credentials) => {
            let result = connector.call_verify(&mut *store, credentials).await?;
            let state = store.data();
            Answer::Verify(latest::verify_result(result.map(Into::into).map_err(Into::into), &|s| state.redact(&s)))
        }
        _ => Answer::Manifest(Box::new(latest::manifest(connector.call_manifest(&mut *store).await?.into())?)),
    })
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
            oauth: None,
            credential_presentation: None,
            actions: Vec::new(),
            sync_models: Vec::new(),
            inbound_webhook: None,
        }
    }
}

frozen::field_conversions!();
frozen::verify_conversions!();
impl types::Host for CallState {}

frozen::forwarded_host_imports!();
