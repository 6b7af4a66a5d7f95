//! The per-request entry of the proxy listener: gathers the request's
//! facts, serves the built-in endpoints, plans the decision (route match,
//! what must be loaded), looks the bearer up ([`super::lookup`]) and
//! decides; a denial is answered here, an allowed request is left in
//! [`Ctx`] for the engine to forward. A WebSocket tunnel's decision is made
//! again here too.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header;
use http::HeaderValue;
use pingora::prelude::Result;
use pingora::protocols::http::ServerSession as Session;
use time::OffsetDateTime;

use crate::authorize::{
    self, Decision, Denial, DenyReason, HeaderFacts, Lookup, Outcome, Plan, RequestFacts,
};
use crate::cache::DecisionCache;
use crate::limits::{By, Exceeded, Refusal, Verdict};
use crate::metrics::Metrics;
use crate::model::AccessFacts;
use crate::policy::Route;
use crate::runtime::Runtime;
use crate::store::Store;

use super::builtin::Builtin;
use super::ctx::{Ctx, Recheck, TunnelGuard};
use super::gateway::Gateway;
use super::headers::X_REQUEST_ID;
use super::reply;

/// Up to the first two values of a header: enough to tell none, one and
/// repeated apart without collecting them.
pub(crate) fn first_two<'a>(
    values: http::header::GetAll<'a, HeaderValue>,
) -> ([&'a [u8]; 2], usize) {
    let mut it = values.iter().map(HeaderValue::as_bytes);
    match (it.next(), it.next()) {
        (None, _) => ([b"", b""], 0),
        (Some(a), None) => ([a, b""], 1),
        (Some(a), Some(b)) => ([a, b], 2),
    }
}

/// A fresh request id as a header value.
fn new_request_id() -> HeaderValue {
    // Ids are URL-safe ASCII: a valid header value.
    HeaderValue::from_maybe_shared(Bytes::from(crate::ids::new_id()))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The request target to decide on: pingora's, unless the request line
/// holds a `#`. pingora's URI parser drops a fragment silently, and RFC
/// 9112's request-target has none: then the target as the line carries it,
/// which the normaliser refuses.
fn received_target<'a>(session: &Session, parsed: &'a [u8]) -> Cow<'a, [u8]> {
    let Some(h1) = session.as_http1() else {
        return Cow::Borrowed(parsed);
    };
    let raw = h1.get_headers_raw_bytes();
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    if !line.contains(&b'#') {
        return Cow::Borrowed(parsed);
    }
    // `METHOD SP request-target SP HTTP-version`: pingora has already
    // percent-encoded any space inside the target.
    match line.trim_ascii_end().split(|&b| b == b' ').nth(1) {
        Some(target) => Cow::Owned(target.to_vec()),
        None => Cow::Borrowed(parsed),
    }
}

/// Whether the request head, as received on an HTTP/1 connection, has a
/// field with this (lower-case) name.
fn raw_head_has(session: &Session, name: &str) -> bool {
    let Some(h1) = session.as_http1() else {
        return false;
    };
    let raw = h1.get_headers_raw_bytes();
    raw.split(|&b| b == b'\n').skip(1).any(|line| {
        line.iter().position(|&b| b == b':').is_some_and(|colon| {
            line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        })
    })
}

fn valid_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn decide_with(
    load: &authorize::Load,
    facts: &RequestFacts,
    loaded: std::result::Result<AccessFacts, ()>,
) -> Decision {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    match loaded {
        Err(()) => authorize::decide(
            &load.route,
            facts,
            Lookup::Unavailable,
            load.environment_id.as_ref().map(|_| Lookup::Unavailable),
            now,
        ),
        Ok(f) => {
            let token = match &f.token {
                Some(t) => Lookup::Found(t),
                None => Lookup::NotFound,
            };
            let env = load
                .environment_id
                .as_ref()
                .map(|_| match f.environment.as_deref() {
                    Some(found) => Lookup::Found(found),
                    None => Lookup::NotFound,
                });
            authorize::decide(&load.route, facts, token, env, now)
        }
    }
}

