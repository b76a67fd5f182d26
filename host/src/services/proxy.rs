//! The authenticated proxy: a request to
//! `/api/v1/integrations/{id}/proxy/{path}` goes to the connection's base
//! URL plus `path`, with the credential added by the host the way the
//! connector's manifest presents it. The path cannot leave the base URL;
//! the egress policy applies as for connectors; hop-by-hop headers,
//! cookies and the caller's API key stay behind; an OAuth token due for
//! refresh is refreshed first, and once more after the provider answers
//! 401. A connection limited to one scope forwards only what its connector
//! says stays inside it. The answer streams back with the credential
//! scrubbed from it.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use url::Url;

pub use crate::config::ProxySettings;
use crate::{
    egress::{CredentialHeader, SendError, UpstreamResponse},
    error::AppError,
    runtime::{
        credential_header,
        model::{ReachItem, ScopeVerdict, VerifyError},
    },
    services::{
        integrations::{InUse, Integrations},
        shared::Shared,
    },
};

/// The request header a caller sets to have transient failures retried.
pub const RETRIES_HEADER: &str = "gatehouse-retries";

/// At most this many retries, whatever the caller asks.
pub const MAX_RETRIES: u32 = 5;

pub struct ProxyRequest {
    pub method: Method,
    /// What follows `/proxy/`, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

pub struct ProxyResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
}

pub struct Proxy {
    shared: Arc<Shared>,
    integrations: Arc<Integrations>,
    settings: ProxySettings,
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), and
/// what the proxy must not pass on: the caller's API key and cookies, and
/// framing the client library sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];
const NOT_FORWARDED: &[&str] = &["authorization", "cookie", "forwarded", RETRIES_HEADER];
const NOT_RETURNED: &[&str] = &["set-cookie", "set-cookie2", "alt-svc", "strict-transport-security"];

impl Proxy {
    pub fn new(shared: Arc<Shared>, integrations: Arc<Integrations>, settings: ProxySettings) -> Self {
        Self { shared, integrations, settings }
    }

    pub fn settings(&self) -> ProxySettings {
        self.settings
    }

    pub async fn forward(&self, id: &str, req: ProxyRequest) -> Result<ProxyResponse, AppError> {
        let mut in_use = self.integrations.for_use(id).await?;
        let url = target_url(&in_use.base_url, &req.path, req.query.as_deref())?;
        if let Some(scope) = in_use.row.scope.as_ref().map(|s| s.0.clone()) {
            self.check_scope(&in_use, &scope, req.method.as_str(), &req.path).await?;
        }
        let retries = requested_retries(&req.headers)?;
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let credential = self.credential(&in_use)?;
            let headers = forwarded_headers(&req.headers, credential.header_name());
            let sent = self
                .shared
                .runtime
                .egress()
                .forward(req.method.clone(), url.clone(), headers, req.body.clone(), &credential, self.settings.timeout)
                .await;
            if let Ok(response) = &sent {
                crate::metrics::provider_answer(
                    &in_use.plugin.manifest.id,
                    response.status.as_u16(),
                    &response.headers,
                );
            }
            match sent {
                Ok(response) if response.status == StatusCode::UNAUTHORIZED && !refreshed => {
                    refreshed = true;
                    match self.integrations.refresh_after_rejection(&in_use.row).await? {
                        Some(fresh) => in_use = fresh,
                        None => return Ok(self.answer(response, credential, id, &in_use.base_url)),
                    }
                }
                Ok(response) if attempt < retries && is_transient(response.status) => {
                    let wait = match retry_after(&response.headers) {
                        Some(wait) if wait > self.settings.max_retry_wait => {
                            return Ok(self.answer(response, credential, id, &in_use.base_url));
                        }
                        Some(wait) => wait,
                        None => backoff(attempt),
                    };
                    drop(response);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Ok(response) => return Ok(self.answer(response, credential, id, &in_use.base_url)),
                Err(SendError::Unreachable(_) | SendError::Timeout) if attempt < retries => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(send_error(e)),
            }
        }
    }

