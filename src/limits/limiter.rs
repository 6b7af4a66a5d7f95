//! The limit check of a proxied request: the route's rate limit, then the
//! account's quotas. Units are leased from the store and spent locally
//! ([`super::budget`]); an account's override and quotas are kept for
//! `limits.settings_ttl_ms`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::account::{AccountLimits, Period};
use super::budget::{Lease, Table, Take};
use super::config::{LimitsConfig, OnStoreError};
use super::metrics::LimitMetrics;
use super::policy::{By, Per, RateLimit};
use crate::model::TokenRecord;
use crate::policy::{Mode, Route};
use crate::store::{QuotaLimits, Store, StoreError, StoreResult};

/// How long a refusal by the store is repeated locally before asking
/// again: a flood over a limit costs one round trip per bucket per this,
/// and a limit raised meanwhile is seen this late at most.
const REFUSAL_HOLD: Duration = Duration::from_secs(1);

/// Which limit refused, for the `RateLimit` headers and the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// The route's rate limit (or the account's override of it).
    Rate,
    Quota(Period),
}

impl Exceeded {
    /// The policy name in the `RateLimit-Policy` and `RateLimit` headers.
    pub fn policy_name(self) -> &'static str {
        match self {
            Exceeded::Rate => "rate",
            Exceeded::Quota(p) => p.as_str(),
        }
    }
}

/// A limit that was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub exceeded: Exceeded,
    /// The limit's size (requests per window).
    pub limit: u64,
    /// The window's length in seconds.
    pub window_secs: u64,
    /// Until the window (the period) ends.
    pub reset: Duration,
}

/// What the limit check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No limit applies to the request.
    Unlimited,
    /// Within every limit that applies.
    Ok,
    /// Over a route's limit in report mode: forwarded, and recorded.
    ReportLimited(Refusal),
    /// Over a limit: 429.
    Limited(Refusal),
    /// The store could not answer and `on_store_error = "open"`: forwarded.
    FailedOpen,
    /// The store could not answer: 503.
    Unavailable,
}

impl Verdict {
    /// The access log's `limit` field.
    pub fn log_label(self) -> &'static str {
        match self {
            Verdict::Unlimited => "-",
            Verdict::Ok => "ok",
            Verdict::ReportLimited(_) => "report_limited",
            Verdict::Limited(Refusal {
                exceeded: Exceeded::Rate,
                ..
            }) => "rate_limited",
            Verdict::Limited(_) => "quota_exceeded",
            Verdict::FailedOpen => "failed_open",
            Verdict::Unavailable => "unavailable",
        }
    }
}

/// What a lease is asked of.
enum Ask<'a> {
    Rate {
        bucket: &'a str,
        limit: u64,
        per: Per,
    },
    Quota {
        org: &'a str,
        sa: &'a str,
        limits: QuotaLimits,
        now_unix: i64,
    },
}

enum Spent {
    Yes,
    No { reset: Duration, tag: u8 },
}

struct Settings {
    org: String,
    limits: Option<Arc<AccountLimits>>,
    at: Instant,
}

pub struct Limiter {
    store: Arc<dyn Store>,
    cfg: LimitsConfig,
    table: Table,
    /// Account id → its limits as last read (`None`: none set).
    settings: Mutex<HashMap<String, Settings>>,
}

