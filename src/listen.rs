//! Limits every listener (proxy, admin, metrics) applies to a client
//! connection before pingora's HTTP/1 code sees its bytes.
//!
//! pingora reads a request head into a buffer that may grow to 1 MiB, with
//! a timeout per read only: a client trickling header lines, or many
//! clients each sending a large unfinished head, held that memory for as
//! long as they liked. Here each accepted stream is wrapped in
//! [`HeadGuard`], which counts the bytes of each request head up to its
//! blank line and bounds the whole head by one deadline; over the size it
//! answers `431` and closes, past the deadline `408` and closes. And each
//! listener accepts at most `max_connections` connections at once.
//!
//! [`Limited`] also chooses the protocol of each connection: TLS when the
//! listener has it (pingora's acceptor, within the head deadline), then
//! HTTP/2 when ALPN chose `h2` or, on a plain listener, when the client
//! opened with the HTTP/2 preface ([`sniff_h2c`]); HTTP/2 connections are
//! served by [`serve_h2`] with its own bounds, the rest as HTTP/1. Both
//! functions serve any listener.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::http::ResponseHeader;
use pingora::listeners::ALPN;
use pingora::prelude::ErrorType;
use pingora::protocols::http::HttpTask;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::server::ShutdownWatch;
use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

/// The limits, from `server.max_request_head_bytes`,
/// `server.request_head_timeout_ms` and `server.max_connections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub head_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            head_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

struct ListenMetrics {
    connections: IntGaugeVec,
    refused: IntCounterVec,
}

static METRICS: LazyLock<ListenMetrics> = LazyLock::new(|| ListenMetrics {
    connections: register_int_gauge_vec!(
        "tollgate_connections",
        "Client connections open, per listener",
        &["listener"]
    )
    .expect("register tollgate_connections"),
    refused: register_int_counter_vec!(
        "tollgate_connections_refused_total",
        "Client connections closed at once because the listener had max_connections open",
        &["listener"]
    )
    .expect("register tollgate_connections_refused_total"),
});

/// Exports the series of `listener` before any connection.
pub fn initialise_series(listener: &str) {
    METRICS.connections.with_label_values(&[listener]);
    METRICS.refused.with_label_values(&[listener]);
}