    /// Asks the connector whether the request stays inside the scope the
    /// connection is limited to; anything but a clear yes is refused. The
    /// host knows no provider's paths: the connector judges, and may ask
    /// the provider what an id stands for.
    async fn check_scope(&self, in_use: &InUse, scope: &ReachItem, method: &str, path: &str) -> Result<(), AppError> {
        let verdict = self
            .shared
            .runtime
            .check_path(
                &in_use.plugin,
                scope,
                method,
                path,
                &in_use.connection(),
                &in_use.credentials,
                &in_use.base_url,
            )
            .await?;
        match verdict {
            Some(Ok(ScopeVerdict::Inside)) => Ok(()),
            Some(Ok(ScopeVerdict::Outside(why) | ScopeVerdict::Unknown(why))) => Err(AppError::OutsideScope(why)),
            Some(Err(e)) => Err(AppError::Provider(e)),
            None => Err(AppError::OutsideScope(format!(
                "This connection is limited to {}, and its connector can no longer check requests against it; lift the limit (PUT /api/v1/integrations/{}/scope with null) or load a connector that exports reach.",
                scope.path, in_use.row.id
            ))),
        }
    }

    fn credential(&self, in_use: &InUse) -> Result<CredentialHeader, AppError> {
        credential_header(&in_use.plugin.manifest, &in_use.credentials, &in_use.base_url).map_err(|why| {
            AppError::ProxyUnsupported(format!(
                "Gatehouse cannot present this integration's credential ({why}); only connectors whose manifest declares a credential presentation can be used through the proxy."
            ))
        })
    }

    fn answer(&self, response: UpstreamResponse, credential: CredentialHeader, id: &str, base: &Url) -> ProxyResponse {
        let status = response.status;
        let own_prefix = format!("/api/v1/integrations/{id}/proxy/");
        let base_prefix = format!("{}/", base.as_str().trim_end_matches('/'));
        let mut headers = HeaderMap::new();
        for (name, value) in &response.headers {
            let lower = name.as_str();
            if HOP_BY_HOP.contains(&lower) || NOT_RETURNED.contains(&lower) {
                continue;
            }
            let mut bytes = value.as_bytes().to_vec();
            credential.scrub(&mut bytes);
            // Pagination and redirects point back through the proxy, so a
            // client can follow them with the same API key.
            if lower == "link" || lower == "location" {
                bytes = String::from_utf8_lossy(&bytes).replace(&base_prefix, &own_prefix).into_bytes();
            }
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                headers.append(name.clone(), value);
            }
        }
        ProxyResponse { status, headers, body: Box::pin(scrubbed(response.body, credential)) }
    }
}

/// `base` plus `path` and `query`, refused when it would leave the base
/// URL: dot segments (also percent-encoded), a second authority (`//host`),
/// an absolute URL, or backslashes, which some servers read as slashes.
pub fn target_url(base: &Url, path: &str, query: Option<&str>) -> Result<Url, AppError> {
    let refuse = |why: &str| {
        AppError::Validation(format!(
            "The proxy path {why}; give a path relative to the integration's base URL, e.g. api/v4/projects."
        ))
    };
    if path.starts_with('/') {
        return Err(refuse("starts with a slash (a second host or an absolute path)"));
    }
    if path.contains('\\') || path.to_ascii_lowercase().contains("%5c") {
        return Err(refuse("contains a backslash"));
    }
    if path.contains(':') && path.split('/').next().is_some_and(|first| first.contains(':')) {
        return Err(refuse("looks like an absolute URL"));
    }
    // An encoded slash stays inside its segment here (GitLab names projects
    // `group%2Fproject`), but a server that decodes it first would see the
    // dots: refuse those too.
    for segment in path.split('/') {
        if percent_decode(segment).split(['/', '\\']).any(|part| part == "." || part == "..") {
            return Err(refuse("contains . or .. segments"));
        }
    }
    let base_text = base.as_str().trim_end_matches('/');
    let mut url = Url::parse(&format!("{base_text}/{path}")).map_err(|_| refuse("is not a valid URL path"))?;
    url.set_query(query.filter(|q| !q.is_empty()));
    let base_path = format!("{}/", base.path().trim_end_matches('/'));
    if url.origin() != base.origin() || !url.path().starts_with(&base_path) {
        return Err(refuse("leaves the base URL"));
    }
    Ok(url)
}

