//! The sync models both GitLab connectors offer: `groups` (full), and
//! `projects`, `issues` and `merge_requests` (incremental). Every request is
//! authenticated by the host, as for the actions, so this code is the same
//! for both connectors.
//!
//! GitLab's `X-Total` and `X-Total-Pages` are never used: GitLab leaves them
//! out past 10,000 rows. Pages end by `X-Next-Page` (offset pagination), by
//! the `Link` header (keyset pagination), or by a short page.
//!
//! Incremental models use "keyset on updated_at": rows are read in
//! ascending `updated_at` with `updated_after=T`, and T advances to one
//! second before the largest `updated_at` of each full page, so rows that
//! share the boundary timestamp are read again whether GitLab's filter is
//! inclusive or strict. Rows read twice are harmless: the host drops
//! records whose content did not change. When T would not move (a page
//! full of one timestamp), the run pages through it with `page=N` instead.

use gatehouse_plugin::{
    Connection, Page, ProviderError, SyncModel, SyncPage, SyncedModel,
    http::{Request, Response},
    rfc3339_to_unix, run_sync_typed,
    sync::{self, next_link, path_and_query, seconds_before, unusable_checkpoint, x_next_page},
    sync_model_definition,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::actions::encode;

/// Rows per request, GitLab's maximum.
pub const PER_PAGE: usize = 100;

/// The manifest entries of every GitLab sync model.
pub fn definitions() -> Vec<SyncModel> {
    vec![
        sync_model_definition::<Groups>(),
        sync_model_definition::<Projects>(),
        sync_model_definition::<Issues>(),
        sync_model_definition::<MergeRequests>(),
    ]
}

/// GitLab's project and group webhooks: the secret token comes back in
/// `X-Gitlab-Token`, the event in `X-Gitlab-Event`, and redeliveries of one
/// event share `Idempotency-Key` (GitLab 17.4+).
pub fn inbound_webhook() -> gatehouse_plugin::InboundWebhook {
    let event = |event: &str, model: &str| (event.to_string(), model.to_string());
    gatehouse_plugin::InboundWebhook {
        token_header: "x-gitlab-token".into(),
        event_header: "x-gitlab-event".into(),
        idempotency_header: Some("idempotency-key".into()),
        events: vec![
            event("Issue Hook", "issues"),
            event("Confidential Issue Hook", "issues"),
            event("Merge Request Hook", "merge_requests"),
            event("Project Hook", "projects"),
            event("Subgroup Hook", "groups"),
        ],
        setup: "In GitLab, open the project or group, Settings > Webhooks > Add new webhook: paste the URL and the secret token, tick Issues events and Merge request events, and save.".into(),
    }
}

/// Runs one page of `model` (the connectors' `run_sync`). On a connection
/// limited to one group, records outside it are left out of the page and
/// reported as deleted, so a copy mirrored before the limit is removed
/// from the mirror (the host ignores ids it does not hold).
pub fn run(
    model: &str,
    checkpoint: Option<&str>,
    run_started_at: &str,
    connection: &Connection,
) -> Result<SyncPage, ProviderError> {
    let mut page = match model {
        Groups::NAME => run_sync_typed::<Groups>(checkpoint, run_started_at, connection),
        Projects::NAME => run_sync_typed::<Projects>(checkpoint, run_started_at, connection),
        Issues::NAME => run_sync_typed::<Issues>(checkpoint, run_started_at, connection),
        MergeRequests::NAME => run_sync_typed::<MergeRequests>(checkpoint, run_started_at, connection),
        other => Err(sync::unknown(other)),
    }?;
    if let Some(scope) = &connection.scope {
        let (inside, outside): (Vec<_>, Vec<_>) =
            page.records.into_iter().partition(|record| record_inside(model, &record.data, &scope.path));
        page.records = inside;
        page.deleted.extend(outside.into_iter().map(|record| record.id));
    }
    Ok(page)
}

/// Whether a mirrored record lies inside the group `scope`: a group by its
/// full path, a project by its path, an issue or merge request by the
/// project path in its web URL (`…/<project path>/-/issues/7`).
fn record_inside(model: &str, data: &str, scope: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(data) else { return false };
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let path = match model {
        Groups::NAME => text("full_path"),
        Projects::NAME => text("path_with_namespace"),
        _ => {
            let url = text("web_url");
            let Some((before, _)) = url.split_once("/-/") else { return false };
            // Under a relative URL root the path has more segments and
            // nothing matches: a record is left out rather than let in.
            before.splitn(4, '/').nth(3).unwrap_or_default().to_string()
        }
    };
    crate::reach::inside(scope, &path)
}

/// `GET` `path_and_query` (starting with `/api/v4/`) on the connection,
/// authenticated; a refusal becomes the matching provider error (429 →
/// `rate-limited` with `Retry-After`), a body that is not a JSON array of
/// `T` an `upstream-error`.
fn get_rows<T: DeserializeOwned>(
    connection: &Connection,
    path_and_query: &str,
) -> Result<(Vec<T>, Response), ProviderError> {
    let response =
        Request::get(connection.url(path_and_query)).header("accept", "application/json").authenticated().send()?;
    let rows = response.decode()?;
    Ok((rows, response))
}

/// The run's final checkpoint of an incremental model: one second before
/// the run started, so that rows updated while the run read (and rows
/// whose timestamp rounds to the start) are read again by the next run.
fn final_updated_after(model: &str, run_started_at: &str) -> Result<UpdatedAfter, ProviderError> {
    let updated_after = seconds_before(run_started_at, 1).ok_or_else(|| {
        ProviderError::InvalidInput(format!(
            "The run of the sync model {model:?} started at {run_started_at:?}, which is not an RFC 3339 date-time."
        ))
    })?;
    Ok(UpdatedAfter { updated_after, page: None })
}

// ---- keyset on updated_at ------------------------------------------------------

/// Checkpoint of an incremental read: rows updated at or after
/// `updated_after`, from the `page`-th page of that query (absent: the
/// first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatedAfter {
    pub updated_after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl UpdatedAfter {
    fn check(&self, model: &str) -> Result<(), ProviderError> {
        if rfc3339_to_unix(&self.updated_after).is_none() {
            return Err(unusable_checkpoint(model, "updated_after is not an RFC 3339 date-time"));
        }
        if self.page == Some(0) {
            return Err(unusable_checkpoint(model, "page must be at least 1"));
        }
        Ok(())
    }

    /// `&updated_after=…` for the query.
    pub fn filter(&self) -> String {
        format!("&updated_after={}", encode(&self.updated_after))
    }

    /// `&page=N` for the query, or nothing for the first page.
    pub fn page_param(&self) -> String {
        self.page.filter(|p| *p > 1).map(|p| format!("&page={p}")).unwrap_or_default()
    }
}

/// A row that carries GitLab's `updated_at`.
trait Updated {
    fn updated_at(&self) -> Option<&str>;
}

/// One page of the keyset-on-updated_at scheme. `path` builds the request
/// path and query for a position; `at` is the position (None: from the
/// oldest row).
fn keyset_on_updated_at<T: DeserializeOwned + Updated>(
    model: &str,
    connection: &Connection,
    path: impl Fn(Option<&UpdatedAfter>) -> String,
    at: Option<UpdatedAfter>,
    run_started_at: &str,
) -> Result<Page<T, UpdatedAfter>, ProviderError> {
    if let Some(at) = &at {
        at.check(model)?;
    }
    // Checked before reading, so a bad start fails before any request.
    let last = final_updated_after(model, run_started_at)?;
    let (rows, _) = get_rows::<T>(connection, &path(at.as_ref()))?;
    if rows.len() < PER_PAGE {
        return Ok(Page::last(rows, Some(last)));
    }
    let next = next_position(model, at.as_ref(), &rows)?;
    Ok(Page::more(rows, next))
}

/// Where the page after a full `rows` starts: at its largest `updated_at`,
/// or, when that is the timestamp the page was read from, the next page of
/// the same query.
fn next_position<T: Updated>(
    model: &str,
    at: Option<&UpdatedAfter>,
    rows: &[T],
) -> Result<UpdatedAfter, ProviderError> {
    let mut latest: Option<(&str, (i64, u32))> = None;
    for row in rows {
        let Some(text) = row.updated_at() else { continue };
        let instant = rfc3339_to_unix(text).ok_or_else(|| {
            ProviderError::UpstreamError(format!(
                "GitLab sent an updated_at of {text:?} in the sync model {model:?}, which is not an RFC 3339 date-time."
            ))
        })?;
        if latest.is_none_or(|(_, l)| instant > l) {
            latest = Some((text, instant));
        }
    }
    let Some((latest, instant)) = latest else {
        return Err(ProviderError::UpstreamError(format!(
            "GitLab sent a page of the sync model {model:?} without any updated_at, so the sync cannot advance."
        )));
    };
    // The next T is one second before the page's latest `updated_at`: rows
    // sharing that timestamp beyond this page are read whether GitLab's
    // filter is inclusive (issues, merge requests: "on or after") or
    // strict. Compared as instants: the first page's T comes from the
    // host's clock, later ones from GitLab, and the two format the same
    // instant apart. When T would not move, page through it instead.
    let _ = latest;
    let next = instant.0 - 1;
    match at {
        Some(at) if rfc3339_to_unix(&at.updated_after).is_some_and(|(t, _)| next <= t) => Ok(UpdatedAfter {
            updated_after: at.updated_after.clone(),
            page: Some(at.page.unwrap_or(1).checked_add(1).ok_or_else(|| {
                ProviderError::UpstreamError(format!("The sync model {model:?} ran out of pages for one timestamp."))
            })?),
        }),
        _ => Ok(UpdatedAfter { updated_after: gatehouse_plugin::unix_to_rfc3339(next), page: None }),
    }
}

// ---- groups ---------------------------------------------------------------------

/// A group the account is a member of (Guest or higher).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub full_path: String,
    pub web_url: String,
    /// None for a top-level group.
    pub parent_id: Option<u64>,
}