pub(crate) const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 72\r\nconnection: close\r\n\r\n{\"error\":\"invalid_request\",\"error_description\":\"request head too large\"}";
pub(crate) const TIMED_OUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: 71\r\nconnection: close\r\n\r\n{\"error\":\"invalid_request\",\"error_description\":\"request head too slow\"}";

/// A head at least this large makes the connection hand freed memory back
/// to the OS when it closes.
pub(crate) const LARGE_HEAD: usize = 16 * 1024;

/// How long after a large head's connection closed freed memory goes back
/// to the OS: past mimalloc's purge delay (10 ms, 100 ms for arenas), and
/// long enough that a flood of such connections closing is tidied once.
const RELEASE_AFTER: Duration = Duration::from_millis(250);

/// An HTTP application served under [`Limits`]: HTTP/1, and HTTP/2 when
/// TLS negotiates `h2` or (without TLS, `h2c` on) the connection opens
/// with the HTTP/2 preface.
pub struct Limited<A> {
    app: Arc<A>,
    limits: Limits,
    name: &'static str,
    open: AtomicUsize,
    tls: Option<Arc<crate::tls::TlsListener>>,
    h2: crate::config::H2Config,
    http1: Option<Arc<dyn ServeHttp1>>,
}

/// An application that serves its HTTP/1 connections itself, rather than
/// through pingora's HTTP/1 session: the decision listener, whose check
/// requests are answered in place from the bytes read. It must apply the
/// [`Limits`] of a request head itself ([`HeadScan`], [`TOO_LARGE`],
/// [`TIMED_OUT`]), as [`HeadGuard`] does for pingora's.
#[async_trait]
pub trait ServeHttp1: Send + Sync {
    /// Serves one plain HTTP/1 connection, accepted at `accepted`, until
    /// it ends.
    async fn serve_http1(
        &self,
        stream: Stream,
        limits: Limits,
        accepted: Instant,
        shutdown: &ShutdownWatch,
    );
}

impl<A> Limited<A> {
    pub fn new(app: A, limits: Limits, name: &'static str) -> Limited<A> {
        initialise_series(name);
        Limited {
            app: Arc::new(app),
            limits,
            name,
            open: AtomicUsize::new(0),
            tls: None,
            h2: crate::config::H2Config::default(),
            http1: None,
        }
    }

    /// Serves HTTP/1 connections with `http1` instead of pingora's session.
    pub fn with_http1(mut self, http1: Arc<dyn ServeHttp1>) -> Limited<A> {
        self.http1 = Some(http1);
        self
    }

    /// Terminates TLS on this listener.
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::TlsListener>>) -> Limited<A> {
        self.tls = tls;
        self
    }

    /// HTTP/2 settings (h2c, stream bounds).
    pub fn with_h2(mut self, h2: crate::config::H2Config) -> Limited<A> {
        self.h2 = h2;
        self
    }
}

struct Open<'a> {
    open: &'a AtomicUsize,
    name: &'static str,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        METRICS.connections.with_label_values(&[self.name]).dec();
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Limited<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            METRICS.refused.with_label_values(&[self.name]).inc();
            tracing::warn!(
                listener = self.name,
                "connection refused: max_connections open"
            );
            return None;
        }
        METRICS.connections.with_label_values(&[self.name]).inc();
        let _open = Open {
            open: &self.open,
            name: self.name,
        };
        // The first head (or the TLS handshake and the HTTP/2 preface
        // before it) is due within the head timeout of the accept.
        let accepted = Instant::now();
        let due = accepted + self.limits.head_timeout;
        let mut stream = stream;
        let mut connection = Connection::default();
        let h2 = if let Some(tls) = &self.tls {
            stream = tls_handshake(tls, stream, due).await?;
            connection.tls = true;
            connection.client_subject = stream
                .get_ssl()
                .and_then(|s| s.peer_certificate_der())
                .and_then(crate::tls::certificate_subject)
                .map(Arc::from);
            matches!(stream.selected_alpn_proto(), Some(ALPN::H2))
        } else if self.h2.h2c {
            let (sniffed, h2c) = sniff_h2c(stream, due).await.ok()?;
            stream = sniffed;
            h2c
        } else {
            false
        };
        if h2 {
            connection.h2_body_timeout = Some(self.h2.body_timeout);
            let connection = Arc::new(connection);
            serve_h2(
                &self.app,
                stream,
                self.h2,
                self.limits,
                shutdown,
                connection,
            )
            .await;
            return None;
        }
        let connection = Arc::new(connection);
        match &self.http1 {
            Some(own) => {
                CONNECTION
                    .scope(
                        connection,
                        own.serve_http1(stream, self.limits, accepted, shutdown),
                    )
                    .await
            }
            None => {
                CONNECTION
                    .scope(connection, self.serve_http1(stream, accepted, shutdown))
                    .await
            }
        }
        None
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Limited<A> {
    /// HTTP/1 requests on one connection, each head bounded by [`HeadGuard`].
    async fn serve_http1(
        self: &Arc<Self>,
        stream: Stream,
        accepted: Instant,
        shutdown: &ShutdownWatch,
    ) {
        let rearm = Arc::new(AtomicBool::new(false));
        let large = Arc::new(AtomicBool::new(false));
        let guarded: Stream = Box::new(HeadGuard::new(
            stream,
            self.limits,
            accepted,
            rearm.clone(),
            large.clone(),
        ));
        let mut session = ServerSession::new_http1(guarded);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(60));
        }
        let mut result = self.app.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = result.map(|r| r.consume()) {
            rearm.store(true, Ordering::Release);
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            result = self.app.process_new_http(session, shutdown).await;
        }
        if large.load(Ordering::Acquire) {
            release_memory_soon();
        }
    }
}

