//! The actions both GitLab connectors offer. Every request is sent with
//! `authenticate` set: the host adds the connection's credential (a
//! `PRIVATE-TOKEN` or an OAuth bearer token, as each connector's manifest
//! declares), so this code is the same for both.

use gatehouse_plugin::{
    Action, ActionDefinition, Connection, ProviderError, action, action_definition,
    http::{Request, Response},
    run_typed,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The manifest entries of every GitLab action.
pub fn definitions() -> Vec<ActionDefinition> {
    vec![
        action_definition::<CreateIssue>(),
        action_definition::<AddMergeRequestNote>(),
        action_definition::<ListProjects>(),
    ]
}

/// Runs the action `name` (the connectors' `run_action`). On a connection
/// limited to one group, an action on a project is refused unless GitLab
/// says the project lies inside it.
pub fn run(name: &str, input: &str, connection: &Connection) -> Result<String, ProviderError> {
    if let Some(scope) = &connection.scope
        && (name == CreateIssue::NAME || name == AddMergeRequestNote::NAME)
    {
        let value: serde_json::Value =
            serde_json::from_str(input).map_err(|_| ProviderError::InvalidInput("The input is not JSON.".into()))?;
        let project: Project = serde_json::from_value(value["project"].clone())
            .map_err(|_| ProviderError::InvalidInput("The input names no project.".into()))?;
        let path = format!("api/v4/projects/{}", project.segment());
        match crate::reach::check_path(scope, "POST", &path, connection)? {
            gatehouse_plugin::ScopeVerdict::Inside => {}
            gatehouse_plugin::ScopeVerdict::Outside(why) | gatehouse_plugin::ScopeVerdict::Unknown(why) => {
                return Err(ProviderError::Forbidden(why));
            }
        }
    }
    match name {
        CreateIssue::NAME => run_typed::<CreateIssue>(input, connection),
        AddMergeRequestNote::NAME => run_typed::<AddMergeRequestNote>(input, connection),
        ListProjects::NAME => run_typed::<ListProjects>(input, connection),
        other => Err(action::unknown(other)),
    }
}

/// A GitLab project: its numeric id, or its full path such as
/// `group/subgroup/project`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Project {
    Id(#[schemars(range(min = 1))] u64),
    Path(#[schemars(length(min = 1))] String),
}

impl Project {
    /// The `:id` segment of a `/projects/:id/…` URL: the number, or the
    /// path with every reserved character (including `/`) percent-encoded.
    pub fn segment(&self) -> String {
        match self {
            Project::Id(id) => id.to_string(),
            Project::Path(path) => encode(path),
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so the
/// value stays one path segment or one query value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn api(connection: &Connection, path: &str) -> String {
    connection.url(&format!("/api/v4{path}"))
}

fn send(request: Request) -> Result<Response, ProviderError> {
    Ok(request.header("accept", "application/json").authenticated().send()?)
}

// ---- create-issue ---------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssueInput {
    /// The project: numeric id or full path (`group/subgroup/project`).
    pub project: Project,
    /// The issue's title.
    #[schemars(length(min = 1, max = 255))]
    pub title: String,
    /// The issue's description (Markdown).
    #[serde(default)]
    pub description: Option<String>,
    /// Label names; labels that do not exist yet are created.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Whether only project members with at least Reporter access see it.
    #[serde(default)]
    pub confidential: Option<bool>,
}

/// An issue as GitLab answers it (the fields this action passes on).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    pub title: String,
    pub state: String,
    pub web_url: String,
    pub created_at: String,
}

/// The JSON body GitLab's `POST /projects/:id/issues` takes.
#[derive(Debug, Serialize)]
struct NewIssue<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    /// Comma-separated, as GitLab takes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confidential: Option<bool>,
}

pub struct CreateIssue;

impl CreateIssue {
    /// The request this action sends.
    pub fn request(input: &CreateIssueInput, connection: &Connection) -> Result<Request, ProviderError> {
        let labels = match &input.labels {
            Some(labels) => {
                if let Some(bad) = labels.iter().find(|l| l.trim().is_empty() || l.contains(',')) {
                    return Err(ProviderError::InvalidInput(format!(
                        "The label {bad:?} cannot be used: label names must be non-empty and contain no comma."
                    )));
                }
                Some(labels.join(","))
            }
            None => None,
        };
        let body = NewIssue {
            title: &input.title,
            description: input.description.as_deref(),
            labels,
            confidential: input.confidential,
        };
        Ok(Request::post(api(connection, &format!("/projects/{}/issues", input.project.segment()))).json(&body))
    }
}

impl Action for CreateIssue {
    const NAME: &'static str = "create-issue";
    const DESCRIPTION: &'static str = "Creates an issue in a GitLab project.";
    type Input = CreateIssueInput;
    type Output = Issue;

    fn run(input: CreateIssueInput, connection: &Connection) -> Result<Issue, ProviderError> {
        send(Self::request(&input, connection)?)?.decode()
    }
}

// ---- add-merge-request-note -------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMergeRequestNoteInput {
    /// The project: numeric id or full path (`group/subgroup/project`).
    pub project: Project,
    /// The merge request's number within the project (`!iid`).
    #[schemars(range(min = 1))]
    pub merge_request_iid: u64,
    /// The comment (Markdown).
    #[schemars(length(min = 1))]
    pub body: String,
}

