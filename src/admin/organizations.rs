//! What acts on a whole organization: `POST /revoke-tokens`, the kill
//! switch (docs/contract.md §4). tollgate keeps no organization object.

use serde_json::json;

use super::input::Fields;
use super::reply::Reply;
use super::{Call, Handled};

/// Every live token of every account of the organization.
pub(super) async fn revoke_tokens(c: &Call<'_>) -> Handled {
    // No body, `{}` or whitespace; any field is unknown (400).
    Fields::parse_optional(c.body, &[])?;
    let n = c
        .registry
        .revoke_organization_tokens(c.path.org, c.actor)
        .await?;
    Ok(Reply::ok(&json!({"revoked": n})))
}