/// What the limit check does to the decision: a refusal denies (429, or
/// 503 when the store could not answer and limits fail closed); over a
/// report-mode limit an allowed request is recorded as `report_deny`.
pub(crate) fn apply_limit(decision: &mut Decision, verdict: Verdict) {
    let reason = match verdict {
        Verdict::Limited(Refusal {
            exceeded: Exceeded::Rate,
            ..
        }) => DenyReason::RateLimited,
        Verdict::Limited(_) => DenyReason::QuotaExceeded,
        Verdict::Unavailable => DenyReason::StoreUnavailable,
        Verdict::ReportLimited(_) => {
            if decision.outcome == Outcome::Allow {
                decision.outcome = Outcome::ReportDeny(DenyReason::RateLimited);
            }
            return;
        }
        Verdict::Unlimited | Verdict::Ok | Verdict::FailedOpen => return,
    };
    decision.outcome = Outcome::Deny(reason);
}

impl Gateway {
    /// Gathers the request facts, serves the built-in endpoints and decides.
    /// Answers are written from boxed futures: inline, the largest of them
    /// would size the future of every request, and that future is copied
    /// into a new box per request.
    /// `Ok(true)`: answered here (a denial or a built-in endpoint);
    /// `Ok(false)`: forward, with the decision and upstream in `ctx`.
    pub(super) async fn admit(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        ctx.peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(connection) = crate::listen::connection() {
            ctx.tls = connection.tls;
            ctx.client_subject = connection.client_subject.clone();
        }
        // gRPC runs over HTTP/2 only; an HTTP/1 request that says it is
        // gRPC is answered as any other HTTP request.
        ctx.grpc = session.is_http2() && super::h2up::is_grpc(session.req_header());
        if session.req_header().method == http::Method::CONNECT {
            // Never a tunnel: whatever follows the head is not another request.
            session.set_keepalive(None);
        }
        let req = session.req_header();
        ctx.request_id = Some(match req.headers.get(X_REQUEST_ID) {
            Some(v) if valid_request_id(v.as_bytes()) => v.clone(),
            _ => new_request_id(),
        });
        let rt = self.live.snapshot();
        ctx.runtime = Some(rt.clone());

        let (authorization, count) = first_two(req.headers.get_all(header::AUTHORIZATION));
        let transfer_encoding = req.headers.contains_key(header::TRANSFER_ENCODING);
        let facts = RequestFacts::gather(
            req.method.as_str(),
            &received_target(session, req.raw_path()),
            HeaderFacts {
                authorization: &authorization[..count],
                // Only the two together matter (a length conflict). pingora
                // drops Content-Length when Transfer-Encoding is present, so
                // then the raw head is searched for it; most requests have
                // neither and skip that scan.
                content_length: transfer_encoding
                    && (req.headers.contains_key(header::CONTENT_LENGTH)
                        || raw_head_has(session, "content-length")),
                transfer_encoding,
                host_missing: req.version == http::Version::HTTP_11
                    && !req.headers.contains_key(header::HOST),
            },
            self.proxy.allow_semicolon_in_path,
        );

        let m = Metrics::get();
        // Request safety comes first, for the built-in endpoints too.
        let path = match authorize::check_request(&facts) {
            Ok(target) => target.path(),
            Err(reason) => {
                let d = Decision {
                    route: None,
                    outcome: Outcome::Deny(reason),
                    identity: None,
                    caller: None,
                };
                m.count_decision(None, "deny", reason.as_str());
                session.set_keepalive(None);
                let denial = Denial::new(reason, None);
                ctx.decision = Some(d);
                return Box::pin(reply::error(session, ctx, &denial, None)).await;
            }
        };
        if let Some(endpoint) = Builtin::of(path) {
            // The built-in endpoints answer in HTTP/JSON whatever was asked.
            ctx.grpc = false;
            return Box::pin(self.serve_builtin(endpoint, session, ctx, &facts)).await;
        }

        let started = Instant::now();
        let Decided {
            mut decision,
            load: loaded_with,
        } = decide_request(self.store.as_ref(), &self.cache, &facts, &rt, || {
            ctx.peer.map(|peer| self.source_address(session, peer))
        })
        .await;
        let verdict = self.limit(session, ctx, &decision).await;
        apply_limit(&mut decision, verdict);
        m.authz_duration.observe(started.elapsed().as_secs_f64());
        m.count_decision(
            decision.route.as_deref().map(Route::metric_label),
            decision.outcome.decision(),
            decision.outcome.reason(),
        );
        tracing::debug!(
            request_id = %ctx.request_id(),
            route = decision.route_label(),
            decision = decision.outcome.decision(),
            reason = decision.outcome.reason(),
            "authorization decided"
        );
        if let Outcome::ReportDeny(reason) = decision.outcome {
            tracing::warn!(
                request_id = %ctx.request_id(),
                route = decision.route_label(),
                reason = reason.as_str(),
                "report mode: would deny; forwarding"
            );
        }
        if let Some(denial) = decision.denial() {
            ctx.decision = Some(decision);
            if let Verdict::Limited(refusal) = verdict {
                return Box::pin(reply::limited(session, ctx, &denial, &refusal)).await;
            }
            return Box::pin(reply::error(session, ctx, &denial, None)).await;
        }
        let Some(route) = decision.route.clone() else {
            // A forwarding decision always has a route; fail closed if not.
            ctx.decision = Some(decision);
            let denial = Denial::new(DenyReason::NoRoute, None);
            return Box::pin(reply::error(session, ctx, &denial, None)).await;
        };
        let forward_path = route.forward_path(path);
        let query = facts.target.as_ref().ok().and_then(|t| t.query());
        // Most targets arrive normalised: then the upstream request (a copy
        // of the one received) already carries the target to forward.
        let raw = session.req_header().raw_path();
        let unchanged = match query {
            Some(q) => {
                raw.len() == forward_path.len() + 1 + q.len()
                    && raw.starts_with(forward_path.as_bytes())
                    && raw[forward_path.len()] == b'?'
                    && raw.ends_with(q.as_bytes())
            }
            None => raw == forward_path.as_bytes(),
        };
        ctx.forward_target = (!unchanged).then(|| match query {
            Some(q) => format!("{forward_path}?{q}"),
            None => forward_path.to_string(),
        });
        ctx.upstream = rt.upstreams.get(&route.upstream).cloned();
        ctx.decision = Some(decision);
        if let Some(load) = loaded_with {
            if session.is_upgrade_req() {
                ctx.recheck = Some(Box::new(Recheck { load, facts }));
            }
        }
        Ok(false)
    }

