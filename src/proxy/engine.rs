//! The proxy listener's engine: one request at a time per client
//! connection or HTTP/2 stream, decided by a [`Gate`] (tollgate's is
//! [`Gateway`](super::Gateway)) and, when allowed, forwarded over a pooled
//! upstream connection (HTTP/1.1 here, HTTP/2 in `h2up`).
//!
//! It is built on pingora's server and client sessions rather than on
//! pingora's `ProxyHttp` state machine. That machine serves caching,
//! subrequests, HTTP/2 upstreams and filters tollgate does not use, and
//! costs for them on every request: its large future is copied into a new
//! box per request, and each body moves between two tasks over channels
//! (measured in docs/performance.md). Here the request body is sent, then
//! the response read, in one task; a WebSocket upgrade is relayed both
//! ways.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::apps::{HttpServerApp, ReusedHttpStream};
use pingora::connectors::http::v1::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{Error, ErrorType, Result};
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::{HttpPeer, Peer};

use super::headers::{expects_continue, strip_response_hop_by_hop};

/// A request body up to this size is kept while it is sent, so that the
/// request can be sent again on a new connection when a pooled one turns
/// out to have been closed by the upstream.
const RETRY_BUFFER: usize = 64 * 1024;

/// How long the rest of a request body is read (and dropped) after the
/// upstream answered before it was all sent.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Connections tried per request: pooled ones found closed, then a new one.
const MAX_ATTEMPTS: usize = 3;