/// What a request may learn of the connection it came on: whether TLS was
/// terminated here, and the subject of a client certificate the listener
/// verified (`server.tls.client_ca_file`).
#[derive(Debug, Default)]
pub struct Connection {
    pub tls: bool,
    pub client_subject: Option<Arc<str>>,
    /// On HTTP/2: how long a request body may send nothing
    /// ([`read_request_body`]).
    pub h2_body_timeout: Option<Duration>,
}

tokio::task_local! {
    static CONNECTION: Arc<Connection>;
}

/// The connection of the request being served (on a listener's task); a
/// plain one outside of one.
pub fn connection() -> Option<Arc<Connection>> {
    CONNECTION.try_with(|c| c.clone()).ok()
}

/// The next piece of a request body, as `ServerSession::read_request_body`.
/// pingora bounds each HTTP/1 body read itself (60 s) but waits for HTTP/2
/// body data for as long as the client likes: a stream that sent its head
/// and then nothing held its task, and upstream connection, until the
/// upstream's read timeout, or for ever on the token endpoint. On HTTP/2
/// each read is bounded by `server.h2_body_timeout_ms`; past it the read
/// fails as a timed-out read does.
pub async fn read_request_body(
    session: &mut ServerSession,
) -> pingora::Result<Option<bytes::Bytes>> {
    let limit = if session.is_http2() {
        CONNECTION.try_with(|c| c.h2_body_timeout).ok().flatten()
    } else {
        None
    };
    let Some(limit) = limit else {
        return session.read_request_body().await;
    };
    match tokio::time::timeout(limit, session.read_request_body()).await {
        Ok(read) => read,
        Err(_) => pingora::Error::e_explain(
            ErrorType::ReadTimedout,
            "no HTTP/2 request body data within server.h2_body_timeout_ms",
        ),
    }
}

/// pingora's TLS handshake, bounded by the head deadline. A failure is
/// counted and the connection closed.
async fn tls_handshake(
    tls: &crate::tls::TlsListener,
    stream: Stream,
    due: Instant,
) -> Option<Stream> {
    let acceptor = tls.acceptor();
    let handshake = async {
        match into_l4(stream) {
            Ok(l4) => acceptor
                .tls_handshake(*l4)
                .await
                .map(|s| Box::new(s) as Stream),
            Err(other) => acceptor
                .tls_handshake(Replay::new(other, &[]))
                .await
                .map(|s| Box::new(s) as Stream),
        }
    };
    match tokio::time::timeout_at(due, handshake).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            crate::tls::count_handshake_failure(tls.name());
            tracing::debug!(listener = tls.name(), error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            crate::tls::count_handshake_failure(tls.name());
            tracing::debug!(listener = tls.name(), "TLS handshake timed out");
            None
        }
    }
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the first bytes of a plain connection to tell HTTP/2 with prior
/// knowledge (h2c) from HTTP/1: true when they are the HTTP/2 preface.
/// Reading stops at the first byte that differs from the preface (for
/// HTTP/1, the first), so a short request head is never waited for; what
/// was read is put back in front of the stream. A connection that sends
/// nothing by `until` is handed back as it is (not HTTP/2), for the HTTP/1
/// head deadline to answer. Fails when the client closed before sending
/// anything.
pub async fn sniff_h2c(mut stream: Stream, until: Instant) -> io::Result<(Stream, bool)> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    loop {
        let read = match tokio::time::timeout_at(until, stream.read(&mut buf[n..])).await {
            Ok(read) => read?,
            Err(_) => break,
        };
        if read == 0 {
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            break;
        }
        n += read;
        if buf[..n] != H2_PREFACE[..n] {
            break;
        }
        if n == H2_PREFACE.len() {
            return Ok((unread(stream, &buf), true));
        }
    }
    Ok((unread(stream, &buf[..n]), false))
}

/// Puts `bytes` back in front of the stream: into pingora's TCP stream's
/// own rewind buffer (no wrapper on the request path), else a [`Replay`].
fn unread(stream: Stream, bytes: &[u8]) -> Stream {
    match into_l4(stream) {
        Ok(mut l4) => {
            l4.rewind(bytes);
            l4
        }
        Err(other) => Box::new(Replay::new(other, bytes)),
    }
}

