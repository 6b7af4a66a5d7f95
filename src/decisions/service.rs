//! The decision listener: HTTP/1 check requests (nginx, Traefik, Envoy's
//! HTTP service) under the limits every listener applies
//! ([`crate::listen::Limited`]), and HTTP/2 without TLS (h2c, told by its
//! connection preface) for Envoy's gRPC ext_authz and HTTP/2 check
//! requests. One request is one decision; the listener answers no other
//! path of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::http::ResponseHeader;
use pingora::prelude::{ErrorType, Result};
use pingora::protocols::http::v2::server::{handshake, H2Accept, HttpSession as H2Session};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Digest, Stream};
use pingora::server::ShutdownWatch;

use crate::listen::{Limited, Limits};

use super::config::Convention;
use super::convention::Original;
use super::{grpc, CheckInput, Decider, Verdict};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// After this many rejected (malformed) streams an HTTP/2 connection is closed.
const MAX_REJECTED_STREAMS: usize = 16;

/// The check requests of one connection, HTTP/1 or HTTP/2.
pub(crate) struct DecisionHttp {
    decider: Arc<Decider>,
}

/// The listener: tells h2c from HTTP/1 by the first bytes, and serves the
/// latter under the listeners' limits.
pub(crate) struct DecisionService {
    http: Arc<DecisionHttp>,
    http1: Arc<Limited<DecisionHttp>>,
    limits: Limits,
    /// h2c connections open: at most `server.max_connections` of them (the
    /// HTTP/1 ones are counted by `Limited`).
    h2_open: AtomicUsize,
}

/// One h2c connection counted in `h2_open` while it lives.
struct H2Open<'a>(&'a AtomicUsize);

impl Drop for H2Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl DecisionService {
    pub(crate) fn new(decider: Decider, limits: Limits) -> DecisionService {
        let decider = Arc::new(decider);
        DecisionService {
            http1: Arc::new(Limited::new(
                DecisionHttp {
                    decider: decider.clone(),
                },
                limits,
                "decisions",
            )),
            http: Arc::new(DecisionHttp { decider }),
            limits,
            h2_open: AtomicUsize::new(0),
        }
    }

    /// Serves an h2c connection: each stream a request, until the client
    /// closes or the process shuts down (then GOAWAY, and the streams in
    /// flight finish).
    async fn serve_h2(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let digest = Arc::new(Digest {
            ssl_digest: None,
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        let mut conn = match handshake(stream, None).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error_type = ?e.etype(), "h2c handshake failed; closed");
                return;
            }
        };
        let mut watch = shutdown.clone();
        let mut draining = *watch.borrow();
        if draining {
            conn.graceful_shutdown();
        }
        let mut rejected = 0;
        loop {
            let next = if draining {
                H2Session::from_h2_conn(&mut conn, digest.clone()).await
            } else {
                tokio::select! {
                    changed = watch.changed() => {
                        if changed.is_err() || *watch.borrow() {
                            conn.graceful_shutdown();
                            draining = true;
                        }
                        continue;
                    }
                    next = H2Session::from_h2_conn(&mut conn, digest.clone()) => next,
                }
            };
            match next {
                Ok(Some(H2Accept::Session(session))) => {
                    let http = self.http.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        http.process_new_http(ServerSession::new_http2(session), &shutdown)
                            .await;
                    });
                }
                Ok(Some(H2Accept::Rejected)) => {
                    rejected += 1;
                    if rejected >= MAX_REJECTED_STREAMS {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error_type = ?e.etype(), "h2c connection ended");
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl ServerApp for DecisionService {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The first 24 bytes tell an h2c connection (its preface) from an
        // HTTP/1 one (a request line), within the head's time limit.
        let mut first = [0u8; 24];
        let peeked = tokio::time::timeout(self.limits.head_timeout, stream.try_peek(&mut first));
        match peeked.await {
            Ok(Ok(true)) if &first == H2_PREFACE => {
                if self.h2_open.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
                    self.h2_open.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(
                        listener = "decisions",
                        "h2c connection refused: max_connections open"
                    );
                    return None;
                }
                let _open = H2Open(&self.h2_open);
                self.serve_h2(stream, shutdown).await;
                None
            }
            Ok(Ok(_)) => self.http1.process_new(stream, shutdown).await,
            // Closed, or silent for too long, before 24 bytes.
            _ => None,
        }
    }