/// What the engine asks of whoever decides on its requests. The engine is
/// generic over it rather than naming the gateway, so that the two do not
/// depend on each other; `Engine<Gateway>` is compiled as if it called the
/// gateway directly (no `dyn`, no boxing).
pub(crate) trait Gate: Send + Sync + 'static {
    /// Per-request state, from [`Gate::admit`] to [`Gate::log`].
    type Ctx: Default + Send;
    /// What re-checks an upgraded connection's authorization.
    type Guard: Send;

    /// Decides on the request, or answers it. `Ok(true)`: answered (a
    /// denial or a built-in endpoint); `Ok(false)`: forward it.
    fn admit(
        &self,
        session: &mut ServerSession,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The next peer of the admitted request's upstream.
    fn upstream_peer(&self, ctx: &Self::Ctx) -> Option<HttpPeer>;

    /// The request head to send upstream, built from the one received.
    fn upstream_request(
        &self,
        received: &RequestHeader,
        has_body: bool,
        ctx: &Self::Ctx,
    ) -> Result<RequestHeader>;

    /// Answers a request that could not be forwarded; returns the status
    /// written (0 if none could be).
    fn fail(
        &self,
        session: &mut ServerSession,
        e: &Error,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = u16> + Send;

    /// The guard of a tunnel about to open; `None` when nothing needs
    /// checking again.
    fn tunnel_guard(&self, ctx: &mut Self::Ctx) -> Option<Self::Guard>;

    /// Resolves when the guard's decision is due again.
    fn tunnel_due(guard: &mut Self::Guard) -> impl Future<Output = ()> + Send;

    /// Whether the tunnel's request would still be allowed now.
    fn still_allowed(&self, guard: &Self::Guard) -> impl Future<Output = bool> + Send;

    /// The request id, for log lines.
    fn request_id(ctx: &Self::Ctx) -> &str;

    /// The request id as the answer's `x-request-id` value.
    fn request_id_value(ctx: &Self::Ctx) -> HeaderValue;

    /// The access log line, once the exchange is over.
    fn log(&self, session: &ServerSession, ctx: &Self::Ctx);
}

pub(crate) struct Engine<G> {
    gateway: G,
    connector: Connector,
    /// HTTP/2 upstreams' connections (`protocol = "h2"`/`"h2c"`).
    h2: pingora::connectors::http::v2::Connector,
}

impl<G: Gate> Engine<G> {
    pub(crate) fn new(gateway: G) -> Engine<G> {
        Engine {
            gateway,
            connector: Connector::new(None),
            h2: pingora::connectors::http::v2::Connector::new(None),
        }
    }

    /// One request, from its head to the last byte of its answer. Returns
    /// whether the client connection may carry another request.
    async fn serve(&self, session: &mut ServerSession, ctx: &mut G::Ctx) -> bool {
        match self.gateway.admit(session, ctx).await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => {
                Box::pin(self.gateway.fail(session, &e, ctx)).await;
                return false;
            }
        }
        match self.forward(session, ctx).await {
            Ok(reusable) => reusable,
            Err(e) => {
                // After an informational answer (tollgate's `100 Continue`,
                // say) the final one can still be an error answer; after a
                // `101` the connection speaks another protocol.
                let upgraded = session.was_upgraded();
                let begun = upgraded
                    || session
                        .response_written()
                        .is_some_and(|r| !r.status.is_informational());
                if !begun {
                    Box::pin(self.gateway.fail(session, &e, ctx)).await;
                } else if upgraded && matches!(e.etype(), ErrorType::ReadTimedout) {
                    // A tunnel idle past the read timeout: its normal end.
                    tracing::debug!(
                        request_id = %G::request_id(ctx),
                        "upgraded connection idle past the read timeout; closed"
                    );
                } else {
                    // The answer has begun: all that can be done is to close.
                    tracing::warn!(
                        request_id = %G::request_id(ctx),
                        error_type = ?e.etype(),
                        error = %e,
                        "proxying failed after the response began"
                    );
                }
                false
            }
        }
    }

    async fn forward(&self, session: &mut ServerSession, ctx: &mut G::Ctx) -> Result<bool> {
        let peer = self.gateway.upstream_peer(ctx).ok_or_else(|| {
            Error::explain(
                ErrorType::ConnectNoRoute,
                "no healthy address for the route's upstream",
            )
        })?;
        if matches!(peer.options.alpn, pingora::upstreams::peer::ALPN::H2) {
            // Boxed: its future does not size the HTTP/1 path's.
            return Box::pin(super::h2up::forward(
                &self.gateway,
                &self.h2,
                session,
                ctx,
                &peer,
            ))
            .await;
        }
        let has_body = !session.is_body_empty();
        // Built once; a retry (rare) builds it again rather than every
        // request paying for a copy.
        let mut first = Some(
            self.gateway
                .upstream_request(session.req_header(), has_body, ctx)?,
        );
        if has_body && expects_continue(session.req_header()) {
            // Authorized: the client may send its body now. The upstream
            // sees `Expect` too; its own `100` is not passed on after this.
            session
                .write_continue_response()
                .await
                .map_err(|e| e.into_down())?;
        }

        let mut body = Body {
            done: !has_body,
            ..Body::default()
        };
        let mut attempts = 0;
        let (mut upstream, answered_early) = loop {
            attempts += 1;
            // A new connection (a TLS handshake, perhaps) is the rare case:
            // its future is boxed so that it does not size every request's.
            let (mut up, reused) = match self.connector.reused_http_session(&peer).await {
                Some(up) => (up, true),
                None => Box::pin(self.connector.get_http_session(&peer)).await?,
            };
            up.read_timeout = peer.options.read_timeout;
            up.write_timeout = peer.options.write_timeout;
            let request = match first.take() {
                Some(request) => request,
                None => self
                    .gateway
                    .upstream_request(session.req_header(), has_body, ctx)?,
            };
            let sending = if body.done && body.kept.is_empty() {
                send_head(&mut up, request).await
            } else {
                Box::pin(send_request(session, &mut up, request, &mut body)).await
            };
            let attempt = match sending {
                Ok(Sent::All) => read_final_head(session, &mut up).await.map(|()| false),
                Ok(Sent::AnsweredEarly) => Ok(true),
                // An upstream may answer before the whole body is sent (a
                // 413, say) and stop reading: that answer is the one to pass on.
                Err(e) if !body.done && retryable(&e) => {
                    match read_final_head(session, &mut up).await {
                        Ok(()) => Ok(true),
                        Err(_) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match attempt {
                Ok(early) => break (up, early),
                // A pooled connection the upstream had closed: once more on
                // a new one, for a request that may be repeated (RFC 9110
                // §9.2.2) and when all of the body sent so far is kept.
                Err(e)
                    if reused
                        && attempts < MAX_ATTEMPTS
                        && idempotent(&session.req_header().method)
                        && body.read <= RETRY_BUFFER
                        && retryable(&e) =>
                {
                    tracing::debug!(error = %e, "pooled upstream connection failed; retrying");
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        if answered_early {
            // The rest of the client's body was never read.
            session.set_keepalive(None);
        }

        let Some(head) = upstream.resp_header() else {
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "no response header from the upstream",
            ));
        };
        let mut head: ResponseHeader = head.clone();
        let switching = head.status == http::StatusCode::SWITCHING_PROTOCOLS;
        if switching && !session.is_upgrade_req() {
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "the upstream switched protocols on a request that asked for none",
            )
            .into_up());
        }
        if switching && !websocket_accepted(session.req_header(), &head) {
            // Not the answer of a WebSocket server to this request: no
            // tunnel opens, and the client gets 502.
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "the upstream's 101 lacks the Sec-WebSocket-Accept the request's key calls for",
            )
            .into_up());
        }
        strip_response_hop_by_hop(&mut head, switching);
        let no_body = session.req_header().method == http::Method::HEAD
            || matches!(head.status.as_u16(), 204 | 304)
            || switching;
        if !no_body
            && !head.headers.contains_key(http::header::TRANSFER_ENCODING)
            && !head.headers.contains_key(http::header::CONTENT_LENGTH)
        {
            // An HTTP/1.0-style answer that ends when the upstream closes
            // goes to the client chunked, so its connection stays usable.
            head.set_version(http::Version::HTTP_11);
            head.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        head.insert_header("x-request-id", G::request_id_value(ctx))?;
        session
            .write_response_header(Box::new(head))
            .await
            .map_err(|e| e.into_down())?;

        if session.was_upgraded() {
            let guard = self.gateway.tunnel_guard(ctx);
            let denied =
                Box::pin(relay_upgraded(session, &mut upstream, &self.gateway, guard)).await?;
            if denied {
                tracing::info!(
                    request_id = %G::request_id(ctx),
                    "tunnel closed: its token is no longer valid (revoked or expired)"
                );
            }
            return Ok(false);
        }
        while let Some(chunk) = upstream.read_body_bytes().await.map_err(|e| e.into_up())? {
            session
                .write_response_body(chunk, false)
                .await
                .map_err(|e| e.into_down())?;
        }
        session.finish_body().await.map_err(|e| e.into_down())?;
        if answered_early {
            // What the client still sends is read and dropped for a while
            // before the connection closes: closing with it unread would
            // reset the connection, and the client could lose the answer.
            let _ = Box::pin(tokio::time::timeout(LINGER, session.drain_request_body())).await;
            return Ok(false);
        }
        if body.done {
            upstream.respect_keepalive();
            let idle = peer.idle_timeout();
            self.connector
                .release_http_session(upstream, &peer, idle)
                .await;
        }
        Ok(true)
    }
}

/// Sends a request without a body.
async fn send_head(
    up: &mut UpstreamSession,
    request: pingora::http::RequestHeader,
) -> Result<Sent> {
    up.write_request_header(Box::new(request))
        .await
        .map_err(|e| e.into_up())?;
    up.finish_body().await.map_err(|e| e.into_up())?;
    Ok(Sent::All)
}

/// What has been read of the client's body; up to [`RETRY_BUFFER`] bytes of
/// it are kept to be sent again on another connection.
#[derive(Default)]
struct Body {
    kept: Vec<Bytes>,
    read: usize,
    done: bool,
}

enum Sent {
    All,
    /// The upstream gave its final answer before the body was all sent.
    AnsweredEarly,
}

/// Sends the request head and then its body: what was kept from an
/// earlier attempt, then the rest from the client. While the body goes,
/// the upstream's answer is watched for: informational ones are passed on,
/// and a final one ends the sending.
async fn send_request(
    session: &mut ServerSession,
    up: &mut UpstreamSession,
    request: pingora::http::RequestHeader,
    body: &mut Body,
) -> Result<Sent> {
    up.write_request_header(Box::new(request))
        .await
        .map_err(|e| e.into_up())?;
    for chunk in &body.kept {
        write_upstream_body(up, chunk).await?;
    }
    while !body.done {
        let next = tokio::select! {
            // pingora's header read is cancel-safe: bytes read stay buffered.
            biased;
            answer = up.read_response() => {
                answer.map_err(|e| e.into_up())?;
                if !informational(up) {
                    return Ok(Sent::AnsweredEarly);
                }
                pass_informational(session, up).await?;
                continue;
            }
            chunk = crate::listen::read_request_body(session) => chunk.map_err(|e| e.into_down())?,
        };
        match next {
            // A read that held only chunk framing or trailers.
            Some(chunk) if chunk.is_empty() => {}
            Some(chunk) => {
                body.read += chunk.len();
                if body.read <= RETRY_BUFFER {
                    body.kept.push(chunk.clone());
                } else {
                    body.kept.clear();
                }
                write_upstream_body(up, &chunk).await?;
            }
            None => body.done = true,
        }
    }
    up.finish_body().await.map_err(|e| e.into_up())?;
    Ok(Sent::All)
}

/// Writes a piece of the client's body upstream. An empty piece is not
/// written: pingora's body reader hands one out for a read that held only
/// chunk framing (a size line, the CRLF after data) or trailers, and its
/// chunked writer would send it as `0\r\n\r\n`, the end of the body: the
/// rest of the body would then reach the upstream as the next request on
/// that connection. (Toward the client, `write_response_body` already
/// skips empty pieces.)
async fn write_upstream_body(up: &mut UpstreamSession, chunk: &[u8]) -> Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    up.write_body(chunk).await.map_err(|e| e.into_up())?;
    Ok(())
}