/// Checkpoint within a `groups` run: the next offset page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsPage {
    pub page: u32,
}

pub struct Groups;

impl Groups {
    /// The request path of offset page `page`.
    pub fn path(page: u32) -> String {
        format!("/api/v4/groups?min_access_level=10&order_by=id&sort=asc&per_page={PER_PAGE}&page={page}")
    }
}

impl SyncedModel for Groups {
    const NAME: &'static str = "groups";
    const DESCRIPTION: &'static str =
        "The groups the account is a member of; every run reads all of them, so groups left or deleted are removed.";
    const DEFAULT_INTERVAL_SECONDS: u32 = 3600;
    const INCREMENTAL: bool = false;
    type Record = Group;
    type Checkpoint = GroupsPage;

    fn record_id(group: &Group) -> String {
        group.id.to_string()
    }

    fn run(
        checkpoint: Option<GroupsPage>,
        _run_started_at: &str,
        connection: &Connection,
    ) -> Result<Page<Group, GroupsPage>, ProviderError> {
        let page = checkpoint.map_or(1, |c| c.page);
        if page == 0 {
            return Err(unusable_checkpoint(Self::NAME, "page must be at least 1"));
        }
        let (groups, response) = get_rows::<Group>(connection, &Self::path(page))?;
        // X-Next-Page is empty on the last page. Should a proxy drop the
        // header, a full page still means more may follow: ending early
        // would make the host delete the groups not read.
        let next = match response.header("x-next-page") {
            Some(_) => x_next_page(&response),
            None => (groups.len() == PER_PAGE).then_some(page + 1),
        };
        Ok(match next {
            Some(next) => Page::more(groups, GroupsPage { page: next }),
            None => Page::last(groups, None),
        })
    }
}

