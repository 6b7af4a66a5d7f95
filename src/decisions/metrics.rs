//! The decision listener's own series: its decisions are counted apart
//! from the proxy's `tollgate_authz_decisions_total` (whose labels
//! docs/contract.md §6 fixes), with `listener="decisions"`, so that a
//! dashboard shows enforcement inline and as an ingress's authorizer side
//! by side.

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter_vec, Histogram, HistogramVec, IntCounterVec,
};

/// The `listener` label of every series here.
pub(crate) const LISTENER: &str = "decisions";

pub(crate) struct DecisionMetrics {
    pub decisions: IntCounterVec,
    pub duration: HistogramVec,
}

/// Buckets of `tollgate_authz_duration_seconds`: the same decision.
const BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

pub(crate) static METRICS: LazyLock<DecisionMetrics> = LazyLock::new(|| DecisionMetrics {
    decisions: register_int_counter_vec!(
        "tollgate_decision_service_total",
        "Decisions the decision listener answered an ingress, by route, decision and reason",
        &["listener", "route", "decision", "reason"]
    )
    .expect("register tollgate_decision_service_total"),
    duration: register_histogram_vec!(
        "tollgate_decision_service_duration_seconds",
        "Time the decision listener spent deciding",
        &["listener"],
        BUCKETS.to_vec()
    )
    .expect("register tollgate_decision_service_duration_seconds"),
});

/// Exports the series known before any request (refusals before a route
/// is matched), so that the first scrape has them at zero.
pub(crate) fn initialise_series() {
    for reason in ["invalid_request", "no_route"] {
        METRICS
            .decisions
            .with_label_values(&[LISTENER, "-", "deny", reason]);
    }
    LazyLock::force(&DURATION);
}

/// The one duration series, looked up once rather than per decision.
static DURATION: LazyLock<Histogram> =
    LazyLock::new(|| METRICS.duration.with_label_values(&[LISTENER]));

pub(crate) fn count(route: &str, decision: &str, reason: &str, seconds: f64) {
    METRICS
        .decisions
        .with_label_values(&[LISTENER, route, decision, reason])
        .inc();
    DURATION.observe(seconds);
}
