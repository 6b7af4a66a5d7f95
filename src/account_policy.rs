//! A service account's own token settings and network allowlist: its token
//! lifetime (within `tokens.max_ttl_seconds`), a cap on its live tokens, a
//! limit on how many tokens it is issued per second, minute or hour, and
//! the addresses it may ask for tokens from (and, when
//! `ip_allowlist_on_requests`, make requests from). Stored with the account
//! and shown by the admin API as fields of it; every field's default is
//! "no restriction".

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Highest `max_live_tokens`.
pub const MAX_LIVE_TOKENS: u64 = 100_000;
/// Highest `token_issue_limit.requests`: the limit keeps one entry per
/// issuance in its window.
pub const MAX_ISSUE_REQUESTS: u64 = 10_000;
/// Most entries of `ip_allowlist`.
pub const MAX_ALLOWLIST: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPolicy {
    /// Lifetime of the account's tokens; `None`: `tokens.ttl_seconds`.
    #[serde(default)]
    pub token_ttl_seconds: Option<u64>,
    /// Live tokens the account may hold at once; a token request beyond it
    /// is refused until one expires or is revoked.
    #[serde(default)]
    pub max_live_tokens: Option<u64>,
    /// Successful issuances per window, counted across instances.
    #[serde(default)]
    pub token_issue_limit: Option<IssueLimit>,
    /// Networks the account may ask for tokens from; empty: anywhere.
    #[serde(default, with = "cidr_list")]
    pub ip_allowlist: Vec<IpNet>,
    /// Also check every proxied request's source against `ip_allowlist`
    /// (tokens carry the list from issuance).
    #[serde(default)]
    pub ip_allowlist_on_requests: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueLimit {
    pub requests: u64,
    pub per: Per,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Per {
    #[serde(rename = "1s")]
    Second,
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "1h")]
    Hour,
}

impl Per {
    pub fn millis(self) -> u64 {
        match self {
            Per::Second => 1_000,
            Per::Minute => 60_000,
            Per::Hour => 3_600_000,
        }
    }
}

/// Limits checked when a token is stored, in the same atomic step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenLimits {
    pub max_live: Option<u64>,
    /// (issuances, window in milliseconds)
    pub issue_rate: Option<(u64, u64)>,
}

impl TokenLimits {
    pub fn is_none(&self) -> bool {
        self.max_live.is_none() && self.issue_rate.is_none()
    }
}

/// What storing a token under [`TokenLimits`] came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPut {
    Stored,
    /// `max_live` reached; the oldest live token expires in this many ms.
    TooManyLive {
        retry_after_ms: u64,
    },
    /// `issue_rate` reached; a slot frees in this many ms.
    IssueRateLimited {
        retry_after_ms: u64,
    },
    /// The [`crate::store::Issuer`] check failed: the credential was
    /// rotated or deleted, or its account disabled or deleted, since the
    /// secret was verified (nothing stored or counted); or, on a cluster,
    /// the account's tokens were revoked between the token's index step and
    /// its key (nothing stored).
    IssuerChanged,
}

impl AccountPolicy {
    /// The lifetime of a token issued now: the account's, never above the
    /// configured maximum (which may have been lowered since it was set).
    pub fn token_ttl(&self, default_ttl: u64, max_ttl: u64) -> u64 {
        self.token_ttl_seconds
            .unwrap_or(default_ttl)
            .min(max_ttl)
            .max(1)
    }

    pub fn token_limits(&self) -> TokenLimits {
        TokenLimits {
            max_live: self.max_live_tokens,
            issue_rate: self.token_issue_limit.map(|l| (l.requests, l.per.millis())),
        }
    }

    /// Whether `source` may ask for tokens.
    pub fn allows(&self, source: IpAddr) -> bool {
        allowed(&self.ip_allowlist, source)
    }

    /// The list a token carries for the per-request check, if any.
    pub fn request_allowlist(&self) -> Option<std::sync::Arc<[IpNet]>> {
        (self.ip_allowlist_on_requests && !self.ip_allowlist.is_empty())
            .then(|| self.ip_allowlist.as_slice().into())
    }
}

/// Whether `source` is in `list` (an empty list allows every address).
/// Addresses compare canonicalised: `::ffff:192.0.2.1` is `192.0.2.1`.
pub fn allowed(list: &[IpNet], source: IpAddr) -> bool {
    let source = source.to_canonical();
    list.is_empty() || list.iter().any(|net| net.contains(&source))
}

/// CIDR lists as strings (`"10.0.0.0/8"`), in storage and in the admin API.
pub mod cidr_list {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        items
            .iter()
            .map(|i| i.parse::<IpNet>().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// The same for the optional list a token record carries.
pub mod cidr_option {
    use std::sync::Arc;

    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &Option<Arc<[IpNet]>>, s: S) -> Result<S::Ok, S::Error> {
        match list {
            Some(list) => super::cidr_list::serialize(list, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<[IpNet]>>, D::Error> {
        let items = Option::<Vec<String>>::deserialize(d)?;
        items
            .map(|items| {
                items
                    .iter()
                    .map(|i| i.parse::<IpNet>().map_err(serde::de::Error::custom))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Arc::from)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(items: &[&str]) -> Vec<IpNet> {
        items.iter().map(|i| i.parse().expect("cidr")).collect()
    }

    #[test]
    fn an_empty_allowlist_allows_every_address() {
        assert!(allowed(&[], "203.0.113.9".parse().expect("ip")));
    }

    #[test]
    fn an_address_must_be_inside_one_of_the_networks() {
        let list = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(allowed(&list, "10.1.2.3".parse().expect("ip")));
        assert!(allowed(&list, "::ffff:10.1.2.3".parse().expect("ip")));
        assert!(allowed(&list, "2001:db8::1".parse().expect("ip")));
        assert!(!allowed(&list, "11.0.0.1".parse().expect("ip")));
        assert!(!allowed(&list, "2001:db9::1".parse().expect("ip")));
    }

    #[test]
    fn the_token_lifetime_never_exceeds_the_maximum() {
        let mut p = AccountPolicy::default();
        assert_eq!(p.token_ttl(900, 3600), 900);
        p.token_ttl_seconds = Some(60);
        assert_eq!(p.token_ttl(900, 3600), 60);
        p.token_ttl_seconds = Some(7200);
        assert_eq!(p.token_ttl(900, 3600), 3600);
    }

    #[test]
    fn the_per_request_list_is_carried_only_when_asked_for() {
        let mut p = AccountPolicy {
            ip_allowlist: nets(&["10.0.0.0/8"]),
            ..AccountPolicy::default()
        };
        assert_eq!(p.request_allowlist(), None);
        p.ip_allowlist_on_requests = true;
        assert_eq!(
            p.request_allowlist().as_deref(),
            Some(&nets(&["10.0.0.0/8"])[..])
        );
        p.ip_allowlist.clear();
        assert_eq!(p.request_allowlist(), None);
    }

    #[test]
    fn the_policy_reads_and_writes_as_the_admin_api_shows_it() {
        let json = serde_json::json!({
            "token_ttl_seconds": 300,
            "max_live_tokens": 5,
            "token_issue_limit": {"requests": 10, "per": "1m"},
            "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32"],
            "ip_allowlist_on_requests": true,
        });
        let p: AccountPolicy = serde_json::from_value(json.clone()).expect("reads");
        assert_eq!(p.token_limits().issue_rate, Some((10, 60_000)));
        assert_eq!(serde_json::to_value(&p).expect("writes"), json);
        let empty: AccountPolicy = serde_json::from_str("{}").expect("defaults");
        assert_eq!(empty, AccountPolicy::default());
    }
}
