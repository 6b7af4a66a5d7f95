//! Forwarding to HTTP/2 upstreams (`upstreams.NAME.protocol = "h2"` over
//! TLS with ALPN `h2`, `"h2c"` over TCP with prior knowledge) through
//! pingora's HTTP/2 connector ([`pingora::connectors::http::v2`]): one
//! stream per request over pooled, multiplexed connections. The request
//! body and the answer flow at the same time (gRPC streams both ways), and
//! the answer's trailers (`grpc-status`) are passed on to an HTTP/2 client.
//!
//! Also what HTTP/2 and gRPC change in a request's shape: `:authority` as
//! `Host` toward HTTP/1.1 upstreams, `TE: trailers` kept toward HTTP/2
//! ones, and a denied gRPC call answered as gRPC.

use bytes::Bytes;
use http::{header, HeaderValue};
use pingora::connectors::http::v2::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{Error, ErrorType, Result};
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v2::client::Http2Session;
use pingora::protocols::http::{HttpTask, ServerSession as Session};
use pingora::upstreams::peer::{HttpPeer, Peer};

use crate::authorize::Denial;

use super::ctx::Ctx;
use super::engine::Gate;
use super::headers::strip_response_hop_by_hop;

/// Whether the request is a gRPC call: `content-type: application/grpc`,
/// alone or with a `+format` or `;parameters` (gRPC over HTTP/2).
pub(super) fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| grpc_content_type(v.as_bytes()))
}

fn grpc_content_type(v: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    v.len() >= GRPC.len()
        && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(v.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// The gRPC status for an HTTP status tollgate answers with, after
/// gRPC's own HTTP-to-gRPC mapping, with the statuses tollgate uses
/// besides: 401 UNAUTHENTICATED (16), 403 PERMISSION_DENIED (7), 429
/// RESOURCE_EXHAUSTED (8), 400 INVALID_ARGUMENT (3), 404 and 405
/// UNIMPLEMENTED (12), 413 and 431 RESOURCE_EXHAUSTED (8), 502 and 503
/// UNAVAILABLE (14), 504 and 408 DEADLINE_EXCEEDED (4), else UNKNOWN (2).
pub(super) fn grpc_status(http: u16) -> u8 {
    match http {
        400 => 3,
        401 => 16,
        403 => 7,
        404 | 405 => 12,
        408 | 504 => 4,
        413 | 429 | 431 => 8,
        502 | 503 => 14,
        _ => 2,
    }
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII and
/// `%` itself (gRPC over HTTP/2, "Responses").
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A denial of a gRPC call, as gRPC: HTTP 200, `content-type:
/// application/grpc`, `grpc-status` and `grpc-message` (the denial's
/// description) in a trailers-only answer, with `www-authenticate` and
/// `retry-after` when the denial has them. The HTTP status it stands for
/// is what is logged and counted.
pub(super) async fn grpc_error(
    session: &mut Session,
    ctx: &mut Ctx,
    denial: &Denial,
) -> Result<bool> {
    let mut resp = ResponseHeader::build(200, Some(6))?;
    resp.insert_header(header::CONTENT_TYPE, "application/grpc")?;
    resp.insert_header("grpc-status", grpc_status(denial.status).to_string())?;
    resp.insert_header("grpc-message", grpc_message(&denial.description))?;
    for (name, value) in denial.headers() {
        if matches!(name, "www-authenticate" | "retry-after") {
            resp.insert_header(name, value)?;
        }
    }
    resp.insert_header("x-request-id", ctx.request_id_value())?;
    ctx.local_status = Some(denial.status);
    // Only HTTP/2 requests are answered in gRPC terms (`Ctx::grpc`).
    session
        .response_duplex_vec(vec![HttpTask::Header(Box::new(resp), true)])
        .await?;
    Ok(true)
}

/// An HTTP/2 request's head made HTTP/1.1-shaped: `:authority` becomes
/// `Host` (when the request has none; RFC 9113 §8.3.1 has the two agree),
/// and the target loses its scheme and authority.
pub(super) fn from_h2_request(parts: &mut http::request::Parts, target: &[u8]) -> Result<()> {
    if !parts.headers.contains_key(header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            let host = HeaderValue::from_str(authority.as_str()).map_err(|_| {
                Error::explain(ErrorType::InvalidHTTPHeader, "the :authority is not a host")
            })?;
            parts.headers.insert(header::HOST, host);
        }
    }
    let path = http::Uri::try_from(target)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "the :path is not a target"))?;
    parts.uri = path;
    Ok(())
}

/// The request toward an HTTP/2 upstream: connection-specific fields are
/// gone already (hop-by-hop), `TE: trailers` is put back when the client
/// sent it (the one `TE` HTTP/2 allows; gRPC servers look for it).
pub(super) fn to_h2_request(parts: &mut http::request::Parts, received: &RequestHeader) {
    let trailers = received.headers.get_all(header::TE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    });
    if trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    parts.headers.remove(header::TRANSFER_ENCODING);
}

