//! The part of the fake GitLab that connections are used against: projects
//! (offset pagination with GitLab's `X-Next-Page`/`Link` headers), issues,
//! merge request notes, in GitLab's JSON shapes and status codes. Plus one
//! hook that real GitLab does not have, `/echo-headers`, standing for an
//! upstream that reflects requests (the proxy and the sandbox must not let
//! a credential come back through it).

use std::collections::BTreeMap;

use poem::{Response, http::StatusCode};
use serde_json::{Value, json};

#[derive(Default)]
pub struct Data {
    projects: BTreeMap<u64, Project>,
    groups: BTreeMap<u64, Group>,
    next_issue_id: u64,
    next_note_id: u64,
    /// Every request that reached these routes: method, path and query,
    /// and the name of the header that carried the token.
    pub requests: Vec<Seen>,
    /// Statuses to answer instead of the next requests (429, 500, …).
    pub fail_next: Vec<u16>,
    /// Only requests to this path fail (all when None).
    pub fail_only: Option<String>,
    /// `RateLimit-Remaining` and `RateLimit-Reset` (Unix seconds) to send
    /// on successful answers, as GitLab does.
    pub rate_limit: Option<(u64, i64)>,
    /// Each list answer takes this long.
    pub slow: std::time::Duration,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub auth_header: String,
    pub body: String,
}

struct Project {
    path_with_namespace: String,
    members: Vec<u64>,
    issues: Vec<Value>,
    merge_requests: Vec<u64>,
    notes: Vec<Value>,
    /// Unix seconds; what `updated_after` and `order_by=updated_at` read.
    updated_at: i64,
}

struct Group {
    full_path: String,
    members: Vec<u64>,
}