// ---- projects -------------------------------------------------------------------

/// A project the account is a member of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectRecord {
    pub id: u64,
    pub name: String,
    pub path_with_namespace: String,
    pub web_url: String,
    /// None for an empty repository, or when the account cannot read the
    /// repository (GitLab then leaves the field out).
    #[serde(default)]
    pub default_branch: Option<String>,
    /// `public`, `internal` or `private`.
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub last_activity_at: Option<String>,
}

impl Updated for ProjectRecord {
    fn updated_at(&self) -> Option<&str> {
        self.updated_at.as_deref()
    }
}

/// Checkpoint of `projects`: a full pass in progress (the path and query of
/// GitLab's next keyset page), or an incremental position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProjectsCheckpoint {
    FullPass(FullPass),
    Incremental(UpdatedAfter),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullPass {
    /// e.g. `/api/v4/projects?id_after=42&membership=true&…`, joined with
    /// the connection's base URL when read.
    pub next: String,
}

pub struct Projects;

impl Projects {
    /// The first page of a full pass.
    pub const FIRST_PAGE: &'static str =
        "/api/v4/projects?membership=true&pagination=keyset&order_by=id&sort=asc&per_page=100";

    /// An incremental request from `at`.
    pub fn incremental_path(at: Option<&UpdatedAfter>) -> String {
        let (filter, page) = at.map(|at| (at.filter(), at.page_param())).unwrap_or_default();
        format!("/api/v4/projects?membership=true{filter}&order_by=updated_at&sort=asc&per_page={PER_PAGE}{page}")
    }

    /// The part of GitLab's next-page URL kept in the checkpoint: from
    /// `/api/v4/` on, so an instance under a relative URL root
    /// (`https://host/gitlab`) is re-joined with its base URL correctly.
    fn keep(url: &str) -> Option<String> {
        let path = path_and_query(url)?;
        let start = path.find("/api/v4/projects?")?;
        Some(path[start..].to_string())
    }

    fn full_pass(
        next: &str,
        run_started_at: &str,
        connection: &Connection,
    ) -> Result<Page<ProjectRecord, ProjectsCheckpoint>, ProviderError> {
        let (projects, response) = get_rows::<ProjectRecord>(connection, next)?;
        match next_link(&response) {
            Some(url) => {
                let next = Self::keep(&url).ok_or_else(|| {
                    ProviderError::UpstreamError(format!(
                        "GitLab's next page of projects is at {url:?}, which is not a projects API URL."
                    ))
                })?;
                Ok(Page::more(projects, ProjectsCheckpoint::FullPass(FullPass { next })))
            }
            // The pass read everything there was when it started; rows
            // updated since are at or after the run's start.
            None => Ok(Page::last(
                projects,
                Some(ProjectsCheckpoint::Incremental(UpdatedAfter {
                    updated_after: run_started_at.to_string(),
                    page: None,
                })),
            )),
        }
    }
}

