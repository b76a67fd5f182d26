//! Outbound network capability for connectors and the proxy. Shared state
//! (one pooled HTTP client, the address policy) lives in [`Egress`];
//! per-call state (the hosts this call may reach, how many requests it
//! made) in [`CallEgress`]. Addresses are checked after DNS resolution,
//! inside the client's connector (`dial`), so a name that resolves to a
//! refused address is never connected to, directly or through the egress
//! proxy; what an address is, `address` decides.

mod address;
mod dial;

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    path::Path,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioTimer},
};
use ipnet::{IpNet, Ipv4Net};
use url::Url;

pub use address::{Block, Kind};
use dial::{DialError, Dialer};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    /// The URL is not acceptable as a base URL (shape, scheme).
    #[error("{0}")]
    InvalidUrl(String),
    /// The target is well-formed but the policy refuses it.
    #[error("{0}")]
    Denied(String),
}

/// Which targets connectors may reach: the global internet, plus what the
/// flags open. Cloud metadata endpoints and unroutable addresses stay
/// refused whatever the flags.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Loopback, private-use, shared, link-local and unique-local addresses.
    pub allow_private_networks: bool,
    pub allow_http: bool,
    /// Networks opened one by one (`--allow-network`), of any non-global kind
    /// but metadata and unroutable.
    pub allow_networks: Vec<IpNet>,
}

/// Why an address is refused, as a sentence naming it. Shown to a caller
/// only when the caller gave the address itself; for a name, `dial` says
/// less.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    address: IpAddr,
    block: Block,
    /// The IPv6 address that carries `address`, and how.
    carried_by: Option<(Ipv6Addr, &'static str)>,
}

impl Refusal {
    /// Why, as a metrics label: the kind of address refused.
    pub fn reason(&self) -> &'static str {
        match self.block.kind {
            Kind::Global => "address",
            Kind::Private => "private_address",
            Kind::Special => "special_address",
            Kind::Unroutable => "unroutable_address",
            Kind::Metadata => "metadata_address",
        }
    }
}

impl Refusal {
    pub fn kind(&self) -> Kind {
        self.block.kind
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { address, block, carried_by } = self;
        match carried_by {
            Some((outer, how)) => {
                write!(f, "{outer} carries the IPv4 address {address} ({how}), which is {}", block.name)?
            }
            None => write!(f, "{address} is {}", block.name)?,
        }
        let single = IpNet::from(*address);
        match block.kind {
            Kind::Metadata => write!(f, "; it is refused whatever the flags"),
            Kind::Unroutable => write!(f, ", which is never a destination"),
            Kind::Private => write!(
                f,
                "; start the server with --allow-network {single} (or a wider network) or --allow-private-networks to let connectors reach it"
            ),
            Kind::Special => {
                write!(
                    f,
                    "; start the server with --allow-network {single} (or a wider network) if a server really lives there"
                )
            }
            Kind::Global => Ok(()),
        }
    }
}

/// `--allow-network`: a CIDR, or one address. An IPv4-mapped IPv6 network is
/// taken as the IPv4 network it is, as the addresses it holds are judged.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!("{text:?} is not a network; give a CIDR such as 10.0.4.0/24 or fd12:3456::/48, or one address")
        })?,
    }
    .trunc();
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(inner) = v6.addr().to_ipv4_mapped()
    {
        return Ok(IpNet::V4(Ipv4Net::new(inner, v6.prefix_len() - 96).expect("a prefix of at most 32")));
    }
    Ok(net)
}

