//! The decision listener: HTTP/1 check requests (nginx, Traefik, Envoy's
//! HTTP service, read and answered by [`super::http1`]) and HTTP/2 without
//! TLS (h2c, told by its connection preface) for Envoy's gRPC ext_authz and
//! HTTP/2 check requests (pingora's HTTP/2 server), all under the limits
//! and HTTP/2 bounds every listener applies ([`crate::listen::Limited`]).
//! One request is one decision; the listener answers no other path of its
//! own.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::prelude::Result;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::listen::{Limited, Limits};

use super::config::Convention;
use super::convention::{CheckHeaders, Malformed, Original};
use super::http1::CheckHttp1;
use super::{grpc, CheckInput, Decider, Verdict};
use crate::proxy::Fields;

/// The check requests of an HTTP/2 connection, one stream each.
pub(crate) struct DecisionHttp {
    decider: Arc<Decider>,
}

/// The listener: HTTP/1 served by [`CheckHttp1`], and h2c (always on
/// here: Envoy's gRPC ext_authz speaks it) with the HTTP/2 bounds of every listener (`server.h2_*`),
/// under [`Limited`]'s connection and head limits.
pub(crate) fn decision_service(
    decider: Decider,
    limits: Limits,
    h2: crate::config::H2Config,
) -> Limited<DecisionHttp> {
    let decider = Arc::new(decider);
    let http1 = CheckHttp1::new(decider.clone());
    Limited::new(DecisionHttp { decider }, limits, "decisions")
        .with_h2(crate::config::H2Config { h2c: true, ..h2 })
        .with_http1(Arc::new(http1))
}

#[async_trait]
impl HttpServerApp for DecisionHttp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let read = session.read_request().await;
        if !crate::listen::request_read(&mut session, read, shutdown).await {
            return None;
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
        crate::listen::reusable(session).await
    }
}

impl DecisionHttp {
    /// An HTTP check request over HTTP/2: the original request as the
    /// convention describes it, decided and answered.
    async fn answer(&self, session: &mut ServerSession) -> Result<()> {
        // A check request's body is not the original request's: drained, unread.
        if drain(session).await.is_err() {
            session.set_keepalive(None);
        }
        let req = session.req_header();
        let check = Check::read(
            &self.decider,
            req.method.as_str(),
            req.raw_path(),
            &req.headers,
        );
        let answer = check.decide(&self.decider).await;
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = answer.status;
        parts.headers = answer.headers.into_iter().collect();
        session
            .write_response_header(Box::new(ResponseHeader::from(parts)))
            .await?;
        session
            .write_response_body(Bytes::from(answer.body), true)
            .await
    }
}

/// Reads the rest of a request body and drops it, each read bounded as
/// [`crate::listen::read_request_body`] bounds it.
async fn drain(session: &mut ServerSession) -> Result<()> {
    while crate::listen::read_request_body(session).await?.is_some() {}
    Ok(())
}

/// What a check request asks, read from its method, target and fields as
/// the listener's convention says, whichever protocol it came in.
pub(crate) struct Check<'a> {
    original: std::result::Result<Original<'a>, Malformed>,
    authorization: ([&'a [u8]; 2], usize),
    /// Envoy's HTTP service: the received fields to remove upstream unless
    /// the answer sets them (client-sent identity headers, and
    /// `Authorization` unless forwarded).
    removable: Vec<String>,
}

impl<'a> Check<'a> {
    pub(crate) fn read(
        decider: &Decider,
        method: &'a str,
        target: &'a [u8],
        headers: impl CheckHeaders<'a>,
    ) -> Check<'a> {
        let convention = decider.convention();
        let mut removable = Vec::new();
        if convention == Convention::Envoy {
            let rules = decider.headers();
            headers.each_name(&mut |n| {
                if rules.is_identity_header(n)
                    || (n == "authorization" && !rules.forwards_authorization())
                {
                    removable.push(n.to_string());
                }
            });
        }
        Check {
            original: convention.original(method, target, headers, decider.path_prefix()),
            authorization: headers.first_two(&http::header::AUTHORIZATION),
            removable,
        }
    }

    /// Decides on the original request and makes the answer.
    pub(crate) async fn decide(self, decider: &Decider) -> Answer {
        let verdict = match self.original {
            Err(why) => decider.refuse(why),
            Ok(Original { method, target }) => {
                let (authorization, count) = self.authorization;
                decider
                    .decide(CheckInput {
                        method,
                        target: &target,
                        authorization: &authorization[..count],
                    })
                    .await
            }
        };
        let remove = if verdict.denial.is_some() {
            None
        } else {
            let names: Vec<&str> = self
                .removable
                .iter()
                .map(String::as_str)
                .filter(|n| !verdict.sets(n))
                .collect();
            (!names.is_empty()).then(|| names.join(", "))
        };
        Answer::new(verdict, remove)
    }
}

/// The answer to an HTTP check request: 200 and the identity headers, or
/// the proxy's denial (status, JSON body, `WWW-Authenticate`). The head is
/// built from its parts: the identity headers move into it as they are,
/// parsed once, with no case map to keep.
pub(crate) struct Answer {
    pub status: http::StatusCode,
    /// The identity headers or the denial's, then the answer's own; each
    /// name once.
    pub headers: Fields,
    pub body: Vec<u8>,
}

impl Answer {
    fn new(mut verdict: Verdict, remove: Option<String>) -> Answer {
        let mut status = http::StatusCode::OK;
        let mut headers = std::mem::take(&mut verdict.identity);
        let body = match &verdict.denial {
            Some(denial) => {
                status = http::StatusCode::from_u16(denial.status)
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                headers.clear();
                for (name, value) in verdict.denial_headers(denial) {
                    if let Ok(value) = http::HeaderValue::from_str(&value) {
                        headers.push((http::HeaderName::from_static(name), value));
                    }
                }
                denial.body()
            }
            None => {
                headers.push((
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                ));
                Vec::new()
            }
        };
        if let Some(remove) = remove.and_then(|r| http::HeaderValue::from_str(&r).ok()) {
            headers.push((
                http::HeaderName::from_static("x-envoy-auth-headers-to-remove"),
                remove,
            ));
        }
        headers.push((
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        ));
        Answer {
            status,
            headers,
            body,
        }
    }
}
