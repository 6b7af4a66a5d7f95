//! Per-request state, kept from the gateway's `admit` to the
//! access log line, and the guard that re-checks an open WebSocket tunnel.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use crate::authorize::{self, Decision, RequestFacts};
use crate::runtime::Runtime;

use super::upstream::Upstream;

/// Per-request state, kept from `Gateway::admit` to `Gateway::log`.
#[derive(Default)]
pub(crate) struct Ctx {
    pub(super) started: Option<Instant>,
    /// Built once: the upstream request and the response share it.
    pub(super) request_id: Option<HeaderValue>,
    pub(super) runtime: Option<Arc<Runtime>>,
    pub(super) decision: Option<Decision>,
    /// Normalised path (minus `strip_prefix`) and the raw query, when
    /// that differs from the target as received.
    pub(super) forward_target: Option<String>,
    pub(super) upstream: Option<Arc<Upstream>>,
    /// A built-in endpoint served by tollgate itself.
    pub(super) builtin: Option<&'static str>,
    /// The token endpoint's outcome (`issued`, `too_many_tokens`, …): the
    /// access line's `reason` for a token request.
    pub(super) token_outcome: Option<&'static str>,
    /// Status of an answer tollgate wrote itself.
    pub(super) local_status: Option<u16>,
    pub(super) peer: Option<IpAddr>,
    /// For a WebSocket upgrade allowed by a token: what the decision
    /// needs to be made again while the tunnel is open.
    pub(super) recheck: Option<Box<Recheck>>,
    /// TLS was terminated by this listener (`X-Forwarded-Proto: https`).
    pub(super) tls: bool,
    /// The subject of the client certificate the listener verified
    /// (`server.tls.client_ca_file`), e.g. `CN=billing,O=Example`; kept
    /// for policies to match on.
    #[allow(dead_code)]
    pub(super) client_subject: Option<Arc<str>>,
    /// A gRPC call (`content-type: application/grpc…` over HTTP/2) to a
    /// route: its denials are gRPC answers (`grpc-status`), not JSON.
    pub(super) grpc: bool,
    /// The rate limit and quota check's outcome (access log `limit`).
    pub(super) limit: Option<crate::limits::Verdict>,
}

/// A decision kept to be made again: its look-up and the request's facts.
pub(super) struct Recheck {
    pub(super) load: authorize::Load,
    pub(super) facts: RequestFacts,
}

/// What keeps a WebSocket tunnel opened with a token honest: the decision is
/// made again when the token expires, at once when any invalidation (a
/// revocation, here or published by another instance) reaches the cache,
/// and every `cache.ttl_ms` in case one was missed; a denial closes it.
pub(crate) struct TunnelGuard {
    pub(super) recheck: Box<Recheck>,
    pub(super) changes: Option<tokio::sync::watch::Receiver<u64>>,
    pub(super) every: std::time::Duration,
    pub(super) expires: tokio::time::Instant,
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