/// The note created, flattened.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MergeRequestNote {
    pub id: u64,
    pub body: String,
    pub author_username: String,
    pub created_at: String,
    pub merge_request_iid: u64,
}

#[derive(Deserialize)]
struct GitlabNote {
    id: u64,
    body: String,
    author: GitlabAuthor,
    created_at: String,
    noteable_iid: Option<u64>,
}

#[derive(Deserialize)]
struct GitlabAuthor {
    username: String,
}

pub struct AddMergeRequestNote;

impl AddMergeRequestNote {
    /// The request this action sends.
    pub fn request(input: &AddMergeRequestNoteInput, connection: &Connection) -> Request {
        let path = format!("/projects/{}/merge_requests/{}/notes", input.project.segment(), input.merge_request_iid);
        Request::post(api(connection, &path)).json(&serde_json::json!({ "body": input.body }))
    }

    /// The output for GitLab's answer.
    pub fn output(response: &Response, input: &AddMergeRequestNoteInput) -> Result<MergeRequestNote, ProviderError> {
        let note: GitlabNote = response.decode()?;
        Ok(MergeRequestNote {
            id: note.id,
            body: note.body,
            author_username: note.author.username,
            created_at: note.created_at,
            merge_request_iid: note.noteable_iid.unwrap_or(input.merge_request_iid),
        })
    }
}

impl Action for AddMergeRequestNote {
    const NAME: &'static str = "add-merge-request-note";
    const DESCRIPTION: &'static str = "Adds a comment to a merge request.";
    type Input = AddMergeRequestNoteInput;
    type Output = MergeRequestNote;

    fn run(input: AddMergeRequestNoteInput, connection: &Connection) -> Result<MergeRequestNote, ProviderError> {
        let response = send(Self::request(&input, connection))?;
        Self::output(&response, &input)
    }
}

// ---- list-projects ------------------------------------------------------------

