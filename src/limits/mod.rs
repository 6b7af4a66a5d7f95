//! Rate limits on routes and quotas on service accounts (docs/limits.md).
//!
//! | module | owns |
//! |---|---|
//! | `policy` | a route's `rate_limit` as written and checked |
//! | `account` | an account's override and quotas (admin API), quota periods |
//! | `budget` | leases from the store spent locally; the bucket table |
//! | `limiter` | the check of one request: route limit, then quotas |
//! | `answer` | the 429's `Retry-After`, `RateLimit-Policy` and `RateLimit` |
//! | `config` | `[limits]` |
//! | `metrics` | the limits' metrics |

mod account;
mod answer;
pub(crate) mod budget;
mod config;
mod limiter;
pub(crate) mod metrics;
mod policy;

pub use account::{AccountLimits, PerText, Period, RateOverride};
pub use answer::{refusal_headers, retry_after_secs};
pub use config::{LimitsConfig, LimitsFile, OnStoreError};
pub use limiter::{Exceeded, Limiter, Refusal, Verdict};
pub use policy::{By, Per, RateLimit, MAX_REQUESTS};