impl Policy {
    /// Checks the shape of a user-supplied base URL and normalises it (no
    /// trailing slash), without touching the network.
    pub fn parse_base_url(&self, raw: &str) -> Result<Url, EgressError> {
        let invalid = |why: &str| EgressError::InvalidUrl(why.to_string());
        let mut url = Url::parse(raw.trim())
            .map_err(|_| invalid("the base URL must be an absolute URL such as https://provider.example.com"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(invalid(
                    "plain http base URLs are refused; use https, or start the server with --allow-http for a trusted network",
                ));
            }
            _ => return Err(invalid("the base URL must start with https://")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the base URL has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "the base URL must not contain a user name or password; put credentials in their own fields",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "the base URL must not have a query or fragment; give only scheme, host and optional path",
            ));
        }
        let path = url.path().trim_end_matches('/').to_string();
        url.set_path(&path);
        Ok(url)
    }

    /// Whether connecting to `ip` is allowed. An IPv6 address that carries
    /// an IPv4 address is allowed only if that address is too.
    pub fn ip_allowed(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = address::canonical(ip);
        if let IpAddr::V6(outer) = ip {
            for (inner, how) in address::carried_ipv4(outer) {
                self.judge(IpAddr::V4(inner)).map_err(|r| Refusal { carried_by: Some((outer, how)), ..r })?;
            }
        }
        self.judge(ip)
    }

    fn judge(&self, ip: IpAddr) -> Result<(), Refusal> {
        let block = address::block_of(ip);
        let opened = || self.allow_networks.iter().any(|net| net.contains(&ip));
        let allowed = match block.kind {
            Kind::Global => true,
            Kind::Private => self.allow_private_networks || opened(),
            Kind::Special => opened(),
            Kind::Unroutable | Kind::Metadata => false,
        };
        if allowed { Ok(()) } else { Err(Refusal { address: ip, block, carried_by: None }) }
    }

    /// Resolves the URL's host once and checks every address, so a user
    /// gets `egress_denied` before a connector runs.
    pub async fn check_reachable(&self, url: &Url) -> Result<(), EgressError> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(443);
        match dial::resolve_checked(self, host, port).await {
            Err(DialError::Refused(why)) => Err(EgressError::Denied(why)),
            // Unresolvable names are left to the request, which reports them
            // as unreachable with the resolver's own words.
            _ => Ok(()),
        }
    }
}

/// `--egress-proxy`: an HTTP proxy that outbound connections tunnel
/// through with CONNECT. Its credentials (from the URL's user info) become
/// a `Proxy-Authorization` header and are never shown.
#[derive(Clone)]
pub struct EgressProxy {
    host: String,
    port: u16,
    authorization: Option<http::HeaderValue>,
    /// `http://host:port`, for messages.
    shown: String,
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("proxy", &self.shown)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl fmt::Display for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl FromStr for EgressProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        use base64::Engine;
        let url = Url::parse(text.trim())
            .map_err(|_| "the egress proxy must be a URL such as http://proxy.internal:3128".to_string())?;
        if url.scheme() != "http" {
            return Err("the egress proxy must be an http:// URL (Gatehouse speaks HTTP CONNECT to it; TLS to the target runs inside the tunnel)".into());
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the egress proxy URL has no host")?;
        if !url.path().trim_end_matches('/').is_empty() || url.query().is_some() || url.fragment().is_some() {
            return Err("the egress proxy URL must be only http://[user:password@]host[:port]".into());
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let shown = format!("http://{host}:{port}");
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| percent_decode(s);
            let pair = format!("{}:{}", decode(url.username()), decode(url.password().unwrap_or_default()));
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut value = http::HeaderValue::from_str(&format!("Basic {encoded}"))
                .map_err(|_| "the egress proxy credentials cannot be sent in a header".to_string())?;
            value.set_sensitive(true);
            Some(value)
        };
        Ok(Self { host, port, authorization, shown })
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Limits on a connector's outbound traffic.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub timeout: Duration,
    pub max_response_bytes: u64,
    pub max_requests_per_call: u32,
}

type Body = http_body_util::Full<Bytes>;

/// Shared by every call: one connection pool and the policy.
pub struct Egress {
    client: Client<Dialer, Body>,
    pub policy: Arc<Policy>,
    pub limits: HttpLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum EgressSetupError {
    #[error("cannot read CA bundle {path}: {source}")]
    CaBundle { path: String, source: std::io::Error },
    #[error("CA bundle {path} holds no valid PEM certificate")]
    CaBundlePem { path: String },
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

impl Egress {
    pub fn new(
        policy: Policy,
        limits: HttpLimits,
        ca_bundle: Option<&Path>,
        proxy: Option<EgressProxy>,
    ) -> Result<Self, EgressSetupError> {
        let policy = Arc::new(policy);
        let tls = Arc::new(tls_config(ca_bundle)?);
        let dialer = Dialer::new(policy.clone(), proxy, tls, limits.timeout);
        // No implicit proxy from the environment (HTTP_PROXY and friends):
        // a proxy that resolves names itself would bypass the address
        // checks. `--egress-proxy` is the explicit, checked way.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(dialer);
        Ok(Self { client, policy, limits })
    }
}

/// The public web roots, plus the CA bundle's certificates.
fn tls_config(ca_bundle: Option<&Path>) -> Result<rustls::ClientConfig, EgressSetupError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_bundle {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| EgressSetupError::CaBundle { path: shown.clone(), source })?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|_| EgressSetupError::CaBundlePem { path: shown.clone() })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(EgressSetupError::CaBundlePem { path: shown });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A request as a connector asked for it.
pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the host should add the connection's credential.
    pub authenticate: bool,
}

pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("egress denied: {0}")]
    Denied(String),
    #[error("timed out")]
    Timeout,
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("response too large")]
    TooLarge,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The call used up its request budget; the runtime fails the call.
    #[error("the connector exceeded its limit of {0} outbound requests per call")]
    BudgetExhausted(u32),
}

