//! The decision listener: HTTP/1 check requests (nginx, Traefik, Envoy's
//! HTTP service) and HTTP/2 without TLS (h2c, told by its connection
//! preface) for Envoy's gRPC ext_authz and HTTP/2 check requests, all under
//! the limits and HTTP/2 bounds every listener applies
//! ([`crate::listen::Limited`]). One request is one decision; the listener answers no other
//! path of its own.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::prelude::{ErrorType, Result};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::listen::{Limited, Limits};

use super::config::Convention;
use super::convention::Original;
use super::{grpc, CheckInput, Decider, Verdict};

/// The check requests of one connection, HTTP/1 or HTTP/2.
pub(crate) struct DecisionHttp {
    decider: Arc<Decider>,
}

/// The listener: HTTP/1, and h2c (always on here: Envoy's gRPC ext_authz
/// speaks it) with the HTTP/2 bounds of every listener (`server.h2_*`),
/// under [`Limited`]'s connection and head limits.
pub(crate) fn decision_service(
    decider: Decider,
    limits: Limits,
    h2: crate::config::H2Config,
) -> Limited<DecisionHttp> {
    let http = DecisionHttp {
        decider: Arc::new(decider),
    };
    Limited::new(http, limits, "decisions").with_h2(crate::config::H2Config { h2c: true, ..h2 })
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
