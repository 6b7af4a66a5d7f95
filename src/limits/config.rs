//! `[limits]`: how rate limits and quotas behave when the store cannot
//! answer, how large a lease is, how long accounts' settings are kept.

use std::time::Duration;

use serde::Deserialize;

/// `[limits]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    pub on_store_error: String,
    pub lease_max: u64,
    pub settings_ttl_ms: u64,
    pub max_buckets: usize,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            on_store_error: "closed".into(),
            lease_max: 64,
            settings_ttl_ms: 1000,
            max_buckets: 100_000,
        }
    }
}

/// What a limit check does when the store cannot answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreError {
    /// 503 `temporarily_unavailable` (the default).
    Closed,
    /// Forward, unlimited, and count it.
    Open,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    pub on_store_error: OnStoreError,
    /// The most units one lease takes from the store.
    pub lease_max: u64,
    /// How long an account's override and quotas are kept in memory.
    pub settings_ttl: Duration,
    /// Buckets kept in memory per instance.
    pub max_buckets: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            on_store_error: OnStoreError::Closed,
            lease_max: 64,
            settings_ttl: Duration::from_secs(1),
            max_buckets: 100_000,
        }
    }
}

impl TryFrom<&LimitsFile> for LimitsConfig {
    /// `(key, problem)`, the key relative to the file.
    type Error = (String, String);

    fn try_from(f: &LimitsFile) -> Result<LimitsConfig, (String, String)> {
        let bad = |key: &str, problem: &str| Err((format!("limits.{key}"), problem.to_string()));
        let on_store_error = match f.on_store_error.as_str() {
            "closed" => OnStoreError::Closed,
            "open" => OnStoreError::Open,
            _ => return bad("on_store_error", "must be \"closed\" or \"open\""),
        };
        if !(1..=10_000).contains(&f.lease_max) {
            return bad("lease_max", "must be from 1 to 10000");
        }
        if f.settings_ttl_ms > 60_000 {
            return bad("settings_ttl_ms", "must be at most 60000");
        }
        if f.max_buckets < 16 {
            return bad("max_buckets", "must be at least 16");
        }
        Ok(LimitsConfig {
            on_store_error,
            lease_max: f.lease_max,
            settings_ttl: Duration::from_millis(f.settings_ttl_ms),
            max_buckets: f.max_buckets,
        })
    }
}
