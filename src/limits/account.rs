//! A service account's own limits, set through the admin API: an override
//! of the routes' rate limits that count per account (`by =
//! "service_account"` or `"client"`) and daily/monthly request quotas.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

use super::policy::Per;

/// The rate that replaces a route's `requests`/`per` for this account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateOverride {
    pub requests: u64,
    pub per: PerText,
}

/// `Per` on the wire: `"1s"`, `"1m"`, `"1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PerText(pub Per);

impl TryFrom<String> for PerText {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Per::parse(&s)
            .map(PerText)
            .ok_or_else(|| "per must be one of 1s, 1m, 1h".to_string())
    }
}

impl From<PerText> for String {
    fn from(p: PerText) -> String {
        p.0.as_str().to_string()
    }
}

/// What the store keeps per account (absent: no override, no quota).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimits {
    pub rate_limit: Option<RateOverride>,
    pub daily_quota: Option<u64>,
    pub monthly_quota: Option<u64>,
}

impl AccountLimits {
    pub fn has_quota(&self) -> bool {
        self.daily_quota.is_some() || self.monthly_quota.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.rate_limit.is_none() && !self.has_quota()
    }
}

/// A quota's period: the UTC calendar day or month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    Daily,
    Monthly,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Daily, Period::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Monthly => "monthly",
        }
    }

    /// The period `now_unix` falls in, as a key part: `2026-12-05` or `2026-12`.
    pub fn label(self, now_unix: i64) -> String {
        let d = date_of(now_unix);
        match self {
            Period::Daily => format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()),
            Period::Monthly => format!("{:04}-{:02}", d.year(), d.month() as u8),
        }
    }

    /// When the period `now_unix` falls in ends (unix seconds).
    pub fn end(self, now_unix: i64) -> i64 {
        let d = date_of(now_unix);
        let next = match self {
            Period::Daily => d.next_day(),
            Period::Monthly => {
                let (y, m) = match d.month() {
                    Month::December => (d.year() + 1, Month::January),
                    m => (d.year(), m.next()),
                };
                Date::from_calendar_date(y, m, 1).ok()
            }
        };
        next.map_or(i64::MAX, |n| {
            n.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp()
        })
    }

    /// How long a counter of the period is kept: past its end, with room
    /// for clocks that differ.
    pub fn keep_seconds(self) -> u64 {
        match self {
            Period::Daily => 2 * 86_400,
            Period::Monthly => 32 * 86_400,
        }
    }
}

fn date_of(now_unix: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(now_unix)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_calendar_days_and_months() {
        // 2026-12-31T23:59:59Z
        let t = 1_798_761_599;
        assert_eq!(Period::Daily.label(t), "2026-12-31");
        assert_eq!(Period::Monthly.label(t), "2026-12");
        assert_eq!(Period::Daily.end(t), t + 1);
        assert_eq!(Period::Monthly.end(t), t + 1);
        assert_eq!(Period::Daily.label(t + 1), "2027-01-01");
        // 2027-02-10T12:00:00Z: the month ends on 1 March.
        let feb = 1_802_260_800;
        assert_eq!(Period::Monthly.label(feb), "2027-02");
        assert_eq!(Period::Monthly.end(feb), 1_803_859_200);
    }

    #[test]
    fn the_record_round_trips_as_json() {
        let l = AccountLimits {
            rate_limit: Some(RateOverride {
                requests: 5,
                per: PerText(Per::Minute),
            }),
            daily_quota: Some(10),
            monthly_quota: None,
        };
        let text = serde_json::to_string(&l).expect("encode");
        assert!(text.contains("\"per\":\"1m\""), "{text}");
        assert_eq!(
            serde_json::from_str::<AccountLimits>(&text).expect("decode"),
            l
        );
    }
}