type L4Stream = pingora::protocols::l4::stream::Stream;

/// The accepted stream as pingora's TCP stream, when it is one.
fn into_l4(stream: Stream) -> Result<Box<L4Stream>, Stream> {
    if !stream.as_any().is::<L4Stream>() {
        return Err(stream);
    }
    stream.into_any().downcast::<L4Stream>().map_err(|_| {
        // Checked just above; unreachable, but never a panic on a request path.
        unreachable_stream()
    })
}

fn unreachable_stream() -> Stream {
    Box::new(Replay::closed())
}

/// HTTP/2 on one connection, through pingora's HTTP/2 server: each stream
/// a [`ServerSession`] served by the app in a task of its own, as pingora's
/// `HttpServerApp` does, with these bounds added:
///
/// - the HTTP/2 settings: at most `max_concurrent_streams` streams, a
///   decoded header list of at most `server.max_request_head_bytes` (also
///   what bounds a CONTINUATION flood and an HPACK bomb: the h2 crate
///   stops decoding, and answers 431 or resets, past it), an HPACK table of
///   4 KiB, `max_reset_streams` streams reset by the client before they
///   were accepted (then GOAWAY `ENHANCE_YOUR_CALM`);
/// - at most `max_concurrent_streams` streams worked on at once, counting
///   ones the client has reset but tollgate has not finished: a stream
///   beyond that is refused (`REFUSED_STREAM`), and after
///   `max_reset_streams` refusals the connection is closed with GOAWAY
///   `ENHANCE_YOUR_CALM` (rapid reset);
/// - the preface and SETTINGS exchange within the head deadline, and an
///   idle connection (no stream open) closed after 60 s, as an idle
///   HTTP/1 keep-alive connection is.
pub async fn serve_h2<A: HttpServerApp + Send + Sync + 'static>(
    app: &Arc<A>,
    stream: Stream,
    settings: crate::config::H2Config,
    limits: Limits,
    shutdown: &ShutdownWatch,
    connection: Arc<Connection>,
) {
    use pingora::protocols::http::v2::server::{handshake, H2Accept, HttpSession};
    let digest = Arc::new(pingora::protocols::Digest {
        ssl_digest: stream.get_ssl_digest(),
        timing_digest: stream.get_timing_digest(),
        proxy_digest: stream.get_proxy_digest(),
        socket_digest: stream.get_socket_digest(),
    });
    let options = h2_options(settings, limits);
    let mut conn =
        match tokio::time::timeout(limits.head_timeout, handshake(stream, Some(options))).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(error_type = ?e.etype(), "HTTP/2 handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("HTTP/2 handshake timed out");
                return;
            }
        };
    let in_flight = Arc::new(AtomicUsize::new(0));
    let idle = Arc::new(tokio::sync::Notify::new());
    let mut refused = 0usize;
    let mut calmed = false;
    let mut shutdown = shutdown.clone();
    let mut draining = *shutdown.borrow();
    if draining {
        conn.graceful_shutdown();
    }
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed(), if !draining => {
                conn.graceful_shutdown();
                draining = true;
                continue;
            }
            a = HttpSession::from_h2_conn(&mut conn, digest.clone()) => a,
            () = idle_for(&in_flight, &idle, H2_IDLE), if !draining => {
                conn.graceful_shutdown();
                draining = true;
                continue;
            }
        };
        let session = match accepted {
            Ok(Some(H2Accept::Session(s))) => s,
            Ok(Some(H2Accept::Rejected)) => continue,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error_type = ?e.etype(), "HTTP/2 connection ended");
                break;
            }
        };
        if calmed {
            drop(session);
            continue;
        }
        if in_flight.load(Ordering::Acquire) >= settings.max_concurrent_streams as usize {
            let mut session = session;
            session.shutdown_with_reason(h2::Reason::REFUSED_STREAM);
            refused += 1;
            H2_REFUSED.inc();
            if refused > settings.max_reset_streams {
                tracing::warn!(
                    refused,
                    "HTTP/2 client kept opening streams beyond the limit (rapid reset?); GOAWAY ENHANCE_YOUR_CALM"
                );
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                calmed = true;
            }
            continue;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight {
            count: in_flight.clone(),
            idle: idle.clone(),
        };
        let app = app.clone();
        let stream_shutdown = shutdown.clone();
        let connection = connection.clone();
        tokio::spawn(CONNECTION.scope(connection, async move {
            let _guard = guard;
            app.process_new_http(ServerSession::new_http2(session), &stream_shutdown)
                .await;
        }));
    }
}

