//! Decision-service mode: tollgate as the external authorizer of an
//! ingress that forwards the request itself (nginx `auth_request`, Traefik
//! ForwardAuth, Envoy's ext_authz over HTTP or gRPC), on a listener of its
//! own (`server.decisions_listen`, off by default).
//!
//! | module | owns |
//! |---|---|
//! | `config` | `server.decisions_listen`'s `[decisions]` table: the convention, Envoy's path prefix |
//! | `convention` | the original method and target, read from a check request as its convention says |
//! | `service` | the listener: HTTP/1 and h2c connections, HTTP check requests, gRPC routed to `grpc` |
//! | `grpc` | `envoy.service.auth.v3.Authorization/Check` |
//! | `metrics` | `tollgate_decision_service_total{listener="decisions",…}` and its duration |
//!
//! The decision itself is the proxy's: request safety
//! ([`crate::authorize::check_request`]) and then
//! [`crate::proxy::decide_request`], on the same policy set, decision cache
//! and store, so that a request is allowed or denied alike whether tollgate
//! forwards it or an ingress does. An allowed request is answered with the
//! identity headers the proxy would inject; a denied one with the proxy's
//! status, JSON body and `WWW-Authenticate`.

pub mod config;
mod convention;
mod grpc;
mod http1;
mod metrics;
mod service;

use std::sync::Arc;
use std::time::Instant;

use crate::authorize::{self, Decision, Denial, DenyReason, HeaderFacts, Outcome, RequestFacts};
use crate::cache::DecisionCache;
use crate::config::{IdentityHeaders, ProxyConfig};
use crate::limits::Limiter;
use crate::proxy::{apply_limit, decide_request, Decided, Fields, HeaderRules};
use crate::runtime::Live;
use crate::store::Store;

pub use config::{Convention, DecisionsConfig};
pub(crate) use metrics::initialise_series;
pub(crate) use service::decision_service;

/// What the decision listener decides with: the proxy's store, cache, live
/// policy set and header rules.
pub(crate) struct Decider {
    store: Arc<dyn Store>,
    cache: Arc<DecisionCache>,
    live: Arc<Live>,
    headers: HeaderRules,
    allow_semicolon: bool,
    convention: Convention,
    path_prefix: String,
    /// Rate limits and quotas, shared with the proxy listener.
    limiter: Arc<Limiter>,
}

/// The answer to one check request.
pub(crate) struct Verdict {
    pub decision: Decision,
    /// On an allowed request: the identity headers to set upstream.
    pub identity: Fields,
    /// On a denied one: what to answer the ingress's client.
    pub denial: Option<Denial>,
    /// Over a rate limit or quota: `Retry-After`, `RateLimit-Policy` and
    /// `RateLimit` for the denial.
    pub limit_headers: Vec<(&'static str, String)>,
}

impl Verdict {
    pub(crate) fn status(&self) -> u16 {
        self.denial.as_ref().map_or(200, |d| d.status)
    }

    /// A denial's headers (Cache-Control among them), then a limit's,
    /// which win over the denial's of the same name (`Retry-After`).
    pub(crate) fn denial_headers(&self, denial: &Denial) -> Vec<(&'static str, String)> {
        let limits = &self.limit_headers;
        let mut headers = denial.headers();
        headers.retain(|(n, _)| !limits.iter().any(|(l, _)| l == n));
        headers.extend(limits.iter().cloned());
        headers
    }

    /// Whether the answer sets the header `name` (any case).
    pub(crate) fn sets(&self, name: &str) -> bool {
        self.identity
            .iter()
            .any(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
    }
}

/// The original request, once the convention has been read.
pub(crate) struct CheckInput<'a> {
    pub method: &'a str,
    pub target: &'a [u8],
    /// The values of the original request's `Authorization` (none, one or
    /// the first two).
    pub authorization: &'a [&'a [u8]],
}