/// GitLab's timestamp format, milliseconds and `Z`.
pub fn gitlab_time(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_time(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// When fixtures were last changed, before any sync ran.
const CREATED: i64 = 1_767_607_200;

impl Data {
    pub fn add_project(&mut self, id: u64, path_with_namespace: &str, members: &[u64], merge_requests: &[u64]) {
        self.projects.insert(
            id,
            Project {
                path_with_namespace: path_with_namespace.into(),
                members: members.to_vec(),
                issues: Vec::new(),
                merge_requests: merge_requests.to_vec(),
                notes: Vec::new(),
                updated_at: CREATED,
            },
        );
    }

    /// `count` projects `bulk/project-<id>` from `first_id` on, all `member`'s.
    pub fn add_many_projects(&mut self, first_id: u64, count: u64, member: u64) {
        for id in first_id..first_id + count {
            self.add_project(id, &format!("bulk/project-{id}"), &[member], &[]);
        }
    }

    pub fn add_group(&mut self, id: u64, full_path: &str, members: &[u64]) {
        self.groups.insert(id, Group { full_path: full_path.into(), members: members.to_vec() });
    }

    pub fn remove_group(&mut self, id: u64) {
        self.groups.remove(&id);
    }

    /// The project changes now (as a push or a settings change would).
    pub fn touch_project(&mut self, id: u64, new_path: Option<&str>) {
        let p = self.projects.get_mut(&id).unwrap();
        p.updated_at = now();
        if let Some(path) = new_path {
            p.path_with_namespace = path.into();
        }
    }

    /// An issue authored by `author` in `project`, last updated `updated_at`.
    pub fn add_issue(&mut self, project: u64, title: &str, author: (u64, &str), updated_at: i64) -> u64 {
        self.next_issue_id += 1;
        let id = 1000 + self.next_issue_id;
        let p = self.projects.get_mut(&project).unwrap();
        let iid = p.issues.len() as u64 + 1;
        p.issues.push(issue_json(id, iid, project, &p.path_with_namespace, title, author, updated_at));
        id
    }

    /// The issue changes now.
    pub fn touch_issue(&mut self, id: u64, title: &str) {
        for p in self.projects.values_mut() {
            for issue in &mut p.issues {
                if issue["id"] == id {
                    issue["title"] = json!(title);
                    issue["updated_at"] = json!(gitlab_time(now()));
                }
            }
        }
    }

    pub fn issues(&self, project: u64) -> Vec<Value> {
        self.projects.get(&project).map(|p| p.issues.clone()).unwrap_or_default()
    }

    pub fn notes(&self, project: u64) -> Vec<Value> {
        self.projects.get(&project).map(|p| p.notes.clone()).unwrap_or_default()
    }
}

pub fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

fn not_found(what: &str) -> Response {
    json_response(404, json!({"message": format!("404 {what} Not Found")}))
}

pub struct Caller<'a> {
    /// The fake's own URL, for `Link` headers.
    pub base_url: &'a str,
    pub user: u64,
    pub username: &'a str,
    pub scopes: &'a [String],
}

/// Answers the routes of this module, or None for a path it does not own.
pub fn route(
    data: &mut Data,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    headers: &poem::http::HeaderMap,
    caller: &Caller,
) -> Option<Response> {
    if path == "/echo-headers" {
        let echoed: BTreeMap<String, String> =
            headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
        return Some(json_response(200, json!({"headers": echoed})));
    }
    let owned = ["/api/v4/groups", "/api/v4/issues", "/api/v4/merge_requests", ASSOCIATIONS].contains(&path)
        || path.starts_with("/api/v4/projects")
        || path.starts_with("/api/v4/groups/");
    if !owned {
        return None;
    }
    let auth_header = ["private-token", "authorization"]
        .iter()
        .find(|h| headers.contains_key(**h))
        .map(|h| h.to_string())
        .unwrap_or_default();
    data.requests.push(Seen {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        auth_header,
        body: String::from_utf8_lossy(body).into_owned(),
    });
    if !data.fail_next.is_empty() && data.fail_only.as_deref().is_none_or(|only| only == path) {
        let status = data.fail_next.remove(0);
        return Some(failure(status));
    }
    let mut response = answer(data, method, path, query, body, caller)?;
    if let Some((remaining, reset)) = data.rate_limit
        && response.status().is_success()
    {
        let h = response.headers_mut();
        h.insert("ratelimit-limit", "600".parse().unwrap());
        h.insert("ratelimit-remaining", remaining.to_string().parse().unwrap());
        h.insert("ratelimit-reset", reset.to_string().parse().unwrap());
    }
    Some(response)
}

fn answer(data: &mut Data, method: &str, path: &str, query: &str, body: &[u8], caller: &Caller) -> Option<Response> {
    let writes = method != "GET" && method != "HEAD";
    if writes && !caller.scopes.iter().any(|s| s == "api") {
        return Some(json_response(
            403,
            json!({
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": "api"
            }),
        ));
    }
    let q: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let scope_all = q.get("scope").map(String::as_str) == Some("all");
    match (method, path) {
        ("GET", ASSOCIATIONS) => return Some(associations(data, &q, caller, query)),
        ("GET", "/api/v4/groups") => return Some(list_groups(data, query, caller)),
        ("GET", "/api/v4/issues") => {
            let items = by_update(visible_work(data, caller, scope_all, false), &q);
            return Some(offset_page(items, &q, caller.base_url, path, query));
        }
        ("GET", "/api/v4/merge_requests") => {
            let items = by_update(visible_work(data, caller, scope_all, true), &q);
            return Some(offset_page(items, &q, caller.base_url, path, query));
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/api/v4/groups/") {
        return Some(group_routes(data, method, rest, &q, query, caller));
    }
    let rest = path.strip_prefix("/api/v4/projects")?;
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    Some(match (method, segments.as_slice()) {
        ("GET", []) => list_projects(data, query, caller),
        (_, [project, tail @ ..]) => {
            let decoded = percent_decode(project);
            let id = decoded
                .parse::<u64>()
                .ok()
                .or_else(|| data.projects.iter().find(|(_, p)| p.path_with_namespace == decoded).map(|(id, _)| *id));
            let Some(id) = id.filter(|id| data.projects.get(id).is_some_and(|p| sees_project(data, p, caller.user)))
            else {
                return Some(not_found("Project"));
            };
            match (method, tail) {
                ("POST", ["issues"]) => create_issue(data, id, body, caller),
                ("POST", ["merge_requests", iid, "notes"]) => add_note(data, id, iid, body, caller),
                ("GET", []) => {
                    project_json(data, id, false).map(|p| json_response(200, p)).unwrap_or_else(|| not_found("Project"))
                }
                _ => json_response(404, json!({"error": "404 Not Found"})),
            }
        }
        _ => json_response(405, json!({"error": "405 Method Not Allowed"})),
    })
}

/// GitLab's `GET /personal_access_tokens/self/associations`.
pub const ASSOCIATIONS: &str = "/api/v4/personal_access_tokens/self/associations";

/// Whether `user` is a member of the group at `full_path` or of one of its
/// ancestors (membership is inherited downwards, as in GitLab).
fn in_group(data: &Data, full_path: &str, user: u64) -> bool {
    data.groups.values().any(|g| {
        g.members.contains(&user) && (g.full_path == full_path || full_path.starts_with(&format!("{}/", g.full_path)))
    })
}

/// Whether `user` can see the project: a member of it or of a group above it.
fn sees_project(data: &Data, p: &Project, user: u64) -> bool {
    p.members.contains(&user)
        || p.path_with_namespace.rsplit_once('/').is_some_and(|(namespace, _)| in_group(data, namespace, user))
}

fn group_json(data: &Data, id: u64, g: &Group) -> Value {
    let name = g.full_path.rsplit('/').next().unwrap_or_default();
    let parent = g
        .full_path
        .rsplit_once('/')
        .and_then(|(parent, _)| data.groups.iter().find(|(_, p)| p.full_path == parent).map(|(id, _)| *id));
    json!({
        "id": id, "web_url": format!("https://gitlab.example.com/groups/{}", g.full_path), "name": name,
        "path": name, "description": "", "visibility": "private", "full_name": g.full_path.replace('/', " / "),
        "full_path": g.full_path, "parent_id": parent, "created_at": gitlab_time(CREATED)
    })
}

/// The groups and projects the token's user is a member of, in GitLab's
/// shape (groups without `full_path`), `page` and `per_page` applying to
/// each list, with the pagination headers.
fn associations(data: &Data, q: &BTreeMap<String, String>, caller: &Caller, query: &str) -> Response {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(20).clamp(1, 100);
    let groups: Vec<Value> = data
        .groups
        .iter()
        .filter(|(_, g)| g.members.contains(&caller.user))
        .map(|(id, g)| {
            let mut v = group_json(data, *id, g);
            let o = v.as_object_mut().unwrap();
            for gone in ["path", "description", "full_name", "full_path", "created_at"] {
                o.remove(gone);
            }
            o.insert("organization_id".into(), json!(1));
            o.insert("access_levels".into(), json!(50));
            v
        })
        .collect();
    let projects: Vec<Value> = data
        .projects
        .iter()
        .filter(|(_, p)| p.members.contains(&caller.user))
        .filter_map(|(id, _)| {
            let mut v = project_json(data, *id, true)?;
            v["access_levels"] = json!({"project_access_level": 30, "group_access_level": null});
            v["visibility"] = json!("private");
            Some(v)
        })
        .collect();
    let total = groups.len().max(projects.len());
    let total_pages = total.div_ceil(per_page).max(1);
    let take = |items: Vec<Value>| items.into_iter().skip((page - 1) * per_page).take(per_page).collect::<Vec<_>>();
    let mut response = json_response(200, json!({"groups": take(groups), "projects": take(projects)}));
    let next = if page < total_pages { (page + 1).to_string() } else { String::new() };
    let h = response.headers_mut();
    h.insert("x-page", page.to_string().parse().unwrap());
    h.insert("x-per-page", per_page.to_string().parse().unwrap());
    h.insert("x-next-page", next.parse().unwrap());
    h.insert("x-total", total.to_string().parse().unwrap());
    h.insert("x-total-pages", total_pages.to_string().parse().unwrap());
    if !next.is_empty() {
        let others: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_bytes()).into_owned().filter(|(k, _)| k != "page").collect();
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &others {
            q.append_pair(k, v);
        }
        q.append_pair("page", &next);
        let link = format!("<{}{ASSOCIATIONS}?{}>; rel=\"next\"", caller.base_url, q.finish());
        h.insert("link", link.parse().unwrap());
    }
    response
}

/// `GET /groups/:id` (numeric id or URL-encoded full path) and
/// `GET /groups/:id/projects` (`include_subgroups`), for members of the
/// group or of a group above it; 404 otherwise, as GitLab answers.
fn group_routes(
    data: &Data,
    method: &str,
    rest: &str,
    q: &BTreeMap<String, String>,
    query: &str,
    caller: &Caller,
) -> Response {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some(first) = segments.first() else { return not_found("Group") };
    let decoded = percent_decode(first);
    let found = decoded
        .parse::<u64>()
        .ok()
        .and_then(|id| data.groups.get(&id).map(|g| (id, g)))
        .or_else(|| data.groups.iter().find(|(_, g)| g.full_path == decoded).map(|(id, g)| (*id, g)));
    let Some((id, group)) = found.filter(|(_, g)| in_group(data, &g.full_path, caller.user)) else {
        return not_found("Group");
    };
    match (method, &segments[1..]) {
        ("GET", []) => json_response(200, group_json(data, id, group)),
        ("GET", ["projects"]) => {
            let subgroups = q.get("include_subgroups").map(String::as_str) == Some("true");
            let items: Vec<Value> = data
                .projects
                .iter()
                .filter(|(_, p)| sees_project(data, p, caller.user))
                .filter(|(_, p)| match p.path_with_namespace.rsplit_once('/') {
                    Some((namespace, _)) => {
                        namespace == group.full_path
                            || (subgroups && namespace.starts_with(&format!("{}/", group.full_path)))
                    }
                    None => false,
                })
                .filter_map(|(id, _)| project_json(data, *id, q.get("simple").map(String::as_str) == Some("true")))
                .collect();
            offset_page(items, q, caller.base_url, &format!("/api/v4/groups/{first}/projects"), query)
        }
        _ => json_response(404, json!({"error": "404 Not Found"})),
    }
}

fn issue_json(id: u64, iid: u64, project: u64, path: &str, title: &str, author: (u64, &str), updated_at: i64) -> Value {
    json!({
        "id": id, "iid": iid, "project_id": project, "title": title, "description": null, "state": "opened",
        "created_at": gitlab_time(CREATED), "updated_at": gitlab_time(updated_at),
        "closed_at": null, "closed_by": null, "labels": [], "milestone": null, "assignees": [],
        "author": {"id": author.0, "username": author.1, "name": format!("{} Example", author.1), "state": "active"},
        "type": "ISSUE", "user_notes_count": 0, "upvotes": 0, "downvotes": 0, "due_date": null,
        "confidential": false, "discussion_locked": null,
        "web_url": format!("https://gitlab.example.com/{path}/-/issues/{iid}"),
        "references": {"short": format!("#{iid}"), "relative": format!("#{iid}"), "full": format!("{path}#{iid}")}
    })
}

fn mr_json(project: u64, path: &str, iid: u64, author: (u64, &str), updated_at: i64) -> Value {
    json!({
        "id": 700_000 + project * 1000 + iid, "iid": iid, "project_id": project, "title": format!("Change {iid}"),
        "description": "", "state": "opened", "created_at": gitlab_time(CREATED), "updated_at": gitlab_time(updated_at),
        "merged_at": null, "closed_at": null, "target_branch": "main", "source_branch": format!("feature-{iid}"),
        "author": {"id": author.0, "username": author.1, "name": format!("{} Example", author.1), "state": "active"},
        "draft": false, "merge_status": "can_be_merged", "sha": "0123456789abcdef0123456789abcdef01234567",
        "web_url": format!("https://gitlab.example.com/{path}/-/merge_requests/{iid}"),
        "references": {"short": format!("!{iid}"), "full": format!("{path}!{iid}")}
    })
}

/// Offset pagination as GitLab answers it: `X-Page`, `X-Per-Page`,
/// `X-Next-Page`, `X-Prev-Page`, a `Link` header, and `X-Total` /
/// `X-Total-Pages` only up to 10,000 rows (GitLab drops them beyond).
fn offset_page(items: Vec<Value>, q: &BTreeMap<String, String>, base: &str, path: &str, query: &str) -> Response {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(20).clamp(1, 100);
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let body: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let next = if page < total_pages { (page + 1).to_string() } else { String::new() };
    let mut response = json_response(200, Value::Array(body));
    let h = response.headers_mut();
    h.insert("x-page", page.to_string().parse().unwrap());
    h.insert("x-per-page", per_page.to_string().parse().unwrap());
    h.insert("x-next-page", next.parse().unwrap());
    h.insert("x-prev-page", if page > 1 { (page - 1).to_string() } else { String::new() }.parse().unwrap());
    if total <= 10_000 {
        h.insert("x-total", total.to_string().parse().unwrap());
        h.insert("x-total-pages", total_pages.to_string().parse().unwrap());
    }
    if !next.is_empty() {
        let others: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_bytes()).into_owned().filter(|(k, _)| k != "page").collect();
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &others {
            q.append_pair(k, v);
        }
        q.append_pair("page", &next);
        let link = format!("<{base}{path}?{}>; rel=\"next\"", q.finish());
        h.insert("link", link.parse().unwrap());
    }
    response
}

