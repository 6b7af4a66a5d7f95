//! The proxy listener's gateway: what the engine ([`super::Engine`]) asks
//! of each request. It is built from the parts it uses (the store, the
//! decision cache, the live policy set, the token endpoint and the proxy's
//! configuration), not from the whole process. Its work is spread over the
//! modules beside it: `admit` (facts and decision), `builtin` (what it
//! answers itself), `headers` (what is forwarded), `reply` (its own
//! answers).

use std::future::Future;
use std::sync::Arc;

use http::{header, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::{Error, Result};
use pingora::protocols::http::ServerSession as Session;
use pingora::upstreams::peer::HttpPeer;

use crate::cache::DecisionCache;
use crate::config::{IdentityHeaders, ProxyConfig};
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::oauth::endpoint::TokenEndpoint;
use crate::policy::Route;
use crate::runtime::Live;
use crate::store::Store;

use super::ctx::{Ctx, TunnelGuard};
use super::engine::Gate;
use super::headers::HeaderRules;
use super::reply;

pub(crate) struct Gateway {
    pub(super) store: Arc<dyn Store>,
    pub(super) cache: Arc<DecisionCache>,
    /// The policy set and upstream table, swapped whole on reload.
    pub(super) live: Arc<Live>,
    /// The token and revocation endpoints, served on this listener.
    pub(super) tokens: Arc<TokenEndpoint>,
    pub(super) proxy: ProxyConfig,
    pub(super) headers: HeaderRules,
    /// Rate limits and quotas (`crate::limits`).
    pub(super) limiter: Arc<Limiter>,
}

impl Gateway {
    /// Fails on an identity header name `http` refuses: the configuration
    /// has checked them, so that stops the start-up, never a request.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        cache: Arc<DecisionCache>,
        live: Arc<Live>,
        tokens: Arc<TokenEndpoint>,
        proxy: &ProxyConfig,
        identity_headers: &IdentityHeaders,
    ) -> std::result::Result<Gateway, String> {
        Ok(Gateway {
            limiter: Arc::new(Limiter::new(store.clone(), Default::default())),
            store,
            cache,
            live,
            tokens,
            proxy: proxy.clone(),
            headers: HeaderRules::new(identity_headers, proxy)?,
        })
    }

    /// The limiter the admin API shares (it forgets an account's settings
    /// when they change).
    pub(crate) fn with_limiter(mut self, limiter: Arc<Limiter>) -> Gateway {
        self.limiter = limiter;
        self
    }
}

/// The request's life, driven by the engine: `admit` decides (or answers
/// itself), `upstream_request` builds what is forwarded, `fail` answers a
/// request that could not be forwarded, and `log` writes the access line.
impl Gate for Gateway {
    type Ctx = Ctx;
    type Guard = TunnelGuard;

