//! What the proxy listener answers itself rather than forward: the token
//! and revocation endpoints (dispatched to [`crate::oauth::endpoint`]), the
//! authorization server metadata, and whoami. Served after the request
//! safety checks, never matched against a route.

use std::net::IpAddr;
use std::time::Instant;

use http::header;
use pingora::http::RequestHeader;
use pingora::prelude::Result;
use pingora::protocols::http::ServerSession as Session;
use secrecy::ExposeSecret;
use serde_json::json;
use time::OffsetDateTime;

use crate::authorize::{self, Bearer, Denial, DenyReason, RequestFacts};
use crate::metrics::Metrics;
use crate::model::TokenRecord;
use crate::oauth::endpoint::OAuthInput;
use crate::oauth::{OAuthResponse, MAX_BODY_BYTES};
use crate::secret::{looks_like_access_token, token_hash};

use super::ctx::Ctx;
use super::gateway::Gateway;
use super::headers::{expects_continue, X_FORWARDED_FOR};
use super::reply;

pub(crate) const TOKEN_PATH: &str = "/api/auth/oauth2/token";
pub(crate) const REVOKE_PATH: &str = "/api/auth/oauth2/revoke";
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub(crate) const WHOAMI_PATH: &str = "/api/v1/service-account/whoami";

/// A built-in endpoint.
#[derive(Clone, Copy)]
pub(super) enum Builtin {
    Token,
    Revoke,
    Metadata,
    Whoami,
}

impl Builtin {
    /// The endpoint at this (normalised) path, if any.
    pub(super) fn of(path: &str) -> Option<Builtin> {
        match path {
            TOKEN_PATH => Some(Builtin::Token),
            REVOKE_PATH => Some(Builtin::Revoke),
            METADATA_PATH => Some(Builtin::Metadata),
            WHOAMI_PATH => Some(Builtin::Whoami),
            _ => None,
        }
    }

    /// Its name in the access log.
    fn name(self) -> &'static str {
        match self {
            Builtin::Token => "token",
            Builtin::Revoke => "revoke",
            Builtin::Metadata => "metadata",
            Builtin::Whoami => "whoami",
        }
    }
}

/// A 200 JSON answer of a built-in endpoint.
fn json(status: u16, value: serde_json::Value) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    (
        status,
        vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ],
        value.to_string().into_bytes(),
    )
}

