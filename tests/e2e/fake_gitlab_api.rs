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
    next_issue_id: u64,
    next_note_id: u64,
    /// Every request that reached these routes: method, path and query,
    /// and the name of the header that carried the token.
    pub requests: Vec<Seen>,
    /// Statuses to answer instead of the next requests (429, 500, …).
    pub fail_next: Vec<u16>,
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
}

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
            },
        );
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
    let rest = path.strip_prefix("/api/v4/projects")?;
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
    if !data.fail_next.is_empty() {
        let status = data.fail_next.remove(0);
        return Some(failure(status));
    }
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
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    Some(match (method, segments.as_slice()) {
        ("GET", []) => list_projects(data, query, caller),
        (_, [project, tail @ ..]) => {
            let decoded = percent_decode(project);
            let id = decoded
                .parse::<u64>()
                .ok()
                .or_else(|| data.projects.iter().find(|(_, p)| p.path_with_namespace == decoded).map(|(id, _)| *id));
            let Some(id) = id.filter(|id| data.projects.get(id).is_some_and(|p| p.members.contains(&caller.user)))
            else {
                return Some(not_found("Project"));
            };
            match (method, tail) {
                ("POST", ["issues"]) => create_issue(data, id, body, caller),
                ("POST", ["merge_requests", iid, "notes"]) => add_note(data, id, iid, body, caller),
                ("GET", []) => {
                    project_json(data, id).map(|p| json_response(200, p)).unwrap_or_else(|| not_found("Project"))
                }
                _ => json_response(404, json!({"error": "404 Not Found"})),
            }
        }
        _ => json_response(405, json!({"error": "405 Method Not Allowed"})),
    })
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

fn project_json(data: &Data, id: u64) -> Option<Value> {
    let p = data.projects.get(&id)?;
    let name = p.path_with_namespace.rsplit('/').next().unwrap_or_default();
    Some(json!({
        "id": id, "description": null, "name": name,
        "name_with_namespace": p.path_with_namespace.replace('/', " / "),
        "path": name, "path_with_namespace": p.path_with_namespace,
        "created_at": "2026-01-05T10:00:00.000Z", "default_branch": "main", "tag_list": [], "topics": [],
        "ssh_url_to_repo": format!("git@gitlab.example.com:{}.git", p.path_with_namespace),
        "http_url_to_repo": format!("https://gitlab.example.com/{}.git", p.path_with_namespace),
        "web_url": format!("https://gitlab.example.com/{}", p.path_with_namespace),
        "readme_url": null, "forks_count": 0, "avatar_url": null, "star_count": 0,
        "last_activity_at": "2026-11-20T08:00:00.000Z",
        "namespace": {"id": 9, "name": "acme", "path": "acme", "kind": "group", "full_path": "acme", "parent_id": null}
    }))
}

/// `GET /projects?membership=true&page=&per_page=&search=` with GitLab's
/// offset-pagination headers.
fn list_projects(data: &Data, query: &str, caller: &Caller) -> Response {
    let q: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(20).clamp(1, 100);
    let search = q.get("search").map(|s| s.to_lowercase());
    let visible: Vec<u64> = data
        .projects
        .iter()
        .filter(|(_, p)| p.members.contains(&caller.user))
        .filter(|(_, p)| search.as_ref().is_none_or(|s| p.path_with_namespace.to_lowercase().contains(s)))
        .map(|(id, _)| *id)
        .collect();
    let total_pages = visible.len().div_ceil(per_page).max(1);
    let items: Vec<Value> =
        visible.iter().skip((page - 1) * per_page).take(per_page).filter_map(|id| project_json(data, *id)).collect();
    let next = if page < total_pages { (page + 1).to_string() } else { String::new() };
    let mut response = json_response(200, Value::Array(items));
    let h = response.headers_mut();
    h.insert("x-page", page.to_string().parse().unwrap());
    h.insert("x-per-page", per_page.to_string().parse().unwrap());
    h.insert("x-next-page", next.parse().unwrap());
    h.insert("x-prev-page", if page > 1 { (page - 1).to_string() } else { String::new() }.parse().unwrap());
    h.insert("x-total", visible.len().to_string().parse().unwrap());
    h.insert("x-total-pages", total_pages.to_string().parse().unwrap());
    if !next.is_empty() {
        let base = caller.base_url;
        let link = format!(
            "<{base}/api/v4/projects?membership=true&page={next}&per_page={per_page}>; rel=\"next\", <{base}/api/v4/projects?membership=true&page=1&per_page={per_page}>; rel=\"first\""
        );
        h.insert("link", link.parse().unwrap());
    }
    response
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