impl SyncedModel for Projects {
    const NAME: &'static str = "projects";
    const DESCRIPTION: &'static str = "The projects the account is a member of; after a first full pass, each run reads the projects updated since the previous one.";
    const DEFAULT_INTERVAL_SECONDS: u32 = 600;
    const INCREMENTAL: bool = true;
    type Record = ProjectRecord;
    type Checkpoint = ProjectsCheckpoint;

    fn record_id(project: &ProjectRecord) -> String {
        project.id.to_string()
    }

    fn run(
        checkpoint: Option<ProjectsCheckpoint>,
        run_started_at: &str,
        connection: &Connection,
    ) -> Result<Page<ProjectRecord, ProjectsCheckpoint>, ProviderError> {
        if rfc3339_to_unix(run_started_at).is_none() {
            // Checked up front: a full pass ends with it as its checkpoint.
            return Err(ProviderError::InvalidInput(format!(
                "The run of the sync model \"projects\" started at {run_started_at:?}, which is not an RFC 3339 date-time."
            )));
        }
        match checkpoint {
            None => Self::full_pass(Self::FIRST_PAGE, run_started_at, connection),
            Some(ProjectsCheckpoint::FullPass(FullPass { next })) => {
                if !next.starts_with("/api/v4/projects?") {
                    return Err(unusable_checkpoint(Self::NAME, "next is not a projects API path"));
                }
                Self::full_pass(&next, run_started_at, connection)
            }
            Some(ProjectsCheckpoint::Incremental(at)) => {
                let page =
                    keyset_on_updated_at(Self::NAME, connection, Self::incremental_path, Some(at), run_started_at)?;
                Ok(Page {
                    records: page.records,
                    deleted: page.deleted,
                    checkpoint: page.checkpoint.map(ProjectsCheckpoint::Incremental),
                    has_more: page.has_more,
                })
            }
        }
    }
}

// ---- issues and merge requests -------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
struct Author {
    username: String,
}

/// An issue the account can see.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct IssueRecord {
    pub id: u64,
    /// The issue's number within its project (`#iid`).
    pub iid: u64,
    pub project_id: u64,
    pub title: String,
    /// `opened` or `closed`.
    pub state: String,
    pub labels: Vec<String>,
    pub author_username: String,
    pub web_url: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize)]
struct GitlabIssue {
    id: u64,
    iid: u64,
    project_id: u64,
    title: String,
    state: String,
    #[serde(default)]
    labels: Vec<String>,
    author: Author,
    web_url: String,
    created_at: String,
    updated_at: String,
}

impl Updated for GitlabIssue {
    fn updated_at(&self) -> Option<&str> {
        Some(&self.updated_at)
    }
}

