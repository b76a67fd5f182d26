//! Outbound HTTP through the host. The host reaches only the connection's
//! base URL origin, enforces timeouts and size caps, and does not follow
//! redirects.
//!
//! Two ways to send:
//!
//! - [`Request`], a builder: `Request::get(url).header("accept", "application/json").authenticated().send()?`.
//!   [`Request::authenticated`] asks the host to add the stored credential
//!   the way the manifest's `credential-presentation` says; actions must
//!   use it, as they never receive the credential. Its transport [`Error`]
//!   converts with `?` into a [`VerifyError`] (in `verify`) or a
//!   [`ProviderError`] (in actions).
//! - [`get`], [`post_json`], [`send`]: the plain helpers for `verify`, which
//!   set their own headers and answer [`VerifyError`]s ready to return.
//!
//! [`ProviderError::from_response`] maps a refusal (4xx/5xx) to the error
//! an action returns; [`Response::decode`] does that and parses a 2xx body.

use serde::{Serialize, de::DeserializeOwned};

/// The host's transport failure: the egress policy refused the target, a
/// timeout, DNS/connect/TLS, a body too large, or a malformed request.
pub use crate::bindings::gatehouse::host::http::Error;
use crate::{
    ProviderError, VerifyError,
    bindings::gatehouse::host::http::{self as host},
};

/// An upstream answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `Retry-After` in seconds (the delay form; an HTTP date yields None).
    pub fn retry_after(&self) -> Option<u32> {
        self.header("retry-after")?.trim().parse().ok()
    }

    /// The answer itself when it is a 2xx; otherwise the [`VerifyError`]
    /// for the refusal ([`VerifyError::from_response`]). For `verify`.
    pub fn verify_status(self) -> Result<Self, VerifyError> {
        if self.is_success() { Ok(self) } else { Err(VerifyError::from_response(&self)) }
    }

    /// The body of a 2xx answer as `T`; otherwise the [`VerifyError`] for
    /// the refusal ([`VerifyError::from_response`]), or `upstream-error`
    /// when the body is not the JSON expected. For `verify`.
    pub fn verify_json<T: DeserializeOwned>(&self) -> Result<T, VerifyError> {
        if !self.is_success() {
            return Err(VerifyError::from_response(self));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            VerifyError::UpstreamError(format!(
                "The provider answered HTTP {} with a body that is not the JSON expected ({e}).",
                self.status
            ))
        })
    }

    /// The body of a 2xx answer as `T`; otherwise the [`ProviderError`] for
    /// the refusal ([`ProviderError::from_response`]), or `upstream-error`
    /// when a 2xx body is not the JSON expected.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        if !self.is_success() {
            return Err(ProviderError::from_response(self));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ProviderError::UpstreamError(format!(
                "The provider answered HTTP {} with a body that is not the JSON expected ({e}).",
                self.status
            ))
        })
    }
}

/// A request to send through the host.
#[derive(Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    authenticate: bool,
    /// Why the body could not be built; reported by `send`, so a builder
    /// chain needs no `?` in the middle.
    invalid: Option<String>,
}

impl Request {
    /// A request with any method (GET, POST, PUT, PATCH, DELETE or HEAD).
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            authenticate: false,
            invalid: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    pub fn patch(url: impl Into<String>) -> Self {
        Self::new("PATCH", url)
    }

    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header (names are case-insensitive).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a raw body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body = bytes,
            Err(e) => self.invalid = Some(format!("the JSON body could not be encoded: {e}")),
        }
        self.header("content-type", "application/json")
    }

    /// Asks the host to add the connection's credential, presented as the
    /// manifest's `credential-presentation` says (e.g. `private-token:
    /// {token}`). The host does so only for the connection's base-URL
    /// origin and replaces a header of the same name set here.
    pub fn authenticated(mut self) -> Self {
        self.authenticate = true;
        self
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticate
    }

    /// Sends the request and reads a 2xx JSON answer as `T`, mapping a
    /// refusal the standard way ([`VerifyError::from_response`]). For
    /// `verify`; actions and syncs use `send()?.decode()`.
    pub fn verify_json<T: DeserializeOwned>(self) -> Result<T, VerifyError> {
        self.send()?.verify_json()
    }

    /// Sends the request. `?` turns the transport [`Error`] into a
    /// [`VerifyError`] or a [`ProviderError`].
    pub fn send(self) -> Result<Response, Error> {
        if let Some(why) = self.invalid {
            return Err(Error::InvalidRequest(why));
        }
        let request = host::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            authenticate: self.authenticate,
        };
        raw_send(&request).map(|r| Response { status: r.status, headers: r.headers, body: r.body })
    }
}

