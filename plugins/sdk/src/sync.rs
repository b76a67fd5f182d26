//! Typed syncs: a sync model's records are a Rust type whose JSON Schema
//! is derived with `schemars` (as for actions), its checkpoint is a serde
//! type stored by the host as JSON text, and one call of [`run_typed`]
//! reads one bounded page.
//!
//! The contract is page-shaped: the host calls `syncs.run` with the
//! checkpoint of the last page it committed and stores each page's records
//! with its checkpoint atomically, so a run that fails half-way resumes
//! from its last page. The host owns time, storage, scheduling and
//! retries; a connector only turns a checkpoint into one request and the
//! answer into records and the next checkpoint.
//!
//! ```ignore
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! struct Repo { id: u64, name: String }
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Cursor { page: u32 }
//!
//! struct Repos;
//! impl SyncedModel for Repos {
//!     const NAME: &'static str = "repos";
//!     const DESCRIPTION: &'static str = "Repositories the account can read.";
//!     const DEFAULT_INTERVAL_SECONDS: u32 = 3600;
//!     const INCREMENTAL: bool = false;
//!     type Record = Repo;
//!     type Checkpoint = Cursor;
//!     fn record_id(repo: &Repo) -> String { repo.id.to_string() }
//!     fn run(checkpoint: Option<Cursor>, run_started_at: &str, connection: &Connection)
//!         -> Result<Page<Repo, Cursor>, ProviderError> { /* one request */ }
//! }
//! // manifest: sync_models: vec![sync_model_definition::<Repos>()]
//! // run_sync: match model { Repos::NAME => run_sync_typed::<Repos>(checkpoint, run_started_at, connection), … }
//! ```

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Connection, ProviderError, SyncModel, SyncPage, SyncRecord, action::output_schema, http::Response, rfc3339_to_unix,
    unix_to_rfc3339,
};

/// One kind of record a connector mirrors.
pub trait SyncedModel {
    /// Lowercase letters, digits and underscores, e.g. `merge_requests`.
    const NAME: &'static str;
    /// One or two sentences for the operator.
    const DESCRIPTION: &'static str;
    /// How often the host runs the sync unless the operator overrides it.
    const DEFAULT_INTERVAL_SECONDS: u32;
    /// `true`: a run resumes from the previous run's final checkpoint and
    /// reads only what changed. `false`: every run reads everything, and
    /// the host deletes the records a completed run did not return.
    const INCREMENTAL: bool;
    /// One record. Derive `Serialize` and `JsonSchema`; the host validates
    /// every record against the derived schema.
    type Record: Serialize + JsonSchema;
    /// Where a page starts. Stored by the host as JSON text between pages
    /// and between runs; never shown to anyone, but keep it small.
    type Checkpoint: Serialize + DeserializeOwned;

    /// The provider's stable id of `record`.
    fn record_id(record: &Self::Record) -> String;

    /// Reads the page that starts at `checkpoint` (None: the very first
    /// run, or a full model's next run). `run_started_at` is the run's
    /// start (RFC 3339, UTC), the same for every page of a run; an
    /// incremental model's final checkpoint must not be later than it.
    fn run(
        checkpoint: Option<Self::Checkpoint>,
        run_started_at: &str,
        connection: &Connection,
    ) -> Result<Page<Self::Record, Self::Checkpoint>, ProviderError>;
}

/// One page of typed records, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<R, C> {
    pub records: Vec<R>,
    /// Ids the provider says were deleted, when it can tell.
    pub deleted: Vec<String>,
    /// Where the next page starts, or (when `has_more` is false) the next
    /// run. A full model usually ends its run with None.
    pub checkpoint: Option<C>,
    /// More pages follow in this run.
    pub has_more: bool,
}

impl<R, C> Page<R, C> {
    /// A page after which the run goes on from `checkpoint`.
    pub fn more(records: Vec<R>, checkpoint: C) -> Self {
        Self { records, deleted: Vec::new(), checkpoint: Some(checkpoint), has_more: true }
    }

