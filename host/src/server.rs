//! The HTTP listener: serves the API on the socket `main` bound (once),
//! with hyper (HTTP/1.1, and HTTP/2 with prior knowledge), and cuts slow
//! clients. A connection is closed when it sits between requests longer
//! than the idle timeout, or takes longer than the header timeout from the
//! first byte of a request to the end of its headers; a client trickling
//! bytes keeps neither clock from running. The body timeout applies where
//! bodies are read (`api`). Stops gracefully on `shutdown`.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};

/// How long a client may take.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// From a request's first byte to the end of its headers.
    pub header: Duration,
    /// Between requests on a kept-alive connection.
    pub idle: Duration,
}

type ResponseBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// Accepts until `shutdown` resolves, then waits up to `grace` for the
/// requests in progress.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    timeouts: ClientTimeouts,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    E: poem::Endpoint + 'static,
{
    use poem::EndpointExt;
    let endpoint = Arc::new(endpoint.map_to_response());
    let local = listener.local_addr().ok();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, usually: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let endpoint = endpoint.clone();
        let addrs = (
            poem::web::LocalAddr(local.map_or(poem::Addr::Custom("tcp", "".into()), poem::Addr::SocketAddr)),
            poem::web::RemoteAddr(poem::Addr::SocketAddr(remote)),
        );
        let watch = Arc::new(Watch::new());
        let service = hyper::service::service_fn({
            let watch = watch.clone();
            move |req: http::Request<hyper::body::Incoming>| {
                let (endpoint, watch, (local, remote)) = (endpoint.clone(), watch.clone(), addrs.clone());
                async move {
                    let busy = Busy::start(watch);
                    let req = poem::Request::from((req, local, remote, http::uri::Scheme::HTTP));
                    let response: http::Response<ResponseBody> =
                        poem::Endpoint::get_response(&*endpoint, req).await.into();
                    Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
                }
            }
        });
        let io = TokioIo::new(Watched { inner: tcp, watch: watch.clone() });
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                why = watch.expired(timeouts) => {
                    tracing::info!(remote = %remote, "closing a slow connection: {why}");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still running after {} s were cut off", grace.as_secs());
    }
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in progress since this instant.
    Idle(Instant),
    /// A request's first bytes came at this instant; its headers have not
    /// ended yet.
    Head(Instant),
    /// Requests being answered (several with HTTP/2).
    Busy(usize),
}

struct Watch {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Watch {
    fn new() -> Self {
        Self { phase: Mutex::new(Phase::Idle(Instant::now())), changed: Notify::new() }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Option<Phase>) {
        let mut phase = self.phase.lock().expect("the phase lock is never poisoned");
        if let Some(next) = change(*phase) {
            *phase = next;
            self.changed.notify_waiters();
        }
    }

    /// Resolves when the connection outstays its phase's timeout.
    async fn expired(&self, timeouts: ClientTimeouts) -> String {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let phase = *self.phase.lock().expect("the phase lock is never poisoned");
            let (deadline, why) = match phase {
                Phase::Busy(_) => {
                    changed.await;
                    continue;
                }
                Phase::Idle(since) => (since + timeouts.idle, "idle for longer than --client-idle-timeout"),
                Phase::Head(since) => {
                    (since + timeouts.header, "request headers not complete within --client-header-timeout")
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    let now = *self.phase.lock().expect("the phase lock is never poisoned");
                    if std::mem::discriminant(&now) == std::mem::discriminant(&phase) && Instant::now() >= deadline {
                        return why.to_string();
                    }
                }
                () = changed => {}
            }
        }
    }
}

/// Marks a request in progress until its response body is done (or
/// dropped).
struct Busy(Arc<Watch>);

impl Busy {
    fn start(watch: Arc<Watch>) -> Self {
        watch.update(|phase| match phase {
            Phase::Busy(n) => Some(Phase::Busy(n + 1)),
            _ => Some(Phase::Busy(1)),
        });
        Self(watch)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Some(Phase::Busy(n - 1)),
            _ => Some(Phase::Idle(Instant::now())),
        });
    }
}

struct Tracked {
    body: ResponseBody,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting the first bytes of a request that arrive on an idle
/// connection.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.update(|phase| match phase {
                Phase::Idle(_) => Some(Phase::Head(Instant::now())),
                _ => None,
            });
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
