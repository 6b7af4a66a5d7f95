//! The headers of a 429 for a limit: `Retry-After` (RFC 9110 §10.2.3) and
//! `RateLimit-Policy` / `RateLimit` as the IETF httpapi draft
//! (draft-ietf-httpapi-ratelimit-headers) writes them: a named policy with
//! its quota `q` per window `w` seconds, and what is left `r` of it with
//! the seconds `t` until it resets.

use super::limiter::Refusal;

/// Whole seconds until the window ends, rounded up, at least 1.
pub fn retry_after_secs(refusal: &Refusal) -> u64 {
    let d = refusal.reset;
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// `retry-after`, `ratelimit-policy`, `ratelimit`.
pub fn refusal_headers(refusal: &Refusal) -> [(&'static str, String); 3] {
    let name = refusal.exceeded.policy_name();
    let retry = retry_after_secs(refusal);
    [
        ("retry-after", retry.to_string()),
        (
            "ratelimit-policy",
            format!("\"{name}\";q={};w={}", refusal.limit, refusal.window_secs),
        ),
        ("ratelimit", format!("\"{name}\";r=0;t={retry}")),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limits::{Exceeded, Period};

    #[test]
    fn headers_name_the_policy_its_size_and_the_wait() {
        let r = Refusal {
            exceeded: Exceeded::Rate,
            limit: 100,
            window_secs: 60,
            reset: Duration::from_millis(12_300),
        };
        assert_eq!(
            refusal_headers(&r),
            [
                ("retry-after", "13".to_string()),
                ("ratelimit-policy", "\"rate\";q=100;w=60".to_string()),
                ("ratelimit", "\"rate\";r=0;t=13".to_string()),
            ]
        );
        let q = Refusal {
            exceeded: Exceeded::Quota(Period::Daily),
            limit: 5,
            window_secs: 86_400,
            reset: Duration::ZERO,
        };
        assert_eq!(refusal_headers(&q)[0].1, "1");
        assert_eq!(refusal_headers(&q)[1].1, "\"daily\";q=5;w=86400");
    }
}