/// An HTTP/2 connection with no stream open for this long is closed.
const H2_IDLE: Duration = Duration::from_secs(60);

static H2_REFUSED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "tollgate_h2_streams_refused_total",
        "HTTP/2 streams refused because the connection had server.h2_max_concurrent_streams in the works"
    )
    .expect("register tollgate_h2_streams_refused_total")
});

/// The HTTP/2 server settings of a listener.
pub fn h2_options(
    settings: crate::config::H2Config,
    limits: Limits,
) -> pingora::protocols::http::v2::server::H2Options {
    let mut options = pingora::protocols::http::v2::server::default_h2_options();
    let header_list = u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX);
    options
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(header_list)
        .header_table_size(4096)
        .max_pending_accept_reset_streams(settings.max_reset_streams)
        .max_concurrent_reset_streams(settings.max_reset_streams.max(10))
        .max_local_error_reset_streams(Some(settings.max_reset_streams.max(10)))
        .max_send_buffer_size(64 * 1024);
    options
}

struct InFlight {
    count: Arc<AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_one();
        }
    }
}

/// Resolves once no stream has been open for `wait`.
async fn idle_for(count: &AtomicUsize, idle: &tokio::sync::Notify, wait: Duration) {
    loop {
        while count.load(Ordering::Acquire) != 0 {
            idle.notified().await;
        }
        tokio::time::sleep(wait).await;
        if count.load(Ordering::Acquire) == 0 {
            return;
        }
    }
}

/// A stream with bytes put back in front of it (read to tell protocols
/// apart), for a stream that is not pingora's TCP one.
#[derive(Debug)]
pub struct Replay {
    prefix: bytes::Bytes,
    inner: Option<Stream>,
}

impl Replay {
    pub fn new(inner: Stream, prefix: &[u8]) -> Replay {
        Replay {
            prefix: bytes::Bytes::copy_from_slice(prefix),
            inner: Some(inner),
        }
    }

    fn closed() -> Replay {
        Replay {
            prefix: bytes::Bytes::new(),
            inner: None,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no stream")
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_read(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[async_trait]
impl Shutdown for Replay {
    async fn shutdown(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.shutdown().await
        }
    }
}

impl UniqueID for Replay {
    fn id(&self) -> UniqueIDType {
        self.inner.as_ref().map_or(0, |i| i.id())
    }
}

impl Ssl for Replay {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.as_ref().and_then(|i| i.get_ssl())
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.as_ref().and_then(|i| i.get_ssl_digest())
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.as_ref().and_then(|i| i.selected_alpn_proto())
    }
}

impl GetTimingDigest for Replay {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner
            .as_ref()
            .map_or_else(Vec::new, |i| i.get_timing_digest())
    }
}

impl GetProxyDigest for Replay {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.as_ref().and_then(|i| i.get_proxy_digest())
    }
}

impl GetSocketDigest for Replay {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.as_ref().and_then(|i| i.get_socket_digest())
    }
}

impl Peek for Replay {}

/// mimalloc purges freed pages only when the allocator is next called after
/// its purge delay; once a flood of large heads is over and the process is
/// idle, nothing calls it, and the memory stayed resident. So a thread that
/// ends such a connection collects its own heap at once, at most once per
/// [`RELEASE_AFTER`] (a flood costs a few collections a second, not one per
/// connection), and one collection [`RELEASE_AFTER`] later, on whichever
/// thread runs it, purges the tail and the process-wide arenas.
pub(crate) fn release_memory_soon() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    static PENDING: AtomicBool = AtomicBool::new(false);
    let now = std::time::Instant::now();
    if LAST
        .get()
        .is_none_or(|last| now.duration_since(last) >= RELEASE_AFTER)
    {
        LAST.set(Some(now));
        collect();
    }
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(RELEASE_AFTER).await;
        PENDING.store(false, Ordering::Release);
        collect();
    });
}

