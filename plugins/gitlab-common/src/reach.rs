//! What a GitLab token reaches (the `reach` export both connectors share)
//! and whether a request stays inside the group a connection is limited to.
//!
//! A personal access token (and an OAuth token) acts as its user and
//! reaches every group and project that user can access. A group or
//! project access token belongs to a bot user that is a member of exactly
//! one group or project. `GET /personal_access_tokens/self/associations`
//! lists the groups and projects a token reaches; OAuth tokens cannot ask
//! it, so they count `/groups` and `/projects?membership=true` instead.

use gatehouse_plugin::{
    Connection, CredentialKind, ProviderError, ReachItem, ScopeVerdict, TokenReach,
    http::{Request, Response},
};
use serde::Deserialize;

use crate::actions::encode;

/// Associations read per page, and pages read at most (GitLab answers
/// `per_page` up to 100); a token reaching more is reported as "at least".
const PER_PAGE: u32 = 100;
const MAX_PAGES: u32 = 20;

/// How many reached top-level groups are named in the summary.
const NAMED: usize = 5;

#[derive(Deserialize)]
struct User {
    username: String,
    #[serde(default)]
    bot: bool,
}

#[derive(Deserialize, Clone)]
struct AssociatedGroup {
    id: u64,
    name: String,
    #[serde(default)]
    web_url: String,
    #[serde(default)]
    full_path: Option<String>,
    #[serde(default)]
    parent_id: Option<u64>,
}

impl AssociatedGroup {
    /// GitLab's associations do not carry `full_path`; the group's web URL
    /// ends in `/groups/<full path>`.
    fn path(&self) -> String {
        self.full_path.clone().unwrap_or_else(|| match self.web_url.split_once("/groups/") {
            Some((_, path)) => path.trim_end_matches('/').to_string(),
            None => self.name.clone(),
        })
    }

    fn item(&self) -> ReachItem {
        ReachItem { id: self.id.to_string(), path: self.path(), name: self.name.clone(), kind: "group".into() }
    }
}

#[derive(Deserialize, Clone)]
struct AssociatedProject {
    id: u64,
    name: String,
    path_with_namespace: String,
}

impl AssociatedProject {
    fn item(&self) -> ReachItem {
        ReachItem {
            id: self.id.to_string(),
            path: self.path_with_namespace.clone(),
            name: self.name.clone(),
            kind: "project".into(),
        }
    }
}

#[derive(Deserialize, Default)]
struct Associations {
    #[serde(default)]
    groups: Vec<AssociatedGroup>,
    #[serde(default)]
    projects: Vec<AssociatedProject>,
}

fn get(connection: &Connection, path: &str) -> Result<Response, ProviderError> {
    Ok(Request::get(connection.url(path)).header("accept", "application/json").authenticated().send()?)
}

/// The `reach.describe` of both GitLab connectors; `oauth` says which one.
pub fn describe(connection: &Connection, oauth: bool) -> Result<TokenReach, ProviderError> {
    // An OAuth token is always a person's: only an access token's user
    // tells its kind (a bot user's token belongs to a group or project).
    let user = match (oauth, crate::verified_user(connection)) {
        (true, _) => None,
        (false, Some((username, bot))) => Some(User { username, bot }),
        (false, None) => Some(get(connection, "/api/v4/user")?.decode::<User>()?),
    };
    let Found { groups, projects, project_count, complete } =
        if oauth { counted(connection)? } else { associations(connection)? };
    let kind = match &user {
        None => CredentialKind::Oauth,
        Some(user) if !user.bot => CredentialKind::Personal,
        Some(user) if user.username.starts_with("project_") || (groups.is_empty() && !projects.is_empty()) => {
            CredentialKind::Project
        }
        Some(_) => CredentialKind::Group,
    };
    let top = top_level(&groups);
    let bound_to = match kind {
        CredentialKind::Group => top.first().cloned(),
        CredentialKind::Project => projects.first().map(AssociatedProject::item),
        _ => None,
    };
    let at_least = if complete { "" } else { "at least " };
    let group_count = groups.len() as u32;
    let named = |items: &[ReachItem]| {
        let mut names: Vec<&str> = items.iter().take(NAMED).map(|i| i.path.as_str()).collect();
        if items.len() > NAMED {
            names.push("…");
        }
        names.join(", ")
    };
    let plural = |n: u32, one: &str, many: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {many}") };
    let summary = match (&kind, &bound_to) {
        (CredentialKind::Group, Some(group)) => format!(
            "This is a group token for {}: it reaches that group, its subgroups and projects ({}{}).",
            group.path,
            at_least,
            plural(project_count, "project", "projects")
        ),
        (CredentialKind::Project, Some(project)) => {
            format!("This is a project token for {}: it reaches that project only.", project.path)
        }
        _ if group_count == 0 => {
            format!("This token reaches no group, and {}{}.", at_least, plural(project_count, "project", "projects"))
        }
        _ => format!(
            "This token reaches {}{}: {} (and {}).",
            at_least,
            plural(group_count, "group", "groups"),
            named(&top),
            plural(project_count, "project", "projects")
        ),
    };
    let note = match kind {
        CredentialKind::Group => {
            "A group access token belongs to a bot user that is a member of one group: it reaches only that group, its subgroups and their projects, so it is the single-organization token GitLab's note speaks of. It has no access to other groups, whatever its scopes."
        }
        CredentialKind::Project => {
            "A project access token belongs to a bot user that is a member of one project: it reaches only that project, whatever its scopes."
        }
        CredentialKind::Oauth => {
            "An OAuth token acts as the user who authorized Gatehouse and reaches every group and project that user can access; limit the connection to one group to keep it inside one organization."
        }
        _ => {
            "A personal access token acts as its user and reaches every group and project that user can access, not a single organization; limit the connection to one group to keep the proxy, actions and syncs inside it, or use a group access token."
        }
    };
    Ok(TokenReach {
        kind,
        bound_to,
        group_count,
        project_count,
        top_level: top.into_iter().take(100).collect(),
        summary,
        note: note.into(),
    })
}