/// Shows header names only: a `verify` request may carry a credential the
/// connector set itself.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .field("authenticate", &self.authenticate)
            .finish()
    }
}

/// `GET url` with `headers` and `accept: application/json`, for `verify`:
/// a 2xx JSON answer as `T`, a refusal mapped the standard way
/// ([`VerifyError::from_response`]).
pub fn get_json<T: DeserializeOwned>(url: &str, headers: &[(&str, &str)]) -> Result<T, VerifyError> {
    headers
        .iter()
        .fold(Request::get(url).header("accept", "application/json"), |r, (k, v)| r.header(k, v))
        .verify_json()
}

/// `GET url` with `headers`, for `verify`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, VerifyError> {
    send("GET", url, headers, Vec::new())
}

/// `POST url` with a JSON body, for `verify`.
pub fn post_json(url: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Result<Response, VerifyError> {
    let mut all = headers.to_vec();
    all.push(("content-type", "application/json"));
    send("POST", url, &all, serde_json::to_vec(body).unwrap_or_default())
}

/// Sends an unauthenticated request, for `verify`.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Response, VerifyError> {
    send_raw(method, url, headers, body).map_err(transport_error)
}

/// Like [`send`], with the host's transport error as is.
pub fn send_raw(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Response, Error> {
    headers.iter().fold(Request::new(method, url), |r, (k, v)| r.header(k, v)).body(body).send()
}

#[cfg(target_arch = "wasm32")]
fn raw_send(request: &host::Request) -> Result<host::Response, Error> {
    host::send(request)
}

#[cfg(not(target_arch = "wasm32"))]
fn raw_send(request: &host::Request) -> Result<host::Response, Error> {
    native::send(request)
}

/// On native targets there is no host: a test or a benchmark installs a
/// transport, so the same connector source runs outside the sandbox. The
/// test kit's [`crate::testkit::Upstream`] installs one for its own thread
/// (each `#[test]` runs on its own), which wins over the process-wide one.
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
    use std::{cell::RefCell, rc::Rc, sync::OnceLock};

    pub use crate::bindings::gatehouse::host::http::{Error, Request, Response};

    type Transport = dyn Fn(&Request) -> Result<Response, Error> + Send + Sync;
    static TRANSPORT: OnceLock<Box<Transport>> = OnceLock::new();

    pub(crate) type LocalTransport = Rc<dyn Fn(&Request) -> Result<Response, Error>>;
    thread_local! {
        static LOCAL: RefCell<Option<LocalTransport>> = const { RefCell::new(None) };
    }

    /// Sets the process-wide transport; the first call wins.
    pub fn set_transport(transport: impl Fn(&Request) -> Result<Response, Error> + Send + Sync + 'static) {
        let _ = TRANSPORT.set(Box::new(transport));
    }

    /// Sets (or with None clears) this thread's transport.
    pub(crate) fn set_local(transport: Option<LocalTransport>) {
        LOCAL.with(|local| *local.borrow_mut() = transport);
    }

    pub(super) fn send(request: &Request) -> Result<Response, Error> {
        if let Some(local) = LOCAL.with(|local| local.borrow().clone()) {
            return local(request);
        }
        match TRANSPORT.get() {
            Some(transport) => transport(request),
            None => Err(Error::InvalidRequest(
                "no native transport installed: create a gatehouse_plugin::testkit::Upstream in the test".into(),
            )),
        }
    }
}

/// How a transport failure is reported from `verify`.
pub fn transport_error(e: Error) -> VerifyError {
    match e {
        Error::Denied(why) => VerifyError::EgressDenied(why),
        Error::Timeout => VerifyError::UpstreamTimeout,
        Error::Unreachable(why) => {
            VerifyError::UpstreamUnreachable(format!("The provider could not be reached: {why}"))
        }
        Error::TooLarge => VerifyError::UpstreamError(
            "The provider's answer is larger than the host's response size limit (--max-response-bytes); check the base URL"
                .into(),
        ),
        Error::InvalidRequest(why) => VerifyError::InvalidInput(format!("The request could not be built: {why}")),
    }
}