fn twenty() -> u32 {
    20
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProjectsInput {
    /// Only projects whose name or path contains this.
    #[serde(default)]
    pub search: Option<String>,
    /// Projects per page.
    #[serde(default = "twenty")]
    #[schemars(range(min = 1, max = 100))]
    pub per_page: u32,
    /// `next_cursor` of the previous page; absent for the first page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One project the account is a member of.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ProjectSummary {
    pub id: u64,
    pub name: String,
    pub path_with_namespace: String,
    pub web_url: String,
    /// None for an empty repository.
    pub default_branch: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProjectPage {
    pub projects: Vec<ProjectSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

pub struct ListProjects;

impl ListProjects {
    /// The request this action sends.
    pub fn request(input: &ListProjectsInput, connection: &Connection) -> Result<Request, ProviderError> {
        let page: u32 = match input.cursor.as_deref() {
            None => 1,
            Some(cursor) => cursor.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                ProviderError::InvalidInput(format!(
                    "The cursor {cursor:?} is not one this action returned (a page number)."
                ))
            })?,
        };
        let mut query = format!(
            "membership=true&simple=true&order_by=id&sort=asc&per_page={}&page={page}",
            input.per_page.clamp(1, 100)
        );
        if let Some(search) = input.search.as_deref().filter(|s| !s.is_empty()) {
            query.push_str(&format!("&search={}", encode(search)));
        }
        // A connection limited to a group lists that group's projects only.
        Ok(Request::get(match &connection.scope {
            Some(scope) => api(connection, &format!("/groups/{}/projects?include_subgroups=true&{query}", scope.id)),
            None => api(connection, &format!("/projects?{query}")),
        }))
    }

    /// The page for GitLab's answer; the cursor comes from `X-Next-Page`,
    /// which GitLab sends empty on the last page (its total headers are
    /// left out for large result sets, so they are not used).
    pub fn output(response: &Response) -> Result<ProjectPage, ProviderError> {
        let projects: Vec<ProjectSummary> = response.decode()?;
        let next_cursor = response.header("x-next-page").map(str::trim).filter(|p| !p.is_empty()).map(str::to_string);
        Ok(ProjectPage { projects, next_cursor })
    }
}

impl Action for ListProjects {
    const NAME: &'static str = "list-projects";
    const DESCRIPTION: &'static str =
        "Lists the projects the account is a member of, oldest first, one page at a time.";
    type Input = ListProjectsInput;
    type Output = ProjectPage;

    fn run(input: ListProjectsInput, connection: &Connection) -> Result<ProjectPage, ProviderError> {
        Self::output(&send(Self::request(&input, connection)?)?)
    }
}

// The tests answer through the SDK's native transport, which exists only
// outside the sandbox.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod tests {
    use std::cell::RefCell;

    use gatehouse_plugin::http::native;

    use super::*;

    thread_local! {
        /// What the fake GitLab answers next, and the requests it saw, per
        /// test thread (the transport is process-wide, tests run in parallel).
        static REPLY: RefCell<Option<native::Response>> = const { RefCell::new(None) };
        static SEEN: RefCell<Vec<native::Request>> = const { RefCell::new(Vec::new()) };
    }

    /// Answers the next request with `status`, `headers`, `body`; returns
    /// the requests sent meanwhile by `f`'s result. The syncs' tests share
    /// it: the transport is installed once per process.
    pub(crate) fn with_gitlab<T>(
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
        f: impl FnOnce() -> T,
    ) -> (T, Vec<native::Request>) {
        native::set_transport(|request| {
            SEEN.with(|seen| seen.borrow_mut().push(request.clone()));
            REPLY.with(|reply| reply.borrow_mut().take()).ok_or(native::Error::Unreachable("no answer scripted".into()))
        });
        REPLY.with(|reply| {
            *reply.borrow_mut() = Some(native::Response {
                status,
                headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                body: body.as_bytes().to_vec(),
            })
        });
        SEEN.with(|seen| seen.borrow_mut().clear());
        let out = f();
        (out, SEEN.with(|seen| seen.borrow_mut().drain(..).collect()))
    }

    pub(crate) fn connection() -> Connection {
        Connection {
            base_url: "https://gitlab.example.com".into(),
            account_id: "42".into(),
            settings: vec![("base_url".into(), "https://gitlab.example.com".into())],
            scope: None,
        }
    }

    const ISSUE: &str = r#"{"id":901,"iid":7,"project_id":12,"title":"Broken build","description":null,"state":"opened","created_at":"2026-11-26T10:00:00.000Z","web_url":"https://gitlab.example.com/g/sub/p/-/issues/7","labels":["bug","ci"],"author":{"id":1,"username":"jdoe"}}"#;

    #[test]
    fn create_issue_posts_to_the_encoded_project_path() {
        let input =
            r#"{"project":"group/sub group/p.x","title":"Broken build","labels":["bug","ci"],"confidential":true}"#;
        let (out, seen) = with_gitlab(201, &[], ISSUE, || run("create-issue", input, &connection()));
        let out: serde_json::Value = serde_json::from_str(&out.unwrap()).unwrap();
        assert_eq!(out["iid"], 7);
        assert_eq!(out["web_url"], "https://gitlab.example.com/g/sub/p/-/issues/7");
        assert_eq!(out.as_object().unwrap().len(), 7, "{out}");
        let request = &seen[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://gitlab.example.com/api/v4/projects/group%2Fsub%20group%2Fp.x/issues");
        assert!(request.authenticate);
        assert!(request.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, serde_json::json!({"title": "Broken build", "labels": "bug,ci", "confidential": true}));
    }

    #[test]
    fn create_issue_by_numeric_id_sends_only_given_fields() {
        let input = r#"{"project":12,"title":"T","description":"D"}"#;
        let (out, seen) = with_gitlab(201, &[], ISSUE, || run("create-issue", input, &connection()));
        assert!(out.is_ok());
        assert_eq!(seen[0].url, "https://gitlab.example.com/api/v4/projects/12/issues");
        let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body, serde_json::json!({"title": "T", "description": "D"}));
    }

    #[test]
    fn create_issue_refuses_a_label_with_a_comma_before_sending() {
        let input = r#"{"project":12,"title":"T","labels":["a,b"]}"#;
        let (out, seen) = with_gitlab(201, &[], ISSUE, || run("create-issue", input, &connection()));
        assert!(matches!(out, Err(ProviderError::InvalidInput(m)) if m.contains("comma")));
        assert!(seen.is_empty());
    }

    #[test]
    fn gitlab_refusals_become_provider_errors() {
        let input = r#"{"project":"g/p","title":"T"}"#;
        let (out, _) = with_gitlab(404, &[], r#"{"message":"404 Project Not Found"}"#, || {
            run("create-issue", input, &connection())
        });
        assert!(matches!(out, Err(ProviderError::NotFound(m)) if m.contains("404 Project Not Found")));
        let (out, _) =
            with_gitlab(400, &[], r#"{"message":{"title":["is too long (maximum is 255 characters)"]}}"#, || {
                run("create-issue", input, &connection())
            });
        assert!(matches!(out, Err(ProviderError::InvalidInput(m)) if m.contains("is too long")));
        let (out, _) =
            with_gitlab(401, &[], r#"{"message":"401 Unauthorized"}"#, || run("create-issue", input, &connection()));
        assert!(matches!(out, Err(ProviderError::Unauthorized(_))));
        let (out, _) =
            with_gitlab(403, &[], r#"{"message":"403 Forbidden"}"#, || run("create-issue", input, &connection()));
        assert!(matches!(out, Err(ProviderError::Forbidden(_))));
        let (out, _) =
            with_gitlab(429, &[("retry-after", "30")], "Retry later", || run("create-issue", input, &connection()));
        assert!(matches!(out, Err(ProviderError::RateLimited(Some(30)))));
        let (out, _) = with_gitlab(201, &[], "<html>proxy</html>", || run("create-issue", input, &connection()));
        assert!(matches!(out, Err(ProviderError::UpstreamError(_))));
    }

    #[test]
    fn transport_failures_become_provider_errors() {
        native::set_transport(|request| {
            SEEN.with(|seen| seen.borrow_mut().push(request.clone()));
            REPLY.with(|reply| reply.borrow_mut().take()).ok_or(native::Error::Unreachable("no answer scripted".into()))
        });
        REPLY.with(|reply| *reply.borrow_mut() = None);
        let out = run("list-projects", "{}", &connection());
        assert!(matches!(out, Err(ProviderError::UpstreamUnreachable(m)) if m.contains("could not be reached")));
    }

    #[test]
    fn merge_request_note_flattens_the_author() {
        let note = r#"{"id":3001,"type":null,"body":"LGTM","author":{"id":1,"username":"jdoe","name":"J"},"created_at":"2026-11-26T10:01:00.000Z","noteable_id":55,"noteable_type":"MergeRequest","noteable_iid":9,"system":false}"#;
        let input = r#"{"project":"g/p","merge_request_iid":9,"body":"LGTM"}"#;
        let (out, seen) = with_gitlab(201, &[], note, || run("add-merge-request-note", input, &connection()));
        let out: serde_json::Value = serde_json::from_str(&out.unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"id": 3001, "body": "LGTM", "author_username": "jdoe", "created_at": "2026-11-26T10:01:00.000Z", "merge_request_iid": 9})
        );
        assert_eq!(seen[0].url, "https://gitlab.example.com/api/v4/projects/g%2Fp/merge_requests/9/notes");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&seen[0].body).unwrap(),
            serde_json::json!({"body": "LGTM"})
        );
        assert!(seen[0].authenticate);
    }

    #[test]
    fn list_projects_builds_the_query_and_pages_with_x_next_page() {
        let page = r#"[{"id":1,"name":"A","path_with_namespace":"g/a","web_url":"https://gitlab.example.com/g/a","default_branch":"main","description":"x"},{"id":2,"name":"B","path_with_namespace":"g/b","web_url":"https://gitlab.example.com/g/b","default_branch":null}]"#;
        let input = r#"{"search":"a b&c","per_page":2,"cursor":"3"}"#;
        let (out, seen) =
            with_gitlab(200, &[("x-next-page", "4")], page, || run("list-projects", input, &connection()));
        let out: serde_json::Value = serde_json::from_str(&out.unwrap()).unwrap();
        assert_eq!(out["next_cursor"], "4");
        assert_eq!(out["projects"][1]["default_branch"], serde_json::Value::Null);
        assert_eq!(out["projects"][0].as_object().unwrap().len(), 5);
        assert_eq!(seen[0].method, "GET");
        assert_eq!(
            seen[0].url,
            "https://gitlab.example.com/api/v4/projects?membership=true&simple=true&order_by=id&sort=asc&per_page=2&page=3&search=a%20b%26c"
        );
        assert!(seen[0].authenticate);

        let (out, seen) = with_gitlab(200, &[("x-next-page", "")], "[]", || run("list-projects", "{}", &connection()));
        assert_eq!(out.unwrap(), r#"{"projects":[],"next_cursor":null}"#);
        assert!(seen[0].url.ends_with("&per_page=20&page=1"), "{}", seen[0].url);
    }

    #[test]
    fn list_projects_refuses_a_foreign_cursor() {
        let (out, seen) = with_gitlab(200, &[], "[]", || run("list-projects", r#"{"cursor":"abc"}"#, &connection()));
        assert!(matches!(out, Err(ProviderError::InvalidInput(m)) if m.contains("cursor")));
        assert!(seen.is_empty());
    }

    #[test]
    fn unknown_actions_and_bad_input_are_refused() {
        assert!(matches!(run("delete-everything", "{}", &connection()), Err(ProviderError::Unsupported(_))));
        let out = run("create-issue", r#"{"project":1,"title":"T","assignee":"x"}"#, &connection());
        assert!(matches!(out, Err(ProviderError::InvalidInput(m)) if m.contains("assignee")));
    }

    #[test]
    fn schemas_carry_the_constraints() {
        let defs = definitions();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["create-issue", "add-merge-request-note", "list-projects"]);
        let schema = |i: usize| -> serde_json::Value { serde_json::from_str(&defs[i].input_schema).unwrap() };
        let issue = schema(0);
        assert_eq!(issue["additionalProperties"], false);
        assert_eq!(issue["required"], serde_json::json!(["project", "title"]));
        assert_eq!(issue["properties"]["title"]["minLength"], 1);
        assert_eq!(issue["properties"]["title"]["maxLength"], 255);
        let note = schema(1);
        assert_eq!(note["properties"]["merge_request_iid"]["minimum"], 1);
        assert_eq!(note["properties"]["body"]["minLength"], 1);
        let list = schema(2);
        assert_eq!(list["properties"]["per_page"]["minimum"], 1);
        assert_eq!(list["properties"]["per_page"]["maximum"], 100);
        assert_eq!(list["properties"]["per_page"]["default"], 20);
        assert_eq!(list["additionalProperties"], false);
        let output: serde_json::Value = serde_json::from_str(&defs[2].output_schema).unwrap();
        assert_eq!(output["required"], serde_json::json!(["projects", "next_cursor"]));
    }
}
