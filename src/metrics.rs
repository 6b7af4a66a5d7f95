//! Prometheus metrics (SPEC §6), registered in the default registry that
//! pingora's Prometheus service exposes on the metrics listener. Label
//! values come from bounded sets: route names, reasons, outcomes.

use std::sync::OnceLock;

use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge, Histogram, IntCounterVec,
    IntGauge,
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

static METRICS: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    /// The process-wide metrics, registered on first use.
    pub fn get() -> &'static Metrics {
        METRICS.get_or_init(Metrics::register)
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