/// `updated_after` and `order_by=updated_at&sort=asc` over JSON items with
/// an `updated_at` field (GitLab's default order is newest first by
/// creation; only the asked order is modelled).
fn by_update(mut items: Vec<Value>, q: &BTreeMap<String, String>) -> Vec<Value> {
    let at = |v: &Value| parse_time(v["updated_at"].as_str().unwrap_or_default()).unwrap_or(0);
    // GitLab: "updated on or after the given time".
    if let Some(after) = q.get("updated_after").and_then(|t| parse_time(t)) {
        items.retain(|v| at(v) >= after);
    }
    if q.get("order_by").map(String::as_str) == Some("updated_at") {
        items.sort_by_key(|v| (at(v), v["id"].as_u64().unwrap_or(0)));
        if q.get("sort").map(String::as_str) == Some("desc") {
            items.reverse();
        }
    }
    items
}

fn list_groups(data: &Data, query: &str, caller: &Caller) -> Response {
    let q: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let items: Vec<Value> = data
        .groups
        .iter()
        .filter(|(_, g)| g.members.contains(&caller.user))
        .map(|(id, g)| {
            let name = g.full_path.rsplit('/').next().unwrap_or_default();
            let parent = g
                .full_path
                .rsplit_once('/')
                .and_then(|(parent, _)| data.groups.iter().find(|(_, p)| p.full_path == parent).map(|(id, _)| *id));
            json!({
                "id": id, "web_url": format!("https://gitlab.example.com/groups/{}", g.full_path), "name": name,
                "path": name, "description": "", "visibility": "private", "full_name": g.full_path.replace('/', " / "),
                "full_path": g.full_path, "parent_id": parent, "created_at": gitlab_time(CREATED)
            })
        })
        .collect();
    offset_page(items, &q, caller.base_url, "/api/v4/groups", query)
}