impl Limiter {
    pub fn new(store: Arc<dyn Store>, cfg: LimitsConfig) -> Limiter {
        // Registered now, so that the families are in the first scrape.
        LimitMetrics::get();
        Limiter {
            store,
            table: Table::new(cfg.max_buckets),
            cfg,
            settings: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.cfg
    }

    /// The check of one request about to be forwarded, for the proxy and
    /// decision listeners: nothing when no limit can apply, from memory
    /// when it can be, else (boxed: it may wait for the store) with a
    /// lease. The clock is read here, for the quotas' day and month.
    pub async fn check_request(
        &self,
        route: &Route,
        caller: Option<&TokenRecord>,
        source: Option<IpAddr>,
    ) -> Verdict {
        if route.rate_limit.is_none() && caller.is_none() {
            return Verdict::Unlimited;
        }
        // The clock is read only when a quota is counted.
        let now = || time::OffsetDateTime::now_utc().unix_timestamp();
        match self.check_now_with(route, caller, source, &now) {
            Some(v) => v,
            None => Box::pin(self.check(route, caller, source, now())).await,
        }
    }

    /// The check without waiting, when it needs nothing but memory: no
    /// limit applies, or the account's settings are fresh and a leased unit
    /// is at hand (or the store's refusal is held). `None`: call [`check`].
    ///
    /// [`check`]: Limiter::check
    pub fn check_now(
        &self,
        route: &Route,
        caller: Option<&TokenRecord>,
        source: Option<IpAddr>,
        now_unix: i64,
    ) -> Option<Verdict> {
        self.check_now_with(route, caller, source, &|| now_unix)
    }

    /// [`check_now`](Limiter::check_now) with the time (unix seconds) read
    /// only when a quota needs it.
    fn check_now_with(
        &self,
        route: &Route,
        caller: Option<&TokenRecord>,
        source: Option<IpAddr>,
        now_unix: &dyn Fn() -> i64,
    ) -> Option<Verdict> {
        let rate = route.rate_limit.as_ref();
        let Some(caller) = caller else {
            return match rate {
                Some(rl) if rl.by == By::Source => self.rate_now(route, rl, None, None, source),
                _ => Some(Verdict::Unlimited),
            };
        };
        let account = self.account_now(&caller.organization_id, &caller.service_account_id)?;
        let quota = account.as_deref().filter(|a| a.has_quota());
        match (rate, quota) {
            (None, None) => Some(Verdict::Unlimited),
            (Some(rl), None) => self.rate_now(route, rl, Some(caller), account.as_deref(), source),
            (None, Some(limits)) => match self.quota_now(caller, limits, now_unix())? {
                None => Some(Verdict::Ok),
                Some(refusal) => Some(Verdict::Limited(refusal)),
            },
            // Both: the slow path spends each once.
            (Some(_), Some(_)) => None,
        }
    }

    /// Checks a request that is about to be forwarded. `caller` is the
    /// token's record when there is one; `source` the request's source
    /// address (only read by `by = "source"`). `now_unix` places quotas in
    /// their day and month.
    pub async fn check(
        &self,
        route: &Route,
        caller: Option<&TokenRecord>,
        source: Option<IpAddr>,
        now_unix: i64,
    ) -> Verdict {
        let rate = route.rate_limit.as_ref();
        let Some(caller) = caller else {
            return match rate {
                Some(rl) if rl.by == By::Source => self
                    .rate(route, rl, None, None, source)
                    .await
                    .unwrap_or_else(|e| self.failed(&e)),
                _ => Verdict::Unlimited,
            };
        };
        let account = match self
            .account(&caller.organization_id, &caller.service_account_id)
            .await
        {
            Ok(a) => a,
            Err(e) => return self.failed(&e),
        };
        let mut verdict = Verdict::Unlimited;
        if let Some(rl) = rate {
            match self
                .rate(route, rl, Some(caller), account.as_deref(), source)
                .await
            {
                Ok(v @ Verdict::Limited(_)) => return v,
                Ok(v) => verdict = v,
                Err(e) => return self.failed(&e),
            }
        }
        if let Some(limits) = account.as_deref().filter(|a| a.has_quota()) {
            match self.quota(caller, limits, now_unix).await {
                Ok(None) => {
                    if verdict == Verdict::Unlimited {
                        verdict = Verdict::Ok;
                    }
                }
                Ok(Some(refusal)) => return Verdict::Limited(refusal),
                Err(e) => return self.failed(&e),
            }
        }
        verdict
    }

    /// The bucket and the rate that apply; `None` when nobody can be
    /// counted (a report-mode route forwarding a request without a token,
    /// or a source limit without a source address).
    fn rate_bucket(
        route: &Route,
        rl: &RateLimit,
        caller: Option<&TokenRecord>,
        account: Option<&AccountLimits>,
        source: Option<IpAddr>,
    ) -> Option<(String, u64, Per)> {
        let (requests, per) = match account.and_then(|a| a.rate_limit) {
            Some(o) if rl.by.per_account() => (o.requests, o.per.0),
            _ => (rl.requests, rl.per),
        };
        let id: std::borrow::Cow<'_, str> = match (rl.by, caller) {
            (By::ServiceAccount, Some(c)) => c.service_account_id.as_str().into(),
            (By::Client, Some(c)) => c.client_id.as_str().into(),
            (By::Organization, Some(c)) => c.organization_id.as_str().into(),
            // No source address (the decision listener, whose peer is the
            // ingress): nothing to count it against.
            (By::Source, _) => match source {
                Some(ip) => crate::proxy::netaddr::throttle_bucket(ip)
                    .to_string()
                    .into(),
                None => return None,
            },
            (_, None) => return None,
        };
        let bucket = format!("{}|{}|{}|{}", route.name, rl.by.as_str(), per.as_str(), id);
        Some((bucket, requests, per))
    }