/// Headers a connector may not set: they would let it address another
/// host through the allowed one or desynchronise the framing.
const FORBIDDEN_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"];

/// Scheme, lowercase host and port: what "the same server" means here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String, String, u16);

impl Origin {
    pub fn of(url: &Url) -> Option<Self> {
        Some(Self(url.scheme().to_string(), url.host_str()?.to_ascii_lowercase(), url.port_or_known_default()?))
    }
}

/// The credential header the host adds to authenticated requests, and the
/// only origin it is ever sent to. The secret values it was made from are
/// kept to scrub them from answers, so a connector cannot read the
/// credential back through an upstream that echoes requests.
pub struct CredentialHeader {
    origin: Origin,
    name: http::HeaderName,
    value: http::HeaderValue,
    secrets: Vec<secrecy::SecretString>,
}

impl std::fmt::Debug for CredentialHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialHeader")
            .field("origin", &self.origin)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CredentialHeader {
    /// `value` is the rendered header value; `secrets` the credential
    /// values it holds.
    pub fn new(
        base_url: &Url,
        name: &str,
        value: &secrecy::SecretString,
        secrets: Vec<secrecy::SecretString>,
    ) -> Result<Self, String> {
        use secrecy::ExposeSecret;
        let origin = Origin::of(base_url).ok_or("the base URL has no host")?;
        let name =
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
        let mut value = http::HeaderValue::from_str(value.expose_secret())
            .map_err(|_| format!("the stored credential cannot be sent in the {name} header"))?;
        value.set_sensitive(true);
        Ok(Self { origin, name, value, secrets })
    }

    pub fn header_name(&self) -> &http::HeaderName {
        &self.name
    }

    /// Length of the longest value `scrub` looks for.
    pub fn longest_secret(&self) -> usize {
        use secrecy::ExposeSecret;
        self.secrets.iter().map(|s| s.expose_secret().len()).max().unwrap_or(0)
    }

    /// Replaces every credential value in `bytes` with `[redacted]`. Runs
    /// on every answer a connector reads, which rarely holds a secret: the
    /// search is a SIMD substring search and nothing is copied unless a
    /// value is found.
    pub fn scrub(&self, bytes: &mut Vec<u8>) {
        use secrecy::ExposeSecret;
        for secret in &self.secrets {
            let needle = secret.expose_secret().as_bytes();
            if needle.len() < 4 || memchr::memmem::find(bytes, needle).is_none() {
                continue;
            }
            let finder = memchr::memmem::Finder::new(needle);
            let mut scrubbed = Vec::with_capacity(bytes.len());
            let mut rest = 0;
            for at in finder.find_iter(bytes) {
                scrubbed.extend_from_slice(&bytes[rest..at]);
                scrubbed.extend_from_slice(b"[redacted]");
                rest = at + needle.len();
            }
            scrubbed.extend_from_slice(&bytes[rest..]);
            *bytes = scrubbed;
        }
    }
}

impl Egress {
    /// The one check every outbound request passes, whoever sends it: the
    /// target is on an allowed origin and plain http only when allowed.
    /// Addresses are checked when the connection is opened (`dial`).
    fn check_target(&self, url: &Url, allowed: &[Origin]) -> Result<(), SendError> {
        let origin = Origin::of(url).ok_or_else(|| SendError::InvalidRequest("the URL has no host".into()))?;
        if !allowed.contains(&origin) {
            crate::metrics::egress_denied("origin");
            return Err(SendError::Denied(format!(
                "{}://{} is not the base URL's host; connectors may only reach the host of the credentials' base URL",
                origin.0, origin.1
            )));
        }
        if url.scheme() == "http" && !self.policy.allow_http {
            crate::metrics::egress_denied("plain_http");
            return Err(SendError::Denied("plain http is refused; start the server with --allow-http".into()));
        }
        Ok(())
    }

