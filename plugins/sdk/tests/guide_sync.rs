//! The typed-sync example of plugins/README.md, verbatim, with tests: the
//! guide's code is built and run, so it cannot rot.
#![cfg(not(target_arch = "wasm32"))]

mod guide {
    use gatehouse_plugin::{
        Connection, Page, ProviderError, SyncModel, SyncPage, SyncedModel, http::Request, run_sync_typed, sync,
        sync_model_definition,
    };
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Notebook {
        pub id: u64,
        pub title: String,
        pub archived_at: Option<String>,
    }

    /// Where the next page starts: the provider's next-page path and query,
    /// requested on the connection's base URL.
    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Next {
        pub path: String,
    }

    pub struct Notebooks;

    impl SyncedModel for Notebooks {
        const NAME: &'static str = "notebooks";
        const DESCRIPTION: &'static str = "Every notebook; notebooks deleted upstream are removed.";
        const DEFAULT_INTERVAL_SECONDS: u32 = 3600;
        const INCREMENTAL: bool = false; // full: every run reads everything
        type Record = Notebook;
        type Checkpoint = Next;

        fn record_id(notebook: &Notebook) -> String {
            notebook.id.to_string()
        }

        fn run(
            checkpoint: Option<Next>,
            _run_started_at: &str, // a full model does not need it
            connection: &Connection,
        ) -> Result<Page<Notebook, Next>, ProviderError> {
            let path = checkpoint.map_or_else(|| "/v1/notebooks?per_page=100".to_string(), |next| next.path);
            let response = Request::get(connection.url(&path)).authenticated().send()?;
            let notebooks: Vec<Notebook> = response.decode()?; // 429 → rate-limited, …
            match sync::next_link(&response).as_deref().and_then(sync::path_and_query) {
                Some(path) => Ok(Page::more(notebooks, Next { path: path.to_string() })),
                None => Ok(Page::last(notebooks, None)), // the next run starts over
            }
        }
    }

    /// The manifest's `sync_models`.
    pub fn sync_models() -> Vec<SyncModel> {
        vec![sync_model_definition::<Notebooks>()]
    }

    /// `Connector::run_sync` delegates here; the crate calls `register!(MyConnector, syncs)`.
    pub fn run_sync(
        model: &str,
        checkpoint: Option<&str>,
        run_started_at: &str,
        connection: &Connection,
    ) -> Result<SyncPage, ProviderError> {
        match model {
            Notebooks::NAME => run_sync_typed::<Notebooks>(checkpoint, run_started_at, connection),
            other => Err(sync::unknown(other)),
        }
    }
}

use gatehouse_plugin::{Connection, ProviderError, http::native};

fn connection() -> Connection {
    Connection { base_url: "https://notes.example".into(), account_id: "7".into(), settings: vec![], scope: None }
}

const STARTED: &str = "2026-11-26T10:00:00Z";

#[test]
fn the_guide_sync_pages_by_link_and_ends_without_a_checkpoint() {
    native::set_transport(|request| {
        assert!(request.authenticate, "the sync must ask the host to authenticate");
        let (headers, body) = match request.url.as_str() {
            "https://notes.example/v1/notebooks?per_page=100" => (
                vec![(
                    "link".to_string(),
                    r#"<https://notes.example/v1/notebooks?per_page=100&after=2>; rel="next""#.to_string(),
                )],
                r#"[{"id":1,"title":"A","archived_at":null,"pages":3},{"id":2,"title":"B","archived_at":"2026-01-01T00:00:00Z"}]"#,
            ),
            "https://notes.example/v1/notebooks?per_page=100&after=2" => {
                (vec![], r#"[{"id":3,"title":"C","archived_at":null}]"#)
            }
            other => panic!("unexpected request to {other}"),
        };
        Ok(native::Response { status: 200, headers, body: body.as_bytes().to_vec() })
    });
    let first = guide::run_sync("notebooks", None, STARTED, &connection()).unwrap();
    assert_eq!(first.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(first.records[0].data, r#"{"id":1,"title":"A","archived_at":null}"#);
    assert_eq!(
        (first.checkpoint.as_deref(), first.has_more),
        (Some(r#"{"path":"/v1/notebooks?per_page=100&after=2"}"#), true)
    );
    let last = guide::run_sync("notebooks", first.checkpoint.as_deref(), STARTED, &connection()).unwrap();
    assert_eq!((last.records.len(), last.checkpoint, last.has_more), (1, None, false));
    let unusable = guide::run_sync("notebooks", Some(r#"{"page":2}"#), STARTED, &connection());
    assert!(matches!(unusable, Err(ProviderError::InvalidInput(m)) if m.contains("unusable")));
    assert!(matches!(guide::run_sync("tags", None, STARTED, &connection()), Err(ProviderError::Unsupported(_))));
}

#[test]
fn the_guide_sync_model_is_full_with_a_derived_schema() {
    let models = guide::sync_models();
    assert_eq!(
        (models[0].name.as_str(), models[0].incremental, models[0].default_interval_seconds),
        ("notebooks", false, 3600)
    );
    let schema: serde_json::Value = serde_json::from_str(&models[0].record_schema).unwrap();
    assert_eq!(schema["required"], serde_json::json!(["id", "title", "archived_at"]));
    assert_eq!(schema["properties"]["archived_at"]["type"], serde_json::json!(["string", "null"]));
}

#[test]
fn the_readme_shows_this_code() {
    let readme = include_str!("../../README.md");
    let this = include_str!("guide_sync.rs");
    let module = this.split("mod guide {\n").nth(1).and_then(|rest| rest.split("\n}\n").next()).unwrap();
    let dedented: Vec<&str> = module.lines().map(|line| line.strip_prefix("    ").unwrap_or(line)).collect();
    assert!(readme.contains(&dedented.join("\n")), "plugins/README.md's typed-sync example differs from this file's");
}
