//! Native tests of a connector (`cargo test`, no host): a scripted fake
//! upstream that answers the connector's `http` requests by method and path
//! and records them, and the lines the connector logged.
//!
//! ```
//! use gatehouse_plugin::testkit::{Reply, Upstream};
//!
//! let upstream = Upstream::new(); // this test's thread only
//! upstream.on("GET", "/api/me", Reply::json(200, serde_json::json!({"id": 7})));
//! let me: serde_json::Value = gatehouse_plugin::http::get_json("https://p.example/api/me", &[]).unwrap();
//! assert_eq!(me["id"], 7);
//! assert_eq!(upstream.requests()[0].path, "/api/me");
//! ```
//!
//! Each `#[test]` runs on its own thread and the upstream and the log
//! record belong to that thread, so tests run in parallel without seeing
//! each other's requests.

use std::{cell::RefCell, collections::VecDeque, rc::Rc};

use crate::{
    bindings::gatehouse::host::http as host,
    http::{Error, native},
    log::{Line, RECORDED},
};

/// One scripted answer: a response, or a transport failure.
#[derive(Debug, Clone)]
pub struct Reply(Result<host::Response, Error>);

impl Reply {
    /// An empty body with this status.
    pub fn status(status: u16) -> Self {
        Self(Ok(host::Response { status, headers: Vec::new(), body: Vec::new() }))
    }

    /// A JSON body (`content-type: application/json`).
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self::status(status).header("content-type", "application/json").body(body.to_string().into_bytes())
    }

    /// A plain-text body.
    pub fn text(status: u16, body: &str) -> Self {
        Self::status(status).header("content-type", "text/plain").body(body.as_bytes().to_vec())
    }

    /// The host's transport failure instead of an answer (a timeout, a
    /// refused address, …), as the connector would get it.
    pub fn error(error: Error) -> Self {
        Self(Err(error))
    }

    /// Adds a header (stored lowercase, as the host delivers them).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Ok(response) = &mut self.0 {
            response.headers.push((name.to_ascii_lowercase(), value.to_string()));
        }
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        if let Ok(response) = &mut self.0 {
            response.body = body;
        }
        self
    }
}

/// A request the connector sent, as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub url: String,
    /// Path and query, e.g. `/api/me?x=1`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connector asked the host to add the credential.
    pub authenticated: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (None when it is not).
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

struct Route {
    method: String,
    /// A path, or a path and query when it holds `?`.
    path: String,
    replies: VecDeque<Reply>,
}

#[derive(Default)]
struct State {
    routes: Vec<Route>,
    recorded: Vec<Recorded>,
}

/// The scripted upstream of one test. Created, it answers every request
/// the connector sends from this thread; dropped, it stops.
pub struct Upstream {
    state: Rc<RefCell<State>>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    pub fn new() -> Self {
        let state = Rc::new(RefCell::new(State::default()));
        let seen = state.clone();
        native::set_local(Some(Rc::new(move |request: &host::Request| answer(&seen, request))));
        Self { state }
    }

    /// Scripts the answer to `method path` (any query, unless `path` has
    /// one; then it must match exactly). Several answers to one route are
    /// given in order and the last one repeats. A request nothing matches
    /// gets a 404 whose body says so.
    pub fn on(&self, method: &str, path: &str, reply: Reply) -> &Self {
        let mut state = self.state.borrow_mut();
        match state.routes.iter_mut().find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path) {
            Some(route) => route.replies.push_back(reply),
            None => state.routes.push(Route {
                method: method.to_ascii_uppercase(),
                path: path.to_string(),
                replies: VecDeque::from([reply]),
            }),
        }
        self
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.borrow().recorded.clone()
    }

    /// The requests to `method path` (path without the query).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        let path_only = |p: &str| p.split('?').next().unwrap_or_default().to_string();
        self.requests()
            .into_iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && path_only(&r.path) == path)
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        native::set_local(None);
    }
}

fn answer(state: &RefCell<State>, request: &host::Request) -> Result<host::Response, Error> {
    let path = path_and_query(&request.url);
    let mut state = state.borrow_mut();
    state.recorded.push(Recorded {
        method: request.method.clone(),
        url: request.url.clone(),
        path: path.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
        authenticated: request.authenticate,
    });
    let path_only = path.split('?').next().unwrap_or_default();
    let route = state.routes.iter_mut().find(|r| {
        r.method.eq_ignore_ascii_case(&request.method)
            && (r.path == path || (!r.path.contains('?') && r.path == path_only))
    });
    match route {
        Some(route) if route.replies.len() > 1 => route.replies.pop_front().expect("non-empty").0,
        Some(route) => route.replies.front().expect("a route has a reply").0.clone(),
        None => Reply::text(404, &format!("the test's Upstream has no reply for {} {path}", request.method)).0,
    }
}