    /// The guard of a tunnel about to open: `None` for one no token opened
    /// (a public route).
    pub(super) fn tunnel_guard(&self, ctx: &mut Ctx) -> Option<TunnelGuard> {
        let recheck = ctx.recheck.take()?;
        let expires_at = ctx
            .decision
            .as_ref()
            .and_then(|d| d.identity.as_ref())
            .map_or(0, |id| id.token.expires_at);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        // At most a day away (the longest token lifetime), so that a record
        // with an absurd expiry cannot overflow the timer; the periodic
        // check covers the rest.
        let left = u64::try_from(expires_at.saturating_sub(now))
            .unwrap_or(0)
            .min(86_400);
        let cache = &self.cache;
        // Without a cache, changes elsewhere are seen only by asking the
        // store: every half second (the cache's default TTL).
        let every = match cache.ttl() {
            ttl if ttl.is_zero() => std::time::Duration::from_millis(500),
            ttl => ttl,
        };
        Some(TunnelGuard {
            recheck,
            changes: Some(cache.changes()),
            every,
            expires: tokio::time::Instant::now() + std::time::Duration::from_secs(left),
        })
    }

    /// Whether the tunnel's request would still be allowed now. A store
    /// that cannot answer denies, as for a request.
    pub(super) async fn still_allowed(&self, guard: &TunnelGuard) -> bool {
        let Recheck { load, facts } = guard.recheck.as_ref();
        let loaded = load_access(self.store.as_ref(), &self.cache, load).await;
        decide_with(load, facts, loaded).denial().is_none()
    }

