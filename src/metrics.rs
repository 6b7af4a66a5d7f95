//! Prometheus metrics (docs/contract.md §6), registered in the default registry and
//! served by `MetricsHttp` on the metrics listener. Label values come from
//! bounded sets: route names, reasons, outcomes, store operations.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge, Histogram, IntCounter,
    IntCounterVec, IntGauge,
};

pub struct Metrics {
    pub authz_decisions: IntCounterVec,
    pub authz_duration: Histogram,
    pub token_requests: IntCounterVec,
    pub token_issue_duration: Histogram,
    pub upstream_responses: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub policy_reloads: IntCounterVec,
    pub policy_routes: IntGauge,
    pub active_tokens: IntGauge,
}

/// Fine buckets: a decision takes microseconds on a cache hit and around a
/// millisecond on a store round trip.
const AUTHZ_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

const ISSUE_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every `outcome` of `tollgate_token_requests_total`.
pub const TOKEN_OUTCOMES: &[&str] = &[
    "issued",
    "invalid_client",
    "invalid_scope",
    "invalid_request",
    "invalid_target",
    "unsupported_grant_type",
    "slow_down",
    "store_unavailable",
    "overloaded",
    "too_many_tokens",
    "issue_rate_limited",
];

/// The `op` values of `tollgate_store_errors_total` the process uses.
pub const STORE_OPS: &[&str] = &[
    "lookup_access",
    "get_token",
    "put_token",
    "revoke_token",
    "find_client",
    "failure_counts",
    "reserve_failure",
    "forgive_failure",
    "touch_credentials",
    "count_tokens",
    "admin",
    "publish_invalidation",
    "rate_limit",
    "account_limits",
];

/// Every `result` of `tollgate_policy_reloads_total`.
pub const RELOAD_RESULTS: &[&str] = &["ok", "error"];

/// The reasons a request can be denied before a route is matched (`route="-"`).
const UNROUTED_DENIALS: &[&str] = &["invalid_request", "no_route"];

/// How often `tollgate_active_tokens` is sampled unless
/// `TOLLGATE_ACTIVE_TOKENS_INTERVAL_MS` says otherwise.
pub const ACTIVE_TOKENS_INTERVAL: Duration = Duration::from_secs(15);

/// Counting live tokens is one store call; never do it more often than this.
const ACTIVE_TOKENS_MIN_INTERVAL: Duration = Duration::from_millis(100);

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The series most of a route's requests count in: allowed, then a 2xx
/// answer from upstream. Kept with the route (`policy::Route`) so that
/// those requests skip the label look-up (hashing three label values under
/// a lock) that `with_label_values` costs.
pub struct RouteCounters {
    allowed: IntCounter,
    upstream_2xx: IntCounter,
}

impl RouteCounters {
    /// The series of the route named `route`.
    pub fn new(route: &str) -> RouteCounters {
        let m = Metrics::get();
        RouteCounters {
            allowed: m.authz_decisions.with_label_values(&[route, "allow", "ok"]),
            upstream_2xx: m.upstream_responses.with_label_values(&[route, "2xx"]),
        }
    }
}

/// A matched route as the metrics see it: its name (the `route` label) and
/// its own counters. Metrics know routes by name only.
#[derive(Clone, Copy)]
pub struct RouteLabel<'a> {
    pub name: &'a str,
    pub counters: &'a RouteCounters,
}

