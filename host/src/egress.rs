//! Outbound network capability for connectors. Shared state (one pooled
//! HTTP client, the address policy) lives in [`Egress`]; per-call state (the
//! hosts this call may reach, how many requests it made) in [`CallEgress`].
//! Addresses are checked after DNS resolution, inside the client's resolver,
//! so a name that resolves to a refused address is never connected to.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::Url;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    /// The URL is not acceptable as a base URL (shape, scheme).
    #[error("{0}")]
    InvalidUrl(String),
    /// The target is well-formed but the policy refuses it.
    #[error("{0}")]
    Denied(String),
}

/// Which targets connectors may reach.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub allow_private_networks: bool,
    pub allow_http: bool,
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

    /// Whether connecting to `ip` is allowed.
    pub fn ip_allowed(&self, ip: IpAddr) -> Result<(), EgressError> {
        let ip = canonical(ip);
        if ip.is_unspecified() || ip.is_multicast() || is_broadcast(ip) {
            return Err(EgressError::Denied(format!("{ip} is not a routable destination")));
        }
        if !self.allow_private_networks && is_internal(ip) {
            return Err(EgressError::Denied(format!(
                "{ip} is a loopback, private or link-local address; start the server with --allow-private-networks to reach internal hosts"
            )));
        }
        Ok(())
    }

    /// Resolves the URL's host once and checks every address, so a user
    /// gets `egress_denied` before a connector runs.
    pub async fn check_reachable(&self, url: &Url) -> Result<(), EgressError> {
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ip_allowed(ip);
        }
        let port = url.port_or_known_default().unwrap_or(443);
        // Unresolvable names are left to the request, which reports them as
        // unreachable with the resolver's own words.
        if let Ok(addrs) = tokio::net::lookup_host((host, port)).await {
            for addr in addrs {
                self.ip_allowed(addr.ip())?;
            }
        }
        Ok(())
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

fn is_internal(ip: IpAddr) -> bool {
    const V4: &[(Ipv4Addr, u8)] = &[
        (Ipv4Addr::new(0, 0, 0, 0), 8),
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(100, 64, 0, 0), 10),
        (Ipv4Addr::new(127, 0, 0, 0), 8),
        (Ipv4Addr::new(169, 254, 0, 0), 16),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
    ];
    const V6: &[(Ipv6Addr, u8)] = &[
        (Ipv6Addr::LOCALHOST, 128),
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    ];
    match ip {
        IpAddr::V4(v4) => {
            V4.iter().any(|(net, len)| Ipv4Net::new(*net, *len).is_ok_and(|n| IpNet::V4(n).contains(&IpAddr::V4(v4))))
        }
        IpAddr::V6(v6) => {
            V6.iter().any(|(net, len)| Ipv6Net::new(*net, *len).is_ok_and(|n| IpNet::V6(n).contains(&IpAddr::V6(v6))))
        }
    }
}

/// The client's resolver: the only way a host name becomes an address, so
/// the policy holds for every connection, including DNS rebinding.
struct PolicyResolver(Policy);

/// Marker error carried through reqwest so a refusal is reported as
/// `denied`, not as a generic connection failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ResolvedToRefusedAddress(String);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            for addr in &addrs {
                if let Err(EgressError::Denied(why) | EgressError::InvalidUrl(why)) = policy.ip_allowed(addr.ip()) {
                    return Err(Box::new(ResolvedToRefusedAddress(format!("{} resolves to {why}", name.as_str())))
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Limits on a connector's outbound traffic.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub timeout: Duration,
    pub max_response_bytes: u64,
    pub max_requests_per_call: u32,
}

/// Shared by every call: one connection pool and the policy.
pub struct Egress {
    client: reqwest::Client,
    pub policy: Policy,
    pub limits: HttpLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum EgressSetupError {
    #[error("cannot read CA bundle {path}: {source}")]
    CaBundle { path: String, source: std::io::Error },
    #[error("CA bundle {path} holds no valid PEM certificate")]
    CaBundlePem { path: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Egress {
    pub fn new(policy: Policy, limits: HttpLimits, ca_bundle: Option<&Path>) -> Result<Self, EgressSetupError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver(policy)))
            .connect_timeout(limits.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_bundle {
            let shown = path.display().to_string();
            let pem =
                std::fs::read(path).map_err(|source| EgressSetupError::CaBundle { path: shown.clone(), source })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| EgressSetupError::CaBundlePem { path: shown.clone() })?;
            if certs.is_empty() {
                return Err(EgressSetupError::CaBundlePem { path: shown });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self { client: builder.build()?, policy, limits })
    }
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
    name: reqwest::header::HeaderName,
    value: reqwest::header::HeaderValue,
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
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let mut value = reqwest::header::HeaderValue::from_str(value.expose_secret())
            .map_err(|_| format!("the stored credential cannot be sent in the {name} header"))?;
        value.set_sensitive(true);
        Ok(Self { origin, name, value, secrets })
    }

    pub fn header_name(&self) -> &reqwest::header::HeaderName {
        &self.name
    }

    /// Length of the longest value `scrub` looks for.
    pub fn longest_secret(&self) -> usize {
        use secrecy::ExposeSecret;
        self.secrets.iter().map(|s| s.expose_secret().len()).max().unwrap_or(0)
    }

    /// Replaces every credential value in `bytes` with `[redacted]`.
    pub fn scrub(&self, bytes: &mut Vec<u8>) {
        use secrecy::ExposeSecret;
        for secret in &self.secrets {
            let needle = secret.expose_secret().as_bytes();
            if needle.len() < 4 {
                continue;
            }
            while let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                bytes.splice(at..at + needle.len(), b"[redacted]".iter().copied());
            }
        }
    }
}