fn visible_work(data: &Data, caller: &Caller, scope_all: bool, merge_requests: bool) -> Vec<Value> {
    let mut items = Vec::new();
    for (id, p) in &data.projects {
        if !p.members.contains(&caller.user) {
            continue;
        }
        if merge_requests {
            items.extend(
                p.merge_requests
                    .iter()
                    .map(|iid| mr_json(*id, &p.path_with_namespace, *iid, (caller.user, caller.username), CREATED)),
            );
        } else {
            items.extend(p.issues.iter().cloned());
        }
    }
    // Without scope=all GitLab lists only what the user created.
    if !scope_all {
        items.retain(|v| v["author"]["id"] == caller.user);
    }
    items
}

fn failure(status: u16) -> Response {
    match status {
        429 => Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .content_type("text/plain")
            .header("Retry-After", "1")
            .header("RateLimit-Limit", "600")
            .header("RateLimit-Observed", "601")
            .header("RateLimit-Remaining", "0")
            .header("RateLimit-Reset", "1893456000")
            .body("Retry later\n"),
        code => json_response(code, json!({"message": format!("{code} Internal Server Error")})),
    }
}

fn project_json(data: &Data, id: u64, simple: bool) -> Option<Value> {
    let p = data.projects.get(&id)?;
    let name = p.path_with_namespace.rsplit('/').next().unwrap_or_default();
    let mut v = json!({
        "id": id, "description": null, "name": name,
        "name_with_namespace": p.path_with_namespace.replace('/', " / "),
        "path": name, "path_with_namespace": p.path_with_namespace,
        "created_at": gitlab_time(CREATED), "default_branch": "main", "tag_list": [], "topics": [],
        "ssh_url_to_repo": format!("git@gitlab.example.com:{}.git", p.path_with_namespace),
        "http_url_to_repo": format!("https://gitlab.example.com/{}.git", p.path_with_namespace),
        "web_url": format!("https://gitlab.example.com/{}", p.path_with_namespace),
        "readme_url": null, "forks_count": 0, "avatar_url": null, "star_count": 0,
        "last_activity_at": gitlab_time(p.updated_at),
        "namespace": namespace_json(data, &p.path_with_namespace)
    });
    if !simple {
        v["visibility"] = json!("private");
        v["archived"] = json!(false);
        v["updated_at"] = json!(gitlab_time(p.updated_at));
        v["open_issues_count"] = json!(p.issues.len());
    }
    Some(v)
}

