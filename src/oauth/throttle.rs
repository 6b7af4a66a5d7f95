//! Throttling of failed token requests (docs/contract.md §3.1), as arithmetic: which
//! counters a request touches and whether their counts refuse it. The
//! counters live in the store; `now` is always passed in.
//!
//! Failures are counted per (client_id, source) and per source, never per
//! client_id alone: a per-client counter would let anyone lock a client out
//! of its own address by sending bad secrets for its id from elsewhere, and
//! a lockout is itself a denial of service. An attacker can thus only slow
//! down the addresses it sends from (and, behind a shared NAT, its
//! neighbours). IPv6 sources are bucketed by /64.
//!
//! Windows are fixed (the window index is part of the key), so a burst
//! straddling a boundary can get up to twice the limit through; that is
//! acceptable against guessing 256-bit secrets and keeps it one counter
//! read per key. Only authentication failures are recorded
//! ([`OAuthError::is_authentication_failure`](super::OAuthError::is_authentication_failure));
//! refused (429) requests are not, so a throttled source recovers when the
//! window ends.

use std::net::IpAddr;

use crate::ids::is_valid_client_id;
use crate::proxy::netaddr::throttle_bucket;

/// The validated `[throttle]` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub window_seconds: u64,
    pub max_failures_per_client_source: u64,
    pub max_failures_per_source: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            window_seconds: 60,
            max_failures_per_client_source: 10,
            max_failures_per_source: 50,
        }
    }
}

impl ThrottleConfig {
    fn window(&self) -> i64 {
        i64::try_from(self.window_seconds.max(1)).unwrap_or(i64::MAX)
    }
}

/// The two counters of one request in the current window. Keys are relative
/// to the store's key prefix and contain no raw client input: a client id is
/// used only when it has the shape of one of ours, anything else shares one
/// bucket (`~`, which no client id contains) per source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleKeys {
    pub client_source: String,
    pub source: String,
    /// Unix seconds at which the window ends: the counters' expiry.
    pub expires_at: i64,
}

impl ThrottleKeys {
    /// Seconds from `now` until the counters may expire (at least 1).
    pub fn ttl_seconds(&self, now_unix: i64) -> u64 {
        u64::try_from(self.expires_at.saturating_sub(now_unix))
            .unwrap_or(0)
            .max(1)
    }
}

pub fn keys(
    client_id: Option<&str>,
    source: IpAddr,
    now_unix: i64,
    cfg: &ThrottleConfig,
) -> ThrottleKeys {
    let window = cfg.window();
    let index = now_unix.div_euclid(window);
    let client = client_id.filter(|id| is_valid_client_id(id)).unwrap_or("~");
    let bucket = throttle_bucket(source);
    ThrottleKeys {
        client_source: format!("throttle:cs:{index}:{client}:{bucket}"),
        source: format!("throttle:s:{index}:{bucket}"),
        expires_at: index.saturating_add(1).saturating_mul(window),
    }
}

/// Failures recorded so far in the current window, read before any argon2
/// work is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts {
    pub client_source: u64,
    pub source: u64,
}

/// `Some(retry_after_secs)` when the request must be refused with
/// `slow_down`: once a limit's worth of failures is recorded in the window,
/// further attempts are refused until it ends. With the defaults, ten bad
/// secrets from one address for one client get their 401; the eleventh
/// attempt gets 429.
pub fn verdict(counts: FailureCounts, cfg: &ThrottleConfig, now_unix: i64) -> Option<u64> {
    let over = counts.client_source >= cfg.max_failures_per_client_source
        || counts.source >= cfg.max_failures_per_source;
    if !over {
        return None;
    }
    Some(retry_after(cfg, now_unix))
}