impl Egress {
    /// The one check every outbound request passes, whoever sends it: the
    /// target is on an allowed origin, plain http only when allowed, and an
    /// IP literal (which bypasses the resolver) is an acceptable address.
    /// Names are checked after resolution, by the client's resolver.
    fn check_target(&self, url: &Url, allowed: &[Origin]) -> Result<(), SendError> {
        let origin = Origin::of(url).ok_or_else(|| SendError::InvalidRequest("the URL has no host".into()))?;
        if !allowed.contains(&origin) {
            return Err(SendError::Denied(format!(
                "{}://{} is not the base URL's host; connectors may only reach the host of the credentials' base URL",
                origin.0, origin.1
            )));
        }
        if url.scheme() == "http" && !self.policy.allow_http {
            return Err(SendError::Denied("plain http is refused; start the server with --allow-http".into()));
        }
        if let Some(ip) = url.host_str().and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok()) {
            self.policy.ip_allowed(ip).map_err(|e| SendError::Denied(e.to_string()))?;
        }
        Ok(())
    }

    /// Sends a proxied request with the credential added; the answer is
    /// returned unread so its body can be streamed to the client. Only the
    /// credential's own origin is reachable.
    pub async fn forward(
        &self,
        method: reqwest::Method,
        url: Url,
        headers: reqwest::header::HeaderMap,
        body: Vec<u8>,
        credential: &CredentialHeader,
        timeout: Duration,
    ) -> Result<reqwest::Response, SendError> {
        self.check_target(&url, std::slice::from_ref(&credential.origin))?;
        let mut headers = headers;
        headers.insert(credential.name.clone(), credential.value.clone());
        let mut builder = self.client.request(method, url).headers(headers).timeout(timeout);
        if !body.is_empty() {
            builder = builder.body(body);
        }
        builder.send().await.map_err(classify)
    }
}

/// What one connector call may reach.
pub struct CallEgress {
    egress: Arc<Egress>,
    allowed_origins: Vec<Origin>,
    credential: Option<CredentialHeader>,
    requests_made: u32,
}