/// The project's namespace: its group when the fake has one at that path.
fn namespace_json(data: &Data, path_with_namespace: &str) -> Value {
    let full_path = path_with_namespace.rsplit_once('/').map_or("", |(n, _)| n);
    let name = full_path.rsplit('/').next().unwrap_or_default();
    let group = data.groups.iter().find(|(_, g)| g.full_path == full_path);
    json!({
        "id": group.map_or(9, |(id, _)| *id), "name": name, "path": name, "kind": "group", "full_path": full_path,
        "parent_id": null
    })
}

/// `GET /projects?membership=true`: offset pagination (`page`, `per_page`,
/// `search`, `updated_after`, `order_by=updated_at`) or keyset pagination
/// (`pagination=keyset&order_by=id&sort=asc`, `id_after`, next page only in
/// `Link`), as GitLab answers them.
fn list_projects(data: &Data, query: &str, caller: &Caller) -> Response {
    let q: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let simple = q.get("simple").map(String::as_str) == Some("true");
    let search = q.get("search").map(|s| s.to_lowercase());
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(20).clamp(1, 100);
    let visible: Vec<u64> = data
        .projects
        .iter()
        .filter(|(_, p)| p.members.contains(&caller.user))
        .filter(|(_, p)| search.as_ref().is_none_or(|s| p.path_with_namespace.to_lowercase().contains(s)))
        .map(|(id, _)| *id)
        .collect();
    if q.get("pagination").map(String::as_str) == Some("keyset") {
        if q.get("order_by").map(String::as_str) != Some("id") {
            return json_response(
                405,
                json!({"error": "Keyset pagination is not yet available for this type of request"}),
            );
        }
        let after: u64 = q.get("id_after").and_then(|v| v.parse().ok()).unwrap_or(0);
        let rest: Vec<u64> = visible.into_iter().filter(|id| *id > after).collect();
        let page: Vec<Value> = rest.iter().take(per_page).filter_map(|id| project_json(data, *id, simple)).collect();
        let mut response = json_response(200, Value::Array(page));
        if rest.len() > per_page {
            let last = rest[per_page - 1];
            let others: Vec<(String, String)> =
                url::form_urlencoded::parse(query.as_bytes()).into_owned().filter(|(k, _)| k != "id_after").collect();
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &others {
                next.append_pair(k, v);
            }
            next.append_pair("id_after", &last.to_string());
            let link = format!("<{}/api/v4/projects?{}>; rel=\"next\"", caller.base_url, next.finish());
            response.headers_mut().insert("link", link.parse().unwrap());
        }
        return response;
    }
    let items: Vec<Value> = visible.iter().filter_map(|id| project_json(data, *id, simple)).collect();
    let items = by_update(items, &q);
    offset_page(items, &q, caller.base_url, "/api/v4/projects", query)
}