fn collect() {
    // SAFETY: mi_collect takes no pointers; it walks this thread's heap and
    // the process-wide arenas.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

enum Mode {
    /// Reading a head.
    Head(HeadScan),
    /// Past the head's blank line: bytes pass through.
    Body,
    /// Writing a refusal; then every read ends the connection.
    Refusing {
        answer: &'static [u8],
        sent: usize,
    },
    Refused,
}

/// Finds where a request head ends, whatever reads it arrives in.
#[derive(Debug, Default)]
pub(crate) struct HeadScan {
    /// Bytes of the head so far (up to its end once found).
    pub(crate) count: usize,
    /// The last byte other than CR was LF.
    lf: bool,
    /// Something other than CR and LF came: empty lines before a request
    /// line do not end it (they count towards the limit all the same).
    content: bool,
}

impl HeadScan {
    /// Counts `bytes`; the offset just past the head's blank line if they
    /// hold it (a bare LF ends a line as for pingora's parser).
    ///
    /// Jumps from line feed to line feed (`memchr`): only the bytes of an
    /// empty line are looked at one by one, so a head costs about a dozen
    /// instructions a line rather than several a byte.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut from = 0;
        for lf in memchr::memchr_iter(b'\n', bytes) {
            if only_cr(&bytes[from..lf]) {
                if self.lf && self.content {
                    self.count += lf + 1;
                    return Some(lf + 1);
                }
            } else {
                self.content = true;
            }
            self.lf = true;
            from = lf + 1;
        }
        if !only_cr(&bytes[from..]) {
            self.lf = false;
            self.content = true;
        }
        self.count += bytes.len();
        None
    }
}

/// Whether `bytes` holds nothing but CR (true when empty). A line with
/// content fails at its first byte.
fn only_cr(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'\r')
}

/// The accepted stream, with each request head bounded in size and time.
pub struct HeadGuard {
    inner: Stream,
    limits: Limits,
    mode: Mode,
    /// When the head being read must be complete; None between requests.
    deadline: Option<Instant>,
    /// Registered only when a head does not arrive in one read, so that a
    /// request whose head comes whole costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    timer_at: Option<Instant>,
    rearm: Arc<AtomicBool>,
    large: Arc<AtomicBool>,
}

impl std::fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .finish()
    }
}

impl HeadGuard {
    fn new(
        inner: Stream,
        limits: Limits,
        accepted: Instant,
        rearm: Arc<AtomicBool>,
        large: Arc<AtomicBool>,
    ) -> Self {
        HeadGuard {
            inner,
            limits,
            mode: Mode::Head(HeadScan::default()),
            // The first head's deadline runs from the accept.
            deadline: Some(accepted + limits.head_timeout),
            timer: None,
            timer_at: None,
            rearm,
            large,
        }
    }