    /// The run's last page; the next run starts from `checkpoint`.
    pub fn last(records: Vec<R>, checkpoint: Option<C>) -> Self {
        Self { records, deleted: Vec::new(), checkpoint, has_more: false }
    }
}

/// The manifest entry of `S`: name, description, the record's JSON Schema
/// (draft 2020-12, of the record as serialized), interval and mode.
pub fn definition<S: SyncedModel>() -> SyncModel {
    SyncModel {
        name: S::NAME.into(),
        description: S::DESCRIPTION.into(),
        record_schema: output_schema::<S::Record>(),
        default_interval_seconds: S::DEFAULT_INTERVAL_SECONDS,
        incremental: S::INCREMENTAL,
    }
}

/// Runs one page of `S`: decodes the checkpoint (one that does not parse
/// is `invalid-input`), runs the model, encodes records and checkpoint.
pub fn run_typed<S: SyncedModel>(
    checkpoint: Option<&str>,
    run_started_at: &str,
    connection: &Connection,
) -> Result<SyncPage, ProviderError> {
    let checkpoint = decode_checkpoint::<S::Checkpoint>(S::NAME, checkpoint)?;
    let page = S::run(checkpoint, run_started_at, connection)?;
    let records = page.records.iter().map(|r| record(S::record_id(r), r)).collect::<Result<Vec<_>, _>>()?;
    Ok(SyncPage {
        records,
        deleted: page.deleted,
        checkpoint: page.checkpoint.as_ref().map(encode_checkpoint).transpose()?,
        has_more: page.has_more,
    })
}

/// A record of a page: `id` and `data` serialized as a JSON object.
pub fn record(id: impl Into<String>, data: &impl Serialize) -> Result<SyncRecord, ProviderError> {
    let data = serde_json::to_string(data)
        .map_err(|e| ProviderError::UpstreamError(format!("A record could not be encoded as JSON: {e}.")))?;
    Ok(SyncRecord { id: id.into(), data })
}

/// A checkpoint as the JSON text the host stores.
pub fn encode_checkpoint<C: Serialize>(checkpoint: &C) -> Result<String, ProviderError> {
    serde_json::to_string(checkpoint)
        .map_err(|e| ProviderError::UpstreamError(format!("The checkpoint could not be encoded as JSON: {e}.")))
}

/// The checkpoint the host passed, parsed; `invalid-input` when it is not
/// one this model wrote (e.g. left by an older connector version), so the
/// operator knows to reset the sync rather than retry it.
pub fn decode_checkpoint<C: DeserializeOwned>(
    model: &str,
    checkpoint: Option<&str>,
) -> Result<Option<C>, ProviderError> {
    checkpoint
        .map(|text| {
            serde_json::from_str(text).map_err(|e| {
                ProviderError::InvalidInput(format!(
                    "The checkpoint of the sync model {model:?} is unusable ({e}); reset the sync to read everything again."
                ))
            })
        })
        .transpose()
}

/// The error for a sync model the connector does not have.
pub fn unknown(model: &str) -> ProviderError {
    ProviderError::Unsupported(format!("This connector has no sync model named {model:?}."))
}

/// The `invalid-input` error for a checkpoint that parsed but holds a value
/// this model cannot use.
pub fn unusable_checkpoint(model: &str, why: &str) -> ProviderError {
    ProviderError::InvalidInput(format!(
        "The checkpoint of the sync model {model:?} is unusable ({why}); reset the sync to read everything again."
    ))
}

/// `timestamp` (RFC 3339) moved `seconds` earlier, in UTC without
/// fractions; None when it does not parse.
pub fn seconds_before(timestamp: &str, seconds: i64) -> Option<String> {
    let (secs, _) = rfc3339_to_unix(timestamp)?;
    Some(unix_to_rfc3339(secs - seconds))
}

// ---- pagination ------------------------------------------------------------

/// One entry of an RFC 8288 `Link` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    /// The `rel` values (a `rel` may list several, space-separated),
    /// lowercased.
    pub rels: Vec<String>,
}