/// Reads the request body up to `limit` bytes; `None` when larger.
async fn read_body(session: &mut Session, limit: usize) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(chunk) = crate::listen::read_request_body(session).await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A `Content-Length` that announces the body size, when there is one.
fn declared_length(req: &RequestHeader) -> Option<u64> {
    let value = req.headers.get(header::CONTENT_LENGTH)?;
    std::str::from_utf8(value.as_bytes())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// 405 for a built-in endpoint asked with a method it does not answer.
async fn method_not_allowed(
    session: &mut Session,
    ctx: &mut Ctx,
    allow: &'static str,
) -> Result<bool> {
    let answer = reply::problem(405, "invalid_request", format!("use {allow}"));
    reply::error(session, ctx, &answer, Some(allow)).await
}

impl Gateway {
    /// Serves a built-in endpoint; always answers (`Ok(true)`).
    pub(super) async fn serve_builtin(
        &self,
        endpoint: Builtin,
        session: &mut Session,
        ctx: &mut Ctx,
        facts: &RequestFacts,
    ) -> Result<bool> {
        ctx.builtin = Some(endpoint.name());
        match endpoint {
            Builtin::Token => self.serve_oauth(session, ctx, false).await,
            Builtin::Revoke => self.serve_oauth(session, ctx, true).await,
            Builtin::Metadata | Builtin::Whoami => {
                // Read-only: GET and HEAD (RFC 9110 §9.1), nothing else.
                let method = &session.req_header().method;
                if !matches!(*method, http::Method::GET | http::Method::HEAD) {
                    return method_not_allowed(session, ctx, "GET, HEAD").await;
                }
                if let Builtin::Whoami = endpoint {
                    return self.serve_whoami(session, ctx, facts).await;
                }
                let (s, h, b) = json(200, self.tokens.metadata());
                reply::write(session, ctx, s, h, b).await
            }
        }
    }

    /// Whether a token whose account checks every request's source
    /// (`ip_allowlist_on_requests`) may be used from this request's source.
    fn source_allowed(&self, session: &Session, ctx: &Ctx, rec: &TokenRecord) -> bool {
        let source = ctx.peer.map(|peer| self.source_address(session, peer));
        authorize::check_source(rec, source).is_ok()
    }

    pub(super) fn source_address(&self, session: &Session, peer: IpAddr) -> IpAddr {
        let xff: Vec<&[u8]> = session
            .req_header()
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        super::netaddr::source_address(peer, &xff, &self.proxy.trusted_proxies)
    }

    async fn oauth(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        resp: OAuthResponse,
    ) -> Result<bool> {
        reply::write(session, ctx, resp.status.as_u16(), resp.headers, resp.body).await
    }

    /// The token and revocation endpoints: POST with a form body.
    async fn serve_oauth(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        revoke: bool,
    ) -> Result<bool> {
        if session.req_header().method != http::Method::POST {
            return method_not_allowed(session, ctx, "POST").await;
        }
        let started = Instant::now();
        let declared_too_large = declared_length(session.req_header())
            .is_some_and(|length| length > MAX_BODY_BYTES as u64);
        let body = if declared_too_large {
            None
        } else {
            // The body is read here, not forwarded: an upstream's
            // `100 Continue` will not come, so it is ours to send.
            if expects_continue(session.req_header()) {
                session.write_continue_response().await?;
            }
            read_body(session, MAX_BODY_BYTES).await?
        };
        let Some(body) = body else {
            session.set_keepalive(None);
            let resp = self.tokens.refuse_oversized(revoke, started);
            return self.oauth(session, ctx, resp).await;
        };
        let peer = ctx.peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let source = self.source_address(session, peer);
        let req = session.req_header();
        let content_type = req.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
        let authorization: Vec<&[u8]> = req
            .headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let input = OAuthInput {
            content_type,
            authorization,
            body: &body,
            source,
        };
        let resp = if revoke {
            self.tokens.revoke(input).await
        } else {
            let (resp, outcome) = self.tokens.token_with_outcome(input).await;
            ctx.token_outcome = Some(outcome);
            resp
        };
        self.oauth(session, ctx, resp).await
    }

    async fn serve_whoami(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        facts: &RequestFacts,
    ) -> Result<bool> {
        let reason = match &facts.bearer {
            Bearer::Missing => DenyReason::MissingToken,
            Bearer::Present(t) if looks_like_access_token(t.expose_secret()) => {
                match self.store.get_token(&token_hash(t.expose_secret())).await {
                    Ok(Some(rec))
                        if rec.expires_at > OffsetDateTime::now_utc().unix_timestamp()
                            && !self.source_allowed(session, ctx, &rec) =>
                    {
                        DenyReason::IpNotAllowed
                    }
                    Ok(Some(rec))
                        if rec.expires_at > OffsetDateTime::now_utc().unix_timestamp() =>
                    {
                        let (s, h, b) = json(
                            200,
                            json!({
                                "organizationId": rec.organization_id,
                                "clientId": rec.client_id,
                                "scopes": rec.scopes,
                            }),
                        );
                        return reply::write(session, ctx, s, h, b).await;
                    }
                    Ok(_) => DenyReason::InvalidToken,
                    Err(_) => {
                        Metrics::get().store_error("get_token");
                        DenyReason::StoreUnavailable
                    }
                }
            }
            Bearer::Present(_) => DenyReason::InvalidToken,
            Bearer::Repeated => {
                DenyReason::InvalidRequest(authorize::RequestProblem::RepeatedAuthorization)
            }
        };
        reply::error(session, ctx, &Denial::new(reason, None), None).await
    }
}