fn create_issue(data: &mut Data, project: u64, body: &[u8], caller: &Caller) -> Response {
    let input: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(title) = input["title"].as_str().filter(|t| !t.trim().is_empty()) else {
        return json_response(400, json!({"error": "title is missing"}));
    };
    if title.chars().count() > 255 {
        return json_response(400, json!({"message": {"title": ["is too long (maximum is 255 characters)"]}}));
    }
    data.next_issue_id += 1;
    let id = 1000 + data.next_issue_id;
    let p = data.projects.get_mut(&project).unwrap();
    let iid = p.issues.len() as u64 + 1;
    let labels: Vec<String> = input["labels"]
        .as_str()
        .map(|l| l.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let issue = json!({
        "id": id, "iid": iid, "project_id": project, "title": title,
        "description": input["description"].as_str(), "state": "opened",
        "created_at": "2026-11-26T10:00:00.000Z", "updated_at": "2026-11-26T10:00:00.000Z",
        "closed_at": null, "closed_by": null, "labels": labels, "milestone": null, "assignees": [],
        "author": {"id": caller.user, "username": caller.username, "name": format!("{} Example", caller.username), "state": "active"},
        "type": "ISSUE", "user_notes_count": 0, "upvotes": 0, "downvotes": 0, "due_date": null,
        "confidential": input["confidential"].as_bool().unwrap_or(false), "discussion_locked": null,
        "web_url": format!("https://gitlab.example.com/{}/-/issues/{iid}", p.path_with_namespace),
        "references": {"short": format!("#{iid}"), "relative": format!("#{iid}"), "full": format!("{}#{iid}", p.path_with_namespace)}
    });
    p.issues.push(issue.clone());
    json_response(201, issue)
}

fn add_note(data: &mut Data, project: u64, iid: &str, body: &[u8], caller: &Caller) -> Response {
    let p = data.projects.get_mut(&project).unwrap();
    let Some(iid) = iid.parse::<u64>().ok().filter(|i| p.merge_requests.contains(i)) else {
        return json_response(404, json!({"message": "404 Not found"}));
    };
    let input: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(text) = input["body"].as_str().filter(|b| !b.trim().is_empty()) else {
        return json_response(400, json!({"error": "body is missing"}));
    };
    data.next_note_id += 1;
    let note = json!({
        "id": 5000 + data.next_note_id, "type": null, "body": text, "attachment": null,
        "author": {"id": caller.user, "username": caller.username, "name": format!("{} Example", caller.username), "state": "active"},
        "created_at": "2026-11-26T10:00:00.000Z", "updated_at": "2026-11-26T10:00:00.000Z", "system": false,
        "noteable_id": 700 + iid, "noteable_type": "MergeRequest", "noteable_iid": iid,
        "resolvable": false, "confidential": false, "internal": false
    });
    p.notes.push(note.clone());
    json_response(201, note)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
