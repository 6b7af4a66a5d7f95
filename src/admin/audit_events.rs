//! `GET /audit-events`: the organization's audit events, newest first
//! (docs/contract.md §7).

use super::input::ListParams;
use super::reply::Reply;
use super::{Call, Handled};

pub(super) async fn list(c: &Call<'_>) -> Handled {
    let p = ListParams::parse(c.query)?;
    let page = c
        .registry
        .list_audit(c.path.org, p.limit, p.after())
        .await?;
    Ok(Reply::page(page))
}