/// Reads the upstream's answer up to its final head, within the session's
/// read timeout. That is one timer for the whole wait: left to pingora, the
/// timeout is registered anew for each read that has to wait, a cost a
/// small request feels in its throughput (docs/performance.md). tokio's
/// timer, kept inline and registered only if the head is not there at once,
/// costs less. Body reads keep pingora's per-read timeout.
async fn read_final_head(session: &mut ServerSession, up: &mut UpstreamSession) -> Result<()> {
    let Some(limit) = up.read_timeout.take() else {
        return read_heads(session, up).await;
    };
    let read = tokio::time::timeout(limit, read_heads(session, up)).await;
    up.read_timeout = Some(limit);
    read.unwrap_or_else(|_| {
        Err(Error::explain(
            ErrorType::ReadTimedout,
            format!("reading the response head, timeout: {limit:?}"),
        )
        .into_up())
    })
}

/// Reads heads until the final one, passing informational ones on.
async fn read_heads(session: &mut ServerSession, up: &mut UpstreamSession) -> Result<()> {
    loop {
        up.read_response().await.map_err(|e| e.into_up())?;
        if !informational(up) {
            return Ok(());
        }
        Box::pin(pass_informational(session, up)).await?;
    }
}

/// Whether the head just read is informational, other than `101`.
fn informational(up: &UpstreamSession) -> bool {
    up.resp_header().is_some_and(|h| {
        h.status.is_informational() && h.status != http::StatusCode::SWITCHING_PROTOCOLS
    })
}

