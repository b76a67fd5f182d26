//! Typed actions: an action's input and output are Rust types, their JSON
//! Schemas (draft 2020-12) are derived from those types with `schemars`, so
//! the schema the host validates against and the code that reads the input
//! cannot drift apart.
//!
//! ```ignore
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]   // → "additionalProperties": false
//! struct Input { #[schemars(length(min = 1))] name: String }
//! #[derive(serde::Serialize, schemars::JsonSchema)]
//! struct Output { id: u64 }
//!
//! struct Create;
//! impl Action for Create {
//!     const NAME: &'static str = "create-thing";
//!     const DESCRIPTION: &'static str = "Creates a thing.";
//!     type Input = Input;
//!     type Output = Output;
//!     fn run(input: Input, connection: &Connection) -> Result<Output, ProviderError> { /* … */ }
//! }
//! // manifest: actions: vec![action_definition::<Create>()]
//! // run_action: match name { Create::NAME => run_typed::<Create>(input, connection), … }
//! ```

use schemars::{JsonSchema, generate::SchemaSettings};
use serde::{Serialize, de::DeserializeOwned};

use crate::{ActionDefinition, Connection, ProviderError};

/// One typed operation of a connector.
pub trait Action {
    /// Lowercase letters, digits and dashes, e.g. `create-issue`.
    const NAME: &'static str;
    /// One or two sentences for the people choosing the action.
    const DESCRIPTION: &'static str;
    /// What the caller sends. Derive `Deserialize` and `JsonSchema`; put
    /// the constraints the host should enforce in `#[schemars(...)]`
    /// attributes (`length`, `range`) and refuse unknown fields with
    /// `#[serde(deny_unknown_fields)]`.
    type Input: DeserializeOwned + JsonSchema;
    /// What the action answers. Derive `Serialize` and `JsonSchema`.
    type Output: Serialize + JsonSchema;

    fn run(input: Self::Input, connection: &Connection) -> Result<Self::Output, ProviderError>;
}

/// The JSON Schema (draft 2020-12) of what `T` accepts when deserialized
/// (fields with a default are optional), as JSON text.
pub fn input_schema<T: JsonSchema>() -> String {
    schema_with::<T>(SchemaSettings::draft2020_12())
}

/// The JSON Schema (draft 2020-12) of what `T` produces when serialized
/// (an `Option` field is always there, possibly null), as JSON text.
pub fn output_schema<T: JsonSchema>() -> String {
    schema_with::<T>(SchemaSettings::draft2020_12().for_serialize())
}

fn schema_with<T: JsonSchema>(settings: SchemaSettings) -> String {
    let schema = settings.into_generator().into_root_schema_for::<T>();
    // A schema is a JSON value with string keys: serializing it cannot fail.
    serde_json::to_string(&schema).unwrap_or_default()
}

/// The manifest entry of `A`: its name, description and both schemas.
pub fn action_definition<A: Action>() -> ActionDefinition {
    ActionDefinition {
        name: A::NAME.into(),
        description: A::DESCRIPTION.into(),
        input_schema: input_schema::<A::Input>(),
        output_schema: output_schema::<A::Output>(),
    }
}

/// Runs `A` on JSON input and answers JSON: the input is deserialized (a
/// mismatch is `invalid-input` naming the problem), the action runs, its
/// output is serialized.
pub fn run_typed<A: Action>(input: &str, connection: &Connection) -> Result<String, ProviderError> {
    let input: A::Input = serde_json::from_str(input)
        .map_err(|e| ProviderError::InvalidInput(format!("The input of the action {} is not valid: {e}.", A::NAME)))?;
    let output = A::run(input, connection)?;
    serde_json::to_string(&output).map_err(|e| {
        ProviderError::UpstreamError(format!("The answer of the action {} could not be encoded as JSON: {e}.", A::NAME))
    })
}

/// The error for an action name the connector does not have.
pub fn unknown(name: &str) -> ProviderError {
    ProviderError::Unsupported(format!("This connector has no action named {name:?}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Input {
        #[schemars(length(min = 1, max = 5))]
        name: String,
        #[serde(default)]
        #[schemars(range(min = 1, max = 9))]
        count: u8,
    }

    #[derive(Serialize, JsonSchema)]
    struct Output {
        greeting: String,
        note: Option<String>,
    }

    struct Greet;
    impl Action for Greet {
        const NAME: &'static str = "greet";
        const DESCRIPTION: &'static str = "Greets.";
        type Input = Input;
        type Output = Output;
        fn run(input: Input, connection: &Connection) -> Result<Output, ProviderError> {
            Ok(Output { greeting: format!("{} x{} at {}", input.name, input.count, connection.base_url), note: None })
        }
    }

    fn connection() -> Connection {
        Connection { base_url: "https://h".into(), account_id: "1".into(), settings: vec![], scope: None }
    }

    #[test]
    fn definition_carries_draft_2020_12_schemas_with_constraints() {
        let d = action_definition::<Greet>();
        assert_eq!((d.name.as_str(), d.description.as_str()), ("greet", "Greets."));
        let input: serde_json::Value = serde_json::from_str(&d.input_schema).unwrap();
        assert_eq!(input["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(input["additionalProperties"], false);
        assert_eq!(input["required"], serde_json::json!(["name"]));
        assert_eq!(input["properties"]["name"]["minLength"], 1);
        assert_eq!(input["properties"]["name"]["maxLength"], 5);
        assert_eq!(input["properties"]["count"]["maximum"], 9);
        let output: serde_json::Value = serde_json::from_str(&d.output_schema).unwrap();
        assert_eq!(output["properties"]["greeting"]["type"], "string");
        // Serialized, an Option is always present (null or a value).
        assert_eq!(output["required"], serde_json::json!(["greeting", "note"]));
    }

    #[test]
    fn run_typed_decodes_runs_and_encodes() {
        let out = run_typed::<Greet>(r#"{"name":"ann","count":2}"#, &connection()).unwrap();
        assert_eq!(out, r#"{"greeting":"ann x2 at https://h","note":null}"#);
        match run_typed::<Greet>(r#"{"name":"ann","extra":1}"#, &connection()) {
            Err(ProviderError::InvalidInput(why)) => assert!(why.contains("unknown field `extra`"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(run_typed::<Greet>("[]", &connection()), Err(ProviderError::InvalidInput(_))));
    }
}