impl From<Error> for VerifyError {
    fn from(e: Error) -> Self {
        transport_error(e)
    }
}

impl From<Error> for ProviderError {
    fn from(e: Error) -> Self {
        match e {
            Error::Denied(why) => ProviderError::EgressDenied(why),
            Error::Timeout => ProviderError::UpstreamTimeout,
            Error::Unreachable(why) => {
                ProviderError::UpstreamUnreachable(format!("The provider could not be reached: {why}"))
            }
            Error::TooLarge => {
                ProviderError::UpstreamError("The provider's answer is larger than the host allows.".into())
            }
            Error::InvalidRequest(why) => ProviderError::InvalidInput(format!("The request could not be built: {why}")),
        }
    }
}

/// Longest provider message quoted in an error.
const SHORT_MESSAGE: usize = 300;

impl ProviderError {
    /// The error for a provider's answer an action cannot use: 400/422 →
    /// `invalid-input` (quoting the provider's message when it is short),
    /// 401 → `unauthorized`, 403 → `forbidden`, 404 → `not-found`, 429 →
    /// `rate-limited` (with `Retry-After` seconds), anything else,
    /// including a 2xx whose body was unusable, → `upstream-error`.
    pub fn from_response(response: &Response) -> Self {
        let status = response.status;
        let quoted = provider_message(response).map(|m| format!(": {m}")).unwrap_or_default();
        match status {
            400 | 422 => {
                ProviderError::InvalidInput(format!("The provider refused the request (HTTP {status}){quoted}."))
            }
            401 => ProviderError::Unauthorized(format!(
                "The provider does not accept the connection's credential (HTTP 401){quoted}; reconnect with a valid one."
            )),
            403 => ProviderError::Forbidden(format!("The account may not do this (HTTP 403){quoted}.")),
            404 => ProviderError::NotFound(format!(
                "The provider has no such object, or the account cannot see it (HTTP 404){quoted}."
            )),
            429 => ProviderError::RateLimited(response.retry_after()),
            200..=299 => {
                ProviderError::UpstreamError(format!("The provider answered HTTP {status} with an unusable body."))
            }
            500..=599 => {
                ProviderError::UpstreamError(format!("The provider failed with HTTP {status} (server error)."))
            }
            _ => ProviderError::UpstreamError(format!("The provider answered an unexpected HTTP {status}{quoted}.")),
        }
    }
}

impl VerifyError {
    /// The standard verdict on a provider's refusal in `verify`: 401 →
    /// `invalid-token`, 403 → `insufficient-scope` (the token works but may
    /// not read the account), 429 → `rate-limited` with `Retry-After`
    /// seconds, 5xx → `upstream-error`, any other → `upstream-error`
    /// quoting the provider when it said something short.
    pub fn from_response(response: &Response) -> Self {
        let status = response.status;
        let quoted = provider_message(response).map(|m| format!(": {m}")).unwrap_or_default();
        match status {
            401 => VerifyError::InvalidToken(format!("The provider does not accept this token (HTTP 401){quoted}.")),
            403 => VerifyError::InsufficientScope(crate::ScopeProblem {
                account: None,
                scopes: Vec::new(),
                missing_scopes: Vec::new(),
                detail: format!(
                    "The token may not read the account (HTTP 403){quoted}; give it the permission the connector needs."
                ),
            }),
            429 => VerifyError::RateLimited(response.retry_after()),
            500..=599 => VerifyError::UpstreamError(format!("The provider failed with HTTP {status} (server error).")),
            _ => VerifyError::UpstreamError(format!("The provider answered an unexpected HTTP {status}{quoted}.")),
        }
    }
}

