//! The accept loop and the per-connection task: HTTP/1 through hyper, with the caps of
//! `caps.rs` checked at accept and the deadlines of `activity.rs` enforced around each
//! connection, WebSocket upgrades handed on (`with_upgrades`), and graceful shutdown.
//!
//! At shutdown the loop stops accepting, every connection is asked to finish (an idle one
//! closes at once, a busy one after its response) and the loop waits for them, at most
//! [`SHUTDOWN_WAIT`]. Upgraded WebSockets are not waited for here: their tasks belong to the
//! application (see `app.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::activity::{Activity, Expired, Timeouts, Tracked};
use super::caps::ConnectionCaps;

/// How long a shutdown waits for open HTTP connections to finish their responses.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    pub timeouts: Timeouts,
    /// Shared by every listener of the process: descriptors are a process-wide budget.
    pub caps: Arc<ConnectionCaps>,
    /// SO_SNDBUF for accepted connections; 0 keeps the kernel's autotuning.
    pub tcp_send_buffer: usize,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits (at most
/// [`SHUTDOWN_WAIT`]) for open HTTP connections to finish.
pub async fn serve(listener: TcpListener, router: Router, options: ServeOptions, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    let mut accept_errors = AcceptErrors::default();
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_errors.pause(&e, &shutdown).await;
                    continue;
                }
            },
        };
        let slot = match options.caps.try_acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                metrics::counter!("roster_connections_refused_total", "reason" => refused.label()).increment(1);
                tracing::debug!(peer = %peer, reason = refused.label(), "connection refused: cap reached");
                continue;
            }
        };
        configure(&tcp, options.tcp_send_buffer);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked::new(tcp, activity.clone(), slot));
        connections.spawn(serve_connection(io, peer, router.clone(), activity, options.timeouts, shutdown.clone()));
    }
    connections.close();
    if tokio::time::timeout(SHUTDOWN_WAIT, connections.wait()).await.is_err() {
        tracing::warn!("some HTTP connections did not finish within {SHUTDOWN_WAIT:?}; closing them");
    }
}

/// TCP_NODELAY (frames and small responses go out at once) and the configured SO_SNDBUF.
fn configure(tcp: &TcpStream, send_buffer: usize) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    if send_buffer > 0 {
        if let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(send_buffer) {
            tracing::warn!(error = %e, "SO_SNDBUF not set");
        }
    }
}

/// One connection: HTTP/1 with upgrades, closed when its phase's deadline passes, asked to
/// finish at shutdown. Ends when the connection closes or is upgraded (the WebSocket then lives
/// in its own task, still holding the connection's slot through the stream).
async fn serve_connection(
    io: TokioIo<Tracked<TcpStream>>,
    peer: SocketAddr,
    router: Router,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let service = ConnService { router, peer, activity: activity.clone() };
    let conn = hyper::server::conn::http1::Builder::new()
        // Our own deadlines (activity.rs) replace hyper's header-read timer.
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = pin!(conn);
    let mut cancelled = pin!(shutdown.cancelled());
    let mut timer = pin!(tokio::time::sleep(timeouts.header_read));
    let mut finishing = false;
    let outcome = std::future::poll_fn(|cx| {
        if !finishing && cancelled.as_mut().poll(cx).is_ready() {
            finishing = true;
            conn.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(result.err().map(Outcome::Failed).unwrap_or(Outcome::Done));
        }
        // The phase may have changed while the connection ran: re-arm for its deadline.
        if let Some((deadline, why)) = activity.deadline(&timeouts) {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Outcome::Expired(why));
            }
        }
        Poll::Pending
    })
    .await;
    match outcome {
        Outcome::Done => {}
        Outcome::Failed(e) => tracing::debug!(peer = %peer, error = %e, "connection ended with an error"),
        Outcome::Expired(why) => {
            metrics::counter!("roster_connections_timed_out_total", "phase" => why.label()).increment(1);
            tracing::debug!(peer = %peer, phase = why.label(), "connection closed: timeout");
        }
    }
}

enum Outcome {
    Done,
    Failed(hyper::Error),
    Expired(Expired),
}

/// The per-connection service: adds `ConnectInfo` (what handlers and the client-address
/// middleware read), marks the request busy until its response body is written, and runs the
/// router.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let finished = Finished(self.activity.clone());
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req.map(Body::new)).await?;
            Ok(response.map(|body| Body::new(Guarded { inner: body, _finished: finished })))
        })
    }
}

/// Marks the request finished when dropped: with the response body once it is written, or
/// with the future if the connection goes away first.
struct Finished(Arc<Activity>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that carries its request's [`Finished`] marker.
struct Guarded {
    inner: Body,
    _finished: Finished,
}

impl HttpBody for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accept errors: a failed handshake is the peer's problem; running out of descriptors or
/// memory is ours, and retrying at once would spin, so wait a little (and say so at most once
/// a minute).
#[derive(Default)]
struct AcceptErrors {
    last_warned: Option<tokio::time::Instant>,
}

impl AcceptErrors {
    async fn pause(&mut self, e: &std::io::Error, shutdown: &CancellationToken) {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
            return;
        }
        let now = tokio::time::Instant::now();
        if self.last_warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
            self.last_warned = Some(now);
            tracing::warn!(error = %e, "cannot accept connections (lower --max-connections?)");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Why `activity.rs` tracks phases itself: hyper's own header-read timer also runs during
    /// the wait between keep-alive requests, so it cannot give an idle connection longer than a
    /// slow one. If hyper changes this, this test says so.
    #[tokio::test]
    async fn hypers_header_timer_also_bounds_the_keep_alive_wait() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_millis(300))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 1024];
        let n = client.read(&mut buf).await.expect("response");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
        // Now idle, sending nothing: hyper closes the connection after its header timeout.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(30), client.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "hyper kept an idle connection open: {closed:?}");
    }
}