    async fn cleanup(&self) {}
}

#[async_trait]
impl HttpServerApp for DecisionHttp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(error_type = ?e.etype(), "unreadable check request; closed");
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                session.shutdown().await;
                return None;
            }
        }
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        let served = if session.is_http2() && grpc::is_grpc(&session.req_header().headers) {
            grpc::serve(&self.decider, &mut session).await
        } else {
            self.answer(&mut session).await
        };
        if let Err(e) = served {
            tracing::debug!(error_type = ?e.etype(), "answering a check request failed; closed");
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
            _ => None,
        }
    }
}

impl DecisionHttp {
    /// An HTTP check request: the original request as the convention
    /// describes it, decided and answered.
    async fn answer(&self, session: &mut ServerSession) -> Result<()> {
        // A check request's body is not the original request's: drained, unread.
        if session.drain_request_body().await.is_err() {
            session.set_keepalive(None);
        }
        let decider = &self.decider;
        let req = session.req_header();
        let convention = decider.convention();
        let original = convention.original(
            req.method.as_str(),
            req.raw_path(),
            &req.headers,
            decider.path_prefix(),
        );
        let verdict = match original {
            Err(why) => decider.refuse(why),
            Ok(Original { method, target }) => {
                let (authorization, count) =
                    crate::proxy::first_two(req.headers.get_all(http::header::AUTHORIZATION));
                decider
                    .decide(CheckInput {
                        method,
                        target: &target,
                        authorization: &authorization[..count],
                    })
                    .await
            }
        };
        let extra = match convention {
            Convention::Envoy => envoy_headers_to_remove(decider, &req.headers, &verdict),
            Convention::Nginx | Convention::Traefik => None,
        };
        write(session, verdict, extra).await
    }
}

/// Envoy's HTTP service takes the headers to remove upstream from
/// `x-envoy-auth-headers-to-remove`: the client-sent identity headers the
/// answer does not overwrite, and `Authorization` unless forwarded.
fn envoy_headers_to_remove(
    decider: &Decider,
    received: &HeaderMap,
    verdict: &Verdict,
) -> Option<String> {
    if verdict.denial.is_some() {
        return None;
    }
    let rules = decider.headers();
    let names: Vec<&str> = received
        .keys()
        .map(|n| n.as_str())
        .filter(|n| {
            (rules.is_identity_header(n) && !verdict.identity.contains_key(*n))
                || (*n == "authorization" && !rules.forwards_authorization())
        })
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// The answer to an HTTP check request: 200 and the identity headers, or
/// the proxy's denial (status, JSON body, `WWW-Authenticate`). The head is
/// built from its parts: the identity headers move into it as they are,
/// parsed once, with no case map to keep.
async fn write(
    session: &mut ServerSession,
    verdict: Verdict,
    remove: Option<String>,
) -> Result<()> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    let mut headers = verdict.identity;
    let body = match &verdict.denial {
        Some(denial) => {
            parts.status = http::StatusCode::from_u16(denial.status)
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            for (name, value) in denial
                .headers()
                .into_iter()
                .chain(verdict.limit_headers.clone())
            {
                if let Ok(value) = http::HeaderValue::from_str(&value) {
                    headers.insert(http::HeaderName::from_static(name), value);
                }
            }
            denial.body()
        }
        None => {
            headers.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            Vec::new()
        }
    };
    if let Some(remove) = remove.and_then(|r| http::HeaderValue::from_str(&r).ok()) {
        headers.insert(
            http::HeaderName::from_static("x-envoy-auth-headers-to-remove"),
            remove,
        );
    }
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    parts.headers = headers;
    session
        .write_response_header(Box::new(ResponseHeader::from(parts)))
        .await?;
    session.write_response_body(Bytes::from(body), true).await
}