    /// Sends one request; answers once the response head is in, all
    /// within `deadline`.
    async fn exchange(
        &self,
        method: http::Method,
        url: &Url,
        headers: http::HeaderMap,
        body: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> Result<http::Response<hyper::body::Incoming>, SendError> {
        let uri: http::Uri =
            url.as_str().parse().map_err(|_| SendError::InvalidRequest("the URL cannot be sent".into()))?;
        let mut request = http::Request::new(Body::from(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .entry(http::header::USER_AGENT)
            .or_insert(http::HeaderValue::from_static(concat!("gatehouse/", env!("CARGO_PKG_VERSION"))));
        match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Err(_) => Err(SendError::Timeout),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Sends a proxied request with the credential added; the answer's
    /// body streams, still under `timeout`. Only the credential's own
    /// origin is reachable.
    pub async fn forward(
        &self,
        method: http::Method,
        url: Url,
        headers: http::HeaderMap,
        body: Vec<u8>,
        credential: &CredentialHeader,
        timeout: Duration,
    ) -> Result<UpstreamResponse, SendError> {
        self.check_target(&url, std::slice::from_ref(&credential.origin))?;
        let mut headers = headers;
        headers.insert(credential.name.clone(), credential.value.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        let response = self.exchange(method, &url, headers, body, deadline).await?;
        let (parts, body) = response.into_parts();
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body: Box::pin(body_stream(body, deadline)),
        })
    }
}

/// A response whose body is still on the wire.
pub struct UpstreamResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
}

/// The body's data frames until `deadline`; past it, one `TimedOut` error.
fn body_stream(
    body: hyper::body::Incoming,
    deadline: tokio::time::Instant,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        loop {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "the provider's answer took too long");
                    return Some((Err(late), None));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some((Err(std::io::Error::other(dial::innermost(&e))), None)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Some((Ok(data), Some(body)));
                    }
                }
            }
        }
    })
}

/// What one connector call may reach.
pub struct CallEgress {
    egress: Arc<Egress>,
    allowed_origins: Vec<Origin>,
    credential: Option<CredentialHeader>,
    requests_made: u32,
    /// Whose calls these are, for the provider metrics.
    connector: Option<String>,
}

impl CallEgress {
    /// `allowed` are the URLs whose origins this call may reach (the
    /// credentials' url fields); `credential`, what authenticated requests
    /// carry.
    pub fn new(egress: Arc<Egress>, allowed: &[Url], credential: Option<CredentialHeader>) -> Self {
        let allowed_origins = allowed.iter().filter_map(Origin::of).collect();
        Self { egress, allowed_origins, credential, requests_made: 0, connector: None }
    }

    /// Names the connector making the calls (the metrics of the provider's
    /// answers are per connector).
    pub fn for_connector(mut self, id: &str) -> Self {
        self.connector = Some(id.to_string());
        self
    }

    /// The next call of the same operation starts with a full request budget.
    pub fn next_call(&mut self) {
        self.requests_made = 0;
    }

    pub async fn send(&mut self, req: OutboundRequest) -> Result<OutboundResponse, SendError> {
        let limits = self.egress.limits;
        if self.requests_made >= limits.max_requests_per_call {
            return Err(SendError::BudgetExhausted(limits.max_requests_per_call));
        }
        self.requests_made += 1;

        let url = Url::parse(&req.url).map_err(|_| SendError::InvalidRequest("the URL is not absolute".into()))?;
        self.egress.check_target(&url, &self.allowed_origins)?;
        let credential = match (&self.credential, req.authenticate) {
            (_, false) => None,
            (None, true) => {
                crate::metrics::egress_denied("no_credential");
                return Err(SendError::Denied(
                    "the host has no credential to present in this call (the manifest declares no credential-presentation)".into(),
                ));
            }
            (Some(c), true) if Origin::of(&url).as_ref() != Some(&c.origin) => {
                crate::metrics::egress_denied("credential_origin");
                return Err(SendError::Denied(
                    "the host authenticates only requests to the connection's base URL".into(),
                ));
            }
            (Some(c), true) => Some(c),
        };
        let method = http::Method::from_bytes(req.method.as_bytes())
            .ok()
            .filter(|m| ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&m.as_str()))
            .ok_or_else(|| SendError::InvalidRequest(format!("method {:?} is not allowed", req.method)))?;

