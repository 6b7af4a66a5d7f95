//! Envoy's ext_authz over gRPC: `envoy.service.auth.v3.Authorization/Check`
//! on the decision listener's HTTP/2 connections (h2c). The messages are
//! Envoy's own (the `envoy-types` crate); the gRPC framing, one message
//! each way, is written here. An allowed request answers `OkHttpResponse`
//! with the identity headers to set and the client-sent identity headers
//! (and `Authorization`, unless `proxy.forward_authorization`) to remove; a
//! denied one `DeniedHttpResponse` with the proxy's status, headers and
//! JSON body.

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use http::HeaderMap;
use pingora::http::ResponseHeader;
use pingora::prelude::Result;
use pingora::protocols::http::ServerSession;
use prost::Message;

use super::{CheckInput, Decider, Verdict};

/// The method's path.
pub(crate) const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The largest `CheckRequest` read (Envoy's request headers, and a body
/// only when `with_request_body` is configured).
const MAX_MESSAGE: usize = 1 << 20;

/// gRPC status codes used here.
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNIMPLEMENTED: i32 = 12;
const UNAUTHENTICATED: i32 = 16;
const UNAVAILABLE: i32 = 14;

/// Whether a request is a gRPC call (by its content type).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Answers one gRPC call on `session` (an HTTP/2 stream).
pub(crate) async fn serve(decider: &Decider, session: &mut ServerSession) -> Result<()> {
    let req = session.req_header();
    if req.method != http::Method::POST || req.uri.path() != CHECK_PATH {
        return status_only(session, UNIMPLEMENTED, "unknown method").await;
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = crate::listen::read_request_body(session).await? {
        if body.len() + chunk.len() > MAX_MESSAGE + 5 {
            return status_only(session, RESOURCE_EXHAUSTED, "message too large").await;
        }
        body.extend_from_slice(&chunk);
    }
    let request = match unframe(&body) {
        Ok(message) => match CheckRequest::decode(message) {
            Ok(r) => r,
            Err(_) => return status_only(session, INVALID_ARGUMENT, "not a CheckRequest").await,
        },
        Err((code, why)) => return status_only(session, code, why).await,
    };
    let answer = check(decider, &request).await;
    let mut framed = BytesMut::with_capacity(answer.encoded_len() + 5);
    framed.put_u8(0);
    framed.put_u32(answer.encoded_len() as u32);
    answer
        .encode(&mut framed)
        .map_err(|_| pingora::Error::new_str("encoding a CheckResponse"))?;
    let mut head = ResponseHeader::build(200, Some(2))?;
    head.insert_header("content-type", "application/grpc")?;
    session.write_response_header(Box::new(head)).await?;
    session.write_response_body(framed.freeze(), false).await?;
    session.write_response_trailers(trailers(OK, "")).await
}

/// The one message of a gRPC request body: uncompressed, one frame.
fn unframe(body: &[u8]) -> std::result::Result<&[u8], (i32, &'static str)> {
    let Some((&[flag, a, b, c, d], message)) = body.split_first_chunk::<5>() else {
        return Err((INVALID_ARGUMENT, "no gRPC message"));
    };
    if flag != 0 {
        return Err((UNIMPLEMENTED, "compressed messages are not accepted"));
    }
    if u32::from_be_bytes([a, b, c, d]) as usize != message.len() {
        return Err((INVALID_ARGUMENT, "expected exactly one gRPC message"));
    }
    Ok(message)
}

fn trailers(code: i32, message: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", http::HeaderValue::from(code));
    if let Ok(v) = http::HeaderValue::from_str(message) {
        if !message.is_empty() {
            t.insert("grpc-message", v);
        }
    }
    t
}

/// A call that fails as a call (not a decision): a trailers-only answer.
async fn status_only(session: &mut ServerSession, code: i32, message: &str) -> Result<()> {
    let mut head = ResponseHeader::build(200, Some(3))?;
    head.insert_header("content-type", "application/grpc")?;
    head.insert_header("grpc-status", code.to_string())?;
    head.insert_header("grpc-message", message)?;
    session.write_response_header(Box::new(head)).await?;
    session.write_response_body(Bytes::new(), true).await
}

/// The received headers of the original request, by lower-case name (as
/// Envoy sends them: merged in `headers`, or one by one in `header_map`).
fn received_headers(
    http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
) -> Vec<(&str, &[u8])> {
    match &http.header_map {
        Some(map) if !map.headers.is_empty() => map
            .headers
            .iter()
            .map(|h| {
                let value = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    h.raw_value.as_slice()
                };
                (h.key.as_str(), value)
            })
            .collect(),
        _ => http
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect(),
    }
}

/// The decision on a `CheckRequest`.
pub(crate) async fn check(decider: &Decider, request: &CheckRequest) -> CheckResponse {
    let Some(http) = request
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        let verdict = decider.refuse("the CheckRequest carries no HTTP request attributes");
        return response(decider, &verdict, &[]);
    };
    let received = received_headers(http);
    let authorization: Vec<&[u8]> = received
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| *v)
        .take(2)
        .collect();
    let verdict =
        match super::convention::method(&http.method, "the CheckRequest's method is not valid") {
            Err(why) => decider.refuse(why),
            Ok(method) => {
                decider
                    .decide(CheckInput {
                        method,
                        target: http.path.as_bytes(),
                        authorization: &authorization,
                    })
                    .await
            }
        };
    response(decider, &verdict, &received)
}