    /// Counts `bytes` of a head; returns whether they hold its end.
    fn scan(&mut self, bytes: &[u8]) -> Result<bool, &'static [u8]> {
        let Mode::Head(head) = &mut self.mode else {
            return Ok(true);
        };
        let end = head.feed(bytes);
        if head.count > LARGE_HEAD {
            self.large.store(true, Ordering::Release);
        }
        if head.count > self.limits.max_head_bytes {
            return Err(TOO_LARGE);
        }
        Ok(end.is_some())
    }

    fn refuse(&mut self, answer: &'static [u8], cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.mode = Mode::Refusing { answer, sent: 0 };
        self.poll_refusal(cx)
    }

    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.mode {
                Mode::Refusing { answer, sent } => {
                    if *sent >= answer.len() {
                        self.mode = Mode::Refused;
                        continue;
                    }
                    let rest = &answer[*sent..];
                    match Pin::new(&mut self.inner).poll_write(cx, rest) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.mode = Mode::Refused,
                        Poll::Ready(Ok(n)) => *sent += n,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                _ => {
                    let _ = Pin::new(&mut self.inner).poll_flush(cx);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request head refused",
                    )));
                }
            }
        }
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.rearm.swap(false, Ordering::AcqRel) {
            this.mode = Mode::Head(HeadScan::default());
            // A keep-alive connection's next head: its deadline runs from
            // its first byte (the idle wait is pingora's keep-alive timeout).
            this.deadline = None;
        }
        match this.mode {
            Mode::Body => return Pin::new(&mut this.inner).poll_read(cx, buf),
            Mode::Refusing { .. } | Mode::Refused => return this.poll_refusal(cx),
            Mode::Head(_) => {}
        }
        if this.deadline.is_some_and(|d| Instant::now() >= d) {
            return this.refuse(TIMED_OUT, cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if this.deadline.is_none() {
                    this.deadline = Some(Instant::now() + this.limits.head_timeout);
                }
                match this.scan(new) {
                    Ok(true) => {
                        this.mode = Mode::Body;
                        Poll::Ready(Ok(()))
                    }
                    Ok(false) => Poll::Ready(Ok(())),
                    Err(answer) => {
                        buf.set_filled(before);
                        this.refuse(answer, cx)
                    }
                }
            }
            Poll::Pending => {
                // Waiting within a head: wake at its deadline.
                let Some(d) = this.deadline else {
                    return Poll::Pending;
                };
                let timer = this.timer.get_or_insert_with(|| Box::pin(sleep_until(d)));
                if this.timer_at != Some(d) {
                    timer.as_mut().reset(d);
                    this.timer_at = Some(d);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return this.refuse(TIMED_OUT, cx);
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

use std::future::Future;

impl AsyncWrite for HeadGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.mode, Mode::Refusing { .. } | Mode::Refused) {
            // The refusal is the answer; the application's own is dropped.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.mode, Mode::Refusing { .. } | Mode::Refused) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

impl Peek for HeadGuard {}

/// Serves a [`ServeHttp`] app (the admin and metrics listeners) the way
/// pingora's `HttpServer` does, without its logging: that logs the error
/// of an unreadable head (whose context holds the raw head, an
/// `Authorization` field with it) at ERROR and every request head at TRACE.
/// Here a request head never reaches a log; a failure is logged by its type.
pub struct Serve<SV>(pub SV);

#[async_trait]
impl<SV: ServeHttp + Send + Sync + 'static> HttpServerApp for Serve<SV> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let read = read_unless_shutting_down(&mut http, shutdown).await?;
        if !request_read(&mut http, read, shutdown).await {
            return None;
        }
        if !*shutdown.borrow() {
            http.set_keepalive(Some(60));
        }
        let (parts, body) = self.0.response(&mut http).await.into_parts();
        let head: ResponseHeader = parts.into();
        let tasks = vec![
            HttpTask::Header(Box::new(head), body.is_empty()),
            HttpTask::Body(Some(body.into()), true),
        ];
        if let Err(e) = http.response_duplex_vec(tasks).await {
            tracing::debug!(error_type = ?e.etype(), "writing an answer failed; closed");
            return None;
        }
        reusable(http).await
    }
}

/// Reads the next request head, or `None` once the process begins to shut
/// down (SIGTERM, or a graceful upgrade) while the connection waits for
/// it: an idle keep-alive connection then closes at once rather than at the
/// end of the grace period, so that its client's next request goes to the
/// process that carries on. A head already received in full is read and
/// served; one only partly received is dropped with the connection.
pub async fn read_unless_shutting_down(
    session: &mut ServerSession,
    shutdown: &ShutdownWatch,
) -> Option<pingora::Result<bool>> {
    tokio::select! {
        biased;
        read = session.read_request() => Some(read),
        // Polled only while the head is not in yet: a head already
        // received costs no watch.
        _ = async {
            let mut watch = shutdown.clone();
            if !*watch.borrow_and_update() {
                let _ = watch.changed().await;
            }
        } => None,
    }
}

/// What an app does with pingora's `read_request` result: whether there is
/// a request to serve. A head pingora cannot parse gets pingora's bare 400
/// and the connection closes; the head never reaches a log (its error's
/// context holds it, an `Authorization` field with it), only the error's
/// type. While shutting down, the answer will close the connection.
pub async fn request_read(
    session: &mut ServerSession,
    read: pingora::Result<bool>,
    shutdown: &ShutdownWatch,
) -> bool {
    match read {
        Ok(true) => {
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::debug!(error_type = ?e.etype(), "unreadable request head; closed");
            if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                let _ = session.respond_error(400).await;
            }
            session.shutdown().await;
            false
        }
    }
}