/// `/path?query` of an absolute URL (the URL itself when it has no origin).
fn path_and_query(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find('/') {
        Some(at) if url.contains("://") => rest[at..].to_string(),
        None if url.contains("://") => "/".to_string(),
        _ => url.to_string(),
    }
}

/// What the connector logged on this thread so far.
pub fn logs() -> Vec<Line> {
    RECORDED.with(|r| r.borrow().clone())
}

/// What the connector logged on this thread so far, forgetting it.
pub fn take_logs() -> Vec<Line> {
    RECORDED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;

    #[test]
    fn routes_answer_by_method_and_path_and_record_requests() {
        let upstream = Upstream::new();
        upstream
            .on("GET", "/a", Reply::json(200, serde_json::json!({"n": 1})))
            .on("GET", "/a", Reply::json(200, serde_json::json!({"n": 2})))
            .on("POST", "/a?x=1", Reply::status(201).header("Location", "/a/9"))
            .on("GET", "/slow", Reply::error(Error::Timeout));
        let n = |r: crate::http::Response| r.json::<serde_json::Value>().unwrap()["n"].clone();
        assert_eq!(n(Request::get("https://h.example/a?page=1").send().unwrap()), 1);
        assert_eq!(n(Request::get("https://h.example/a").send().unwrap()), 2);
        assert_eq!(n(Request::get("https://h.example/a").send().unwrap()), 2, "the last reply repeats");
        let created = Request::post("https://h.example/a?x=1").json(&1).authenticated().send().unwrap();
        assert_eq!((created.status, created.header("location")), (201, Some("/a/9")));
        assert_eq!(Request::post("https://h.example/a").send().unwrap().status, 404, "the query is part of that route");
        assert!(matches!(Request::get("https://h.example/slow").send(), Err(Error::Timeout)));
        let missing = Request::get("https://h.example/nope").send().unwrap();
        assert_eq!(missing.status, 404);
        assert!(String::from_utf8_lossy(&missing.body).contains("no reply for GET /nope"));

        let seen = upstream.requests();
        assert_eq!(seen.len(), 7);
        assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", "/a?page=1"));
        assert!(seen[3].authenticated && !seen[0].authenticated);
        assert_eq!(seen[3].json(), Some(serde_json::json!(1)));
        assert_eq!(seen[3].header("Content-Type"), Some("application/json"));
        assert_eq!(upstream.requests_to("GET", "/a").len(), 3);
    }

    #[test]
    fn without_an_upstream_a_request_fails_saying_what_to_do() {
        drop(Upstream::new());
        let e = Request::get("https://h.example/").send().unwrap_err();
        assert!(matches!(&e, Error::InvalidRequest(why) if why.contains("testkit::Upstream")), "{e:?}");
    }

    #[test]
    fn the_standard_status_mapping_for_verify() {
        use crate::VerifyError;
        let upstream = Upstream::new();
        upstream
            .on("GET", "/401", Reply::json(401, serde_json::json!({"message": "401 Unauthorized"})))
            .on("GET", "/403", Reply::status(403))
            .on("GET", "/429", Reply::status(429).header("Retry-After", "17"))
            .on("GET", "/503", Reply::status(503))
            .on("GET", "/html", Reply::text(200, "<html>"));
        let get =
            |p: &str| crate::http::get_json::<serde_json::Value>(&format!("https://h.example{p}"), &[]).unwrap_err();
        assert!(matches!(get("/401"), VerifyError::InvalidToken(m) if m.contains("401 Unauthorized")));
        assert!(matches!(get("/403"), VerifyError::InsufficientScope(_)));
        assert!(matches!(get("/429"), VerifyError::RateLimited(Some(17))));
        assert!(matches!(get("/503"), VerifyError::UpstreamError(m) if m.contains("503")));
        assert!(matches!(get("/html"), VerifyError::UpstreamError(m) if m.contains("not the JSON expected")));
        assert_eq!(upstream.requests()[0].header("accept"), Some("application/json"));
    }
}