/// What a token was found to reach.
struct Found {
    groups: Vec<AssociatedGroup>,
    /// The projects listed (for an OAuth token, none: only counted).
    projects: Vec<AssociatedProject>,
    project_count: u32,
    /// Whether that was all (no page limit or missing count got in the way).
    complete: bool,
}

/// `GET /personal_access_tokens/self/associations`, every page (up to
/// [`MAX_PAGES`]).
fn associations(connection: &Connection) -> Result<Found, ProviderError> {
    let (mut groups, mut projects) = (Vec::new(), Vec::new());
    for page in 1..=MAX_PAGES {
        let response = get(
            connection,
            &format!("/api/v4/personal_access_tokens/self/associations?per_page={PER_PAGE}&page={page}"),
        )?;
        let found: Associations = response.decode()?;
        let full = found.groups.len() as u32 >= PER_PAGE || found.projects.len() as u32 >= PER_PAGE;
        groups.extend(found.groups);
        projects.extend(found.projects);
        let next = match response.header("x-next-page") {
            Some(next) => !next.trim().is_empty(),
            None => full,
        };
        if !next {
            let project_count = projects.len() as u32;
            return Ok(Found { groups, projects, project_count, complete: true });
        }
    }
    let project_count = projects.len() as u32;
    Ok(Found { groups, projects, project_count, complete: false })
}

/// For an OAuth token: the groups it reaches (every page up to
/// [`MAX_PAGES`]) and the number of projects (`X-Total`).
fn counted(connection: &Connection) -> Result<Found, ProviderError> {
    let mut groups = Vec::new();
    let mut complete = false;
    for page in 1..=MAX_PAGES {
        let response = get(connection, &format!("/api/v4/groups?min_access_level=10&per_page={PER_PAGE}&page={page}"))?;
        let found: Vec<AssociatedGroup> = response.decode()?;
        let full = found.len() as u32 >= PER_PAGE;
        groups.extend(found);
        if !response.header("x-next-page").map_or(full, |n| !n.trim().is_empty()) {
            complete = true;
            break;
        }
    }
    let response = get(connection, "/api/v4/projects?membership=true&simple=true&per_page=1")?;
    let first: Vec<serde_json::Value> = response.decode()?;
    // GitLab leaves `X-Total` out beyond 10,000 rows.
    let total = response.header("x-total").and_then(|t| t.trim().parse::<u32>().ok());
    let project_count = total.unwrap_or(first.len() as u32);
    Ok(Found { groups, projects: Vec::new(), project_count, complete: complete && total.is_some() })
}

/// The reached groups whose parent is not reached: the top of what the
/// token reaches (a member of `acme/infra` only reaches no `acme`).
fn top_level(groups: &[AssociatedGroup]) -> Vec<ReachItem> {
    let mut top: Vec<ReachItem> = groups
        .iter()
        .filter(|g| g.parent_id.is_none_or(|parent| !groups.iter().any(|other| other.id == parent)))
        .map(AssociatedGroup::item)
        .collect();
    top.sort_by_key(|item| item.path.to_lowercase());
    top.dedup_by(|a, b| a.id == b.id);
    top
}

/// Account-level reads that reveal nothing of other groups.
const ACCOUNT_PATHS: &[&str] = &["user", "version", "metadata", "personal_access_tokens/self"];