/// Passes an informational head on (RFC 9110 §15.2), except a `100
/// Continue` after tollgate's own.
async fn pass_informational(session: &mut ServerSession, up: &UpstreamSession) -> Result<()> {
    let Some(head) = up.resp_header() else {
        return Ok(());
    };
    let continued = session
        .response_written()
        .is_some_and(|r| r.status == http::StatusCode::CONTINUE);
    if head.status == http::StatusCode::CONTINUE && continued {
        return Ok(());
    }
    let mut info = head.clone();
    strip_response_hop_by_hop(&mut info, false);
    session
        .write_response_header(Box::new(info))
        .await
        .map_err(|e| e.into_down())
}

/// Whether a `101` carries the `Sec-WebSocket-Accept` the request's
/// `Sec-WebSocket-Key` calls for (RFC 6455 §4.2.2): base64 of the SHA-1 of
/// the key and the protocol's GUID. Without a key, nothing is accepted.
fn websocket_accepted(request: &pingora::http::RequestHeader, answer: &ResponseHeader) -> bool {
    use base64::Engine as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let (Some(key), Some(accept)) = (
        request.headers.get("sec-websocket-key"),
        answer.headers.get("sec-websocket-accept"),
    ) else {
        return false;
    };
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes().trim_ascii());
    sha1.update(GUID);
    let expected = base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes());
    accept.as_bytes().trim_ascii() == expected.as_bytes()
}

