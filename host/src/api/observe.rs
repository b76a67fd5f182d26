//! What every request leaves behind: an id (taken from a valid incoming
//! `X-Request-Id`, else a new UUID) echoed in the `X-Request-Id` header and
//! in problem details; one span carrying it around everything logged while
//! serving; one log line (method, path, status, time — never queries,
//! headers or bodies, which may hold credentials); the HTTP metrics,
//! labelled by route template.

use std::{collections::HashMap, sync::Arc, time::Instant};

use poem::{Endpoint, IntoResponse, PathPattern, Request, Response};
use tracing::Instrument;

use crate::context;

/// The header a request id travels in, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// Where the caller's address comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddressSource {
    /// Take the last `X-Forwarded-For` address (the one the proxy in front
    /// of the server added) instead of the peer's.
    pub trust_forwarded_for: bool,
}

/// The route templates of the OpenAPI document, found by their shape.
/// poem-openapi registers its routes with parameters renamed (`:param0`),
/// so the pattern poem reports is matched back to the documented template
/// (`/api/v1/providers/{provider_id}/verify`) that a dashboard reads.
#[derive(Debug, Default, Clone)]
pub struct RouteNames(Arc<HashMap<String, String>>);

impl RouteNames {
    /// From the OpenAPI document's paths; `prefix` is where the API is
    /// served, added to the paths that do not carry it.
    pub fn from_spec(document: &serde_json::Value, prefix: &str) -> Self {
        let paths = document
            .get("paths")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let names = paths
            .into_iter()
            .map(|path| if path.starts_with(prefix) { path } else { format!("{prefix}{path}") })
            .map(|path| (shape(&path), path))
            .collect();
        Self(Arc::new(names))
    }

    /// The template for poem's route `pattern`.
    fn template(&self, pattern: &str) -> String {
        let own = template(pattern);
        self.0.get(&shape(&own)).cloned().unwrap_or(own)
    }
}

/// A template with its parameters' names left out: `/a/{}/b`.
fn shape(template: &str) -> String {
    template
        .split('/')
        .map(|segment| if segment.starts_with('{') && segment.ends_with('}') { "{}" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

pub async fn request<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    source: AddressSource,
    names: RouteNames,
) -> poem::Result<Response> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    let method = method_label(req.method());
    let path = req.uri().path().to_string();
    let address = client_address(&req, source);
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let context = context::Request { id: id.clone(), address };
    let served = context::in_request(context.clone(), ep.call(req).instrument(span.clone())).await;
    let (route, mut response) = match served {
        Ok(response) => {
            let response = response.into_response();
            (response.data::<PathPattern>().map(|p| names.template(&p.0)), response)
        }
        Err(err) => {
            let route = err.data::<PathPattern>().map(|p| names.template(&p.0));
            // Rendered here, inside the request's context, so the problem
            // carries the request id.
            (route, context::in_request(context, super::problem::render(err)).await)
        }
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(method, %path, status, elapsed_ms = elapsed.as_millis() as u64, "request");
    });
    crate::metrics::http_request(method, route.as_deref().unwrap_or("unmatched"), status, elapsed.as_secs_f64());
    if let Ok(value) = poem::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// An id a client may choose: short, and only characters that cannot
/// forge a log line or a header.
fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The method as a label: one of the methods the API knows, else `OTHER`.
fn method_label(method: &poem::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// poem's route pattern (`/api/v1/integrations/:id/proxy/*path`) as the
/// OpenAPI document writes it (`/api/v1/integrations/{id}/proxy/{path}`).
fn template(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment.strip_prefix(':').or_else(|| segment.strip_prefix('*')) {
            Some(name) if !name.is_empty() => format!("{{{name}}}"),
            _ => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The caller's IP address: the peer's, or with `trust_forwarded_for` the
/// last address of `X-Forwarded-For` (what the proxy in front saw; earlier
/// entries are the client's own say and could be anything). A last entry
/// that is not an address falls back to the peer's, never to an earlier one.
fn client_address(req: &Request, source: AddressSource) -> Option<String> {
    if source.trust_forwarded_for
        && let Some(forwarded) = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok())
    {
        return Some(forwarded.to_string());
    }
    match req.remote_addr().0 {
        poem::Addr::SocketAddr(addr) => Some(addr.ip().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_read_like_the_openapi_document() {
        assert_eq!(template("/api/v1/integrations/:id"), "/api/v1/integrations/{id}");
        assert_eq!(template("/api/v1/integrations/:id/proxy/*path"), "/api/v1/integrations/{id}/proxy/{path}");
        assert_eq!(template("/"), "/");
        let spec = r#"{"paths": {"/providers/{provider_id}/verify": {}, "/health": {}}}"#;
        let names = RouteNames::from_spec(&serde_json::from_str(spec).unwrap(), "/api/v1");
        assert_eq!(names.template("/api/v1/providers/:param0/verify"), "/api/v1/providers/{provider_id}/verify");
        assert_eq!(names.template("/api/v1/health"), "/api/v1/health");
        assert_eq!(names.template("/metrics"), "/metrics");
    }

    #[test]
    fn a_forwarded_address_is_the_last_entry_and_only_when_trusted() {
        let req = |value: &str| Request::builder().header("x-forwarded-for", value).finish();
        let trusted = AddressSource { trust_forwarded_for: true };
        let r = req("6.6.6.6, 10.0.0.7");
        assert_eq!(client_address(&r, trusted).as_deref(), Some("10.0.0.7"));
        // Not trusted: the client's header is ignored (no peer in this test).
        assert_eq!(client_address(&r, AddressSource::default()), None);
        // A last entry that is no address does not hand over to the client's own say.
        assert_eq!(client_address(&req("6.6.6.6, junk"), trusted), None);
    }

    #[test]
    fn only_plain_request_ids_are_taken() {
        assert!(valid_request_id("0b6e-4f.a_b:c"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a\nb"));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"a".repeat(129)));
    }
}