/// The `reach.check-path` of both connectors: whether `method path` stays
/// inside the group `scope`. Projects and groups named by id or by path
/// are resolved at GitLab (so a numeric id, an old path that GitLab
/// redirects, or a differently cased path is judged by where it really
/// is); anything else outside the account's own reads is refused.
pub fn check_path(
    scope: &ReachItem,
    method: &str,
    path: &str,
    connection: &Connection,
) -> Result<ScopeVerdict, ProviderError> {
    let outside = |why: String| Ok(ScopeVerdict::Outside(why));
    let Some(rest) = path.strip_prefix("api/v4/") else {
        return outside(format!(
            "Only GitLab's REST API (api/v4/…) can be used through a connection limited to {}.",
            scope.path
        ));
    };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        let Some(segment) = decode(raw) else {
            return Ok(ScopeVerdict::Unknown(format!(
                "The path segment {raw:?} is not valid percent-encoding (or is encoded twice); Gatehouse cannot tell whether it lies inside {}.",
                scope.path
            )));
        };
        segments.push(segment);
    }
    while segments.last().is_some_and(String::is_empty) {
        segments.pop();
    }
    let joined = segments.join("/");
    if ACCOUNT_PATHS.contains(&joined.as_str()) && matches!(method, "GET" | "HEAD") {
        return Ok(ScopeVerdict::Inside);
    }
    match segments.as_slice() {
        [kind, target, tail @ ..] if kind == "projects" && !target.is_empty() => {
            if let Some(op) = tail.first().filter(|op| ["fork", "transfer", "share"].contains(&op.as_str())) {
                return outside(format!(
                    "{method} projects/…/{op} can move or share a project beyond {}; it is refused on a connection limited to it.",
                    scope.path
                ));
            }
            let found = get(connection, &format!("/api/v4/projects/{}", encode(target)))?;
            judge(scope, "project", target, &found, "path_with_namespace")
        }
        [kind, target, tail @ ..] if kind == "groups" && !target.is_empty() => {
            if let Some(op) = tail.first().filter(|op| ["transfer", "share"].contains(&op.as_str())) {
                return outside(format!(
                    "{method} groups/…/{op} can move or share a group beyond {}; it is refused on a connection limited to it.",
                    scope.path
                ));
            }
            let found = get(connection, &format!("/api/v4/groups/{}?with_projects=false", encode(target)))?;
            judge(scope, "group", target, &found, "full_path")
        }
        _ => outside(format!(
            "{method} {path} is not about one project or group, so it may reach beyond {0}; this connection is limited to {0}: use the group's own routes instead, e.g. api/v4/groups/{1}/projects?include_subgroups=true, api/v4/groups/{1}/issues or api/v4/groups/{1}/merge_requests.",
            scope.path,
            encode(&scope.path)
        )),
    }
}

/// Whether the project or group GitLab answered lies inside `scope`.
fn judge(
    scope: &ReachItem,
    what: &str,
    asked: &str,
    found: &Response,
    field: &str,
) -> Result<ScopeVerdict, ProviderError> {
    if found.status == 404 {
        return Ok(ScopeVerdict::Unknown(format!(
            "GitLab knows no {what} {asked:?} this token can see, so Gatehouse cannot tell whether it lies inside {}.",
            scope.path
        )));
    }
    let body: serde_json::Value = found.decode()?;
    let Some(full_path) = body.get(field).and_then(|v| v.as_str()) else {
        return Ok(ScopeVerdict::Unknown(format!(
            "GitLab's answer for the {what} {asked:?} does not say where it lies, so it is refused."
        )));
    };
    if inside(&scope.path, full_path) {
        Ok(ScopeVerdict::Inside)
    } else {
        Ok(ScopeVerdict::Outside(format!(
            "The {what} {full_path} is outside {}, the group this connection is limited to.",
            scope.path
        )))
    }
}

/// Whether `full_path` is `scope` or lies below it (GitLab paths are
/// matched without regard to case).
pub fn inside(scope: &str, full_path: &str) -> bool {
    let (scope, path) = (scope.to_lowercase(), full_path.to_lowercase());
    path == scope || path.starts_with(&format!("{scope}/"))
}

/// One percent-decoding, as GitLab does; None for a malformed escape, or
/// when a `%` is left after decoding (encoded twice: a server decoding
/// again would see something else than was checked).
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains('%')).then_some(text)
}