fn percent_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The caller's headers minus what describes the hop or must not reach the
/// provider, and minus any header of the credential's name.
fn forwarded_headers(incoming: &HeaderMap, credential: &HeaderName) -> HeaderMap {
    let named_in_connection: Vec<String> = incoming
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        let lower = name.as_str();
        if HOP_BY_HOP.contains(&lower)
            || NOT_FORWARDED.contains(&lower)
            || lower.starts_with("x-forwarded-")
            || named_in_connection.iter().any(|n| n == lower)
            || name == credential
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

fn requested_retries(headers: &HeaderMap) -> Result<u32, AppError> {
    let Some(value) = headers.get(RETRIES_HEADER) else {
        return Ok(0);
    };
    value.to_str().ok().and_then(|v| v.trim().parse::<u32>().ok()).filter(|n| *n <= MAX_RETRIES).ok_or_else(|| {
        AppError::Validation(format!("The {RETRIES_HEADER} header must be a whole number from 0 to {MAX_RETRIES}."))
    })
}

fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// `Retry-After` in its delay-seconds form; an HTTP date is not trusted to
/// agree with this host's clock and falls back to the backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(6))
}

fn send_error(e: SendError) -> AppError {
    match e {
        SendError::Denied(why) => AppError::EgressDenied(why),
        SendError::Timeout => AppError::Verify(VerifyError::UpstreamTimeout),
        SendError::Unreachable(why) => {
            AppError::Verify(VerifyError::UpstreamUnreachable(format!("The provider could not be reached: {why}")))
        }
        SendError::InvalidRequest(why) => AppError::Validation(format!("The request cannot be forwarded: {why}.")),
        SendError::TooLarge | SendError::BudgetExhausted(_) => {
            AppError::Verify(VerifyError::UpstreamError("The provider's answer could not be forwarded".into()))
        }
    }
}

/// The upstream body with every credential value replaced, across chunk
/// boundaries: the last `longest secret - 1` bytes wait for the next chunk.
fn scrubbed(
    upstream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    credential: CredentialHeader,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let keep = credential.longest_secret().saturating_sub(1);
    let upstream = Box::pin(upstream);
    futures::stream::unfold(Some((upstream, Vec::new(), credential)), move |state| async move {
        let (mut upstream, mut carry, credential) = state?;
        loop {
            match upstream.next().await {
                Some(Ok(chunk)) => {
                    carry.extend_from_slice(&chunk);
                    credential.scrub(&mut carry);
                    if carry.len() > keep {
                        let ready: Vec<u8> = carry.drain(..carry.len() - keep).collect();
                        return Some((Ok(Bytes::from(ready)), Some((upstream, carry, credential))));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None if carry.is_empty() => return None,
                None => return Some((Ok(Bytes::from(carry)), None)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_base_url() {
        let base = Url::parse("https://git.example.com/gitlab").unwrap();
        let ok = target_url(&base, "api/v4/projects/group%2Fproject/issues", Some("state=opened")).unwrap();
        assert_eq!(ok.as_str(), "https://git.example.com/gitlab/api/v4/projects/group%2Fproject/issues?state=opened");
        for bad in [
            "../admin",
            "api/../../admin",
            "api/%2e%2e/%2E%2E/admin",
            "/evil.example/x",
            "//evil.example/x",
            "https://evil.example/x",
            "http:evil",
            "api\\..\\admin",
            "api%5c..%5cadmin",
            ".",
        ] {
            assert!(target_url(&base, bad, None).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn hop_by_hop_api_key_and_credential_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer gatehouse-api-key"),
            ("cookie", "session=1"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("private-token", "guessed"),
            ("gatehouse-retries", "2"),
            ("x-forwarded-for", "10.0.0.1"),
            ("accept", "application/json"),
            ("if-none-match", "\"abc\""),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = forwarded_headers(&h, &HeaderName::from_static("private-token"));
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept", "if-none-match"]);
    }

    #[tokio::test]
    async fn a_secret_split_across_chunks_is_still_scrubbed() {
        let base = Url::parse("https://git.example.com").unwrap();
        let secret = secrecy::SecretString::from("glpat-abcdefghijklmnop".to_string());
        let credential = CredentialHeader::new(&base, "private-token", &secret, vec![secret.clone()]).unwrap();
        let chunks: Vec<std::io::Result<Bytes>> =
            vec![Ok(Bytes::from_static(b"{\"echo\":\"glpat-abcdef")), Ok(Bytes::from_static(b"ghijklmnop\"}"))];
        let out: Vec<u8> =
            scrubbed(futures::stream::iter(chunks), credential).map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(String::from_utf8(out).unwrap(), "{\"echo\":\"[redacted]\"}");
    }
}
