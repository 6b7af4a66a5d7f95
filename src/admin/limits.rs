//! `/service-accounts/{sa}/limits`: an account's override of the routes'
//! per-account rate limits and its daily and monthly quotas, with what the
//! quotas have left (docs/limits.md).

use super::input::Fields;
use super::reply::Reply;
use super::{Call, Handled};
use crate::limits::AccountLimits;

const RATE: &str = "an object {\"requests\": 1.., \"per\": \"1s\"|\"1m\"|\"1h\"} or null";
const QUOTA: &str = "a whole number or null";

pub(super) async fn get(c: &Call<'_>) -> Handled {
    let view = c.registry.get_account_limits(c.path.org, c.path.sa).await?;
    Ok(Reply::ok(&view))
}

/// `PUT {rate_limit?, daily_quota?, monthly_quota?}`: replaces them all
/// (omitted or null: none).
pub(super) async fn put(c: &Call<'_>) -> Handled {
    let mut f = Fields::parse(c.body, &["rate_limit", "daily_quota", "monthly_quota"])?;
    let limits = AccountLimits {
        rate_limit: f.nullable("rate_limit", RATE)?.flatten(),
        daily_quota: f.nullable("daily_quota", QUOTA)?.flatten(),
        monthly_quota: f.nullable("monthly_quota", QUOTA)?.flatten(),
    };
    let view = c
        .registry
        .put_account_limits(c.path.org, c.path.sa, c.actor, limits)
        .await?;
    Ok(Reply::ok(&view))
}

pub(super) async fn delete(c: &Call<'_>) -> Handled {
    c.registry
        .delete_account_limits(c.path.org, c.path.sa, c.actor)
        .await?;
    Ok(Reply::no_content())
}
