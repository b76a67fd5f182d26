//! The typed-action example of plugins/README.md, verbatim, with tests: the
//! guide's code is built and run, so it cannot rot.
#![cfg(not(target_arch = "wasm32"))]

mod guide {
    use gatehouse_plugin::{
        Action, ActionDefinition, Connection, ProviderError, action, action_definition, http::Request, run_typed,
    };
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct NewNote {
        #[schemars(length(min = 1))]
        pub text: String,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Note {
        pub id: u64,
    }

    pub struct CreateNote;

    impl Action for CreateNote {
        const NAME: &'static str = "create-note";
        const DESCRIPTION: &'static str = "Creates a note.";
        type Input = NewNote;
        type Output = Note;

        fn run(input: NewNote, connection: &Connection) -> Result<Note, ProviderError> {
            Request::post(connection.url("/v1/notes"))
                .json(&serde_json::json!({ "text": input.text }))
                .authenticated() // the host adds the credential; the connector never has it
                .send()?
                .decode() // 2xx → Note; 401 → unauthorized, 404 → not-found, …
        }
    }

    /// The manifest's `actions` (the manifest also needs a `credential_presentation`).
    pub fn definitions() -> Vec<ActionDefinition> {
        vec![action_definition::<CreateNote>()]
    }

    /// `Connector::run_action` delegates here; the crate calls `register!(MyConnector, actions)`.
    pub fn run_action(name: &str, input: &str, connection: &Connection) -> Result<String, ProviderError> {
        match name {
            CreateNote::NAME => run_typed::<CreateNote>(input, connection),
            other => Err(action::unknown(other)),
        }
    }
}

use gatehouse_plugin::{Connection, ProviderError, http::native};

fn connection() -> Connection {
    Connection { base_url: "https://notes.example".into(), account_id: "7".into(), settings: vec![], scope: None }
}

#[test]
fn the_guide_action_sends_an_authenticated_request_and_maps_answers() {
    native::set_transport(|request| {
        assert_eq!((request.method.as_str(), request.url.as_str()), ("POST", "https://notes.example/v1/notes"));
        assert!(request.authenticate, "the action must ask the host to authenticate");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let (status, answer) = match body["text"].as_str() {
            Some("ok") => (201, r#"{"id":5,"extra":true}"#),
            _ => (404, r#"{"message":"no such notebook"}"#),
        };
        Ok(native::Response { status, headers: vec![], body: answer.as_bytes().to_vec() })
    });
    assert_eq!(guide::run_action("create-note", r#"{"text":"ok"}"#, &connection()).unwrap(), r#"{"id":5}"#);
    let missing = guide::run_action("create-note", r#"{"text":"gone"}"#, &connection());
    assert!(matches!(missing, Err(ProviderError::NotFound(m)) if m.contains("no such notebook")));
    assert!(matches!(guide::run_action("create-note", "{}", &connection()), Err(ProviderError::InvalidInput(_))));
    assert!(matches!(guide::run_action("delete-note", "{}", &connection()), Err(ProviderError::Unsupported(_))));
}

#[test]
fn the_guide_action_schema_enforces_its_constraints() {
    let definitions = guide::definitions();
    let input: serde_json::Value = serde_json::from_str(&definitions[0].input_schema).unwrap();
    assert_eq!(input["additionalProperties"], false);
    assert_eq!(input["properties"]["text"]["minLength"], 1);
    assert_eq!(definitions[0].name, "create-note");
}

#[test]
fn the_readme_shows_this_code() {
    let readme = include_str!("../../README.md");
    let this = include_str!("guide_action.rs");
    let module = this.split("mod guide {\n").nth(1).and_then(|rest| rest.split("\n}\n").next()).unwrap();
    let dedented: Vec<&str> = module.lines().map(|line| line.strip_prefix("    ").unwrap_or(line)).collect();
    assert!(readme.contains(&dedented.join("\n")), "plugins/README.md's typed-action example differs from this file's");
}
