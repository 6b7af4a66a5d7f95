//! Rate-limit counters, quota counters and accounts' limits. A rate
//! counter is one key per window under its own hash tag, so buckets spread
//! over a Redis Cluster and one grant is one script in one slot; an
//! account's two quota counters share the account's tag; the limits
//! records live beside the accounts in `{reg}`.

use deadpool_redis::redis;

use super::codec::{decode, encode};
use super::link::Lane;
use super::RedisStore;
use crate::limits::{AccountLimits, Period};
use crate::store::{QuotaGrant, QuotaLimits, QuotaUsed, RateGrant, StoreResult};

const WHAT: &str = "account limits";

fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64)
}

impl RedisStore {
    pub(super) async fn rate_take(
        &self,
        bucket: &str,
        want: u64,
        limit: u64,
        window_ms: u64,
    ) -> StoreResult<RateGrant> {
        let (granted, used, reset_ms): (u64, u64, i64) = self
            .invoke_on(
                Lane::Request,
                "take_rate",
                self.scripts
                    .take_rate
                    .key(self.keys.rl(bucket))
                    .arg(want)
                    .arg(limit)
                    .arg(window_ms.max(1)),
            )
            .await?;
        Ok(RateGrant {
            granted,
            used,
            reset_ms: reset_ms.max(0) as u64,
        })
    }

    fn quota_keys(&self, org: &str, sa: &str, now_unix: i64) -> [String; 2] {
        Period::ALL.map(|p| {
            let short = match p {
                Period::Daily => "d",
                Period::Monthly => "m",
            };
            self.keys.quota(org, sa, short, &p.label(now_unix))
        })
    }

    pub(super) async fn quota_take(
        &self,
        org: &str,
        sa: &str,
        want: u64,
        limits: QuotaLimits,
        now_unix: i64,
    ) -> StoreResult<QuotaGrant> {
        let [day, month] = self.quota_keys(org, sa, now_unix);
        let (granted, daily, monthly): (u64, u64, u64) = self
            .invoke_on(
                Lane::Request,
                "take_quota",
                self.scripts
                    .take_quota
                    .key(day)
                    .key(month)
                    .arg(want)
                    .arg(limit_arg(limits.daily))
                    .arg(limit_arg(limits.monthly))
                    .arg(Period::Daily.keep_seconds())
                    .arg(Period::Monthly.keep_seconds()),
            )
            .await?;
        Ok(QuotaGrant {
            granted,
            used: QuotaUsed { daily, monthly },
        })
    }

    pub(super) async fn quota_read(
        &self,
        org: &str,
        sa: &str,
        now_unix: i64,
    ) -> StoreResult<QuotaUsed> {
        let [day, month] = self.quota_keys(org, sa, now_unix);
        // Two plain GETs: on a cluster MGET needs one slot, which these share.
        let counts: Vec<Option<u64>> = self
            .query("quota_usage", redis::cmd("MGET").arg(day).arg(month))
            .await?;
        let count = |i: usize| counts.get(i).copied().flatten().unwrap_or(0);
        Ok(QuotaUsed {
            daily: count(0),
            monthly: count(1),
        })
    }

    pub(super) async fn limits_put(
        &self,
        org: &str,
        sa: &str,
        limits: &AccountLimits,
    ) -> StoreResult<bool> {
        let done: i64 = self
            .invoke(
                "put_account_limits",
                self.scripts
                    .put_limits
                    .key(self.keys.sa(org))
                    .key(self.keys.salim(org))
                    .arg(sa)
                    .arg(encode(WHAT, limits)?),
            )
            .await?;
        Ok(done == 1)
    }

    pub(super) async fn limits_get(
        &self,
        org: &str,
        sa: &str,
    ) -> StoreResult<Option<AccountLimits>> {
        let raw: Option<String> = self
            .query_on(
                Lane::Request,
                "get_account_limits",
                redis::cmd("HGET").arg(self.keys.salim(org)).arg(sa),
            )
            .await?;
        raw.map(|r| decode(WHAT, &r)).transpose()
    }

    pub(super) async fn limits_delete(&self, org: &str, sa: &str) -> StoreResult<bool> {
        let n: i64 = self
            .query(
                "delete_account_limits",
                redis::cmd("HDEL").arg(self.keys.salim(org)).arg(sa),
            )
            .await?;
        Ok(n == 1)
    }
}