/// The provider's own explanation of a refusal, when it is short enough to
/// quote: a JSON `message`, `error_description` or `error`, or a short
/// plain-text body.
fn provider_message(response: &Response) -> Option<String> {
    let message = match serde_json::from_slice::<serde_json::Value>(&response.body) {
        Ok(serde_json::Value::Object(body)) => {
            ["message", "error_description", "error"].iter().find_map(|key| match body.get(*key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            })?
        }
        Ok(_) => return None,
        Err(_) => {
            let text = std::str::from_utf8(&response.body).ok()?.trim();
            let html = response.header("content-type").is_some_and(|t| t.contains("html")) || text.starts_with('<');
            if html {
                return None;
            }
            text.to_string()
        }
    };
    let message = message.trim().trim_end_matches('.').to_string();
    (!message.is_empty() && message.chars().count() <= SHORT_MESSAGE && !message.contains('\n')).then_some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn refusals_map_to_provider_errors() {
        let e = ProviderError::from_response(&response(400, &[], r#"{"message":{"title":["is too long"]}}"#));
        assert!(matches!(&e, ProviderError::InvalidInput(m) if m.contains(r#"{"title":["is too long"]}"#)), "{e:?}");
        let e = ProviderError::from_response(&response(422, &[], r#"{"error":"title is missing"}"#));
        assert!(matches!(&e, ProviderError::InvalidInput(m) if m.contains("title is missing")), "{e:?}");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(400));
        assert!(
            matches!(ProviderError::from_response(&response(400, &[], &long)), ProviderError::InvalidInput(m) if !m.contains("xxx"))
        );
        let html = response(400, &[("content-type", "text/html")], "<html>Bad</html>");
        assert!(matches!(ProviderError::from_response(&html), ProviderError::InvalidInput(m) if !m.contains("html")));
        assert!(matches!(ProviderError::from_response(&response(401, &[], "")), ProviderError::Unauthorized(_)));
        assert!(matches!(ProviderError::from_response(&response(403, &[], "")), ProviderError::Forbidden(_)));
        assert!(matches!(ProviderError::from_response(&response(404, &[], "")), ProviderError::NotFound(_)));
        let limited = response(429, &[("retry-after", "12")], "Retry later");
        assert!(matches!(ProviderError::from_response(&limited), ProviderError::RateLimited(Some(12))));
        assert!(matches!(ProviderError::from_response(&response(429, &[], "")), ProviderError::RateLimited(None)));
        assert!(matches!(ProviderError::from_response(&response(502, &[], "")), ProviderError::UpstreamError(_)));
        assert!(matches!(ProviderError::from_response(&response(409, &[], "")), ProviderError::UpstreamError(_)));
    }

    #[test]
    fn decode_parses_2xx_and_refuses_unusable_bodies() {
        #[derive(serde::Deserialize)]
        struct Thing {
            id: u64,
        }
        assert_eq!(response(201, &[], r#"{"id":7}"#).decode::<Thing>().unwrap().id, 7);
        assert!(matches!(response(200, &[], "<html>").decode::<Thing>(), Err(ProviderError::UpstreamError(_))));
        assert!(matches!(response(404, &[], "{}").decode::<Thing>(), Err(ProviderError::NotFound(_))));
    }

    #[test]
    fn transport_errors_convert_both_ways() {
        assert!(matches!(ProviderError::from(Error::Timeout), ProviderError::UpstreamTimeout));
        assert!(matches!(ProviderError::from(Error::Denied("no".into())), ProviderError::EgressDenied(_)));
        assert!(matches!(ProviderError::from(Error::Unreachable("dns".into())), ProviderError::UpstreamUnreachable(_)));
        assert!(matches!(VerifyError::from(Error::TooLarge), VerifyError::UpstreamError(_)));
        assert!(matches!(VerifyError::from(Error::Unreachable("dns".into())), VerifyError::UpstreamUnreachable(_)));
    }

    #[test]
    fn request_debug_hides_header_values() {
        let request = Request::get("https://h/x").header("private-token", "glpat-secret").authenticated();
        let shown = format!("{request:?}");
        assert!(shown.contains("private-token") && !shown.contains("glpat-secret"), "{shown}");
        assert!(request.is_authenticated());
    }

    #[test]
    fn a_body_that_cannot_be_encoded_fails_at_send() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        let request = Request::post("https://h/x").json(&map);
        assert!(matches!(request.send(), Err(Error::InvalidRequest(why)) if why.contains("JSON body")));
    }
}