impl CallEgress {
    /// `allowed` are the URLs whose origins this call may reach (the
    /// credentials' url fields); `credential`, what authenticated requests
    /// carry.
    pub fn new(egress: Arc<Egress>, allowed: &[Url], credential: Option<CredentialHeader>) -> Self {
        let allowed_origins = allowed.iter().filter_map(Origin::of).collect();
        Self { egress, allowed_origins, credential, requests_made: 0 }
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
                return Err(SendError::Denied(
                    "the host has no credential to present in this call (the manifest declares no credential-presentation)".into(),
                ));
            }
            (Some(c), true) if Origin::of(&url).as_ref() != Some(&c.origin) => {
                return Err(SendError::Denied(
                    "the host authenticates only requests to the connection's base URL".into(),
                ));
            }
            (Some(c), true) => Some(c),
        };
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .ok()
            .filter(|m| ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&m.as_str()))
            .ok_or_else(|| SendError::InvalidRequest(format!("method {:?} is not allowed", req.method)))?;

        let mut builder = self.egress.client.request(method, url).timeout(limits.timeout);
        for (name, value) in &req.headers {
            if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(SendError::InvalidRequest(format!("header {name:?} may not be set by a connector")));
            }
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::InvalidRequest(format!("bad header name {name:?}")))?;
            // The host's credential replaces a guess of the connector's.
            if credential.is_some_and(|c| c.name == name) {
                continue;
            }
            // The value may be a credential: never echo it.
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| SendError::InvalidRequest(format!("bad value for header {name}")))?;
            builder = builder.header(name, value);
        }
        if let Some(c) = credential {
            builder = builder.header(c.name.clone(), c.value.clone());
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }

        let response = builder.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let mut headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        if response.content_length().is_some_and(|len| len > limits.max_response_bytes) {
            return Err(SendError::TooLarge);
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(classify)?;
            if body.len() as u64 + chunk.len() as u64 > limits.max_response_bytes {
                return Err(SendError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if let Some(c) = credential {
            c.scrub(&mut body);
            for (_, value) in &mut headers {
                let mut bytes = std::mem::take(value).into_bytes();
                c.scrub(&mut bytes);
                *value = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        Ok(OutboundResponse { status, headers, body })
    }
}

fn classify(err: reqwest::Error) -> SendError {
    if err.is_timeout() {
        return SendError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<ResolvedToRefusedAddress>() {
            return SendError::Denied(refused.0.clone());
        }
        source = e.source();
    }
    // reqwest's messages name the URL; the innermost cause is more useful
    // and carries nothing the connector sent.
    let err = err.without_url();
    let mut innermost = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        innermost = e.to_string();
        source = e.source();
    }
    SendError::Unreachable(innermost)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy { allow_private_networks: false, allow_http: false };
    const LAX: Policy = Policy { allow_private_networks: true, allow_http: true };

    #[test]
    fn base_url_shapes() {
        assert_eq!(STRICT.parse_base_url("https://gitlab.com/").unwrap().as_str(), "https://gitlab.com/");
        assert_eq!(STRICT.parse_base_url("https://h.example/gitlab/").unwrap().path(), "/gitlab");
        for bad in ["gitlab.com", "ftp://h", "https://u:p@h", "https://h/?q=1", "https://h/#x", "http://h"] {
            assert!(matches!(STRICT.parse_base_url(bad), Err(EgressError::InvalidUrl(_))), "{bad}");
        }
        assert!(LAX.parse_base_url("http://h").is_ok());
    }

    #[test]
    fn internal_addresses_refused_by_default() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(STRICT.ip_allowed(ip).is_err(), "{ip}");
            assert!(LAX.ip_allowed(ip).is_ok(), "{ip}");
        }
        for ip in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::"] {
            assert!(LAX.ip_allowed(ip.parse().unwrap()).is_err(), "{ip}");
        }
        assert!(STRICT.ip_allowed("140.82.112.3".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn other_hosts_and_budget_are_enforced() {
        let limits = HttpLimits { timeout: Duration::from_secs(1), max_response_bytes: 10, max_requests_per_call: 1 };
        let egress = Arc::new(Egress::new(LAX, limits, None).unwrap());
        let base = Url::parse("http://127.0.0.1:9").unwrap();
        let mut call = CallEgress::new(egress, &[base], None);
        let req = |url: &str| OutboundRequest {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: vec![],
            authenticate: false,
        };
        assert!(matches!(call.send(req("http://169.254.169.254/")).await, Err(SendError::Denied(_))));
        assert!(matches!(call.send(req("http://127.0.0.1:9/")).await, Err(SendError::BudgetExhausted(1))));
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_never_connected() {
        let limits = HttpLimits { timeout: Duration::from_secs(2), max_response_bytes: 10, max_requests_per_call: 4 };
        let strict_http = Policy { allow_private_networks: false, allow_http: true };
        let egress = Arc::new(Egress::new(strict_http, limits, None).unwrap());
        let base = Url::parse("http://localhost:9").unwrap();
        let mut call = CallEgress::new(egress, std::slice::from_ref(&base), None);
        let req = OutboundRequest {
            method: "GET".into(),
            url: "http://localhost:9/x".into(),
            headers: vec![],
            body: vec![],
            authenticate: false,
        };
        match call.send(req).await {
            Err(SendError::Denied(why)) => assert!(why.contains("localhost"), "{why}"),
            other => panic!("expected a denial, got {:?}", other.err()),
        }
        assert!(strict_http.check_reachable(&base).await.is_err());
    }

    #[tokio::test]
    async fn forbidden_headers_and_methods_are_refused() {
        let limits = HttpLimits { timeout: Duration::from_secs(1), max_response_bytes: 10, max_requests_per_call: 8 };
        let egress = Arc::new(Egress::new(LAX, limits, None).unwrap());
        let mut call = CallEgress::new(egress, &[Url::parse("http://127.0.0.1:9").unwrap()], None);
        let host_header = OutboundRequest {
            method: "GET".into(),
            url: "http://127.0.0.1:9/".into(),
            headers: vec![("Host".into(), "metadata.internal".into())],
            body: vec![],
            authenticate: false,
        };
        assert!(matches!(call.send(host_header).await, Err(SendError::InvalidRequest(_))));
        let connect = OutboundRequest {
            method: "CONNECT".into(),
            url: "http://127.0.0.1:9/".into(),
            headers: vec![],
            body: vec![],
            authenticate: false,
        };
        assert!(matches!(call.send(connect).await, Err(SendError::InvalidRequest(_))));
    }
}