    fn admit(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> impl Future<Output = Result<bool>> + Send {
        Gateway::admit(self, session, ctx)
    }

    fn upstream_peer(&self, ctx: &Ctx) -> Option<HttpPeer> {
        ctx.upstream.as_ref().and_then(|u| u.peer())
    }

    /// The request to send upstream, built from the one received: its
    /// headers as [`HeaderRules::for_upstream`] makes them, then the target
    /// to forward.
    ///
    /// The header map is edited directly: pingora's `insert_header` parses
    /// every name again and keeps a second map of the names' original case.
    /// Header names go upstream in lower case (the common ones
    /// title-cased), as from Envoy or HAProxy: field names are
    /// case-insensitive (RFC 9110 §5.1).
    fn upstream_request(
        &self,
        received: &RequestHeader,
        has_body: bool,
        ctx: &Ctx,
    ) -> Result<RequestHeader> {
        // The target to set after the rebuild, which keeps only the URI: the
        // normalised one, or the received one when the URI does not hold it
        // byte for byte (pingora keeps such targets apart).
        let target: Option<Vec<u8>> = match &ctx.forward_target {
            Some(t) => Some(t.clone().into_bytes()),
            None => {
                let from_uri = received.uri.path_and_query().map(|p| p.as_str().as_bytes());
                (from_uri != Some(received.raw_path())).then(|| received.raw_path().to_vec())
            }
        };
        let mut parts = received.as_owned_parts();
        self.headers.for_upstream(
            &mut parts.headers,
            received.version,
            ctx.peer,
            ctx.request_id_value(),
            ctx.decision.as_ref().and_then(|d| d.identity.as_ref()),
            ctx.tls,
        )?;
        // HTTP/1.0 clients may leave `Host` out, HTTP/1.1 ones may not (they
        // got 400): the request goes upstream as HTTP/1.1, so it names the
        // upstream itself, as configured.
        if received.version == http::Version::HTTP_10 && !parts.headers.contains_key(header::HOST) {
            if let Some(upstream) = &ctx.upstream {
                parts.headers.insert(header::HOST, upstream.host.clone());
            }
        }
        // A body whose length is not declared goes chunked (HTTP/1.1).
        let h2_upstream = ctx.upstream.as_ref().is_some_and(|u| u.protocol().is_h2());
        if has_body && !h2_upstream && !parts.headers.contains_key(header::CONTENT_LENGTH) {
            parts.headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        if received.version == http::Version::HTTP_2 {
            // `:authority` is the request's host (RFC 9113 §8.3.1): an
            // HTTP/1.1 upstream gets it as `Host`, and the target without
            // scheme and authority.
            super::h2up::from_h2_request(&mut parts, received.raw_path())?;
        }
        let h2_upstream = ctx.upstream.as_ref().is_some_and(|u| u.protocol().is_h2());
        if h2_upstream {
            super::h2up::to_h2_request(&mut parts, received);
        }
        parts.version = http::Version::HTTP_11;
        let mut upstream = RequestHeader::from(parts);
        if let Some(target) = target {
            upstream.set_raw_path(&target)?;
        }
        Ok(upstream)
    }

    fn fail(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Ctx,
    ) -> impl Future<Output = u16> + Send {
        reply::fail(session, e, ctx)
    }

    fn tunnel_guard(&self, ctx: &mut Ctx) -> Option<TunnelGuard> {
        Gateway::tunnel_guard(self, ctx)
    }

    fn tunnel_due(guard: &mut TunnelGuard) -> impl Future<Output = ()> + Send {
        guard.due()
    }

    fn still_allowed(&self, guard: &TunnelGuard) -> impl Future<Output = bool> + Send {
        Gateway::still_allowed(self, guard)
    }

    fn request_id(ctx: &Ctx) -> &str {
        ctx.request_id()
    }

    fn request_id_value(ctx: &Ctx) -> HeaderValue {
        ctx.request_id_value()
    }

    /// The access log line and the upstream response count.
    fn log(&self, session: &Session, ctx: &Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.local_status)
            .unwrap_or(0);
        let decision = ctx.decision.as_ref();
        let route = decision.map_or("-", |d| d.route_label());
        if ctx.upstream.is_some() && ctx.local_status.is_none() && status > 0 {
            Metrics::get().count_upstream_response(
                decision
                    .and_then(|d| d.route.as_deref())
                    .map(Route::metric_label),
                status,
            );
        }
        let caller = decision.and_then(|d| d.caller.as_deref());
        // Microsecond resolution is plenty and keeps the line short.
        let latency_ms = ctx
            .started
            .map_or(0.0, |s| s.elapsed().as_micros() as f64 / 1000.0);
        tracing::info!(
            target: "access",
            request_id = %ctx.request_id(),
            method = %session.req_header().method,
            // `%`: unquoted in the text format, plain strings in JSON.
            route = %route,
            builtin = %ctx.builtin.unwrap_or("-"),
            decision = %decision.map_or("-", |d| d.outcome.decision()),
            reason = %decision.map_or(ctx.token_outcome.unwrap_or("-"), |d| d.outcome.reason()),
            status,
            organization_id = %caller.map_or("-", |c| c.organization_id.as_str()),
            client_id = %caller.map_or("-", |c| c.client_id.as_str()),
            upstream = %ctx.upstream.as_ref().map_or("-", |u| u.name.as_str()),
            limit = %ctx.limit.map_or("-", |v| v.log_label()),
            latency_ms,
            "request"
        );
    }
}