/// Parses a `Link` header: `<url>; rel="next", <url>; rel="last"`. Entries
/// that are not well-formed are skipped; quoted parameter values may
/// contain commas and semicolons.
pub fn parse_links(header: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else { break };
        let url = rest[open + 1..close].trim().to_string();
        rest = &rest[close + 1..];
        let mut rels = Vec::new();
        // Parameters until the comma that ends this entry.
        loop {
            rest = rest.trim_start();
            let Some(after) = rest.strip_prefix(';') else { break };
            let (name, after) = match after.find('=') {
                Some(eq) if !after[..eq].contains([',', ';']) => (after[..eq].trim(), &after[eq + 1..]),
                _ => {
                    // A parameter without a value, e.g. `; crossorigin`.
                    let end = after.find([',', ';']).unwrap_or(after.len());
                    rest = &after[end..];
                    continue;
                }
            };
            let after = after.trim_start();
            let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
                match quoted.find('"') {
                    Some(end) => (&quoted[..end], &quoted[end + 1..]),
                    None => (quoted, ""),
                }
            } else {
                let end = after.find([',', ';']).unwrap_or(after.len());
                (after[..end].trim(), &after[end..])
            };
            if name.eq_ignore_ascii_case("rel") {
                rels.extend(value.split_ascii_whitespace().map(str::to_ascii_lowercase));
            }
            rest = remainder;
        }
        links.push(Link { url, rels });
        // The comma ending the entry; after garbage, the next `<` is
        // looked for all the same.
        if let Some(next) = rest.trim_start().strip_prefix(',') {
            rest = next;
        }
    }
    links
}

/// The URL of the answer's `Link: <…>; rel="next"`, when there is one.
pub fn next_link(response: &Response) -> Option<String> {
    parse_links(response.header("link")?).into_iter().find(|l| l.rels.iter().any(|r| r == "next")).map(|l| l.url)
}

/// The page number in GitLab's `X-Next-Page`; None when the header is
/// empty (the last page) or absent. GitLab's `X-Total` and
/// `X-Total-Pages` are not used: it leaves them out past 10,000 rows.
pub fn x_next_page(response: &Response) -> Option<u32> {
    response.header("x-next-page")?.trim().parse().ok().filter(|p| *p >= 1)
}