impl From<GitlabIssue> for IssueRecord {
    fn from(i: GitlabIssue) -> Self {
        Self {
            id: i.id,
            iid: i.iid,
            project_id: i.project_id,
            title: i.title,
            state: i.state,
            labels: i.labels,
            author_username: i.author.username,
            web_url: i.web_url,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// A merge request the account can see.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MergeRequestRecord {
    pub id: u64,
    /// The merge request's number within its project (`!iid`).
    pub iid: u64,
    pub project_id: u64,
    pub title: String,
    /// `opened`, `closed`, `locked` or `merged`.
    pub state: String,
    pub source_branch: String,
    pub target_branch: String,
    pub author_username: String,
    pub web_url: String,
    pub created_at: String,
    pub updated_at: String,
    /// None unless merged.
    pub merged_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct GitlabMergeRequest {
    id: u64,
    iid: u64,
    project_id: u64,
    title: String,
    state: String,
    source_branch: String,
    target_branch: String,
    author: Author,
    web_url: String,
    created_at: String,
    updated_at: String,
    #[serde(default)]
    merged_at: Option<String>,
}

impl Updated for GitlabMergeRequest {
    fn updated_at(&self) -> Option<&str> {
        Some(&self.updated_at)
    }
}

impl From<GitlabMergeRequest> for MergeRequestRecord {
    fn from(m: GitlabMergeRequest) -> Self {
        Self {
            id: m.id,
            iid: m.iid,
            project_id: m.project_id,
            title: m.title,
            state: m.state,
            source_branch: m.source_branch,
            target_branch: m.target_branch,
            author_username: m.author.username,
            web_url: m.web_url,
            created_at: m.created_at,
            updated_at: m.updated_at,
            merged_at: m.merged_at,
        }
    }
}

/// `/api/v4/{endpoint}?scope=all&order_by=updated_at&sort=asc&per_page=100`
/// plus the position from `at`. `scope=all`: the default scope of these
/// endpoints is only what the account created.
pub fn scoped_path(endpoint: &str, at: Option<&UpdatedAfter>) -> String {
    let (filter, page) = at.map(|at| (at.filter(), at.page_param())).unwrap_or_default();
    format!("/api/v4/{endpoint}?scope=all&order_by=updated_at&sort=asc&per_page={PER_PAGE}{filter}{page}")
}

fn map_page<T, R: From<T>>(page: Page<T, UpdatedAfter>) -> Page<R, UpdatedAfter> {
    Page {
        records: page.records.into_iter().map(R::from).collect(),
        deleted: page.deleted,
        checkpoint: page.checkpoint,
        has_more: page.has_more,
    }
}

pub struct Issues;

impl SyncedModel for Issues {
    const NAME: &'static str = "issues";
    const DESCRIPTION: &'static str = "The issues the account can see, read in order of their last update; each run reads those updated since the previous one.";
    const DEFAULT_INTERVAL_SECONDS: u32 = 300;
    const INCREMENTAL: bool = true;
    type Record = IssueRecord;
    type Checkpoint = UpdatedAfter;

    fn record_id(issue: &IssueRecord) -> String {
        issue.id.to_string()
    }

    fn run(
        checkpoint: Option<UpdatedAfter>,
        run_started_at: &str,
        connection: &Connection,
    ) -> Result<Page<IssueRecord, UpdatedAfter>, ProviderError> {
        let path = |at: Option<&UpdatedAfter>| scoped_path("issues", at);
        keyset_on_updated_at::<GitlabIssue>(Self::NAME, connection, path, checkpoint, run_started_at).map(map_page)
    }
}

pub struct MergeRequests;

impl SyncedModel for MergeRequests {
    const NAME: &'static str = "merge_requests";
    const DESCRIPTION: &'static str = "The merge requests the account can see, read in order of their last update; each run reads those updated since the previous one.";
    const DEFAULT_INTERVAL_SECONDS: u32 = 300;
    const INCREMENTAL: bool = true;
    type Record = MergeRequestRecord;
    type Checkpoint = UpdatedAfter;

    fn record_id(merge_request: &MergeRequestRecord) -> String {
        merge_request.id.to_string()
    }

    fn run(
        checkpoint: Option<UpdatedAfter>,
        run_started_at: &str,
        connection: &Connection,
    ) -> Result<Page<MergeRequestRecord, UpdatedAfter>, ProviderError> {
        let path = |at: Option<&UpdatedAfter>| scoped_path("merge_requests", at);
        keyset_on_updated_at::<GitlabMergeRequest>(Self::NAME, connection, path, checkpoint, run_started_at)
            .map(map_page)
    }
}

// The tests answer through the SDK's native transport, which exists only
// outside the sandbox.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::actions::tests::{connection, with_gitlab};

    const STARTED: &str = "2026-11-26T10:00:00Z";

    /// Runs one page of `model` against one scripted answer; the page and
    /// the URL requested.
    fn page(
        model: &str,
        checkpoint: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (Result<SyncPage, ProviderError>, Vec<String>) {
        let (out, seen) = with_gitlab(200, headers, body, || run(model, checkpoint, STARTED, &connection()));
        assert!(seen.iter().all(|r| r.authenticate && r.method == "GET"), "every sync request is an authenticated GET");
        (out, seen.into_iter().map(|r| r.url).collect())
    }

    fn checkpoint(page: &SyncPage) -> Option<Value> {
        page.checkpoint.as_deref().map(|c| serde_json::from_str(c).unwrap())
    }

    fn project(id: u64, updated_at: &str) -> Value {
        json!({"id": id, "name": format!("P{id}"), "path_with_namespace": format!("g/p{id}"),
               "web_url": format!("https://gitlab.example.com/g/p{id}"), "default_branch": "main",
               "visibility": "private", "archived": false, "updated_at": updated_at,
               "last_activity_at": updated_at, "description": "not kept", "namespace": {"id": 1}})
    }

    fn issue(id: u64, updated_at: &str) -> Value {
        json!({"id": id, "iid": id % 1000, "project_id": 12, "title": format!("Issue {id}"), "state": "opened",
               "labels": ["bug"], "author": {"id": 1, "username": "jdoe"}, "description": "not kept",
               "web_url": format!("https://gitlab.example.com/g/p/-/issues/{id}"),
               "created_at": "2026-01-01T00:00:00.000Z", "updated_at": updated_at})
    }

    /// A full page (100 rows): `same` rows at `t1`, the rest at `t2`.
    fn full_page(row: fn(u64, &str) -> Value, same: usize, t1: &str, t2: &str) -> String {
        let rows: Vec<Value> = (0..PER_PAGE).map(|i| row(1000 + i as u64, if i < same { t1 } else { t2 })).collect();
        serde_json::to_string(&rows).unwrap()
    }

    #[test]
    fn definitions_name_modes_intervals_and_schemas() {
        let defs = definitions();
        let summary: Vec<(&str, u32, bool)> =
            defs.iter().map(|d| (d.name.as_str(), d.default_interval_seconds, d.incremental)).collect();
        assert_eq!(
            summary,
            [("groups", 3600, false), ("projects", 600, true), ("issues", 300, true), ("merge_requests", 300, true)]
        );
        let schema = |i: usize| -> Value { serde_json::from_str(&defs[i].record_schema).unwrap() };
        assert_eq!(schema(0)["properties"]["parent_id"]["type"], json!(["integer", "null"]));
        let projects = schema(1);
        assert_eq!(projects["properties"]["archived"]["type"], "boolean");
        assert_eq!(projects["properties"]["default_branch"]["type"], json!(["string", "null"]));
        assert_eq!(projects["required"].as_array().unwrap().len(), 9);
        assert_eq!(schema(2)["properties"]["labels"]["items"]["type"], "string");
        assert_eq!(schema(3)["properties"]["merged_at"]["type"], json!(["string", "null"]));
    }

    #[test]
    fn groups_page_by_x_next_page_and_end_without_a_checkpoint() {
        let body = r#"[{"id":7,"name":"Team","path":"team","full_path":"org/team","web_url":"https://gitlab.example.com/groups/org/team","parent_id":3,"visibility":"private"},{"id":9,"name":"Org","full_path":"org","web_url":"https://gitlab.example.com/groups/org","parent_id":null}]"#;
        let (out, urls) = page("groups", None, &[("x-next-page", "2")], body);
        let out = out.unwrap();
        assert_eq!(
            urls,
            ["https://gitlab.example.com/api/v4/groups?min_access_level=10&order_by=id&sort=asc&per_page=100&page=1"]
        );
        assert_eq!(out.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["7", "9"]);
        assert_eq!(
            serde_json::from_str::<Value>(&out.records[0].data).unwrap(),
            json!({"id": 7, "name": "Team", "full_path": "org/team", "web_url": "https://gitlab.example.com/groups/org/team", "parent_id": 3})
        );
        assert_eq!((checkpoint(&out), out.has_more), (Some(json!({"page": 2})), true));

        let (out, urls) = page("groups", Some(r#"{"page":2}"#), &[("x-next-page", "")], "[]");
        let out = out.unwrap();
        assert!(urls[0].ends_with("&per_page=100&page=2"), "{}", urls[0]);
        assert_eq!((out.checkpoint, out.has_more), (None, false));
    }

    #[test]
    fn groups_without_x_next_page_go_on_while_pages_are_full() {
        let group =
            |i: usize| json!({"id": i, "name": "G", "full_path": "g", "web_url": "https://g", "parent_id": null});
        let full = serde_json::to_string(&(0..PER_PAGE).map(group).collect::<Vec<_>>()).unwrap();
        let (out, _) = page("groups", Some(r#"{"page":4}"#), &[], &full);
        let out = out.unwrap();
        assert_eq!((checkpoint(&out), out.has_more), (Some(json!({"page": 5})), true));
        let short = serde_json::to_string(&[group(1)]).unwrap();
        let (out, _) = page("groups", Some(r#"{"page":5}"#), &[], &short);
        assert!(!out.unwrap().has_more);
    }

    #[test]
    fn projects_first_run_is_a_keyset_pass_by_id_that_ends_at_the_run_start() {
        let rows = serde_json::to_string(&[project(1, "2026-01-01T00:00:00.000Z")]).unwrap();
        let link = r#"<https://gitlab.example.com/api/v4/projects?id_after=1&membership=true&order_by=id&pagination=keyset&per_page=100&sort=asc>; rel="next""#;
        let (out, urls) = page("projects", None, &[("link", link)], &rows);
        let out = out.unwrap();
        assert_eq!(
            urls,
            [
                "https://gitlab.example.com/api/v4/projects?membership=true&pagination=keyset&order_by=id&sort=asc&per_page=100"
            ]
        );
        let next = "/api/v4/projects?id_after=1&membership=true&order_by=id&pagination=keyset&per_page=100&sort=asc";
        assert_eq!((checkpoint(&out), out.has_more), (Some(json!({ "next": next })), true));
        assert_eq!(out.records[0].id, "1");
        assert_eq!(
            serde_json::from_str::<Value>(&out.records[0].data).unwrap(),
            json!({"id": 1, "name": "P1", "path_with_namespace": "g/p1", "web_url": "https://gitlab.example.com/g/p1",
                   "default_branch": "main", "visibility": "private", "archived": false,
                   "updated_at": "2026-01-01T00:00:00.000Z", "last_activity_at": "2026-01-01T00:00:00.000Z"})
        );

        // The next page is requested on the connection's base URL, and the
        // pass ends at the run's start.
        let (out, urls) = page("projects", out.checkpoint.as_deref(), &[], "[]");
        let out = out.unwrap();
        assert_eq!(urls, [format!("https://gitlab.example.com{next}")]);
        assert_eq!((checkpoint(&out), out.has_more), (Some(json!({ "updated_after": STARTED })), false));
    }

    #[test]
    fn projects_keep_only_the_api_path_of_the_next_link() {
        // A different origin (a proxy's view) and a relative URL root.
        let link = r#"<http://internal:8080/gitlab/api/v4/projects?id_after=5&pagination=keyset>; rel="next""#;
        let (out, _) = page("projects", None, &[("link", link)], "[]");
        assert_eq!(checkpoint(&out.unwrap()), Some(json!({"next": "/api/v4/projects?id_after=5&pagination=keyset"})));
        let (out, urls) = page("projects", None, &[("link", r#"<https://evil.example/steal>; rel="next""#)], "[]");
        assert!(matches!(out, Err(ProviderError::UpstreamError(_))), "{out:?}");
        assert_eq!(urls.len(), 1);
        let (out, urls) = page("projects", Some(r#"{"next":"https://evil.example/api/v4/projects?x"}"#), &[], "[]");
        assert!(matches!(out, Err(ProviderError::InvalidInput(m)) if m.contains("unusable")));
        assert!(urls.is_empty());
    }

    #[test]
    fn projects_incremental_runs_advance_by_updated_at() {
        let t = "2026-11-26T09:00:00Z";
        let from_t = format!(r#"{{"updated_after":"{t}"}}"#);
        let body = full_page(project, 10, "2026-11-26T09:00:00.000Z", "2026-11-26T09:30:00.000Z");
        let (out, urls) = page("projects", Some(&from_t), &[], &body);
        let out = out.unwrap();
        assert_eq!(
            urls,
            [
                "https://gitlab.example.com/api/v4/projects?membership=true&updated_after=2026-11-26T09%3A00%3A00Z&order_by=updated_at&sort=asc&per_page=100"
            ]
        );
        assert_eq!(out.records.len(), PER_PAGE);
        assert_eq!((checkpoint(&out), out.has_more), (Some(json!({"updated_after": "2026-11-26T09:29:59Z"})), true));

        // A short page ends the run one second before it started.
        let body = serde_json::to_string(&[project(5, "2026-11-26T10:00:05.000Z")]).unwrap();
        let (out, _) = page("projects", out.checkpoint.as_deref(), &[], &body);
        let out = out.unwrap();
        assert_eq!((checkpoint(&out), out.has_more), (Some(json!({"updated_after": "2026-11-26T09:59:59Z"})), false));
    }

    #[test]
    fn a_full_page_at_the_same_timestamp_moves_on_by_page() {
        // The host's T and GitLab's rows format the same instant apart.
        let same = full_page(project, PER_PAGE, "2026-11-26T09:00:00.000Z", "");
        let (out, _) = page("projects", Some(r#"{"updated_after":"2026-11-26T09:00:00Z"}"#), &[], &same);
        let out = out.unwrap();
        assert_eq!(
            (checkpoint(&out), out.has_more),
            (Some(json!({"updated_after": "2026-11-26T09:00:00Z", "page": 2})), true)
        );

        let (out, urls) = page("projects", out.checkpoint.as_deref(), &[], &same);
        let out = out.unwrap();
        assert!(urls[0].ends_with("&order_by=updated_at&sort=asc&per_page=100&page=2"), "{}", urls[0]);
        assert_eq!(checkpoint(&out), Some(json!({"updated_after": "2026-11-26T09:00:00Z", "page": 3})));

        // Page 3 reaches rows one second later: T would move back onto
        // itself, so the run keeps paging.
        let mixed = full_page(project, 40, "2026-11-26T09:00:00.000Z", "2026-11-26T09:00:01.000Z");
        let (out, urls) = page("projects", out.checkpoint.as_deref(), &[], &mixed);
        assert!(urls[0].ends_with("&page=3"), "{}", urls[0]);
        let out = out.unwrap();
        assert_eq!(checkpoint(&out), Some(json!({"updated_after": "2026-11-26T09:00:00Z", "page": 4})));

        // Rows further on: back to page one, one second before the latest.
        let later = full_page(project, 40, "2026-11-26T09:00:00.000Z", "2026-11-26T09:05:00.000Z");
        let (out, _) = page("projects", out.checkpoint.as_deref(), &[], &later);
        assert_eq!(checkpoint(&out.unwrap()), Some(json!({"updated_after": "2026-11-26T09:04:59Z"})));
    }

    #[test]
    fn issues_read_all_scopes_from_the_oldest_update_on_a_first_run() {
        let body = full_page(issue, 1, "2026-11-01T08:00:00.000Z", "2026-11-02T08:00:00.000Z");
        let (out, urls) = page("issues", None, &[], &body);
        let out = out.unwrap();
        assert_eq!(
            urls,
            ["https://gitlab.example.com/api/v4/issues?scope=all&order_by=updated_at&sort=asc&per_page=100"]
        );
        assert_eq!(out.records[0].id, "1000");
        assert_eq!(
            serde_json::from_str::<Value>(&out.records[0].data).unwrap(),
            json!({"id": 1000, "iid": 0, "project_id": 12, "title": "Issue 1000", "state": "opened", "labels": ["bug"],
                   "author_username": "jdoe", "web_url": "https://gitlab.example.com/g/p/-/issues/1000",
                   "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-11-01T08:00:00.000Z"})
        );
        let next = checkpoint(&out).unwrap();
        assert_eq!(next, json!({"updated_after": "2026-11-02T07:59:59Z"}));

        let (out, urls) = page("issues", out.checkpoint.as_deref(), &[], "[]");
        assert_eq!(
            urls,
            [
                "https://gitlab.example.com/api/v4/issues?scope=all&order_by=updated_at&sort=asc&per_page=100&updated_after=2026-11-02T07%3A59%3A59Z"
            ]
        );
        let out = out.unwrap();
        assert_eq!((checkpoint(&out), out.has_more), (Some(json!({"updated_after": "2026-11-26T09:59:59Z"})), false));
    }

    #[test]
    fn the_final_checkpoint_is_never_after_the_run_start() {
        // Rows updated during the run (after it started) do not move the
        // final checkpoint past the start.
        let body = serde_json::to_string(&[issue(1, "2026-11-26T10:07:00.000Z")]).unwrap();
        for model in ["issues", "merge_requests", "projects"] {
            let body = if model == "projects" {
                serde_json::to_string(&[project(1, "2026-11-26T10:07:00.000Z")]).unwrap()
            } else if model == "merge_requests" {
                "[]".to_string()
            } else {
                body.clone()
            };
            let (out, _) = page(model, Some(r#"{"updated_after":"2026-11-26T09:00:00Z"}"#), &[], &body);
            let out = out.unwrap();
            let at = checkpoint(&out).unwrap()["updated_after"].as_str().unwrap().to_string();
            assert!(!out.has_more);
            assert!(rfc3339_to_unix(&at).unwrap() <= rfc3339_to_unix(STARTED).unwrap(), "{model}: {at}");
        }
    }

    #[test]
    fn merge_requests_map_and_page_like_issues() {
        let mr = json!({"id": 55, "iid": 3, "project_id": 12, "title": "Fix", "state": "merged", "source_branch": "fix",
                        "target_branch": "main", "author": {"username": "ann"}, "web_url": "https://gitlab.example.com/g/p/-/merge_requests/3",
                        "created_at": "2026-11-01T00:00:00.000Z", "updated_at": "2026-11-03T00:00:00.000Z",
                        "merged_at": "2026-11-03T00:00:00.000Z", "draft": false});
        let open = json!({"id": 56, "iid": 4, "project_id": 12, "title": "WIP", "state": "opened", "source_branch": "wip",
                          "target_branch": "main", "author": {"username": "bob"}, "web_url": "https://gitlab.example.com/g/p/-/merge_requests/4",
                          "created_at": "2026-11-01T00:00:00.000Z", "updated_at": "2026-11-04T00:00:00.000Z", "merged_at": null});
        let (out, urls) = page(
            "merge_requests",
            Some(r#"{"updated_after":"2026-11-02T00:00:00Z","page":2}"#),
            &[],
            &json!([mr, open]).to_string(),
        );
        assert_eq!(
            urls,
            [
                "https://gitlab.example.com/api/v4/merge_requests?scope=all&order_by=updated_at&sort=asc&per_page=100&updated_after=2026-11-02T00%3A00%3A00Z&page=2"
            ]
        );
        let out = out.unwrap();
        assert_eq!(out.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["55", "56"]);
        let second: Value = serde_json::from_str(&out.records[1].data).unwrap();
        assert_eq!(second["author_username"], "bob");
        assert_eq!(second["merged_at"], Value::Null);
        assert_eq!(second.as_object().unwrap().len(), 12);
    }

    #[test]
    fn refusals_and_bad_input() {
        let (out, _) =
            with_gitlab(429, &[("retry-after", "30")], "Retry later", || run("issues", None, STARTED, &connection()));
        assert!(matches!(out, Err(ProviderError::RateLimited(Some(30)))), "{out:?}");
        let (out, _) =
            with_gitlab(401, &[], r#"{"message":"401 Unauthorized"}"#, || run("groups", None, STARTED, &connection()));
        assert!(matches!(out, Err(ProviderError::Unauthorized(_))), "{out:?}");
        let (out, _) = page("issues", None, &[], "<html>proxy</html>");
        assert!(matches!(out, Err(ProviderError::UpstreamError(_))), "{out:?}");

        for (model, bad) in [
            ("issues", r#"{"page":2}"#),
            ("issues", r#"{"updated_after":"yesterday"}"#),
            ("merge_requests", r#"{"updated_after":"2026-11-02T00:00:00Z","page":0}"#),
            ("groups", r#"{"page":0}"#),
            ("groups", "not json"),
            ("projects", r#"{"cursor":"x"}"#),
        ] {
            let (out, urls) = page(model, Some(bad), &[], "[]");
            assert!(
                matches!(&out, Err(ProviderError::InvalidInput(m)) if m.contains("unusable")),
                "{model} {bad}: {out:?}"
            );
            assert!(urls.is_empty(), "{model} {bad}: no request for an unusable checkpoint");
        }
        let (out, urls) = with_gitlab(200, &[], "[]", || run("issues", None, "now", &connection()));
        assert!(matches!(out, Err(ProviderError::InvalidInput(m)) if m.contains("RFC 3339")));
        assert!(urls.is_empty());
        assert!(matches!(run("pipelines", None, STARTED, &connection()), Err(ProviderError::Unsupported(_))));
    }
}