    fn rate_verdict(
        route: &Route,
        rl: &RateLimit,
        requests: u64,
        per: Per,
        spent: Spent,
    ) -> Verdict {
        let Spent::No { reset, .. } = spent else {
            return Verdict::Ok;
        };
        let refusal = Refusal {
            exceeded: Exceeded::Rate,
            limit: requests,
            window_secs: per.seconds(),
            reset,
        };
        LimitMetrics::get()
            .rate_limited
            .with_label_values(&[route.name.as_str(), rl.mode.as_str()])
            .inc();
        match rl.mode {
            Mode::Enforce => Verdict::Limited(refusal),
            Mode::Report => Verdict::ReportLimited(refusal),
        }
    }

    fn rate_now(
        &self,
        route: &Route,
        rl: &RateLimit,
        caller: Option<&TokenRecord>,
        account: Option<&AccountLimits>,
        source: Option<IpAddr>,
    ) -> Option<Verdict> {
        let Some((bucket, requests, per)) = Self::rate_bucket(route, rl, caller, account, source)
        else {
            return Some(Verdict::Unlimited);
        };
        let spent = self.spend_now(&bucket, requests, requests)?;
        Some(Self::rate_verdict(route, rl, requests, per, spent))
    }

    async fn rate(
        &self,
        route: &Route,
        rl: &RateLimit,
        caller: Option<&TokenRecord>,
        account: Option<&AccountLimits>,
        source: Option<IpAddr>,
    ) -> StoreResult<Verdict> {
        let Some((bucket, requests, per)) = Self::rate_bucket(route, rl, caller, account, source)
        else {
            return Ok(Verdict::Unlimited);
        };
        let ask = Ask::Rate {
            bucket: &bucket,
            limit: requests,
            per,
        };
        let spent = self.spend(&bucket, requests, requests, ask).await?;
        Ok(Self::rate_verdict(route, rl, requests, per, spent))
    }

