//! The HTTP endpoint: `/metrics` for Prometheus, `/healthz` and `/readyz` for
//! the service manager and load balancers.
//!
//! Served by `axum::serve`, which installs no timer in hyper, so hyper's own
//! header-read timeout never fires. The peers are bounded here instead, by the
//! listener axum accepts from ([`BoundedListener`]) and the stream it hands to
//! hyper ([`BoundedIo`]), all from `[metrics]`:
//! - at most `max_connections` connections at once; more wait in the kernel's
//!   backlog and are served in turn as connections close;
//! - a client must have sent its request within `header_timeout` of connecting
//!   or of its last response (a stalled request line, or an idle keep-alive
//!   connection, is closed then);
//! - every connection is closed `connection_timeout` after it was accepted, even
//!   a busy one or one that does not read its response.
//!
//! So a slowloris peer holds a slot for at most `connection_timeout`, and a
//! scrape waits at most that long for one. The bounds also keep the daemon's
//! shutdown, which waits for open HTTP connections, from hanging on such a peer.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::metrics::metrics;
use crate::policy::MetricsSection;

use super::DaemonState;

/// The bounds on the endpoint's peers (`[metrics]`, read at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub connection_timeout: Duration,
}

impl HttpLimits {
    pub fn from_policy(m: &MetricsSection) -> Self {
        HttpLimits {
            max_connections: m.max_connections,
            header_timeout: m.header_timeout.get(),
            connection_timeout: m.connection_timeout.get(),
        }
    }
}

/// The metrics, with the gauges read at scrape time set first: the bytes the
/// memory budget holds now and the heap in use.
fn scrape(state: &DaemonState) -> String {
    let m = metrics();
    m.buffered_bytes
        .set(i64::try_from(state.budget.used()).unwrap_or(i64::MAX));
    if let Some(bytes) = crate::heap::bytes_in_use() {
        m.heap_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    m.render()
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve_http(
    addr: SocketAddr,
    state: Arc<DaemonState>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(listen = %addr, "metrics endpoint listening");
    let h1 = state.clone();
    let h2 = state.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = scrape(&state);
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let ok = h1.healthy();
                async move {
                    if ok {
                        (StatusCode::OK, "ok\n".to_owned()).into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n".to_owned()).into_response()
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = h2.ready();
                async move {
                    match ready {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        )
                            .into_response(),
                    }
                }
            }),
        );
    serve_bounded(listener, app, limits, shutdown).await
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then
/// waits for the open connections (each ends within the connection timeout).
async fn serve_bounded(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = BoundedListener {
        inner: listener,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        limits,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Accepts a connection only while fewer than `max_connections` are open.
struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: HttpLimits,
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedIo, SocketAddr) {
        // A permit first: past max_connections, new peers wait in the backlog.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            // The semaphore is never closed; wait rather than panic.
            return std::future::pending().await;
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => return (BoundedIo::new(stream, permit, self.limits), addr),
                // The peer gave up before we accepted it: nothing to wait for.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    ) => {}
                // Out of file descriptors or the like: give it a moment.
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection as hyper sees it: reads and writes fail with
/// `TimedOut` once its deadline has passed, and hyper then closes it. The
/// deadline is the connection's end (`connection_timeout` after it was
/// accepted), brought forward to `header_timeout` from now whenever the server
/// waits for a request: from the accept, and again once a response was written
/// and flushed. Writing (the response) lifts the request deadline.
/// Holds one of the listener's permits until dropped.
struct BoundedIo {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    header_timeout: Duration,
    closes_at: Instant,
    /// Fires at the deadline in force.
    deadline: Pin<Box<Sleep>>,
    /// A request is awaited: the header deadline is in force.
    awaiting_request: bool,
    /// Something was written since the last read.
    wrote: bool,
}

impl BoundedIo {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, limits: HttpLimits) -> Self {
        let now = Instant::now();
        let closes_at = now + limits.connection_timeout;
        BoundedIo {
            stream,
            _permit: permit,
            header_timeout: limits.header_timeout,
            closes_at,
            deadline: Box::pin(tokio::time::sleep_until(
                (now + limits.header_timeout).min(closes_at),
            )),
            awaiting_request: true,
            wrote: false,
        }
    }

    /// `Err(TimedOut)` once the deadline has passed; else registers for it.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "metrics connection past its deadline",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// After a response went out (hyper flushes after writing one, and reads
    /// again): the next request is awaited from now.
    fn await_next_request(&mut self) {
        if self.wrote {
            self.wrote = false;
            self.awaiting_request = true;
            let at = (Instant::now() + self.header_timeout).min(self.closes_at);
            self.deadline.as_mut().reset(at);
        }
    }

    fn before_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.await_next_request();
        self.check_deadline(cx)
    }

    fn before_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.awaiting_request {
            self.awaiting_request = false;
            self.deadline.as_mut().reset(self.closes_at);
        }
        self.check_deadline(cx)
    }
}