/// The session's connection, handed back for its next request when the
/// exchange left it reusable.
pub async fn reusable(session: ServerSession) -> Option<ReusedHttpStream> {
    let settings = HttpPersistentSettings::for_session(&session);
    match session.finish().await {
        Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(error_type = ?e.etype(), "finishing an answer failed; closed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeadScan;
    use proptest::prelude::*;

    fn scan_in(parts: &[&[u8]]) -> Option<usize> {
        let mut scan = HeadScan::default();
        let mut seen = 0;
        for part in parts {
            if let Some(end) = scan.feed(part) {
                assert_eq!(scan.count, seen + end);
                return Some(seen + end);
            }
            seen += part.len();
        }
        None
    }

    #[test]
    fn a_head_ends_at_its_blank_line_and_not_before() {
        let head = b"GET / HTTP/1.1\r\nhost: x\r\n\r\nbody";
        assert_eq!(scan_in(&[head]), Some(head.len() - 4));
        assert_eq!(scan_in(&[b"GET / HTTP/1.1\nhost: x\n\nrest"]), Some(24));
        assert_eq!(scan_in(&[b"GET / HTTP/1.1\r\nhost: x\r\n"]), None);
        // Empty lines before the request line do not end a head.
        assert_eq!(scan_in(&[b"\r\n\r\n\r\n"]), None);
        assert_eq!(scan_in(&[b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"]), Some(22));
    }

    /// The byte-at-a-time scan `HeadScan::feed` replaced, as the model.
    fn feed_bytewise(scan: &mut HeadScan, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' if scan.lf && scan.content => {
                    scan.count += i + 1;
                    return Some(i + 1);
                }
                b'\n' => scan.lf = true,
                b'\r' => {}
                _ => {
                    scan.lf = false;
                    scan.content = true;
                }
            }
        }
        scan.count += bytes.len();
        None
    }

    proptest! {
        /// Any bytes (CR, LF and others in any order) split into any reads
        /// end the head where the byte-at-a-time scan ended it.
        #[test]
        fn the_line_jumping_scan_agrees_with_the_bytewise_one(
            parts in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a')], 0..12),
                1..6,
            ),
        ) {
            let (mut fast, mut model) = (HeadScan::default(), HeadScan::default());
            for part in &parts {
                let (a, b) = (fast.feed(part), feed_bytewise(&mut model, part));
                prop_assert_eq!(a, b);
                prop_assert_eq!((fast.count, fast.lf, fast.content), (model.count, model.lf, model.content));
                if a.is_some() {
                    break;
                }
            }
        }
    }

    proptest! {
        /// However the bytes are split into reads, the end is found at the
        /// same offset, and bytes without a blank line never end a head.
        #[test]
        fn the_end_does_not_depend_on_how_reads_split_the_head(
            lines in proptest::collection::vec("[a-z]{1,8}: [ -~]{0,20}", 0..8),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            crlf in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("GET / HTTP/1.1{eol}");
            for l in &lines {
                text.push_str(l);
                text.push_str(eol);
            }
            let open = text.clone().into_bytes();
            text.push_str(eol);
            text.push_str("trailing body");
            let bytes = text.into_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                parts.push(&bytes[at..c.max(at)]);
                at = c.max(at);
            }
            prop_assert_eq!(scan_in(&parts), Some(bytes.len() - "trailing body".len()));
            prop_assert_eq!(scan_in(&[&open]), None);
        }
    }
}
