//! The proxy listener's decisions, for [`crate::proxy::Engine`]: gathers
//! request facts, serves the built-in OAuth endpoints, asks `authorize` for
//! the decision (loading the token, environment and membership from the
//! store in one call), answers denials itself and builds the request an
//! allowed one sends upstream, with identity headers.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, Entry};
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{Error, ErrorType, Result};
use pingora::protocols::http::ServerSession as Session;
use secrecy::ExposeSecret;
use serde_json::json;
use time::OffsetDateTime;

use crate::authorize::{
    self, Bearer, Decision, Denial, DenyReason, HeaderFacts, Identity, Lookup, Outcome, Plan,
    RequestFacts,
};
use crate::cache::EnvAccess;
use crate::config::canonical_header;
use crate::metrics::Metrics;
use crate::model::{EnvironmentRef, TokenRecord};
use crate::oauth::endpoint::OAuthInput;
use crate::oauth::{OAuthResponse, MAX_BODY_BYTES};
use crate::proxy::lookup::Access;
use crate::proxy::upstream::Upstream;
use crate::runtime::Runtime;
use crate::secret::{looks_like_access_token, token_hash};
use crate::server::App;

pub const TOKEN_PATH: &str = "/api/auth/oauth2/token";
pub const REVOKE_PATH: &str = "/api/auth/oauth2/revoke";
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const WHOAMI_PATH: &str = "/api/v1/service-account/whoami";

/// Header names looked up on every request, parsed once: a `&str` name is
/// parsed again on each look-up.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

pub struct Gateway {
    app: Arc<App>,
    /// Canonical (lower case, `-`) names of the identity headers: any
    /// incoming header that canonicalises to one of these is removed.
    identity_names: Vec<String>,
    /// Canonical names stripped from untrusted peers: the forwarding and
    /// override headers an upstream may take an address, host, URL or
    /// method from, less `proxy.pass_override_headers`.
    untrusted_names: Vec<&'static str>,
    /// Bit `n` set when some name of `untrusted_names` is `n` bytes long:
    /// most headers are ruled out by their length alone.
    untrusted_lengths: u64,
    /// The configured identity header names, built once: inserting a
    /// `Bytes` name costs a reference count, a `String` an allocation.
    inject: InjectNames,
}

struct InjectNames {
    organization_id: HeaderName,
    client_id: HeaderName,
    service_account_id: HeaderName,
    scopes: HeaderName,
    workspace_id: HeaderName,
    workspace_role: HeaderName,
    environment_id: HeaderName,
}

impl InjectNames {
    /// The configuration has checked the names; a name `http` refuses
    /// anyway stops the start-up, never a request.
    fn new(names: &crate::config::IdentityHeaders) -> std::result::Result<InjectNames, String> {
        let h = |s: &String| {
            HeaderName::from_bytes(s.as_bytes())
                .map_err(|_| format!("identity header {s:?} is not a valid header name"))
        };
        Ok(InjectNames {
            organization_id: h(&names.organization_id)?,
            client_id: h(&names.client_id)?,
            service_account_id: h(&names.service_account_id)?,
            scopes: h(&names.scopes)?,
            workspace_id: h(&names.workspace_id)?,
            workspace_role: h(&names.workspace_role)?,
            environment_id: h(&names.environment_id)?,
        })
    }
}

/// Per-request state, kept from [`Gateway::admit`] to [`Gateway::log`].
#[derive(Default)]
pub struct Ctx {
    started: Option<Instant>,
    /// Built once: the upstream request and the response share it.
    request_id: Option<HeaderValue>,
    runtime: Option<Arc<Runtime>>,
    decision: Option<Decision>,
    /// Normalised path (minus `strip_prefix`) and the raw query, when
    /// that differs from the target as received.
    forward_target: Option<String>,
    pub(crate) upstream: Option<Arc<Upstream>>,
    /// A built-in endpoint served by tollgate itself.
    builtin: Option<&'static str>,
    /// Status of an answer tollgate wrote itself.
    local_status: Option<u16>,
    peer: Option<IpAddr>,
    /// For a WebSocket upgrade allowed by a token: what the decision
    /// needs to be made again while the tunnel is open.
    recheck: Option<Box<Recheck>>,
}