impl Metrics {
    /// The process-wide metrics, registered on first use.
    pub fn get() -> &'static Metrics {
        METRICS.get_or_init(|| {
            let m = Metrics::register();
            m.initialise_known_series();
            m
        })
    }

    /// Creates the series whose labels are known up front at zero, so every
    /// family is in the first scrape and `rate()` and alerts see a series
    /// from the start instead of an absent one.
    fn initialise_known_series(&self) {
        for outcome in TOKEN_OUTCOMES {
            self.token_requests.with_label_values(&[outcome]);
        }
        for op in STORE_OPS {
            self.store_errors.with_label_values(&[op]);
        }
        for result in RELOAD_RESULTS {
            self.policy_reloads.with_label_values(&[result]);
        }
        for reason in UNROUTED_DENIALS {
            self.authz_decisions
                .with_label_values(&["-", "deny", reason]);
        }
    }

    /// Counts one authorization decision (`route` `-` when none matched).
    pub fn count_decision(&self, route: Option<RouteLabel<'_>>, decision: &str, reason: &str) {
        match route {
            Some(r) if (decision, reason) == ("allow", "ok") => r.counters.allowed.inc(),
            _ => {
                let route = route.map_or("-", |r| r.name);
                self.authz_decisions
                    .with_label_values(&[route, decision, reason])
                    .inc();
            }
        }
    }

    /// Counts one upstream answer to a request on `route`.
    pub fn count_upstream_response(&self, route: Option<RouteLabel<'_>>, status: u16) {
        let class = status_class(status);
        match route {
            Some(r) if class == "2xx" => r.counters.upstream_2xx.inc(),
            _ => {
                let route = route.map_or("-", |r| r.name);
                self.upstream_responses
                    .with_label_values(&[route, class])
                    .inc();
            }
        }
    }

    #[allow(clippy::expect_used)]
    fn register() -> Metrics {
        // Registration fails only on a duplicate name, which is a programming error.
        Metrics {
            authz_decisions: register_int_counter_vec!(
                "tollgate_authz_decisions_total",
                "Authorization decisions on the proxy listener",
                &["route", "decision", "reason"]
            )
            .expect("register tollgate_authz_decisions_total"),
            authz_duration: register_histogram!(
                "tollgate_authz_duration_seconds",
                "Time spent deciding a proxied request (store look-ups included)",
                AUTHZ_BUCKETS.to_vec()
            )
            .expect("register tollgate_authz_duration_seconds"),
            token_requests: register_int_counter_vec!(
                "tollgate_token_requests_total",
                "Requests to the token endpoint by outcome",
                &["outcome"]
            )
            .expect("register tollgate_token_requests_total"),
            token_issue_duration: register_histogram!(
                "tollgate_token_issue_duration_seconds",
                "Time spent answering a token request",
                ISSUE_BUCKETS.to_vec()
            )
            .expect("register tollgate_token_issue_duration_seconds"),
            upstream_responses: register_int_counter_vec!(
                "tollgate_upstream_responses_total",
                "Responses from upstreams by route and status class",
                &["route", "status_class"]
            )
            .expect("register tollgate_upstream_responses_total"),
            store_errors: register_int_counter_vec!(
                "tollgate_store_errors_total",
                "Store operations that failed or timed out",
                &["op"]
            )
            .expect("register tollgate_store_errors_total"),
            policy_reloads: register_int_counter_vec!(
                "tollgate_policy_reloads_total",
                "Policy set loads by result",
                &["result"]
            )
            .expect("register tollgate_policy_reloads_total"),
            policy_routes: register_int_gauge!(
                "tollgate_policy_routes",
                "Routes in the policy set in force"
            )
            .expect("register tollgate_policy_routes"),
            active_tokens: register_int_gauge!(
                "tollgate_active_tokens",
                "Live access tokens in the store (sampled)"
            )
            .expect("register tollgate_active_tokens"),
        }
    }

    pub fn store_error(&self, op: &'static str) {
        self.store_errors.with_label_values(&[op]).inc();
    }

    pub fn token_outcome(&self, outcome: &str) {
        self.token_requests.with_label_values(&[outcome]).inc();
    }
}

/// The sampling interval of `tollgate_active_tokens`:
/// `TOLLGATE_ACTIVE_TOKENS_INTERVAL_MS` when set to a number (at least
/// 100 ms), else 15 s.
pub fn active_tokens_interval() -> Duration {
    interval_from(
        std::env::var("TOLLGATE_ACTIVE_TOKENS_INTERVAL_MS")
            .ok()
            .as_deref(),
    )
}

fn interval_from(ms: Option<&str>) -> Duration {
    ms.and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(ACTIVE_TOKENS_INTERVAL, |ms| {
            Duration::from_millis(ms).max(ACTIVE_TOKENS_MIN_INTERVAL)
        })
}

/// One sample of `tollgate_active_tokens`; a store failure keeps the last
/// value and counts a store error.
pub async fn sample_active_tokens(store: &dyn crate::store::Store) {
    let m = Metrics::get();
    match store.count_tokens().await {
        Ok(n) => m.active_tokens.set(i64::try_from(n).unwrap_or(i64::MAX)),
        Err(e) => {
            m.store_error("count_tokens");
            tracing::debug!(error = %e, "active tokens not sampled");
        }
    }
}

/// `2xx`, `4xx`, … for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// The metrics listener: Prometheus text format at `/metrics`.
pub struct MetricsHttp;