    /// The quota's bucket, its limits, their fingerprint and the most a
    /// fresh period holds.
    fn quota_bucket(
        caller: &TokenRecord,
        limits: &AccountLimits,
    ) -> (String, QuotaLimits, u64, u64) {
        let q = QuotaLimits {
            daily: limits.daily_quota,
            monthly: limits.monthly_quota,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (q.daily, q.monthly).hash(&mut h);
        let initial = q
            .daily
            .unwrap_or(u64::MAX)
            .min(q.monthly.unwrap_or(u64::MAX));
        let bucket = format!(
            "quota|{}|{}",
            caller.organization_id, caller.service_account_id
        );
        (bucket, q, h.finish(), initial)
    }

    fn quota_verdict(q: QuotaLimits, spent: Spent, now_unix: i64) -> Option<Refusal> {
        let m = LimitMetrics::get();
        let Spent::No { tag, .. } = spent else {
            m.quota_requests.inc();
            return None;
        };
        let period = if tag == Period::Monthly as u8 {
            Period::Monthly
        } else {
            Period::Daily
        };
        m.quota_exceeded.with_label_values(&[period.as_str()]).inc();
        let limit = match period {
            Period::Daily => q.daily,
            Period::Monthly => q.monthly,
        };
        let start = match period {
            Period::Daily => now_unix - now_unix.rem_euclid(86_400),
            Period::Monthly => period_start_month(now_unix),
        };
        let end = period.end(now_unix);
        Some(Refusal {
            exceeded: Exceeded::Quota(period),
            limit: limit.unwrap_or(0),
            window_secs: u64::try_from(end - start).unwrap_or(0),
            reset: Duration::from_secs(u64::try_from(end - now_unix).unwrap_or(0)),
        })
    }

    /// `Some(None)`: within the quotas; `None`: the store must be asked.
    fn quota_now(
        &self,
        caller: &TokenRecord,
        limits: &AccountLimits,
        now_unix: i64,
    ) -> Option<Option<Refusal>> {
        let (bucket, q, fingerprint, initial) = Self::quota_bucket(caller, limits);
        let spent = self.spend_now(&bucket, fingerprint, initial)?;
        Some(Self::quota_verdict(q, spent, now_unix))
    }

    /// `Ok(None)`: within the quotas.
    async fn quota(
        &self,
        caller: &TokenRecord,
        limits: &AccountLimits,
        now_unix: i64,
    ) -> StoreResult<Option<Refusal>> {
        let (bucket, q, fingerprint, initial) = Self::quota_bucket(caller, limits);
        let ask = Ask::Quota {
            org: &caller.organization_id,
            sa: &caller.service_account_id,
            limits: q,
            now_unix,
        };
        let spent = self.spend(&bucket, fingerprint, initial, ask).await?;
        Ok(Self::quota_verdict(q, spent, now_unix))
    }

    /// Spends a unit held locally, if there is one (or a held refusal).
    fn spend_now(&self, bucket: &str, fingerprint: u64, initial: u64) -> Option<Spent> {
        let now = Instant::now();
        match self
            .table
            .budget(bucket, now)
            .take(now, fingerprint, initial, self.cfg.lease_max)
        {
            Take::Taken => Some(Spent::Yes),
            Take::Refused { reset, tag } => Some(Spent::No { reset, tag }),
            Take::Ask { .. } => None,
        }
    }

    /// Spends one unit of `bucket`: locally when a lease is held, else
    /// after one caller at a time asked the store for a new lease.
    async fn spend(
        &self,
        bucket: &str,
        fingerprint: u64,
        initial: u64,
        ask: Ask<'_>,
    ) -> StoreResult<Spent> {
        let max = self.cfg.lease_max;
        let budget = self.table.budget(bucket, Instant::now());
        let decided = |take: Take| match take {
            Take::Taken => Some(Spent::Yes),
            Take::Refused { reset, tag } => Some(Spent::No { reset, tag }),
            Take::Ask { .. } => None,
        };
        if let Some(done) = decided(budget.take(Instant::now(), fingerprint, initial, max)) {
            return Ok(done);
        }
        let _refilling = budget.refill.lock().await;
        // Up to three leases: one that arrives as its window ends is
        // already spent, and is worth nothing.
        for _ in 0..3 {
            let want = match budget.take(Instant::now(), fingerprint, initial, max) {
                Take::Ask { want } => want,
                // Another caller's lease arrived meanwhile.
                other => return Ok(decided(other).unwrap_or(Spent::Yes)),
            };
            let sent = Instant::now();
            let lease = self.lease(&ask, want).await?;
            budget.grant(sent, fingerprint, lease, REFUSAL_HOLD);
            if let Some(done) = decided(budget.take(Instant::now(), fingerprint, initial, max)) {
                return Ok(done);
            }
        }
        Ok(Spent::No {
            reset: Duration::from_secs(1),
            tag: 0,
        })
    }

    async fn lease(&self, ask: &Ask<'_>, want: u64) -> StoreResult<Lease> {
        let m = LimitMetrics::get();
        let (kind, lease) = match *ask {
            Ask::Rate { bucket, limit, per } => {
                let window_ms = per.seconds() * 1000;
                let g = self.store.take_rate(bucket, want, limit, window_ms).await?;
                let lease = Lease {
                    granted: g.granted,
                    remaining: limit.saturating_sub(g.used),
                    valid_for: Duration::from_millis(g.reset_ms.min(window_ms)),
                    tag: 0,
                };
                ("rate", lease)
            }
            Ask::Quota {
                org,
                sa,
                limits,
                now_unix,
            } => {
                let g = self
                    .store
                    .take_quota(org, sa, want, limits, now_unix)
                    .await?;
                let left = |l: Option<u64>, used: u64| l.map(|l| l.saturating_sub(used));
                let daily = left(limits.daily, g.used.daily);
                let monthly = left(limits.monthly, g.used.monthly);
                if let Some(d) = daily {
                    m.quota_remaining(Period::Daily, &Period::Daily.label(now_unix), d);
                }
                if let Some(mo) = monthly {
                    m.quota_remaining(Period::Monthly, &Period::Monthly.label(now_unix), mo);
                }
                // Which ran out, when nothing was granted: the day's first.
                let tag = match (daily, monthly) {
                    (Some(0), _) => Period::Daily as u8,
                    (_, Some(0)) => Period::Monthly as u8,
                    _ => Period::Daily as u8,
                };
                // Leases end with the day: the counters' keys change then.
                let ends = Period::Daily.end(now_unix);
                let lease = Lease {
                    granted: g.granted,
                    remaining: daily.unwrap_or(u64::MAX).min(monthly.unwrap_or(u64::MAX)),
                    valid_for: Duration::from_secs(u64::try_from(ends - now_unix).unwrap_or(0)),
                    tag,
                };
                ("quota", lease)
            }
        };
        let result = if lease.granted > 0 {
            "granted"
        } else {
            "refused"
        };
        m.leases.with_label_values(&[kind, result]).inc();
        Ok(lease)
    }

    /// An account's limits if read within the TTL.
    fn account_now(&self, org: &str, sa: &str) -> Option<Option<Arc<AccountLimits>>> {
        let map = self.settings.lock().ok()?;
        let s = map.get(sa)?;
        (s.org == org && s.at.elapsed() < self.cfg.settings_ttl).then(|| s.limits.clone())
    }

    /// An account's limits, from memory when read within the TTL. A store
    /// that cannot answer keeps what was last read (and is asked again
    /// after another TTL); with nothing read yet, the error stands.
    async fn account(&self, org: &str, sa: &str) -> StoreResult<Option<Arc<AccountLimits>>> {
        let now = Instant::now();
        let stale = {
            let map = self.settings.lock().map_err(poisoned)?;
            match map.get(sa) {
                Some(s) if s.org == org && now.duration_since(s.at) < self.cfg.settings_ttl => {
                    return Ok(s.limits.clone());
                }
                Some(s) if s.org == org => Some(s.limits.clone()),
                _ => None,
            }
        };
        let read = self.store.get_account_limits(org, sa).await;
        let limits = match (read, stale) {
            (Ok(l), _) => l.filter(|l| !l.is_empty()).map(Arc::new),
            (Err(e), None) => return Err(e),
            (Err(e), Some(stale)) => {
                crate::metrics::Metrics::get().store_error("account_limits");
                tracing::warn!(error = %e, "account limits not refreshed; keeping the last read");
                stale
            }
        };
        let mut map = self.settings.lock().map_err(poisoned)?;
        if map.len() >= self.cfg.max_buckets {
            map.clear();
        }
        map.insert(
            sa.to_string(),
            Settings {
                org: org.to_string(),
                limits: limits.clone(),
                at: now,
            },
        );
        Ok(limits)
    }

    /// Drops what is kept of an account's limits (they were changed here).
    pub fn forget_account(&self, sa: &str) {
        if let Ok(mut map) = self.settings.lock() {
            map.remove(sa);
        }
    }

    fn failed(&self, e: &StoreError) -> Verdict {
        crate::metrics::Metrics::get().store_error("rate_limit");
        let m = LimitMetrics::get();
        match self.cfg.on_store_error {
            OnStoreError::Open => {
                m.store_failures.with_label_values(&["failed_open"]).inc();
                tracing::warn!(error = %e, "limit check failed; forwarding (limits.on_store_error = open)");
                Verdict::FailedOpen
            }
            OnStoreError::Closed => {
                m.store_failures.with_label_values(&["failed_closed"]).inc();
                tracing::warn!(error = %e, "limit check failed; refusing");
                Verdict::Unavailable
            }
        }
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("limits lock poisoned".into())
}

/// The first second of `now_unix`'s UTC month.
fn period_start_month(now_unix: i64) -> i64 {
    let d = time::OffsetDateTime::from_unix_timestamp(now_unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    d.replace_day(1).map_or(now_unix, |first| {
        first
            .with_time(time::Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp()
    })
}

#[cfg(test)]
mod tests;