/// A decision kept to be made again: its look-up and the request's facts.
pub(crate) struct Recheck {
    load: authorize::Load,
    facts: RequestFacts,
}

/// What keeps a WebSocket tunnel opened with a token honest: the decision is
/// made again when the token expires, at once when any invalidation (a
/// revocation, here or published by another instance) reaches the cache,
/// and every `cache.ttl_ms` in case one was missed; a denial closes it.
pub(crate) struct TunnelGuard {
    recheck: Box<Recheck>,
    changes: Option<tokio::sync::watch::Receiver<u64>>,
    every: std::time::Duration,
    expires: tokio::time::Instant,
}

impl TunnelGuard {
    /// Resolves when the decision is due again.
    pub(crate) async fn due(&mut self) {
        let next = self.expires.min(tokio::time::Instant::now() + self.every);
        let Some(changes) = self.changes.as_mut() else {
            tokio::time::sleep_until(next).await;
            return;
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // The cache is gone (shutting down): the timers remain.
                    self.changes = None;
                }
            }
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

impl Ctx {
    /// The request id for log lines.
    pub(crate) fn request_id(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The request id header value (a reference count, not a copy).
    pub(crate) fn request_id_value(&self) -> HeaderValue {
        self.request_id
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static(""))
    }
}

/// Up to the first two values of a header: enough to tell none, one and
/// repeated apart without collecting them.
fn first_two<'a>(values: http::header::GetAll<'a, HeaderValue>) -> ([&'a [u8]; 2], usize) {
    let mut it = values.iter().map(HeaderValue::as_bytes);
    match (it.next(), it.next()) {
        (None, _) => ([b"", b""], 0),
        (Some(a), None) => ([a, b""], 1),
        (Some(a), Some(b)) => ([a, b], 2),
    }
}

/// Appends an address as `Display` writes it; IPv4, the common case,
/// without the formatting machinery.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
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

/// Whether a received header name is `canon` (lower case, `-`) in any case
/// and with `_` for `-`; compared without allocating.
fn same_header_name(canon: &str, name: &str) -> bool {
    canon.len() == name.len()
        && canon.bytes().zip(name.bytes()).all(|(c, n)| {
            let n = if n == b'_' {
                b'-'
            } else {
                n.to_ascii_lowercase()
            };
            c == n
        })
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

impl Gateway {
    pub fn new(app: Arc<App>) -> std::result::Result<Gateway, String> {
        let identity_names = app
            .config
            .identity_headers
            .all()
            .iter()
            .map(|n| canonical_header(n))
            .collect();
        let inject = InjectNames::new(&app.config.identity_headers)?;
        let untrusted_names: Vec<&'static str> = ["forwarded", "x-real-ip"]
            .into_iter()
            .chain(crate::config::OVERRIDE_HEADERS.iter().copied())
            .filter(|n| {
                !app.config
                    .proxy
                    .pass_override_headers
                    .iter()
                    .any(|p| p == n)
            })
            .collect();
        let untrusted_lengths = untrusted_names.iter().fold(0u64, |bits, n| {
            bits | 1u64.checked_shl(n.len() as u32).unwrap_or(0)
        });
        Ok(Gateway {
            app,
            identity_names,
            untrusted_names,
            untrusted_lengths,
            inject,
        })
    }

    /// A header the client must not set: an identity header in any case or
    /// `_` form; an `_` form of `X-Forwarded-For`/`-Proto` (CGI-style
    /// upstreams read `X_Forwarded_For` as `X-Forwarded-For`, and tollgate
    /// builds only the latter); and, unless the peer is a trusted proxy,
    /// the other headers upstreams take a client's address or host from.
    fn is_spoofed_header(&self, name: &str, trusted: bool) -> bool {
        self.identity_names
            .iter()
            .any(|canon| same_header_name(canon, name))
            || (name.contains('_')
                && ["x-forwarded-for", "x-forwarded-proto"]
                    .iter()
                    .any(|canon| same_header_name(canon, name)))
            || (!trusted
                && name.len() < 64
                && self.untrusted_lengths & (1u64 << name.len()) != 0
                && self
                    .untrusted_names
                    .iter()
                    .any(|canon| same_header_name(canon, name)))
    }

    /// The forwarded request's headers: client-sent identity headers (and
    /// forwarding headers an untrusted client set) and `Authorization`
    /// (unless forwarded) removed, then the identity, request id and
    /// X-Forwarded-*. Hop-by-hop fields are already gone
    /// ([`strip_hop_by_hop`]).
    fn rewrite_headers(&self, headers: &mut http::HeaderMap, ctx: &Ctx) -> Result<()> {
        let trusted = ctx.peer.is_some_and(|p| {
            self.app
                .config
                .proxy
                .trusted_proxies
                .iter()
                .any(|n| n.contains(&p))
        });
        // Client-sent identity headers go first, in any case or `_` form.
        // Names are only copied when there is one to remove.
        if headers
            .keys()
            .any(|k| self.is_spoofed_header(k.as_str(), trusted))
        {
            let spoofed: Vec<HeaderName> = headers
                .keys()
                .filter(|k| self.is_spoofed_header(k.as_str(), trusted))
                .cloned()
                .collect();
            for name in spoofed {
                headers.remove(&name);
            }
        }
        if !self.app.config.proxy.forward_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        // Room for what is added, so that the map grows at most once. pingora
        // reads at most 256 header lines, far below the map's size limit
        // (32,768), so neither this nor the inserts below can fail.
        let _ = headers.try_reserve(10);
        if let Some(identity) = ctx.decision.as_ref().and_then(|d| d.identity.as_ref()) {
            insert_identity(headers, &self.inject, identity)?;
        }
        headers.insert(X_REQUEST_ID, ctx.request_id_value());
        // Several X-Forwarded-For lines are one comma-separated list (RFC 9110 §5.3).
        // (Entries: one look-up of each name for reading and writing it.)
        let mut hops = String::new();
        let xff = headers.entry(X_FORWARDED_FOR);
        if let Entry::Occupied(received) = &xff {
            for v in received.iter() {
                let v = String::from_utf8_lossy(v.as_bytes());
                let v = v.trim();
                if !v.is_empty() {
                    hops.push_str(v);
                    hops.push_str(", ");
                }
            }
        }
        if let Some(peer) = ctx.peer {
            push_ip(&mut hops, peer);
        }
        let hops = value(hops)?;
        match xff {
            Entry::Occupied(mut received) => {
                received.insert(hops);
            }
            Entry::Vacant(none) => {
                none.insert(hops);
            }
        }
        let http = HeaderValue::from_static("http");
        match headers.entry(X_FORWARDED_PROTO) {
            Entry::Occupied(_) if trusted => {}
            Entry::Occupied(mut received) => {
                received.insert(http);
            }
            Entry::Vacant(none) => {
                none.insert(http);
            }
        }
        Ok(())
    }

    async fn write(
        &self,
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

    async fn deny(&self, session: &mut Session, ctx: &mut Ctx, denial: &Denial) -> Result<bool> {
        self.write(
            session,
            ctx,
            denial.status,
            denial.headers(),
            denial.body().into_bytes(),
        )
        .await
    }

    async fn oauth(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        resp: OAuthResponse,
    ) -> Result<bool> {
        self.write(session, ctx, resp.status.as_u16(), resp.headers, resp.body)
            .await
    }

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
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > limit {
                return Ok(None);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    fn source_address(&self, session: &Session, peer: IpAddr) -> IpAddr {
        let xff: Vec<&[u8]> = session
            .req_header()
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        crate::proxy::netaddr::source_address(peer, &xff, &self.app.config.proxy.trusted_proxies)
    }

    /// 405 for a built-in endpoint asked with a method it does not answer.
    async fn method_not_allowed(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        allow: &'static str,
    ) -> Result<bool> {
        let (s, mut h, b) = Self::json(
            405,
            json!({"error": "invalid_request", "error_description": format!("use {allow}")}),
        );
        h.push(("allow", allow.into()));
        self.write(session, ctx, s, h, b).await
    }

    /// The token and revocation endpoints: POST with a form body.
    async fn serve_oauth(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        revoke: bool,
    ) -> Result<bool> {
        if session.req_header().method != http::Method::POST {
            return self.method_not_allowed(session, ctx, "POST").await;
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
            Self::read_body(session, MAX_BODY_BYTES).await?
        };
        let Some(body) = body else {
            session.set_keepalive(None);
            let resp = self.app.tokens.refuse_oversized(revoke, started);
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
            self.app.tokens.revoke(input).await
        } else {
            self.app.tokens.token(input).await
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
                match self
                    .app
                    .store
                    .get_token(&token_hash(t.expose_secret()))
                    .await
                {
                    Ok(Some(rec))
                        if rec.expires_at > OffsetDateTime::now_utc().unix_timestamp() =>
                    {
                        let (s, h, b) = Self::json(
                            200,
                            json!({
                                "organizationId": rec.organization_id,
                                "clientId": rec.client_id,
                                "scopes": rec.scopes,
                            }),
                        );
                        return self.write(session, ctx, s, h, b).await;
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
        self.deny(session, ctx, &Denial::new(reason, None)).await
    }

    /// Phase 2 inputs: from the decision cache, or one store call.
    async fn load(&self, load: &authorize::Load) -> std::result::Result<Access, ()> {
        crate::proxy::lookup::lookup(
            self.app.store.as_ref(),
            &self.app.cache,
            &load.token_hash,
            load.environment_id.as_deref(),
        )
        .await
        .map_err(|e| {
            Metrics::get().store_error("lookup_access");
            tracing::warn!(error = %e, "authorization look-up failed; denying");
        })
    }

    fn decide(&self, facts: &RequestFacts, rt: &Runtime) -> DecideStep {
        match authorize::plan(facts, &rt.policy) {
            Plan::Decided(d) => DecideStep::Done(d),
            Plan::Load(load) => DecideStep::Load(load),
        }
    }
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

/// An HTTP/1.1 request that waits for `100 Continue` before sending its body.
pub(crate) fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

enum DecideStep {
    Done(Decision),
    Load(authorize::Load),
}

fn decide_with(
    load: &authorize::Load,
    facts: &RequestFacts,
    loaded: std::result::Result<Access, ()>,
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
                    Some(EnvAccess {
                        environment: Some(e),
                        role,
                    }) => Lookup::Found((e, *role)),
                    _ => Lookup::NotFound,
                });
            authorize::decide(&load.route, facts, token, env, now)
        }
    }
}

/// The request's life, driven by [`crate::proxy::Engine`]: `admit`
/// decides (or answers itself), `upstream_request` builds what is
/// forwarded, `fail` answers a request that could not be forwarded, and
/// `log` writes the access line.
impl Gateway {
    /// Gathers the request facts, serves the built-in endpoints and decides.
    /// Answers are written from boxed futures: inline, the largest of them
    /// would size the future of every request, and that future is copied
    /// into a new box per request.
    /// `Ok(true)`: answered here (a denial or a built-in endpoint);
    /// `Ok(false)`: forward, with the decision and upstream in `ctx`.
    pub(crate) async fn admit(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        ctx.peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if session.req_header().method == http::Method::CONNECT {
            // Never a tunnel: whatever follows the head is not another request.
            session.set_keepalive(None);
        }
        let req = session.req_header();
        ctx.request_id = Some(match req.headers.get(X_REQUEST_ID) {
            Some(v) if valid_request_id(v.as_bytes()) => v.clone(),
            _ => new_request_id(),
        });
        let rt = self.app.live.snapshot();
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
            self.app.config.proxy.allow_semicolon_in_path,
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
                return Box::pin(self.deny(session, ctx, &denial)).await;
            }
        };
        match path {
            TOKEN_PATH => {
                ctx.builtin = Some("token");
                return Box::pin(self.serve_oauth(session, ctx, false)).await;
            }
            REVOKE_PATH => {
                ctx.builtin = Some("revoke");
                return Box::pin(self.serve_oauth(session, ctx, true)).await;
            }
            METADATA_PATH | WHOAMI_PATH => {
                let whoami = path == WHOAMI_PATH;
                ctx.builtin = Some(if whoami { "whoami" } else { "metadata" });
                // Read-only: GET and HEAD (RFC 9110 §9.1), nothing else.
                let method = &session.req_header().method;
                if !matches!(*method, http::Method::GET | http::Method::HEAD) {
                    return Box::pin(self.method_not_allowed(session, ctx, "GET, HEAD")).await;
                }
                if whoami {
                    return Box::pin(self.serve_whoami(session, ctx, &facts)).await;
                }
                let (s, h, b) = Self::json(200, self.app.tokens.metadata());
                return Box::pin(self.write(session, ctx, s, h, b)).await;
            }
            _ => {}
        }

        let started = Instant::now();
        let mut loaded_with = None;
        let decision = match self.decide(&facts, &rt) {
            DecideStep::Done(d) => d,
            DecideStep::Load(load) => {
                let loaded = self.load(&load).await;
                let decision = decide_with(&load, &facts, loaded);
                loaded_with = Some(load);
                decision
            }
        };
        m.authz_duration.observe(started.elapsed().as_secs_f64());
        m.count_decision(
            decision.route.as_deref(),
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
            return Box::pin(self.deny(session, ctx, &denial)).await;
        }
        let Some(route) = decision.route.clone() else {
            // A forwarding decision always has a route; fail closed if not.
            ctx.decision = Some(decision);
            return Box::pin(self.deny(session, ctx, &Denial::new(DenyReason::NoRoute, None)))
                .await;
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
    pub(crate) fn tunnel_guard(&self, ctx: &mut Ctx) -> Option<TunnelGuard> {
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
        let cache = &self.app.cache;
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
    pub(crate) async fn still_allowed(&self, guard: &TunnelGuard) -> bool {
        let Recheck { load, facts } = guard.recheck.as_ref();
        let loaded = self.load(load).await;
        decide_with(load, facts, loaded).denial().is_none()
    }

    /// The request to send upstream, built from the one received: hop-by-hop
    /// fields removed as RFC 9110 §7.6.1 asks (and the fields `Connection`
    /// names), a WebSocket upgrade kept, then the identity and forwarding
    /// headers ([`Gateway::rewrite_headers`]) and the target to forward.
    ///
    /// The header map is edited directly: pingora's `insert_header` parses
    /// every name again and keeps a second map of the names' original case.
    /// Header names go upstream in lower case (the common ones
    /// title-cased), as from Envoy or HAProxy: field names are
    /// case-insensitive (RFC 9110 §5.1).
    pub(crate) fn upstream_request(
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
        let websocket = strip_hop_by_hop(&mut parts.headers, received.version)?;
        self.rewrite_headers(&mut parts.headers, ctx)?;
        if websocket {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        // HTTP/1.0 clients may leave `Host` out, HTTP/1.1 ones may not (they
        // got 400): the request goes upstream as HTTP/1.1, so it names the
        // upstream itself, as configured.
        if received.version == http::Version::HTTP_10 && !parts.headers.contains_key(header::HOST) {
            if let Some(upstream) = &ctx.upstream {
                parts.headers.insert(header::HOST, upstream.host.clone());
            }
        }
        // A body whose length is not declared goes chunked.
        if has_body && !parts.headers.contains_key(header::CONTENT_LENGTH) {
            parts.headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        parts.version = http::Version::HTTP_11;
        let mut upstream = RequestHeader::from(parts);
        if let Some(target) = target {
            upstream.set_raw_path(&target)?;
        }
        Ok(upstream)
    }

    /// Answers a request that could not be forwarded: 504 when the
    /// upstream was too slow, 400 when the request could not be read, 502
    /// otherwise. Returns the status written (0 if none could be).
    pub(crate) async fn fail(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> u16 {
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
        let body = json!({"error": error, "error_description": description}).to_string();
        let headers = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        match self
            .write(session, ctx, status, headers, body.into_bytes())
            .await
        {
            Ok(_) => status,
            Err(_) => 0,
        }
    }

    /// The access log line and the upstream response count.
    pub(crate) fn log(&self, session: &Session, ctx: &Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.local_status)
            .unwrap_or(0);
        let decision = ctx.decision.as_ref();
        let route = decision.map_or("-", |d| d.route_label());
        if ctx.upstream.is_some() && ctx.local_status.is_none() && status > 0 {
            Metrics::get()
                .count_upstream_response(decision.and_then(|d| d.route.as_deref()), status);
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
            reason = %decision.map_or("-", |d| d.outcome.reason()),
            status,
            organization_id = %caller.map_or("-", |c| c.organization_id.as_str()),
            client_id = %caller.map_or("-", |c| c.client_id.as_str()),
            upstream = %ctx.upstream.as_ref().map_or("-", |u| u.name.as_str()),
            latency_ms,
            "request"
        );
    }
}

/// Header names `Connection` may not nominate: removing them would
/// drop what the upstream relies on (RFC 9110 §7.6.1 lets a proxy refuse).
const PROTECTED_FROM_NOMINATION: [&str; 4] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// The standard hop-by-hop fields of a request (RFC 9110 §7.6.1, and the
/// ones HTTP/1 and HTTP/2 upgrades use).
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    HTTP2_SETTINGS,
];

/// At most this many `Connection` options, so that a request cannot make
/// tollgate walk a long list.
const MAX_CONNECTION_OPTIONS: usize = 10;

/// A request tollgate refuses to forward as received: 400.
fn bad_request(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, why).into_down()
}

/// An RFC 9110 `token` character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The options a message's `Connection` fields list, trimmed, empty ones
/// skipped (RFC 9110 §7.6.1).
pub(crate) fn connection_options(headers: &http::HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop fields of a received request (RFC 9110 §7.6.1):
/// those `Connection` names, then `Connection`, `Keep-Alive`,
/// `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Upgrade` and `HTTP2-Settings`. A
/// `Connection` option that is not a token, names a pseudo-header or one of
/// [`PROTECTED_FROM_NOMINATION`], or one too many, refuses the request.
/// Returns whether the request is an HTTP/1.1 WebSocket upgrade, the one
/// upgrade tollgate forwards.
fn strip_hop_by_hop(headers: &mut http::HeaderMap, version: http::Version) -> Result<bool> {
    // Most requests carry none: one pass over the names (standard names
    // compare as a tag), no hashing look-ups.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return Ok(false);
    }
    let mut nominated: Vec<HeaderName> = Vec::new();
    let mut options = 0;
    for token in connection_options(headers) {
        options += 1;
        if options >= MAX_CONNECTION_OPTIONS {
            return Err(bad_request("too many Connection options"));
        }
        if !token.iter().all(|&b| is_tchar(b)) {
            return Err(bad_request("a Connection option is not a token"));
        }
        let name = HeaderName::from_bytes(token)
            .map_err(|_| bad_request("a Connection option is not a header name"))?;
        if PROTECTED_FROM_NOMINATION.contains(&name.as_str()) {
            return Err(bad_request("Connection names a protected header"));
        }
        nominated.push(name);
    }
    // Before the nominated fields go: `Connection: Upgrade` names `Upgrade`.
    let websocket = version == http::Version::HTTP_11
        && headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    for name in nominated {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    Ok(websocket)
}

/// A forwarding header value tollgate builds (`X-Forwarded-For`) from
/// values it received as valid ones.
fn value(s: impl TryInto<HeaderValue>) -> Result<HeaderValue> {
    s.try_into().map_err(|_| {
        Error::explain(
            ErrorType::InvalidHTTPHeader,
            "a forwarding header value is not a valid header value",
        )
    })
}

/// Ids are checked when they are made; should one still not be a valid
/// header value, the request fails rather than go without its identity.
fn invalid_identity_value() -> Box<Error> {
    Error::explain(
        ErrorType::InvalidHTTPHeader,
        "an identity header value is not a valid header value",
    )
}

/// The token's organization, client and account ids and scopes as header
/// values; `None` if one is not a valid value.
fn token_values(record: &TokenRecord) -> Option<[HeaderValue; 4]> {
    Some([
        HeaderValue::from_str(&record.organization_id).ok()?,
        HeaderValue::from_str(&record.client_id).ok()?,
        HeaderValue::from_str(&record.service_account_id).ok()?,
        HeaderValue::try_from(record.scopes.to_string()).ok()?,
    ])
}

/// The environment's workspace and environment ids as header values.
fn environment_values(env: &EnvironmentRef) -> Option<[HeaderValue; 2]> {
    Some([
        HeaderValue::from_str(&env.workspace_id).ok()?,
        HeaderValue::from_str(&env.id).ok()?,
    ])
}

/// The identity headers. Their values are made once per record and kept
/// with it ([`crate::model::Derived`]): a request whose token and
/// environment come from the decision cache copies no id and allocates
/// nothing here.
fn insert_identity(
    headers: &mut http::HeaderMap,
    names: &InjectNames,
    id: &Identity,
) -> Result<()> {
    let [organization_id, client_id, service_account_id, scopes] = id
        .token
        .header_values
        .get_or_init(|| token_values(&id.token))
        .as_ref()
        .ok_or_else(invalid_identity_value)?;
    headers.insert(names.organization_id.clone(), organization_id.clone());
    headers.insert(names.client_id.clone(), client_id.clone());
    headers.insert(names.service_account_id.clone(), service_account_id.clone());
    headers.insert(names.scopes.clone(), scopes.clone());
    if let Some(ws) = &id.workspace {
        let env = &ws.environment;
        let [workspace_id, environment_id] = env
            .header_values
            .get_or_init(|| environment_values(env))
            .as_ref()
            .ok_or_else(invalid_identity_value)?;
        headers.insert(names.workspace_id.clone(), workspace_id.clone());
        headers.insert(
            names.workspace_role.clone(),
            HeaderValue::from_static(ws.role.as_str()),
        );
        headers.insert(names.environment_id.clone(), environment_id.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_appended_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "192.168.9.99",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            let mut out = String::from("x, ");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x, {ip}"));
        }
    }

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
    fn identity(organization_id: &str) -> Identity {
        Identity {
            token: Arc::new(TokenRecord {
                organization_id: organization_id.into(),
                service_account_id: "sa1".into(),
                client_id: "sa_client1".into(),
                scopes: crate::scope::ScopeSet::from_stored("logs:read workflows:write"),
                expires_at: i64::MAX,
                header_values: Default::default(),
            }),
            workspace: Some(authorize::WorkspaceIdentity {
                environment: Arc::new(EnvironmentRef {
                    id: "env1".into(),
                    workspace_id: "ws1".into(),
                    organization_id: organization_id.into(),
                    header_values: Default::default(),
                }),
                role: crate::scope::Role::Admin,
            }),
        }
    }

    fn names() -> InjectNames {
        InjectNames::new(&crate::config::IdentityHeaders {
            organization_id: "x-org".into(),
            client_id: "x-client".into(),
            service_account_id: "x-sa".into(),
            scopes: "x-scopes".into(),
            workspace_id: "x-ws".into(),
            workspace_role: "x-role".into(),
            environment_id: "x-env".into(),
        })
        .expect("valid names")
    }

    #[test]
    fn identity_header_values_are_made_once_per_record_and_shared() {
        let id = identity("org1");
        let names = names();
        let (mut first, mut second) = (http::HeaderMap::new(), http::HeaderMap::new());
        insert_identity(&mut first, &names, &id).expect("valid ids");
        insert_identity(&mut second, &names, &id).expect("valid ids");
        let expected = [
            (&names.organization_id, "org1"),
            (&names.client_id, "sa_client1"),
            (&names.service_account_id, "sa1"),
            (&names.scopes, "logs:read workflows:write"),
            (&names.workspace_id, "ws1"),
            (&names.workspace_role, "admin"),
            (&names.environment_id, "env1"),
        ];
        assert_eq!(first.len(), expected.len());
        for (name, value) in expected {
            let (a, b) = (&first[name], &second[name]);
            assert_eq!(
                (a.as_bytes(), b.as_bytes()),
                (value.as_bytes(), value.as_bytes()),
                "{name}"
            );
            // The second request's value is the first one's bytes, not a copy.
            assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "{name}");
        }
    }

    #[test]
    fn an_id_that_is_not_a_header_value_fails_the_request() {
        let names = names();
        let mut headers = http::HeaderMap::new();
        let err = insert_identity(&mut headers, &names, &identity("org\n1"))
            .expect_err("not a header value");
        assert_eq!(err.etype(), &ErrorType::InvalidHTTPHeader);

        let mut id = identity("org1");
        let mut env = EnvironmentRef::clone(&id.workspace.as_ref().expect("workspace").environment);
        env.id = "env\r1".into();
        id.workspace.as_mut().expect("workspace").environment = Arc::new(env);
        assert!(insert_identity(&mut headers, &names, &id).is_err());
    }

    fn request_headers(lines: &[(&str, &str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    fn header_names(headers: &http::HeaderMap) -> Vec<&str> {
        headers.keys().map(HeaderName::as_str).collect()
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_removed() {
        let mut headers = request_headers(&[
            ("host", "t"),
            ("connection", "x-foo, keep-alive"),
            ("connection", "X-Bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eDp5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAA"),
            ("x-end-to-end", "kept"),
        ]);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_11).ok(),
            Some(false)
        );
        assert_eq!(header_names(&headers), ["host", "x-end-to-end"]);
    }

    #[test]
    fn a_request_without_hop_by_hop_fields_is_left_alone() {
        let mut headers = request_headers(&[("host", "t"), ("x-a", "1")]);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_11).ok(),
            Some(false)
        );
        assert_eq!(header_names(&headers), ["host", "x-a"]);
    }

    #[test]
    fn only_an_http_1_1_websocket_upgrade_is_recognised() {
        let upgrade = [("connection", "Upgrade"), ("upgrade", "WebSocket")];
        let mut headers = request_headers(&upgrade);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_11).ok(),
            Some(true)
        );
        assert!(headers.is_empty(), "{headers:?}");
        let mut headers = request_headers(&upgrade);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_10).ok(),
            Some(false)
        );
        let mut headers = request_headers(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_11).ok(),
            Some(false)
        );
    }

    #[test]
    fn connection_may_not_name_protected_or_malformed_fields_or_too_many() {
        for value in [
            "host",
            "X-Forwarded-For",
            "x-forwarded-host",
            "x-forwarded-proto",
            "\"x-foo\"",
            ":authority",
            "a, b, c, d, e, f, g, h, i, j",
        ] {
            let mut headers = request_headers(&[("connection", value)]);
            let refused = strip_hop_by_hop(&mut headers, http::Version::HTTP_11).expect_err(value);
            // A request problem: answered 400, never forwarded.
            assert!(
                matches!(refused.esource(), pingora::ErrorSource::Downstream),
                "{value}"
            );
        }
        let mut headers = request_headers(&[("connection", "a, b, c, d, e, f, g, h, i")]);
        assert!(strip_hop_by_hop(&mut headers, http::Version::HTTP_11).is_ok());
    }
}