#[async_trait::async_trait]
impl pingora::apps::http_app::ServeHttp for MetricsHttp {
    async fn response(
        &self,
        session: &mut pingora::protocols::http::ServerSession,
    ) -> http::Response<Vec<u8>> {
        use prometheus::Encoder;
        let (status, body, ctype) = if session.req_header().uri.path() == "/metrics" {
            let encoder = prometheus::TextEncoder::new();
            let mut buf = Vec::new();
            match encoder.encode(&prometheus::gather(), &mut buf) {
                Ok(()) => (200, buf, encoder.format_type().to_string()),
                Err(_) => (500, b"encoding failed\n".to_vec(), "text/plain".to_string()),
            }
        } else {
            (
                404,
                b"not found; see /metrics\n".to_vec(),
                "text/plain".to_string(),
            )
        };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, ctype)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_else(|_| http::Response::new(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_counts_in_the_same_series_as_its_labels_say() {
        let counters = RouteCounters::new("metrics-test-route");
        let route = RouteLabel {
            name: "metrics-test-route",
            counters: &counters,
        };
        let m = Metrics::get();
        let decisions = |d: &str, r: &str| {
            m.authz_decisions
                .with_label_values(&["metrics-test-route", d, r])
                .get()
        };
        let responses = |c: &str| {
            m.upstream_responses
                .with_label_values(&["metrics-test-route", c])
                .get()
        };
        let before = (
            decisions("allow", "ok"),
            decisions("deny", "insufficient_scope"),
        );
        m.count_decision(Some(route), "allow", "ok");
        m.count_decision(Some(route), "allow", "ok");
        m.count_decision(Some(route), "deny", "insufficient_scope");
        assert_eq!(
            (
                decisions("allow", "ok"),
                decisions("deny", "insufficient_scope")
            ),
            (before.0 + 2, before.1 + 1)
        );
        let before = (responses("2xx"), responses("5xx"));
        m.count_upstream_response(Some(route), 204);
        m.count_upstream_response(Some(route), 200);
        m.count_upstream_response(Some(route), 502);
        assert_eq!(
            (responses("2xx"), responses("5xx")),
            (before.0 + 2, before.1 + 1)
        );
    }

    #[test]
    fn status_classes_group_by_the_first_digit() {
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(308), "3xx");
        assert_eq!(status_class(499), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(0), "other");
        assert_eq!(status_class(600), "other");
    }

    #[test]
    fn active_tokens_interval_defaults_to_fifteen_seconds() {
        assert_eq!(interval_from(None), Duration::from_secs(15));
        assert_eq!(interval_from(Some("soon")), Duration::from_secs(15));
    }

    #[test]
    fn active_tokens_interval_takes_milliseconds_with_a_floor() {
        assert_eq!(interval_from(Some("2500")), Duration::from_millis(2500));
        assert_eq!(interval_from(Some(" 250 ")), Duration::from_millis(250));
        assert_eq!(interval_from(Some("1")), Duration::from_millis(100));
    }

    #[test]
    fn every_family_with_known_labels_is_exported_before_any_traffic() {
        Metrics::get();
        let families: Vec<String> = prometheus::gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        for name in [
            "tollgate_authz_decisions_total",
            "tollgate_authz_duration_seconds",
            "tollgate_token_requests_total",
            "tollgate_token_issue_duration_seconds",
            "tollgate_store_errors_total",
            "tollgate_policy_reloads_total",
            "tollgate_policy_routes",
            "tollgate_active_tokens",
        ] {
            assert!(families.iter().any(|f| f == name), "{name} missing");
        }
    }

    #[test]
    fn the_readme_names_every_token_outcome_and_store_op() {
        let readme = include_str!("../README.md");
        let row = |family: &str| {
            readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{family}`")))
                .unwrap_or_else(|| panic!("README has no row for {family}"))
        };
        let outcomes = row("tollgate_token_requests_total");
        for outcome in TOKEN_OUTCOMES {
            assert!(outcomes.contains(&format!("`{outcome}`")), "{outcome}");
        }
        let ops = row("tollgate_store_errors_total");
        for op in STORE_OPS {
            assert!(ops.contains(&format!("`{op}`")), "{op}");
        }
    }

    #[test]
    fn every_token_outcome_and_store_op_has_a_series_from_the_start() {
        Metrics::get();
        let families = prometheus::gather();
        let labels = |name: &str, label: &str| -> Vec<String> {
            families
                .iter()
                .filter(|f| f.name() == name)
                .flat_map(|f| f.get_metric().iter())
                .flat_map(|m| m.get_label().iter())
                .filter(|l| l.name() == label)
                .map(|l| l.value().to_string())
                .collect()
        };
        let outcomes = labels("tollgate_token_requests_total", "outcome");
        for outcome in TOKEN_OUTCOMES {
            assert!(outcomes.iter().any(|o| o == outcome), "{outcome} missing");
        }
        let ops = labels("tollgate_store_errors_total", "op");
        for op in STORE_OPS {
            assert!(ops.iter().any(|o| o == op), "{op} missing");
        }
    }

    /// Every `op` the code counts by name (`store_error("…")`, the token
    /// endpoint's `unavailable(m, "…")`) is in [`STORE_OPS`], so that its
    /// series exists from the start.
    #[test]
    fn store_ops_named_in_the_code_are_all_listed() {
        fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("read src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        rust_files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut named = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            for marker in ["store_error(\"", "unavailable(m, \""] {
                for (at, _) in text.match_indices(marker) {
                    let rest = &text[at + marker.len()..];
                    let op = &rest[..rest.find('"').expect("a closing quote")];
                    if !op.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                        continue; // this test's own doc comment
                    }
                    named += 1;
                    assert!(
                        STORE_OPS.contains(&op),
                        "{}: store op {op:?} is not in STORE_OPS",
                        file.display()
                    );
                }
            }
        }
        assert!(
            named >= 10,
            "only {named} store ops found: the markers changed"
        );
    }
}
