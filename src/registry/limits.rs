//! A service account's own limits (`crate::limits`): its override of the
//! routes' per-account rate limits and its daily and monthly quotas, with
//! what the quotas' counters hold now.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::{invalid, Registry, RegistryError, RegistryResult};
use crate::audit::Action;
use crate::limits::{AccountLimits, Period, RateOverride, MAX_REQUESTS};

/// The most a quota may name.
pub(crate) const MAX_QUOTA: u64 = 1_000_000_000_000;

/// One quota period as the admin API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct QuotaView {
    /// Requests counted this period (leases handed to instances included).
    pub(crate) used: u64,
    pub(crate) limit: Option<u64>,
    pub(crate) remaining: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) resets_at: OffsetDateTime,
}

/// `GET …/service-accounts/{sa}/limits`.
#[derive(Debug, Serialize)]
pub(crate) struct LimitsView {
    pub(crate) service_account_id: String,
    pub(crate) rate_limit: Option<RateOverride>,
    pub(crate) daily_quota: Option<u64>,
    pub(crate) monthly_quota: Option<u64>,
    pub(crate) quota_usage: QuotaUsageView,
}

#[derive(Debug, Serialize)]
pub(crate) struct QuotaUsageView {
    pub(crate) daily: QuotaView,
    pub(crate) monthly: QuotaView,
}

fn check(limits: &AccountLimits) -> RegistryResult<()> {
    if let Some(r) = &limits.rate_limit {
        if !(1..=MAX_REQUESTS).contains(&r.requests) {
            return Err(invalid(
                "rate_limit",
                format!("requests must be from 1 to {MAX_REQUESTS}"),
            ));
        }
    }
    for (field, q) in [
        ("daily_quota", limits.daily_quota),
        ("monthly_quota", limits.monthly_quota),
    ] {
        if q.is_some_and(|q| q > MAX_QUOTA) {
            return Err(invalid(field, format!("must be from 0 to {MAX_QUOTA}")));
        }
    }
    Ok(())
}

impl Registry {
    pub(crate) async fn get_account_limits(
        &self,
        org: &str,
        sa: &str,
    ) -> RegistryResult<LimitsView> {
        self.account(org, sa).await?;
        let limits = self
            .store
            .get_account_limits(org, sa)
            .await?
            .unwrap_or_default();
        self.limits_view(org, sa, limits).await
    }

    /// Replaces the account's limits (all of them: an omitted one is none).
    pub(crate) async fn put_account_limits(
        &self,
        org: &str,
        sa: &str,
        actor: &str,
        limits: AccountLimits,
    ) -> RegistryResult<LimitsView> {
        self.account(org, sa).await?;
        check(&limits)?;
        let kept = if limits.is_empty() {
            self.store.delete_account_limits(org, sa).await?;
            true
        } else {
            self.store.put_account_limits(org, sa, &limits).await?
        };
        if !kept {
            return Err(RegistryError::NotFound("service account"));
        }
        self.audit(
            org,
            actor,
            Action::LimitsPut,
            sa,
            json!({
                "rate_limit": limits.rate_limit,
                "daily_quota": limits.daily_quota,
                "monthly_quota": limits.monthly_quota,
            }),
        )
        .await;
        self.limits_view(org, sa, limits).await
    }

    /// Removes the override and the quotas (the counters stay, unread).
    pub(crate) async fn delete_account_limits(
        &self,
        org: &str,
        sa: &str,
        actor: &str,
    ) -> RegistryResult<()> {
        self.account(org, sa).await?;
        self.store.delete_account_limits(org, sa).await?;
        self.audit(org, actor, Action::LimitsDelete, sa, json!({}))
            .await;
        Ok(())
    }

    async fn limits_view(
        &self,
        org: &str,
        sa: &str,
        limits: AccountLimits,
    ) -> RegistryResult<LimitsView> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let used = self.store.quota_usage(org, sa, now).await?;
        let view = |period: Period, used: u64, limit: Option<u64>| QuotaView {
            used,
            limit,
            remaining: limit.map(|l| l.saturating_sub(used)),
            resets_at: OffsetDateTime::from_unix_timestamp(period.end(now))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        };
        Ok(LimitsView {
            service_account_id: sa.to_string(),
            rate_limit: limits.rate_limit,
            daily_quota: limits.daily_quota,
            monthly_quota: limits.monthly_quota,
            quota_usage: QuotaUsageView {
                daily: view(Period::Daily, used.daily, limits.daily_quota),
                monthly: view(Period::Monthly, used.monthly, limits.monthly_quota),
            },
        })
    }
}