fn header(name: &str, value: &[u8]) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: String::from_utf8_lossy(value).into_owned(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn response(decider: &Decider, verdict: &Verdict, received: &[(&str, &[u8])]) -> CheckResponse {
    match &verdict.denial {
        Some(denial) => CheckResponse {
            status: Some(rpc::Status {
                code: match denial.status {
                    401 => UNAUTHENTICATED,
                    429 => RESOURCE_EXHAUSTED,
                    503 => UNAVAILABLE,
                    _ => PERMISSION_DENIED,
                },
                message: denial.error.to_string(),
                ..Default::default()
            }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus {
                    // Envoy's StatusCode values are the HTTP codes.
                    code: i32::from(denial.status),
                }),
                headers: verdict
                    .denial_headers(denial)
                    .iter()
                    .map(|(n, v)| header(n, v.as_bytes()))
                    .collect(),
                body: String::from_utf8_lossy(&denial.body()).into_owned(),
            })),
            ..Default::default()
        },
        None => {
            let mut remove: Vec<String> = Vec::new();
            for (name, _) in received {
                let spoofed = decider.headers().is_identity_header(name) && !verdict.sets(name);
                let credential = name.eq_ignore_ascii_case("authorization")
                    && !decider.headers().forwards_authorization();
                let name = name.to_ascii_lowercase();
                if (spoofed || credential) && !remove.contains(&name) {
                    remove.push(name);
                }
            }
            CheckResponse {
                status: Some(rpc::Status {
                    code: OK,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: verdict
                        .identity
                        .iter()
                        .map(|(n, v)| header(n.as_str(), v.as_bytes()))
                        .collect(),
                    headers_to_remove: remove,
                    ..Default::default()
                })),
                ..Default::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_uncompressed_message_is_read() {
        assert_eq!(unframe(&[0, 0, 0, 0, 2, 7, 8]), Ok(&[7u8, 8][..]));
        assert_eq!(unframe(&[0, 0, 0]).unwrap_err().0, INVALID_ARGUMENT);
        assert_eq!(unframe(&[1, 0, 0, 0, 1, 7]).unwrap_err().0, UNIMPLEMENTED);
        // A length that is not the rest of the body: a second message, or a short one.
        assert_eq!(
            unframe(&[0, 0, 0, 0, 1, 7, 8]).unwrap_err().0,
            INVALID_ARGUMENT
        );
        assert_eq!(
            unframe(&[0, 0, 0, 0, 3, 7, 8]).unwrap_err().0,
            INVALID_ARGUMENT
        );
    }

    #[test]
    fn a_trailer_carries_the_status_and_a_message_when_there_is_one() {
        let t = trailers(OK, "");
        assert_eq!(t.get("grpc-status").unwrap(), "0");
        assert!(t.get("grpc-message").is_none());
        let t = trailers(UNIMPLEMENTED, "unknown method");
        assert_eq!(t.get("grpc-message").unwrap(), "unknown method");
    }
}