/// Seconds until the current window ends (at least 1): the `Retry-After`
/// of a refused attempt.
pub fn retry_after(cfg: &ThrottleConfig, now_unix: i64) -> u64 {
    let window = cfg.window();
    let remaining = window - now_unix.rem_euclid(window);
    u64::try_from(remaining).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "sa_AAAAAAAAAAAAAAAAAAAAAAAAAA";
    const NOW: i64 = 1_700_000_030;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn counts(client_source: u64, source: u64) -> FailureCounts {
        FailureCounts {
            client_source,
            source,
        }
    }

    #[test]
    fn eleventh_attempt_after_ten_failures_for_a_client_and_source_is_refused() {
        let cfg = ThrottleConfig::default();
        assert_eq!(verdict(counts(9, 9), &cfg, NOW), None);
        assert!(verdict(counts(10, 10), &cfg, NOW).is_some());
    }

    #[test]
    fn fifty_failures_from_one_source_refuse_every_client_there() {
        let cfg = ThrottleConfig::default();
        assert_eq!(verdict(counts(0, 49), &cfg, NOW), None);
        assert!(verdict(counts(0, 50), &cfg, NOW).is_some());
    }

    #[test]
    fn retry_after_is_the_rest_of_the_window() {
        let cfg = ThrottleConfig::default();
        let start = 1_700_000_040; // a multiple of 60
        assert_eq!(verdict(counts(10, 0), &cfg, start), Some(60));
        assert_eq!(verdict(counts(10, 0), &cfg, start + 59), Some(1));
        let k = keys(Some(CLIENT), ip("192.0.2.1"), start + 15, &cfg);
        assert_eq!(k.expires_at, start + 60);
        assert_eq!(k.ttl_seconds(start + 15), 45);
    }

    #[test]
    fn flood_for_a_client_from_other_addresses_does_not_touch_its_own_counter() {
        let cfg = ThrottleConfig::default();
        let own = keys(Some(CLIENT), ip("192.0.2.1"), NOW, &cfg);
        let attacker = keys(Some(CLIENT), ip("198.51.100.9"), NOW, &cfg);
        assert_ne!(own.client_source, attacker.client_source);
        assert_ne!(own.source, attacker.source);
    }

    #[test]
    fn keys_change_with_the_window() {
        let cfg = ThrottleConfig::default();
        let a = keys(Some(CLIENT), ip("192.0.2.1"), 1_700_000_040, &cfg);
        let b = keys(Some(CLIENT), ip("192.0.2.1"), 1_700_000_099, &cfg);
        let c = keys(Some(CLIENT), ip("192.0.2.1"), 1_700_000_100, &cfg);
        assert_eq!(a, b);
        assert_ne!(a.client_source, c.client_source);
        assert_ne!(a.source, c.source);
    }

    #[test]
    fn keys_name_a_valid_client_id_and_the_source() {
        let k = keys(
            Some(CLIENT),
            ip("192.0.2.1"),
            NOW,
            &ThrottleConfig::default(),
        );
        assert_eq!(
            k.client_source,
            format!("throttle:cs:28333333:{CLIENT}:192.0.2.1/32")
        );
        assert_eq!(k.source, "throttle:s:28333333:192.0.2.1/32");
    }

    #[test]
    fn malformed_client_ids_share_one_bucket_and_never_reach_a_key() {
        let cfg = ThrottleConfig::default();
        let src = ip("192.0.2.1");
        let a = keys(Some("evil:key\r\n*"), src, NOW, &cfg);
        let b = keys(Some("sa_short"), src, NOW, &cfg);
        let c = keys(None, src, NOW, &cfg);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(!a.client_source.contains("evil"));
        assert_ne!(
            a.client_source,
            keys(Some(CLIENT), src, NOW, &cfg).client_source
        );
    }

    #[test]
    fn an_ipv6_host_cannot_escape_by_changing_its_interface_id() {
        let cfg = ThrottleConfig::default();
        let a = keys(Some(CLIENT), ip("2001:db8:0:1::1"), NOW, &cfg);
        let b = keys(Some(CLIENT), ip("2001:db8:0:1::2"), NOW, &cfg);
        assert_eq!(a, b);
    }

    #[test]
    fn a_zero_window_is_treated_as_one_second() {
        let cfg = ThrottleConfig {
            window_seconds: 0,
            ..ThrottleConfig::default()
        };
        assert_eq!(verdict(counts(10, 0), &cfg, NOW), Some(1));
        assert_eq!(keys(None, ip("192.0.2.1"), NOW, &cfg).expires_at, NOW + 1);
    }
}