/// The path and query of an absolute URL (`https://h/a?b` → `/a?b`), for
/// keeping a provider's next-page URL in a checkpoint without its origin:
/// the next page is requested on the connection's base URL again, so a
/// checkpoint can never point a connector elsewhere.
pub fn path_and_query(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let start = rest.find(['/', '?'])?;
    let path = &rest[start..];
    // A fragment is never sent.
    Some(path.split('#').next().unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, JsonSchema, Debug, PartialEq)]
    struct Repo {
        id: u64,
        name: String,
        description: Option<String>,
    }

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cursor {
        page: u32,
    }

    struct Repos;
    impl SyncedModel for Repos {
        const NAME: &'static str = "repos";
        const DESCRIPTION: &'static str = "Repositories.";
        const DEFAULT_INTERVAL_SECONDS: u32 = 900;
        const INCREMENTAL: bool = false;
        type Record = Repo;
        type Checkpoint = Cursor;
        fn record_id(repo: &Repo) -> String {
            format!("r{}", repo.id)
        }
        fn run(checkpoint: Option<Cursor>, started: &str, c: &Connection) -> Result<Page<Repo, Cursor>, ProviderError> {
            let page = checkpoint.map_or(1, |c| c.page);
            let record = Repo { id: u64::from(page), name: format!("{started} {}", c.base_url), description: None };
            Ok(if page < 2 {
                Page::more(vec![record], Cursor { page: page + 1 })
            } else {
                Page::last(vec![record], None)
            })
        }
    }

    fn connection() -> Connection {
        Connection { base_url: "https://h".into(), account_id: "1".into(), settings: vec![], scope: None }
    }

    #[test]
    fn definition_carries_the_record_schema_and_mode() {
        let d = definition::<Repos>();
        assert_eq!((d.name.as_str(), d.default_interval_seconds, d.incremental), ("repos", 900, false));
        let schema: serde_json::Value = serde_json::from_str(&d.record_schema).unwrap();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["required"], serde_json::json!(["id", "name", "description"]));
        assert_eq!(schema["properties"]["description"]["type"], serde_json::json!(["string", "null"]));
    }

    #[test]
    fn run_typed_decodes_the_checkpoint_and_encodes_the_page() {
        let first = run_typed::<Repos>(None, "2026-01-01T00:00:00Z", &connection()).unwrap();
        assert_eq!(first.records[0].id, "r1");
        assert_eq!(first.records[0].data, r#"{"id":1,"name":"2026-01-01T00:00:00Z https://h","description":null}"#);
        assert_eq!((first.checkpoint.as_deref(), first.has_more), (Some(r#"{"page":2}"#), true));
        let last = run_typed::<Repos>(first.checkpoint.as_deref(), "t", &connection()).unwrap();
        assert_eq!((last.records[0].id.as_str(), last.checkpoint, last.has_more), ("r2", None, false));
        for bad in ["{", r#"{"page":"x"}"#, r#"{"page":1,"other":2}"#] {
            match run_typed::<Repos>(Some(bad), "t", &connection()) {
                Err(ProviderError::InvalidInput(why)) => {
                    assert!(why.contains("checkpoint") && why.contains("unusable"))
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn link_headers() {
        let header = r#"<https://g.example/api/v4/projects?id_after=42&per_page=2>; rel="next", <https://g.example/api/v4/projects?page=1>; rel="first""#;
        let links = parse_links(header);
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].url, "https://g.example/api/v4/projects?id_after=42&per_page=2");
        assert_eq!(links[1].rels, ["first"]);
        // Quoted values with commas and semicolons, several rels, no quotes.
        let odd = r#"<https://a/1>; title="x, y; z"; rel="prev", <https://a/2>; crossorigin; REL="Next last", <https://a/3>;rel=first"#;
        let links = parse_links(odd);
        assert_eq!(
            links.iter().map(|l| l.url.as_str()).collect::<Vec<_>>(),
            ["https://a/1", "https://a/2", "https://a/3"]
        );
        assert_eq!(links[1].rels, ["next", "last"]);
        assert_eq!(links[2].rels, ["first"]);
        let response = |link: &str| Response { status: 200, headers: vec![("link".into(), link.into())], body: vec![] };
        assert_eq!(next_link(&response(odd)).as_deref(), Some("https://a/2"));
        assert_eq!(next_link(&response(r#"<https://a/1>; rel="prev""#)), None);
        assert!(parse_links("garbage").is_empty());
    }

    #[test]
    fn x_next_page_and_paths() {
        let response =
            |v: &str| Response { status: 200, headers: vec![("x-next-page".into(), v.into())], body: vec![] };
        assert_eq!(x_next_page(&response("3")), Some(3));
        assert_eq!(x_next_page(&response("")), None);
        assert_eq!(x_next_page(&response("0")), None);
        assert_eq!(x_next_page(&Response { status: 200, headers: vec![], body: vec![] }), None);
        assert_eq!(path_and_query("https://g.example:8443/api/v4/p?a=1#f"), Some("/api/v4/p?a=1"));
        assert_eq!(path_and_query("https://g.example?x"), Some("?x"));
        assert_eq!(path_and_query("/relative"), None);
    }

    #[test]
    fn seconds_before_moves_back_in_utc() {
        assert_eq!(seconds_before("2026-11-26T10:00:00Z", 1).as_deref(), Some("2026-11-26T09:59:59Z"));
        assert_eq!(seconds_before("2026-01-01T00:00:00.750+01:00", 1).as_deref(), Some("2025-12-31T22:59:59Z"));
        assert_eq!(seconds_before("yesterday", 1), None);
    }
}
