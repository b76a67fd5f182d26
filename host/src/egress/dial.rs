//! Opening outbound connections. The target's name is resolved here and
//! every address checked against the policy before anything is contacted;
//! then a TCP connection goes to a checked address, either directly or
//! through a CONNECT tunnel of the egress proxy that names the checked
//! address (never the name, which the proxy would resolve again), and TLS
//! runs end to end with the name as SNI and certificate identity.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper_util::{
    client::legacy::connect::{Connected, Connection},
    rt::TokioIo,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{EgressProxy, Policy};

/// Why a connection was not opened. `Refused` carries the sentence an API
/// caller may see; the rest name the transport failure.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0}")]
    Refused(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("{0}")]
    Connect(io::Error),
    #[error("connecting timed out")]
    Timeout,
    #[error("{0}")]
    Proxy(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("the URL has no host")]
    NoHost,
}

/// The sentence for a name that resolved to a refused address. It does not
/// say which address: that would let a caller map internal DNS through the
/// error. The debug log has it.
fn name_refused(host: &str) -> String {
    format!(
        "{host} resolves to an address outside the public internet, which the egress policy refuses; if it is your own server, allow its network with --allow-network (the server log names the address at debug level)"
    )
}

/// Resolves `host` and checks every address it has: one refused address
/// refuses the name, so a resolver that answers with a public and an
/// internal address cannot slip the second through. IP literals are checked
/// as they are.
pub async fn resolve_checked(policy: &Policy, host: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        policy.ip_allowed(ip).map_err(|refusal| {
            crate::metrics::egress_denied(refusal.reason());
            DialError::Refused(refusal.to_string())
        })?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|source| DialError::Resolve { host: bare.to_string(), source })?
        .collect();
    if addrs.is_empty() {
        let source = io::Error::new(io::ErrorKind::NotFound, "no address");
        return Err(DialError::Resolve { host: bare.to_string(), source });
    }
    for addr in &addrs {
        if let Err(refusal) = policy.ip_allowed(addr.ip()) {
            crate::metrics::egress_denied(refusal.reason());
            tracing::debug!(host = bare, address = %addr.ip(), reason = %refusal, "egress denied after resolution");
            return Err(DialError::Refused(name_refused(bare)));
        }
    }
    Ok(addrs)
}

/// The connector of the outbound HTTP client.
#[derive(Clone)]
pub struct Dialer {
    policy: Arc<Policy>,
    proxy: Option<EgressProxy>,
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl Dialer {
    pub fn new(
        policy: Arc<Policy>,
        proxy: Option<EgressProxy>,
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Self {
        Self { policy, proxy, tls: TlsConnector::from(tls), connect_timeout }
    }

    async fn dial(self, uri: Uri) -> Result<TokioIo<Io>, DialError> {
        let host = uri.host().ok_or(DialError::NoHost)?.to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs = resolve_checked(&self.policy, &host, port).await?;
        let tcp = match &self.proxy {
            None => self.direct(&addrs).await?,
            Some(proxy) => self.tunnel(proxy, &addrs).await?,
        };
        if !https {
            return Ok(TokioIo::new(Io::Plain(tcp)));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let name = rustls::pki_types::ServerName::try_from(bare).map_err(|e| DialError::Tls(e.to_string()))?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| DialError::Timeout)?
            .map_err(|e| DialError::Tls(innermost(&e)))?;
        Ok(TokioIo::new(Io::Tls(Box::new(tls))))
    }

    async fn direct(&self, addrs: &[SocketAddr]) -> Result<TcpStream, DialError> {
        let mut last = DialError::Timeout;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Ok(Err(e)) => last = DialError::Connect(e),
                Err(_) => last = DialError::Timeout,
            }
        }
        Err(last)
    }

    /// A CONNECT tunnel to each checked address in turn.
    async fn tunnel(&self, proxy: &EgressProxy, addrs: &[SocketAddr]) -> Result<TcpStream, DialError> {
        let mut last = DialError::Timeout;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, connect_through(proxy, *addr)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = DialError::Proxy(format!("the egress proxy {} did not open the tunnel in time", proxy.shown))
                }
            }
        }
        Err(last)
    }
}

/// Asks the proxy for a tunnel to `target`, an address, never a name.
async fn connect_through(proxy: &EgressProxy, target: SocketAddr) -> Result<TcpStream, DialError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shown = &proxy.shown;
    let broke = |e: io::Error| DialError::Proxy(format!("the egress proxy {shown} broke off: {e}"));
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| DialError::Proxy(format!("cannot connect to the egress proxy {shown}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(auth) = &proxy.authorization {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    tcp.write_all(&request).await.map_err(broke)?;
    // Byte by byte, so not one byte of the tunnel is read as the head.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_HEAD {
            return Err(DialError::Proxy(format!("the egress proxy {shown} answered with an oversized head")));
        }
        let mut byte = [0u8; 1];
        if tcp.read(&mut byte).await.map_err(broke)? == 0 {
            return Err(DialError::Proxy(format!("the egress proxy {shown} closed the connection without answering")));
        }
        head.push(byte[0]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let parsed = response.parse(&head);
    let (code, reason) = match parsed {
        Ok(httparse::Status::Complete(_)) => (response.code.unwrap_or(0), response.reason.unwrap_or("").to_string()),
        _ => return Err(DialError::Proxy(format!("the egress proxy {shown} answered something other than HTTP"))),
    };
    match code {
        200..=299 => Ok(tcp),
        407 => Err(DialError::Proxy(format!(
            "the egress proxy {shown} asks for credentials (407); give them in the --egress-proxy URL as http://user:password@host:port"
        ))),
        _ => Err(DialError::Proxy(format!(
            "the egress proxy {shown} refused to open a tunnel to the target ({code} {reason})"
        ))),
    }
}

const MAX_PROXY_HEAD: usize = 8 * 1024;

/// The deepest cause's message: what actually went wrong, without the
/// wrappers' generic words.
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<Io>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().dial(uri))
    }
}

/// An outbound connection, plain or TLS.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Io {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}