        let mut headers = http::HeaderMap::new();
        for (name, value) in &req.headers {
            if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(SendError::InvalidRequest(format!("header {name:?} may not be set by a connector")));
            }
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::InvalidRequest(format!("bad header name {name:?}")))?;
            // The host's credential replaces a guess of the connector's.
            if credential.is_some_and(|c| c.name == name) {
                continue;
            }
            // The value may be a credential: never echo it.
            let value = http::HeaderValue::from_str(value)
                .map_err(|_| SendError::InvalidRequest(format!("bad value for header {name}")))?;
            headers.append(name, value);
        }
        if let Some(c) = credential {
            headers.insert(c.name.clone(), c.value.clone());
        }

        let deadline = tokio::time::Instant::now() + limits.timeout;
        let response = self.egress.exchange(method, &url, headers, req.body, deadline).await?;
        let status = response.status().as_u16();
        if let Some(connector) = &self.connector {
            crate::metrics::provider_answer(connector, status, response.headers());
        }
        let mut headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let declared =
            response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limits.max_response_bytes) {
            return Err(SendError::TooLarge);
        }
        let mut body = Vec::new();
        let mut stream = std::pin::pin!(body_stream(response.into_body(), deadline));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut => SendError::Timeout,
                _ => SendError::Unreachable(e.to_string()),
            })?;
            if body.len() as u64 + chunk.len() as u64 > limits.max_response_bytes {
                return Err(SendError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if let Some(c) = credential {
            c.scrub(&mut body);
            for (_, value) in &mut headers {
                if value.len() >= 4 {
                    let mut bytes = std::mem::take(value).into_bytes();
                    c.scrub(&mut bytes);
                    *value =
                        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                }
            }
        }
        Ok(OutboundResponse { status, headers, body })
    }
}

