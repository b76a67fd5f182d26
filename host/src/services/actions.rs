//! Actions: typed operations a connector offers on a connection. The host
//! validates the input against the action's JSON Schema before the sandbox
//! runs, runs the connector with the credential injected by the host (the
//! connector never receives it), refreshes an OAuth token once if the
//! provider refuses it, and validates the output before answering.

use std::sync::Arc;

use crate::{
    error::AppError,
    runtime::{ActionSchemas, model::ProviderError},
    services::{integrations::Integrations, shared::Shared},
};

pub struct Actions {
    shared: Arc<Shared>,
    integrations: Arc<Integrations>,
}

impl Actions {
    pub(super) fn new(shared: Arc<Shared>, integrations: Arc<Integrations>) -> Self {
        Self { shared, integrations }
    }

    /// Runs the action `name` on the integration `id` with `input`.
    pub async fn run(&self, id: &str, name: &str, input: serde_json::Value) -> Result<serde_json::Value, AppError> {
        let mut in_use = self.integrations.for_use(id).await?;
        let plugin = in_use.plugin.clone();
        let schemas = schemas(&plugin, name)?;
        check(&schemas.input, &input).map_err(|(detail, pointer)| AppError::Schema {
            detail: format!(
                "The input of action {name:?} does not match its schema: {detail}. GET /api/v1/providers/{} shows the schema.",
                plugin.manifest.id
            ),
            pointer,
        })?;
        let input = input.to_string();
        let mut retried = false;
        let output = loop {
            let outcome = self
                .shared
                .runtime
                .run_action(&in_use.plugin, name, &input, &in_use.connection(), &in_use.credentials, &in_use.base_url)
                .await?;
            match outcome {
                Ok(text) => break text,
                // An access token can be revoked before it expires: refresh
                // once and try again, as a client of the provider would.
                Err(ProviderError::Unauthorized(_)) if !retried => {
                    match self.integrations.refresh_after_rejection(&in_use.row).await? {
                        Some(fresh) => {
                            in_use = fresh;
                            retried = true;
                        }
                        None => return Err(AppError::Provider(outcome.unwrap_err())),
                    }
                }
                Err(e) => return Err(AppError::Provider(e)),
            }
        };
        let plugin = &in_use.plugin.manifest.id;
        let output: serde_json::Value = serde_json::from_str(&output).map_err(|_| {
            AppError::Connector(crate::runtime::CallError::Failed(format!(
                "the action {name:?} of {plugin} answered something that is not JSON"
            )))
        })?;
        // The action may have changed its schemas by a reload meanwhile; the
        // plugin that ran is the one whose schema applies.
        let schemas = in_use.plugin.action_schemas.get(name).unwrap_or(schemas);
        check(&schemas.output, &output).map_err(|(detail, pointer)| AppError::BadOutput {
            detail: format!(
                "The connector {plugin} answered action {name:?} with output that does not match its schema ({detail}); report it to the connector's author."
            ),
            pointer,
        })?;
        Ok(output)
    }
}

fn schemas<'a>(plugin: &'a Arc<crate::runtime::Connector>, name: &str) -> Result<&'a ActionSchemas, AppError> {
    plugin.action_schemas.get(name).ok_or_else(|| {
        let known: Vec<&str> = plugin.manifest.actions.iter().map(|a| a.name.as_str()).collect();
        AppError::NotFound(if known.is_empty() {
            format!("The connector {} offers no actions.", plugin.manifest.id)
        } else {
            format!("The connector {} has no such action; it offers: {}.", plugin.manifest.id, known.join(", "))
        })
    })
}

/// The first schema violation, as a sentence without the offending value
/// (it may be anything the client sent) and the JSON pointer to it.
fn check(validator: &jsonschema::Validator, value: &serde_json::Value) -> Result<(), (String, String)> {
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(error) => {
            let pointer = error.instance_path().to_string();
            let at = if pointer.is_empty() { "the top level".to_string() } else { pointer.clone() };
            Err((format!("at {at}: {}", error.masked()), pointer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_the_pointer_and_hide_the_value() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"title": {"type": "string", "minLength": 1}, "labels": {"type": "array", "items": {"type": "string"}}},
            "required": ["title"],
            "additionalProperties": false
        });
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(check(&validator, &serde_json::json!({"title": "x"})).is_ok());
        let (detail, pointer) = check(&validator, &serde_json::json!({"title": "x", "labels": ["ok", 7]})).unwrap_err();
        assert_eq!(pointer, "/labels/1");
        assert!(detail.contains("/labels/1"), "{detail}");
        let (detail, _) = check(&validator, &serde_json::json!({"title": ["glpat-secret-value"]})).unwrap_err();
        assert!(!detail.contains("glpat-secret-value"), "{detail}");
        let (_, pointer) = check(&validator, &serde_json::json!({})).unwrap_err();
        assert_eq!(pointer, "");
    }
}