    /// The limit check of a request the decision forwards, with the
    /// source address when the route limits by it.
    async fn limit(&self, session: &Session, ctx: &mut Ctx, decision: &Decision) -> Verdict {
        let route = match decision.route.as_deref() {
            Some(route) if decision.forwards() => route,
            _ => return Verdict::Unlimited,
        };
        let source = match (&route.rate_limit, ctx.peer) {
            (Some(rl), Some(peer)) if rl.by == By::Source => {
                Some(self.source_address(session, peer))
            }
            _ => None,
        };
        let verdict = self
            .limiter
            .check_request(route, decision.caller.as_deref(), source)
            .await;
        ctx.limit = Some(verdict);
        verdict
    }
}

/// Phase 2 inputs: from the decision cache, or one store call.
async fn load_access(
    store: &dyn Store,
    cache: &DecisionCache,
    load: &authorize::Load,
) -> std::result::Result<AccessFacts, ()> {
    super::lookup::lookup(
        store,
        cache,
        &load.token_hash,
        load.environment_id.as_deref(),
    )
    .await
    .map_err(|e| {
        Metrics::get().store_error("lookup_access");
        tracing::warn!(error = %e, "authorization look-up failed; denying");
    })
}

/// A decision, and the look-up it needed (kept to decide again, as a
/// tunnel's guard does).
pub(crate) struct Decided {
    pub(crate) decision: Decision,
    pub(crate) load: Option<authorize::Load>,
}

/// Steps 2 to 6 of the decision (docs/contract.md §5.2) for a request whose
/// safety (step 1) has been checked: route, bearer, scope, workspace. The
/// one pipeline of the proxy listener and the decision listener, so that
/// both decide alike.
pub(crate) async fn decide_request(
    store: &dyn Store,
    cache: &DecisionCache,
    facts: &RequestFacts,
    rt: &Runtime,
    source: impl FnOnce() -> Option<IpAddr>,
) -> Decided {
    match authorize::plan(facts, &rt.policy) {
        Plan::Decided(decision) => Decided {
            decision,
            load: None,
        },
        Plan::Load(load) => {
            let loaded = load_access(store, cache, &load).await;
            // Only a token whose account checks every request's source
            // (`ip_allowlist_on_requests`) costs the address resolution; no
            // address known leaves the check to deny.
            let checks_source = loaded.as_ref().is_ok_and(|f| {
                f.token
                    .as_ref()
                    .is_some_and(|t| t.allowed_sources.is_some())
            });
            if checks_source {
                if let Some(address) = source() {
                    let _ = facts.source.set(address);
                }
            }
            Decided {
                decision: decide_with(&load, facts, loaded),
                load: Some(load),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_two_values_tell_none_one_and_repeated_apart() {
        let mut h = http::HeaderMap::new();
        assert_eq!(first_two(h.get_all(header::AUTHORIZATION)).1, 0);
        h.append(header::AUTHORIZATION, HeaderValue::from_static("a"));
        let (v, n) = first_two(h.get_all(header::AUTHORIZATION));
        assert_eq!(&v[..n], &[b"a".as_slice()]);
        h.append(header::AUTHORIZATION, HeaderValue::from_static("b"));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("c"));
        let (v, n) = first_two(h.get_all(header::AUTHORIZATION));
        assert_eq!(&v[..n], &[b"a".as_slice(), b"b".as_slice()]);
    }
}