/// A client error as the connector (and the API caller) sees it: a policy
/// refusal as `Denied`, a transport failure by its innermost cause, which
/// carries nothing the connector sent.
fn classify(err: &hyper_util::client::legacy::Error) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(dial) = e.downcast_ref::<DialError>() {
            return match dial {
                DialError::Refused(why) => SendError::Denied(why.clone()),
                DialError::Timeout => SendError::Timeout,
                other => SendError::Unreachable(other.to_string()),
            };
        }
        source = e.source();
    }
    SendError::Unreachable(dial::innermost(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy { allow_private_networks: false, allow_http: false, allow_networks: Vec::new() };
    const LAX: Policy = Policy { allow_private_networks: true, allow_http: true, allow_networks: Vec::new() };

    #[test]
    fn every_credential_value_is_scrubbed_and_other_bytes_are_kept() {
        let url = Url::parse("https://gitlab.example.com").unwrap();
        use secrecy::SecretString;
        let secret = SecretString::from("glpat-secret");
        let header =
            CredentialHeader::new(&url, "private-token", &secret, vec![secret.clone(), SecretString::from("abc")])
                .unwrap();
        let mut body = b"glpat-secretglpat-secret {\"t\":\"glpat-secret\"} glpat-secre abc".to_vec();
        header.scrub(&mut body);
        // Values shorter than 4 bytes are not looked for: they would redact
        // ordinary words.
        assert_eq!(body, b"[redacted][redacted] {\"t\":\"[redacted]\"} glpat-secre abc");
        let mut clean = b"nothing to see".to_vec();
        header.scrub(&mut clean);
        assert_eq!(clean, b"nothing to see");
    }

    #[test]
    fn base_url_shapes() {
        assert_eq!(STRICT.parse_base_url("https://gitlab.com/").unwrap().as_str(), "https://gitlab.com/");
        assert_eq!(STRICT.parse_base_url("https://h.example/gitlab/").unwrap().path(), "/gitlab");
        for bad in ["gitlab.com", "ftp://h", "https://u:p@h", "https://h/?q=1", "https://h/#x", "http://h"] {
            assert!(matches!(STRICT.parse_base_url(bad), Err(EgressError::InvalidUrl(_))), "{bad}");
        }
        assert!(LAX.parse_base_url("http://h").is_ok());
    }

    /// Every row: an address, whether the default policy allows it,
    /// whether `--allow-private-networks` does, and the `--allow-network`
    /// networks that open it (`None`: nothing does, whatever the flags).
    const CORPUS: &[(&str, bool, bool, Option<&[&str]>)] = &[
        // Global unicast, also when carried by a translation mechanism.
        ("140.82.112.3", true, true, Some(&[])),
        ("8.8.8.8", true, true, Some(&[])),
        ("1.1.1.1", true, true, Some(&[])),
        ("192.0.0.9", true, true, Some(&[])),
        ("192.0.0.10", true, true, Some(&[])),
        ("192.31.196.1", true, true, Some(&[])),
        ("2606:4700:4700::1111", true, true, Some(&[])),
        ("2001:1::1", true, true, Some(&[])),
        ("2001:4:112::1", true, true, Some(&[])),
        ("2620:4f:8000::1", true, true, Some(&[])),
        ("::ffff:8.8.8.8", true, true, Some(&[])),
        ("64:ff9b::808:808", true, true, Some(&[])),
        ("2002:808:808::1", true, true, Some(&[])),
        // Private networks.
        ("127.0.0.1", false, true, Some(&["127.0.0.0/8"])),
        ("127.255.255.254", false, true, Some(&["127.255.255.254"])),
        ("10.1.2.3", false, true, Some(&["10.1.2.0/24"])),
        ("172.16.0.1", false, true, Some(&["172.16.0.0/12"])),
        ("172.31.255.255", false, true, Some(&["172.31.0.0/16"])),
        ("192.168.1.1", false, true, Some(&["192.168.1.1/32"])),
        ("100.64.0.1", false, true, Some(&["100.64.0.0/10"])),
        ("169.254.1.1", false, true, Some(&["169.254.0.0/16"])),
        ("::1", false, true, Some(&["::1/128"])),
        ("fe80::1", false, true, Some(&["fe80::/10"])),
        ("fc00::1", false, true, Some(&["fc00::/7"])),
        ("fd12:3456::1", false, true, Some(&["fd12:3456::/32"])),
        ("fec0::1", false, true, Some(&["fec0::/10"])),
        ("::ffff:127.0.0.1", false, true, Some(&["127.0.0.1"])),
        ("::ffff:10.0.0.1", false, true, Some(&["::ffff:10.0.0.0/104"])),
        ("64:ff9b::a00:1", false, true, Some(&["10.0.0.0/8"])),
        ("64:ff9b::7f00:1", false, true, Some(&["127.0.0.1"])),
        ("64:ff9b:1::a00:1", false, true, Some(&["10.0.0.1", "64:ff9b:1::/48"])),
        ("2002:7f00:1::1", false, true, Some(&["127.0.0.1"])),
        ("2002:c0a8:101::1", false, true, Some(&["192.168.1.1"])),
        // Special-purpose: only --allow-network opens them.
        ("192.0.0.1", false, false, Some(&["192.0.0.0/24"])),
        ("192.0.0.170", false, false, Some(&["192.0.0.170"])),
        ("192.0.2.1", false, false, Some(&["192.0.2.0/24"])),
        ("192.88.99.1", false, false, Some(&["192.88.99.0/24"])),
        ("198.18.0.1", false, false, Some(&["198.18.0.0/15"])),
        ("198.19.255.255", false, false, Some(&["198.18.0.0/15"])),
        ("198.51.100.7", false, false, Some(&["198.51.100.0/24"])),
        ("203.0.113.9", false, false, Some(&["203.0.113.0/24"])),
        ("240.0.0.1", false, false, Some(&["240.0.0.0/4"])),
        ("250.1.2.3", false, false, Some(&["250.0.0.0/8"])),
        ("255.255.255.254", false, false, Some(&["240.0.0.0/4"])),
        ("::a00:1", false, false, Some(&["::/96", "10.0.0.1"])),
        ("::8.8.8.8", false, false, Some(&["::/96"])),
        ("100::1", false, false, Some(&["100::/64"])),
        ("2001:db8::1", false, false, Some(&["2001:db8::/32"])),
        ("2001:2::1", false, false, Some(&["2001:2::/48"])),
        ("2001:10::1", false, false, Some(&["2001:10::/28"])),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false, false, Some(&["2001::/32", "192.0.2.0/24"])),
        ("3fff::1", false, false, Some(&["3fff::/20"])),
        ("5f00::1", false, false, Some(&["5f00::/16"])),
        ("4000::1", false, false, Some(&["4000::/3"])),
        ("::ffff:0:a00:1", false, false, Some(&["::/8"])),
        // Never a destination.
        ("0.0.0.0", false, false, None),
        ("0.1.2.3", false, false, None),
        ("255.255.255.255", false, false, None),
        ("224.0.0.1", false, false, None),
        ("239.255.255.250", false, false, None),
        ("::", false, false, None),
        ("ff02::1", false, false, None),
        ("::ffff:0.0.0.0", false, false, None),
        ("2001::1", false, false, None),
        // Cloud metadata, in every spelling.
        ("169.254.169.254", false, false, None),
        ("169.254.170.2", false, false, None),
        ("169.254.170.23", false, false, None),
        ("169.254.0.23", false, false, None),
        ("169.254.42.42", false, false, None),
        ("100.100.100.200", false, false, None),
        ("192.0.0.192", false, false, None),
        ("168.63.129.16", false, false, None),
        ("fd00:ec2::254", false, false, None),
        ("fd00:ec2::23", false, false, None),
        ("fd20:ce::254", false, false, None),
        ("fd00:c1::a9fe:a9fe", false, false, None),
        ("fd00:42::42", false, false, None),
        ("fe80::a9fe:a9fe", false, false, None),
        ("::ffff:169.254.169.254", false, false, None),
        ("::ffff:a9fe:a9fe", false, false, None),
        ("::169.254.169.254", false, false, None),
        ("64:ff9b::169.254.169.254", false, false, None),
        ("64:ff9b:1::6464:64c8", false, false, None),
        ("2002:a9fe:a9fe::1", false, false, None),
        ("2001:0:808:808::5601:5601", false, false, None),
    ];

    fn opened(nets: &[&str]) -> Policy {
        Policy { allow_networks: nets.iter().map(|n| parse_network(n).unwrap()).collect(), ..STRICT }
    }

    #[test]
    fn address_corpus() {
        let everything = Policy { allow_private_networks: true, ..opened(&["0.0.0.0/0", "::/0"]) };
        for &(text, default, private, opened_by) in CORPUS {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(STRICT.ip_allowed(ip).is_ok(), default, "{text} by default: {:?}", STRICT.ip_allowed(ip));
            assert_eq!(LAX.ip_allowed(ip).is_ok(), private, "{text} with --allow-private-networks");
            assert_eq!(everything.ip_allowed(ip).is_ok(), opened_by.is_some(), "{text} with every flag");
            if let Some(nets) = opened_by.filter(|n| !n.is_empty()) {
                assert!(opened(nets).ip_allowed(ip).is_ok(), "{text} with --allow-network {nets:?}");
                // Each network alone is not enough when two are needed.
                if nets.len() > 1 {
                    for net in nets {
                        assert!(opened(&[net]).ip_allowed(ip).is_err(), "{text} with --allow-network {net} alone");
                    }
                }
            }
        }
    }

    #[test]
    fn refusals_name_the_address_and_the_way_out() {
        let why = STRICT.ip_allowed("64:ff9b::a00:1".parse().unwrap()).unwrap_err().to_string();
        assert!(why.contains("64:ff9b::a00:1") && why.contains("10.0.0.1") && why.contains("NAT64"), "{why}");
        assert!(why.contains("--allow-network 10.0.0.1/32"), "{why}");
        let why = LAX.ip_allowed("169.254.169.254".parse().unwrap()).unwrap_err().to_string();
        assert!(why.contains("metadata") && why.contains("whatever the flags"), "{why}");
        let why = STRICT.ip_allowed("198.18.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(why.kind(), Kind::Special);
        assert!(!why.to_string().contains("--allow-private-networks"), "that flag would not help: {why}");
    }

    #[test]
    fn allow_network_takes_cidrs_and_addresses() {
        assert_eq!(parse_network("10.0.4.7/24").unwrap().to_string(), "10.0.4.0/24");
        assert_eq!(parse_network(" 10.0.4.7 ").unwrap().to_string(), "10.0.4.7/32");
        assert_eq!(parse_network("fd12::1").unwrap().to_string(), "fd12::1/128");
        assert_eq!(parse_network("::ffff:10.0.0.0/104").unwrap().to_string(), "10.0.0.0/8");
        for bad in ["", "10.0.0.0/33", "gitlab.internal", "10.0.0.0/8,10.1.0.0/16"] {
            assert!(parse_network(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn egress_proxy_urls() {
        let proxy: EgressProxy = "http://user:p%40ss@proxy.internal:3128".parse().unwrap();
        assert_eq!(proxy.to_string(), "http://proxy.internal:3128");
        let debug = format!("{proxy:?}");
        assert!(!debug.contains("p@ss") && !debug.contains("user"), "{debug}");
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD.encode("user:p@ss");
        assert_eq!(proxy.authorization.unwrap().to_str().unwrap(), format!("Basic {expected}"));
        assert_eq!("http://proxy.internal".parse::<EgressProxy>().unwrap().to_string(), "http://proxy.internal:80");
        for bad in ["https://proxy.internal:3128", "proxy.internal:3128", "http://proxy.internal/path", "socks5://p:1"]
        {
            assert!(bad.parse::<EgressProxy>().is_err(), "{bad}");
        }
    }

    fn egress(policy: Policy, limits: HttpLimits) -> Arc<Egress> {
        Arc::new(Egress::new(policy, limits, None, None).unwrap())
    }

    fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> OutboundRequest {
        OutboundRequest {
            method: method.into(),
            url: url.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: vec![],
            authenticate: false,
        }
    }

    #[tokio::test]
    async fn other_hosts_and_budget_are_enforced() {
        let limits = HttpLimits { timeout: Duration::from_secs(1), max_response_bytes: 10, max_requests_per_call: 1 };
        let base = Url::parse("http://127.0.0.1:9").unwrap();
        let mut call = CallEgress::new(egress(LAX, limits), &[base], None);
        let denied = call.send(request("GET", "http://169.254.169.254/", &[])).await;
        assert!(matches!(denied, Err(SendError::Denied(_))));
        let over = call.send(request("GET", "http://127.0.0.1:9/", &[])).await;
        assert!(matches!(over, Err(SendError::BudgetExhausted(1))));
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_never_connected() {
        let limits = HttpLimits { timeout: Duration::from_secs(2), max_response_bytes: 10, max_requests_per_call: 4 };
        let strict_http = Policy { allow_http: true, ..STRICT };
        let base = Url::parse("http://localhost:9").unwrap();
        let mut call = CallEgress::new(egress(strict_http.clone(), limits), std::slice::from_ref(&base), None);
        match call.send(request("GET", "http://localhost:9/x", &[])).await {
            Err(SendError::Denied(why)) => {
                assert!(why.contains("localhost"), "{why}");
                assert!(!why.contains("127.0.0.1") && !why.contains("::1"), "the address is not told: {why}");
            }
            other => panic!("expected a denial, got {:?}", other.err()),
        }
        assert!(strict_http.check_reachable(&base).await.is_err());
    }

    #[tokio::test]
    async fn ip_literals_are_checked_when_dialling() {
        // The origin check passes (it is the base URL); the address check
        // in the connector still refuses.
        let limits = HttpLimits { timeout: Duration::from_secs(2), max_response_bytes: 10, max_requests_per_call: 4 };
        let strict_http = Policy { allow_http: true, ..STRICT };
        let base = Url::parse("http://[64:ff9b::7f00:1]:9").unwrap();
        let mut call = CallEgress::new(egress(strict_http, limits), std::slice::from_ref(&base), None);
        match call.send(request("GET", &format!("{base}x"), &[])).await {
            Err(SendError::Denied(why)) => assert!(why.contains("127.0.0.1"), "{why}"),
            other => panic!("expected a denial, got {:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn forbidden_headers_and_methods_are_refused() {
        let limits = HttpLimits { timeout: Duration::from_secs(1), max_response_bytes: 10, max_requests_per_call: 8 };
        let mut call = CallEgress::new(egress(LAX, limits), &[Url::parse("http://127.0.0.1:9").unwrap()], None);
        let host_header = request("GET", "http://127.0.0.1:9/", &[("Host", "metadata.internal")]);
        assert!(matches!(call.send(host_header).await, Err(SendError::InvalidRequest(_))));
        let connect = request("CONNECT", "http://127.0.0.1:9/", &[]);
        assert!(matches!(call.send(connect).await, Err(SendError::InvalidRequest(_))));
    }
}
