//! The limits' own metrics, in the default registry beside
//! `crate::metrics`. Labels are route names and fixed words: never an
//! account, client, organization or address.
//!
//! - `tollgate_rate_limited_total{route,mode}`: requests over a route's
//!   limit (`mode` `enforce`: refused 429; `report`: forwarded);
//! - `tollgate_quota_exceeded_total{period}`: requests refused 429 because
//!   an account's `daily` or `monthly` quota is used up;
//! - `tollgate_quota_requests_total`: requests counted against a quota;
//! - `tollgate_quota_lowest_remaining{period}`: the least any account had
//!   left of its quota of the current period when this instance last
//!   leased from it (-1 before any);
//! - `tollgate_limit_leases_total{kind,result}`: store round trips of the
//!   limiter (`kind` `rate`, `quota`; `result` `granted`, `refused`) — far
//!   fewer than requests while leases are spent locally;
//! - `tollgate_limit_store_failures_total{action}`: limit checks the store
//!   could not answer (`action` `failed_closed`: 503, `failed_open`: forwarded).

use std::sync::{Mutex, OnceLock};

use prometheus::{
    register_int_counter, register_int_counter_vec, register_int_gauge_vec, IntCounter,
    IntCounterVec, IntGaugeVec,
};

use super::account::Period;

pub struct LimitMetrics {
    pub rate_limited: IntCounterVec,
    pub quota_exceeded: IntCounterVec,
    pub quota_requests: IntCounter,
    pub quota_lowest_remaining: IntGaugeVec,
    pub leases: IntCounterVec,
    pub store_failures: IntCounterVec,
    /// The period label (`2026-12-05`, `2026-12`) each gauge is about.
    lowest_of: Mutex<[(String, u64); 2]>,
}

static METRICS: OnceLock<LimitMetrics> = OnceLock::new();

impl LimitMetrics {
    #[allow(clippy::expect_used)]
    pub fn get() -> &'static LimitMetrics {
        // Registration fails only on a duplicate name, a programming error.
        METRICS.get_or_init(|| {
            let m = LimitMetrics {
                rate_limited: register_int_counter_vec!(
                    "tollgate_rate_limited_total",
                    "Requests over a route's rate limit (enforce: refused; report: forwarded)",
                    &["route", "mode"]
                )
                .expect("register tollgate_rate_limited_total"),
                quota_exceeded: register_int_counter_vec!(
                    "tollgate_quota_exceeded_total",
                    "Requests refused because the account's quota of the period is used up",
                    &["period"]
                )
                .expect("register tollgate_quota_exceeded_total"),
                quota_requests: register_int_counter!(
                    "tollgate_quota_requests_total",
                    "Requests counted against an account's quota"
                )
                .expect("register tollgate_quota_requests_total"),
                quota_lowest_remaining: register_int_gauge_vec!(
                    "tollgate_quota_lowest_remaining",
                    "The least any account had left of its quota this period, as last leased here",
                    &["period"]
                )
                .expect("register tollgate_quota_lowest_remaining"),
                leases: register_int_counter_vec!(
                    "tollgate_limit_leases_total",
                    "Store round trips of the limiter",
                    &["kind", "result"]
                )
                .expect("register tollgate_limit_leases_total"),
                store_failures: register_int_counter_vec!(
                    "tollgate_limit_store_failures_total",
                    "Limit checks the store could not answer, by what was done",
                    &["action"]
                )
                .expect("register tollgate_limit_store_failures_total"),
                lowest_of: Mutex::new(Default::default()),
            };
            for period in Period::ALL {
                m.quota_exceeded.with_label_values(&[period.as_str()]);
                m.quota_lowest_remaining
                    .with_label_values(&[period.as_str()])
                    .set(-1);
            }
            for kind in ["rate", "quota"] {
                for result in ["granted", "refused"] {
                    m.leases.with_label_values(&[kind, result]);
                }
            }
            for action in ["failed_closed", "failed_open"] {
                m.store_failures.with_label_values(&[action]);
            }
            m
        })
    }

    /// Records what an account has left of a period (`label` names it).
    pub fn quota_remaining(&self, period: Period, label: &str, remaining: u64) {
        let i = period as usize;
        let Ok(mut lowest) = self.lowest_of.lock() else {
            return;
        };
        let slot = &mut lowest[i];
        if slot.0 != label || remaining < slot.1 {
            *slot = (label.to_string(), remaining);
            self.quota_lowest_remaining
                .with_label_values(&[period.as_str()])
                .set(i64::try_from(remaining).unwrap_or(i64::MAX));
        }
    }
}