impl Decider {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        cache: Arc<DecisionCache>,
        live: Arc<Live>,
        proxy: &ProxyConfig,
        identity_headers: &IdentityHeaders,
        decisions: &DecisionsConfig,
    ) -> Result<Decider, String> {
        let convention = decisions
            .convention
            .ok_or("server.decisions_listen needs decisions.convention")?;
        Ok(Decider {
            limiter: Arc::new(Limiter::new(store.clone(), Default::default())),
            store,
            cache,
            live,
            headers: HeaderRules::new(identity_headers, proxy)?,
            allow_semicolon: proxy.allow_semicolon_in_path,
            convention,
            path_prefix: decisions.path_prefix.clone(),
        })
    }

    /// The limiter the proxy listener uses too, so that both count alike.
    pub(crate) fn with_limiter(mut self, limiter: Arc<Limiter>) -> Decider {
        self.limiter = limiter;
        self
    }

    pub(crate) fn convention(&self) -> Convention {
        self.convention
    }

    pub(crate) fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    pub(crate) fn headers(&self) -> &HeaderRules {
        &self.headers
    }

    /// Decides on the original request as the proxy would (docs/contract.md
    /// §5.2), and counts the decision.
    pub(crate) async fn decide(&self, input: CheckInput<'_>) -> Verdict {
        let started = Instant::now();
        let facts = RequestFacts::gather(
            input.method,
            input.target,
            HeaderFacts {
                authorization: input.authorization,
                // The ingress has read the original request's framing; the
                // check request carries no body of it.
                content_length: false,
                transfer_encoding: false,
                host_missing: false,
            },
            self.allow_semicolon,
        );
        let mut limit = crate::limits::Verdict::Unlimited;
        let decision = match authorize::check_request(&facts) {
            Err(reason) => Decision {
                route: None,
                outcome: Outcome::Deny(reason),
                identity: None,
                caller: None,
            },
            Ok(_) => {
                let rt = self.live.snapshot();
                let Decided { mut decision, .. } =
                    decide_request(self.store.as_ref(), &self.cache, &facts, &rt, || None).await;
                limit = self.limit(&decision).await;
                apply_limit(&mut decision, limit);
                decision
            }
        };
        let mut verdict = self.verdict(decision);
        if let crate::limits::Verdict::Limited(refusal) = limit {
            verdict.limit_headers = crate::limits::refusal_headers(&refusal).to_vec();
        }
        self.record(&verdict, started);
        verdict
    }

    /// A check request that does not describe an original request: 400
    /// `invalid_request`, counted as such.
    pub(crate) fn refuse(&self, why: &'static str) -> Verdict {
        let started = Instant::now();
        let verdict = Verdict {
            decision: Decision {
                route: None,
                outcome: Outcome::Deny(DenyReason::InvalidRequest(
                    authorize::RequestProblem::CheckRequest,
                )),
                identity: None,
                caller: None,
            },
            identity: Fields::new(),
            limit_headers: Vec::new(),
            denial: Some(Denial {
                status: 400,
                error: "invalid_request",
                description: why.to_string(),
                www_authenticate: None,
                retry_after: None,
            }),
        };
        self.record(&verdict, started);
        verdict
    }

    fn verdict(&self, decision: Decision) -> Verdict {
        // Room for the identity headers and the answer's own (Cache-Control,
        // Content-Length, a denial's) without growing the list per request.
        let mut identity = Fields::with_capacity(12);
        let denial = match decision.denial() {
            Some(d) => Some(d),
            None => match decision.identity.as_ref() {
                Some(id) => match self.headers.identity_headers(id, &mut identity) {
                    Ok(()) => None,
                    // An identity value no header can carry: never allow
                    // without the headers that say who is calling, and
                    // never answer with some of them.
                    Err(_) => {
                        identity.clear();
                        Some(Denial::new(DenyReason::StoreUnavailable, None))
                    }
                },
                None => None,
            },
        };
        Verdict {
            decision,
            identity,
            denial,
            limit_headers: Vec::new(),
        }
    }

    /// The proxy's limit check for a request the decision allows. The
    /// check request's peer is the ingress, not the client: a route limited
    /// `by = "source"` is not counted here.
    async fn limit(&self, decision: &Decision) -> crate::limits::Verdict {
        let route = match decision.route.as_deref() {
            Some(route) if decision.forwards() => route,
            _ => return crate::limits::Verdict::Unlimited,
        };
        self.limiter
            .check_request(route, decision.caller.as_deref(), None)
            .await
    }

    fn record(&self, verdict: &Verdict, started: Instant) {
        let d = &verdict.decision;
        metrics::count(
            d.route_label(),
            d.outcome.decision(),
            d.outcome.reason(),
            started.elapsed().as_secs_f64(),
        );
        if let Outcome::ReportDeny(reason) = d.outcome {
            tracing::warn!(
                route = d.route_label(),
                reason = reason.as_str(),
                "report mode: would deny; allowing"
            );
        }
        let caller = d.caller.as_deref();
        tracing::info!(
            target: "access",
            listener = metrics::LISTENER,
            route = %d.route_label(),
            decision = %d.outcome.decision(),
            reason = %d.outcome.reason(),
            status = verdict.status(),
            organization_id = %caller.map_or("-", |c| c.organization_id.as_str()),
            client_id = %caller.map_or("-", |c| c.client_id.as_str()),
            "decision"
        );
    }
}