/// A stream on a pooled HTTP/2 connection to the peer, else a new one.
async fn stream_to(connector: &Connector, peer: &HttpPeer) -> Result<Http2Session> {
    if let Some(s) = connector.reused_http_session(peer).await? {
        return Ok(s);
    }
    match connector.new_http_session::<HttpPeer, ()>(peer).await? {
        HttpSession::H2(s) => Ok(s),
        _ => Err(Error::explain(
            ErrorType::ConnectProxyFailure,
            "the upstream did not agree to HTTP/2 (ALPN h2)",
        )
        .into_up()),
    }
}

enum Event {
    Head,
    Body(Bytes),
    End(Option<Box<http::HeaderMap>>),
}

/// The upstream stream's next event: its head, a piece of body, or its end
/// with the trailers.
async fn next_event(up: &mut Http2Session, head_read: bool) -> Result<Event> {
    if !head_read {
        up.read_response_header().await.map_err(|e| e.into_up())?;
        return Ok(Event::Head);
    }
    match up.read_response_body().await.map_err(|e| e.into_up())? {
        Some(b) => Ok(Event::Body(b)),
        None => {
            let trailers = up.read_trailers().await.map_err(|e| e.into_up())?;
            Ok(Event::End(trailers.map(Box::new)))
        }
    }
}

/// Forwards the admitted request to an HTTP/2 upstream and relays the
/// answer; returns whether the client connection may carry another request.
pub(super) async fn forward<G: Gate>(
    gateway: &G,
    connector: &Connector,
    session: &mut Session,
    ctx: &mut G::Ctx,
    peer: &HttpPeer,
) -> Result<bool> {
    let has_body = !session.is_body_empty();
    let request = gateway.upstream_request(session.req_header(), has_body, ctx)?;
    if has_body && super::headers::expects_continue(session.req_header()) {
        session
            .write_continue_response()
            .await
            .map_err(|e| e.into_down())?;
    }
    let mut up = stream_to(connector, peer).await?;
    up.read_timeout = peer.options.read_timeout;
    up.write_timeout = peer.options.write_timeout;
    up.write_request_header(Box::new(request), !has_body)
        .map_err(|e| e.into_up())?;

    let mut sent_all = !has_body;
    let mut head_read = false;
    loop {
        let event = tokio::select! {
            chunk = crate::listen::read_request_body(session), if !sent_all => {
                match chunk.map_err(|e| e.into_down())? {
                    Some(b) if b.is_empty() => {}
                    Some(b) => up.write_request_body(b, false).await.map_err(|e| e.into_up())?,
                    None => {
                        up.finish_request_body().map_err(|e| e.into_up())?;
                        sent_all = true;
                    }
                }
                continue;
            }
            event = next_event(&mut up, head_read) => event?,
        };
        match event {
            Event::Head => {
                head_read = true;
                let Some(head) = up.response_header() else {
                    return Err(Error::explain(
                        ErrorType::InvalidHTTPHeader,
                        "no response header from the upstream",
                    )
                    .into_up());
                };
                let mut head = head.clone();
                strip_response_hop_by_hop(&mut head, false);
                let no_body = session.req_header().method == http::Method::HEAD
                    || matches!(head.status.as_u16(), 204 | 304);
                if !session.is_http2() {
                    // An HTTP/1.1 client gets an HTTP/1.1 head, and an
                    // answer of unknown length chunked.
                    head.set_version(http::Version::HTTP_11);
                    if !no_body && !head.headers.contains_key(header::CONTENT_LENGTH) {
                        head.insert_header(header::TRANSFER_ENCODING, "chunked")?;
                    }
                }
                head.insert_header("x-request-id", G::request_id_value(ctx))?;
                session
                    .write_response_header(Box::new(head))
                    .await
                    .map_err(|e| e.into_down())?;
            }
            Event::Body(b) => {
                session
                    .write_response_body(b, false)
                    .await
                    .map_err(|e| e.into_down())?;
            }
            Event::End(trailers) => {
                if let Some(trailers) = trailers {
                    // HTTP/1.1 clients do not get trailers (pingora writes
                    // none to them); gRPC clients speak HTTP/2.
                    session
                        .write_response_trailers(*trailers)
                        .await
                        .map_err(|e| e.into_down())?;
                }
                session.finish_body().await.map_err(|e| e.into_down())?;
                break;
            }
        }
    }
    if sent_all {
        let idle = peer.idle_timeout();
        connector.release_http_session(up, peer, idle);
        Ok(true)
    } else {
        // The upstream ended its answer before the request body: the rest
        // of it is not read; an HTTP/1 client connection closes.
        up.shutdown();
        session.set_keepalive(None);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_are_recognised() {
        for yes in [
            &b"application/grpc"[..],
            b"application/grpc+proto",
            b"Application/GRPC;charset=utf-8",
        ] {
            assert!(grpc_content_type(yes));
        }
        for no in [
            &b"application/grpcx"[..],
            b"application/json",
            b"application/grp",
        ] {
            assert!(!grpc_content_type(no));
        }
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message("token expired"), "token expired");
        assert_eq!(grpc_message("100% é\n"), "100%25 %C3%A9%0A");
        assert_eq!(grpc_status(401), 16);
        assert_eq!(grpc_status(403), 7);
    }
}
