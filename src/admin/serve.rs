//! The pingora adapter of the admin listener: reads the request (body
//! bounded to 64 KiB) and writes the reply.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::error::AdminError;
use super::reply::Reply;
use super::{Admin, Request};

const BODY_LIMIT: usize = 64 * 1024;

/// The pingora adapter: reads the request (body bounded to 64 KiB) and
/// writes the reply.
pub(crate) struct AdminHttp {
    pub(crate) admin: Arc<Admin>,
}

#[async_trait]
impl ServeHttp for AdminHttp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let method = header.method.clone();
        let path = header.uri.path().to_string();
        let query = header.uri.query().map(str::to_string);
        let authorization = header
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        let joined = |name: http::header::HeaderName| {
            let values: Vec<&str> = header
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join("; "))
        };
        let cookie = joined(http::header::COOKIE);
        let content_type = joined(http::header::CONTENT_TYPE);
        // TLS here, or ended by a proxy in front that says so. The header
        // only ever adds `Secure` to the console's cookie (a browser on
        // plain HTTP then drops it), so believing it cannot weaken anything.
        let forwarded_https = header
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        let tls = forwarded_https || session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let reply = match read_body(session, BODY_LIMIT).await {
            Ok(body) => {
                self.admin
                    .handle(Request {
                        method,
                        path,
                        query,
                        authorization,
                        body,
                        source: session
                            .client_addr()
                            .and_then(|a| a.as_inet())
                            .map(|a| a.ip()),
                        cookie,
                        content_type,
                        tls,
                    })
                    .await
            }
            Err(e) => e.into_reply(),
        };
        to_response(reply)
    }
}

async fn read_body(session: &mut ServerSession, limit: usize) -> Result<Vec<u8>, AdminError> {
    let mut body = Vec::new();
    loop {
        match crate::listen::read_request_body(session).await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    session.set_keepalive(None);
                    return Err(AdminError::BodyTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                session.set_keepalive(None);
                return Err(AdminError::BodyUnreadable);
            }
        }
    }
}

/// Every admin answer, error or not, with `Cache-Control: no-store`.
fn to_response(reply: Reply) -> Response<Vec<u8>> {
    let mut b = Response::builder()
        .status(reply.status)
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::CONTENT_LENGTH, reply.body.len());
    if !reply.body.is_empty() {
        b = b.header(http::header::CONTENT_TYPE, reply.content_type);
    }
    for (name, value) in reply.headers {
        b = b.header(name, value);
    }
    if let Some(allow) = reply.allow {
        b = b.header(http::header::ALLOW, allow);
    }
    if let Some(secs) = reply.retry_after {
        b = b.header(http::header::RETRY_AFTER, secs);
    }
    b.body(reply.body).unwrap_or_else(|_| {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
