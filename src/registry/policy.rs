//! Validation of an account's token settings and IP allowlist
//! ([`AccountPolicy`]) as the admin API sets them on create and update.

use crate::account_policy::{
    AccountPolicy, IssueLimit, MAX_ALLOWLIST, MAX_ISSUE_REQUESTS, MAX_LIVE_TOKENS,
};
use crate::proxy::netaddr::parse_cidrs;

use super::{invalid, RegistryResult};

/// The fields given; absent ones stay as they are. `Some(None)` clears.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccountPolicyPatch {
    pub(crate) token_ttl_seconds: Option<Option<u64>>,
    pub(crate) max_live_tokens: Option<Option<u64>>,
    pub(crate) token_issue_limit: Option<Option<IssueLimit>>,
    pub(crate) ip_allowlist: Option<Vec<String>>,
    pub(crate) ip_allowlist_on_requests: Option<bool>,
}

impl AccountPolicyPatch {
    /// The field names, for the admin API's list of accepted fields.
    pub(crate) const FIELDS: [&'static str; 5] = [
        "token_ttl_seconds",
        "max_live_tokens",
        "token_issue_limit",
        "ip_allowlist",
        "ip_allowlist_on_requests",
    ];

    /// Validates the patch and applies it; returns the names of the fields
    /// that changed. `max_ttl` is `tokens.max_ttl_seconds`.
    pub(crate) fn apply(
        self,
        policy: &mut AccountPolicy,
        max_ttl: u64,
    ) -> RegistryResult<Vec<&'static str>> {
        let mut next = policy.clone();
        if let Some(ttl) = self.token_ttl_seconds {
            if let Some(t) = ttl {
                if !(1..=max_ttl).contains(&t) {
                    return Err(invalid(
                        "token_ttl_seconds",
                        format!("must be between 1 and {max_ttl} (tokens.max_ttl_seconds)"),
                    ));
                }
            }
            next.token_ttl_seconds = ttl;
        }
        if let Some(cap) = self.max_live_tokens {
            if cap.is_some_and(|c| !(1..=MAX_LIVE_TOKENS).contains(&c)) {
                return Err(invalid(
                    "max_live_tokens",
                    format!("must be between 1 and {MAX_LIVE_TOKENS}, or null"),
                ));
            }
            next.max_live_tokens = cap;
        }
        if let Some(limit) = self.token_issue_limit {
            if limit.is_some_and(|l| !(1..=MAX_ISSUE_REQUESTS).contains(&l.requests)) {
                return Err(invalid(
                    "token_issue_limit",
                    format!("requests must be between 1 and {MAX_ISSUE_REQUESTS}"),
                ));
            }
            next.token_issue_limit = limit;
        }
        if let Some(items) = self.ip_allowlist {
            if items.len() > MAX_ALLOWLIST {
                return Err(invalid(
                    "ip_allowlist",
                    format!("must hold at most {MAX_ALLOWLIST} entries"),
                ));
            }
            let mut nets = parse_cidrs(&items).map_err(|e| invalid("ip_allowlist", e))?;
            nets.sort();
            nets.dedup();
            next.ip_allowlist = nets;
        }
        if let Some(on) = self.ip_allowlist_on_requests {
            next.ip_allowlist_on_requests = on;
        }
        let mut changed = Vec::new();
        if next.token_ttl_seconds != policy.token_ttl_seconds {
            changed.push("token_ttl_seconds");
        }
        if next.max_live_tokens != policy.max_live_tokens {
            changed.push("max_live_tokens");
        }
        if next.token_issue_limit != policy.token_issue_limit {
            changed.push("token_issue_limit");
        }
        if next.ip_allowlist != policy.ip_allowlist {
            changed.push("ip_allowlist");
        }
        if next.ip_allowlist_on_requests != policy.ip_allowlist_on_requests {
            changed.push("ip_allowlist_on_requests");
        }
        *policy = next;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account_policy::Per;
    use crate::registry::RegistryError;

    fn field_of(patch: AccountPolicyPatch) -> String {
        match patch.apply(&mut AccountPolicy::default(), 3600) {
            Err(RegistryError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn out_of_range_settings_are_refused_naming_the_field() {
        let p = |f: fn(&mut AccountPolicyPatch)| {
            let mut patch = AccountPolicyPatch::default();
            f(&mut patch);
            patch
        };
        assert_eq!(
            field_of(p(|p| p.token_ttl_seconds = Some(Some(0)))),
            "token_ttl_seconds"
        );
        assert_eq!(
            field_of(p(|p| p.token_ttl_seconds = Some(Some(3601)))),
            "token_ttl_seconds"
        );
        assert_eq!(
            field_of(p(|p| p.max_live_tokens = Some(Some(0)))),
            "max_live_tokens"
        );
        assert_eq!(
            field_of(p(|p| {
                p.token_issue_limit = Some(Some(IssueLimit {
                    requests: 0,
                    per: Per::Minute,
                }))
            })),
            "token_issue_limit"
        );
        assert_eq!(
            field_of(p(|p| p.ip_allowlist = Some(vec!["10.0.0.0/33".into()]))),
            "ip_allowlist"
        );
        assert_eq!(
            field_of(p(|p| p.ip_allowlist = Some(vec!["example.com".into()]))),
            "ip_allowlist"
        );
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_null_clears() {
        let mut policy = AccountPolicy::default();
        let changed = AccountPolicyPatch {
            token_ttl_seconds: Some(Some(60)),
            ip_allowlist: Some(vec![
                "10.1.2.3".into(),
                "10.0.0.0/8".into(),
                "10.0.0.0/8".into(),
            ]),
            ..AccountPolicyPatch::default()
        }
        .apply(&mut policy, 900)
        .expect("valid");
        assert_eq!(changed, ["token_ttl_seconds", "ip_allowlist"]);
        assert_eq!(policy.token_ttl_seconds, Some(60));
        let shown: Vec<String> = policy.ip_allowlist.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "10.1.2.3/32"]);
        let changed = AccountPolicyPatch {
            token_ttl_seconds: Some(None),
            ..AccountPolicyPatch::default()
        }
        .apply(&mut policy, 900)
        .expect("valid");
        assert_eq!(changed, ["token_ttl_seconds"]);
        assert_eq!(policy.token_ttl_seconds, None);
        assert_eq!(policy.ip_allowlist.len(), 2);
    }
}
