//! Answers the proxy listener writes itself. Every JSON error it answers,
//! a denial, a 405 of a built-in endpoint or a request that could not be
//! forwarded, goes out through [`error`].

use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;
use pingora::prelude::{Error, ErrorType, Result};
use pingora::protocols::http::ServerSession as Session;

use crate::authorize::Denial;

use super::ctx::Ctx;

/// Writes a whole answer: `Content-Length` (unless `headers` has one) and
/// `x-request-id` are added. Returns `Ok(true)`: the request is answered.
pub(super) async fn write(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 3))?;
    let mut has_length = false;
    for (name, value) in headers {
        has_length |= name.eq_ignore_ascii_case("content-length");
        resp.insert_header(name, value)?;
    }
    if !has_length {
        resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    }
    resp.insert_header("x-request-id", ctx.request_id_value())?;
    ctx.local_status = Some(status);
    session.write_response_header(Box::new(resp)).await?;
    if !body.is_empty() {
        session.write_response_body(Bytes::from(body), true).await?;
    }
    Ok(true)
}

/// The one JSON error answer of the proxy listener: the status,
/// `{"error":…,"error_description":…}`, `Content-Type: application/json`,
/// `Cache-Control: no-store`, `WWW-Authenticate` and `Retry-After` when
/// the denial carries them ([`Denial::headers`]), and `Allow` when given
/// (a 405).
pub(super) async fn error(
    session: &mut Session,
    ctx: &mut Ctx,
    denial: &Denial,
    allow: Option<&'static str>,
) -> Result<bool> {
    if ctx.grpc {
        return super::h2up::grpc_error(session, ctx, denial).await;
    }
    let mut headers = denial.headers();
    if let Some(allow) = allow {
        headers.push(("allow", allow.into()));
    }
    write(session, ctx, denial.status, headers, denial.body()).await
}

/// The 429 of a limit: the denial's body with `Retry-After`,
/// `RateLimit-Policy` and `RateLimit` (`crate::limits::refusal_headers`).
pub(super) async fn limited(
    session: &mut Session,
    ctx: &mut Ctx,
    denial: &Denial,
    refusal: &crate::limits::Refusal,
) -> Result<bool> {
    if ctx.grpc {
        // A gRPC call gets RESOURCE_EXHAUSTED with the wait in Retry-After.
        let retry = crate::limits::retry_after_secs(refusal);
        let denial = Denial {
            retry_after: Some(u32::try_from(retry).unwrap_or(u32::MAX)),
            ..denial.clone()
        };
        return super::h2up::grpc_error(session, ctx, &denial).await;
    }
    let mut headers = denial.headers();
    headers.retain(|(name, _)| *name != "retry-after");
    headers.extend(crate::limits::refusal_headers(refusal));
    write(session, ctx, denial.status, headers, denial.body()).await
}

/// An error answer that is not a decision's denial: no challenge, no
/// retry hint.
pub(super) fn problem(status: u16, error: &'static str, description: String) -> Denial {
    Denial {
        status,
        error,
        description,
        www_authenticate: None,
        retry_after: None,
    }
}

/// Answers a request that could not be forwarded: 504 when the upstream
/// was too slow, 400 when the request could not be read, 502 otherwise.
/// Returns the status written (0 if none could be).
pub(super) async fn fail(session: &mut Session, e: &Error, ctx: &mut Ctx) -> u16 {
    let (status, error, description) = match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => (
            504,
            "gateway_timeout",
            "the upstream did not answer in time",
        ),
        ErrorType::HTTPStatus(code) if *code >= 400 => (
            *code,
            "invalid_request",
            "the request could not be processed",
        ),
        _ if matches!(e.esource(), pingora::ErrorSource::Downstream) => {
            (400, "invalid_request", "the request could not be read")
        }
        _ => (502, "bad_gateway", "the upstream could not be reached"),
    };
    tracing::warn!(
        request_id = %ctx.request_id(),
        method = %session.req_header().method,
        error_type = ?e.etype(),
        error = %e,
        "proxying failed"
    );
    let answer = problem(status, error, description.into());
    match self::error(session, ctx, &answer, None).await {
        Ok(_) => status,
        Err(_) => 0,
    }
}