// The tests answer through the SDK's native transport, which exists only
// outside the sandbox.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::actions::tests::{connection, with_gitlab};

    fn acme() -> ReachItem {
        ReachItem { id: "9".into(), path: "acme".into(), name: "acme".into(), kind: "group".into() }
    }

    #[test]
    fn paths_inside_a_group() {
        assert!(inside("acme", "acme/api"));
        assert!(inside("acme", "ACME/Infra/tools"));
        assert!(inside("acme", "acme"));
        assert!(!inside("acme", "acme-evil/api"));
        assert!(!inside("acme", "other/acme"));
    }

    #[test]
    fn double_encoding_and_bad_escapes_are_not_judged() {
        assert_eq!(decode("acme%2Fapi").as_deref(), Some("acme/api"));
        assert_eq!(decode("acme%252Fapi"), None);
        assert_eq!(decode("acme%zz"), None);
        let verdict = check_path(&acme(), "GET", "api/v4/projects/acme%252Fapi", &connection());
        assert!(matches!(verdict, Ok(ScopeVerdict::Unknown(_))), "{verdict:?}");
    }

    #[test]
    fn lists_across_groups_are_outside_without_asking_gitlab() {
        for path in ["api/v4/projects", "api/v4/issues", "api/v4/search", "api/v4/groups", "other/thing"] {
            let verdict = check_path(&acme(), "GET", path, &connection());
            assert!(matches!(verdict, Ok(ScopeVerdict::Outside(_))), "{path}: {verdict:?}");
        }
        assert!(matches!(check_path(&acme(), "GET", "api/v4/user", &connection()), Ok(ScopeVerdict::Inside)));
    }

    #[test]
    fn a_numeric_id_is_resolved_at_gitlab() {
        let (verdict, seen) = with_gitlab(200, &[], r#"{"id":12,"path_with_namespace":"other/secret"}"#, || {
            check_path(&acme(), "GET", "api/v4/projects/12/issues", &connection())
        });
        assert!(matches!(verdict, Ok(ScopeVerdict::Outside(_))), "{verdict:?}");
        assert_eq!(seen[0].url, "https://gitlab.example.com/api/v4/projects/12");
        assert!(seen[0].authenticate);
        let (verdict, seen) = with_gitlab(200, &[], r#"{"id":12,"path_with_namespace":"acme/api"}"#, || {
            check_path(&acme(), "GET", "api/v4/projects/acme%2Fapi/merge_requests", &connection())
        });
        assert!(matches!(verdict, Ok(ScopeVerdict::Inside)), "{verdict:?}");
        assert_eq!(seen[0].url, "https://gitlab.example.com/api/v4/projects/acme%2Fapi");
        let (verdict, _) = with_gitlab(404, &[], r#"{"message":"404 Project Not Found"}"#, || {
            check_path(&acme(), "GET", "api/v4/projects/999", &connection())
        });
        assert!(matches!(verdict, Ok(ScopeVerdict::Unknown(_))), "{verdict:?}");
    }

    #[test]
    fn the_user_verify_read_is_not_read_again() {
        use gatehouse_plugin::testkit::{Reply, Upstream};
        let gitlab = Upstream::new();
        gitlab.on(
            "GET",
            "/api/v4/user",
            Reply::json(200, serde_json::json!({"id": 42, "username": "group_9_bot", "bot": true})),
        );
        gitlab.on(
            "GET",
            "/api/v4/personal_access_tokens/self/associations",
            Reply::json(200, serde_json::json!({"groups": [{"id": 9, "name": "acme", "web_url": "https://gitlab.example.com/groups/acme"}], "projects": []})),
        );
        gitlab.on("GET", "/api/v4/groups", Reply::json(200, serde_json::json!([])));
        gitlab.on("GET", "/api/v4/projects", Reply::json(200, serde_json::json!([])));
        let users = || gitlab.requests_to("GET", "/api/v4/user").len();
        // In a fresh instance describe reads the user itself.
        assert_eq!(describe(&connection(), false).unwrap().kind, CredentialKind::Group);
        assert_eq!(users(), 1);
        // After verify read it (in the same instance), it does not.
        crate::fetch_user("https://gitlab.example.com", ("private-token", "t")).unwrap();
        assert_eq!(users(), 2);
        assert_eq!(describe(&connection(), false).unwrap().kind, CredentialKind::Group);
        assert_eq!(users(), 2);
        // Another account, or another GitLab, is read afresh.
        let other = Connection { account_id: "43".into(), ..connection() };
        describe(&other, false).unwrap();
        assert_eq!(users(), 3);
        let elsewhere = Connection { base_url: "https://gitlab.other.example".into(), ..connection() };
        describe(&elsewhere, false).unwrap();
        assert_eq!(users(), 4);
        // An OAuth token is a person's: its user is never read.
        assert_eq!(describe(&other, true).unwrap().kind, CredentialKind::Oauth);
        assert_eq!(users(), 4);
    }

    #[test]
    fn top_level_is_what_has_no_reached_parent() {
        let g = |id, path: &str, parent| AssociatedGroup {
            id,
            name: path.rsplit('/').next().unwrap().into(),
            web_url: format!("https://gitlab.example.com/groups/{path}"),
            full_path: None,
            parent_id: parent,
        };
        let top = top_level(&[g(1, "acme", None), g(2, "acme/infra", Some(1)), g(3, "tools/ci", Some(77))]);
        let paths: Vec<&str> = top.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["acme", "tools/ci"]);
    }
}