/// Methods a client may send twice with the effect of once (RFC 9110
/// §9.2.2): only these are sent again after a pooled connection failed.
fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a failure on a pooled connection may be the upstream having
/// closed it while idle: nothing was answered, and it was not a timeout.
fn retryable(e: &Error) -> bool {
    matches!(e.esource(), pingora::ErrorSource::Upstream)
        && !matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::InvalidHTTPHeader
        )
}

/// After `101 Switching Protocols`: bytes both ways until the upstream
/// closes (or either side fails), or until the token that opened the
/// tunnel is no longer valid ([`Gate::still_allowed`]); then returns true and both
/// connections are closed, without a WebSocket close frame (tollgate does
/// not read the frames).
async fn relay_upgraded<G: Gate>(
    session: &mut ServerSession,
    up: &mut UpstreamSession,
    gateway: &G,
    mut guard: Option<G::Guard>,
) -> Result<bool> {
    up.maybe_upgrade_body_writer();
    let mut client_open = true;
    loop {
        tokio::select! {
            () = async {
                match guard.as_mut() {
                    Some(g) => G::tunnel_due(g).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(g) = guard.as_ref() {
                    if !gateway.still_allowed(g).await {
                        return Ok(true);
                    }
                }
            }
            chunk = crate::listen::read_request_body(session), if client_open => {
                match chunk.map_err(|e| e.into_down())? {
                    Some(bytes) => write_upstream_body(up, &bytes).await?,
                    None => {
                        client_open = false;
                        up.finish_body().await.map_err(|e| e.into_up())?;
                    }
                }
            }
            chunk = up.read_body_bytes() => {
                match chunk.map_err(|e| e.into_up())? {
                    Some(bytes) => {
                        session
                            .write_response_body(bytes, false)
                            .await
                            .map_err(|e| e.into_down())?;
                    }
                    None => break,
                }
            }
        }
    }
    session.finish_body().await.map_err(|e| e.into_down())?;
    Ok(false)
}

#[async_trait]
impl<G: Gate> HttpServerApp for Engine<G> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // Requests a client sends before the previous answer (RFC 9112
        // §9.3.2) are served in turn rather than dropped with the connection.
        session.set_pipelining_enabled(true);
        let read = crate::listen::read_unless_shutting_down(&mut session, shutdown).await?;
        if !crate::listen::request_read(&mut session, read, shutdown).await {
            return None;
        }
        let mut ctx = G::Ctx::default();
        let reusable = self.serve(&mut session, &mut ctx).await;
        self.gateway.log(&session, &ctx);
        if !reusable {
            return None;
        }
        crate::listen::reusable(session).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, fields: &[(&'static str, &'static str)]) -> ResponseHeader {
        let mut head = ResponseHeader::build(status, None).expect("a status");
        for (name, value) in fields {
            head.append_header(*name, *value).expect("a field");
        }
        head
    }

    fn upgrade_request(key: Option<&'static str>) -> pingora::http::RequestHeader {
        let mut request =
            pingora::http::RequestHeader::build("GET", b"/socket", None).expect("a request");
        if let Some(key) = key {
            request
                .insert_header("Sec-WebSocket-Key", key)
                .expect("a field");
        }
        request
    }

    #[test]
    fn the_websocket_accept_must_answer_the_request_key() {
        // The example of RFC 6455 §1.3.
        let request = upgrade_request(Some("dGhlIHNhbXBsZSBub25jZQ=="));
        let good = answer(
            101,
            &[("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")],
        );
        assert!(websocket_accepted(&request, &good));
        let wrong = answer(
            101,
            &[("Sec-WebSocket-Accept", "AAAALMBiTxaQ9kYGzzhZRbK+xOo=")],
        );
        assert!(!websocket_accepted(&request, &wrong));
        assert!(!websocket_accepted(&request, &answer(101, &[])));
        assert!(!websocket_accepted(&upgrade_request(None), &good));
    }
}