impl AsyncRead for BoundedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.before_read(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write(cx)?;
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write(cx)?;
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        let flushed = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) && this.wrote {
            // hyper may be waiting on a read it polled before writing: the new
            // deadline must wake it, so it is polled here, with this task.
            this.await_next_request();
            this.check_deadline(cx)?;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing never waits for the deadline.
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: HttpLimits = HttpLimits {
        max_connections: 2,
        header_timeout: Duration::from_millis(300),
        connection_timeout: Duration::from_millis(1500),
    };

    /// A bounded server with one route, on a free port; it stops when the
    /// returned sender is dropped.
    async fn start(limits: HttpLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/metrics", get(|| async { "up 1\n" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_bounded(listener, app, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes the connection; the bytes read, or `None`
    /// if it is still open after `wait`.
    async fn read_until_closed(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let read = tokio::time::timeout(wait, async {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        read.ok().map(|()| out)
    }

    async fn get_metrics(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let body = read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .expect("response within 10 s");
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn a_stalled_request_line_is_closed_after_the_header_timeout() {
        let (addr, _stop) = start(LIMITS).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metr").await.unwrap();
        let started = Instant::now();
        let got = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .expect("closed");
        let took = started.elapsed();
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1400),
            "closed after {took:?}, not after the header timeout"
        );
    }

    #[tokio::test]
    async fn keep_alive_gets_the_header_timeout_again_after_each_response() {
        let (addr, _stop) = start(LIMITS).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        for _ in 0..3 {
            // Each request well inside the header timeout, the three together
            // longer than it: the connection is served throughout.
            tokio::time::sleep(Duration::from_millis(150)).await;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&buf[..n]).contains("up 1"),
                "{:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
        // Then idle: closed after the header timeout.
        let started = Instant::now();
        assert!(
            read_until_closed(&mut s, Duration::from_secs(5))
                .await
                .is_some()
        );
        assert!(started.elapsed() < Duration::from_millis(1000));
    }

    #[tokio::test]
    async fn a_busy_connection_is_closed_at_the_connection_timeout() {
        let (addr, _stop) = start(LIMITS).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        let mut served = 0;
        loop {
            if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => served += 1,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(started.elapsed() < Duration::from_secs(5), "never closed");
        }
        let took = started.elapsed();
        assert!(served >= 5, "served {served}");
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
            "closed after {took:?}"
        );
    }

    #[tokio::test]
    async fn stalled_peers_beyond_max_connections_delay_a_scrape_only_until_they_time_out() {
        let (addr, _stop) = start(LIMITS).await;
        // Every slot taken by a peer that sends half a request line and stalls.
        let mut stalled = Vec::new();
        for _ in 0..LIMITS.max_connections {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /met").await.unwrap();
            stalled.push(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let response = get_metrics(addr).await;
        let took = started.elapsed();
        assert!(response.contains("up 1"), "{response}");
        assert!(
            took < LIMITS.connection_timeout - Duration::from_millis(100),
            "a scrape waited {took:?}"
        );
        // While the slots were taken it did wait: the cap held.
        assert!(
            took >= Duration::from_millis(150),
            "served at once: {took:?}"
        );
        drop(stalled);
    }
}
