//! `/service-accounts` and `/service-accounts/{sa}` with its account-level
//! `rotate-secret` and `revoke-tokens` (docs/contract.md §4).

use http::StatusCode;
use serde_json::json;

use super::credentials::with_secret;
use super::error::AdminError;
use super::input::{rotate_body, Fields, ListParams, A_STRING, A_STRING_OR_NULL};
use super::reply::Reply;
use super::{Call, Handled};
use crate::registry::{AccountPolicyPatch, NewServiceAccount, ServiceAccountPatch};
use crate::scope::ADMIN_RESOURCE;

const SCOPE_LIST: &str = "a list of scope strings";

/// `admin:read`/`admin:write` are granted only with an admin key of the
/// organization (or an operator's), never by a management token.
fn check_admin_grant(c: &Call<'_>, scopes: &[String]) -> Result<(), AdminError> {
    let admin = format!("{ADMIN_RESOURCE}:");
    if !c.principal.may_grant_admin_scopes() && scopes.iter().any(|s| s.starts_with(&admin)) {
        return Err(AdminError::Forbidden(
            "admin:read and admin:write are granted only with an admin key",
        ));
    }
    Ok(())
}

/// A secret of an account granted `admin:*` (a new credential, a rotated
/// secret) is handed out only to an admin key of the organization (or an
/// operator's), never to a management token: with it the token's holder
/// would gain that account's admin power, and keep it after their own
/// account lost its grant (the same reason a token cannot grant `admin:*`).
pub(super) async fn check_admin_secret(c: &Call<'_>) -> Result<(), AdminError> {
    if c.principal.may_grant_admin_scopes() {
        return Ok(());
    }
    let sa = c
        .registry
        .get_service_account(c.path.org, c.path.sa)
        .await?;
    if sa.scopes.iter().any(|s| s.resource == ADMIN_RESOURCE) {
        return Err(AdminError::Forbidden(
            "the secrets of an account granted admin:read or admin:write are made only with an admin key",
        ));
    }
    Ok(())
}

/// An operation's own fields and the account policy's.
fn allowed<'a>(own: &[&'a str]) -> Vec<&'a str> {
    own.iter()
        .copied()
        .chain(AccountPolicyPatch::FIELDS)
        .collect()
}

/// The token settings and IP allowlist of a create or update body.
fn policy_fields(f: &mut Fields) -> Result<AccountPolicyPatch, AdminError> {
    Ok(AccountPolicyPatch {
        token_ttl_seconds: f.nullable("token_ttl_seconds", "a positive integer or null")?,
        max_live_tokens: f.nullable("max_live_tokens", "a positive integer or null")?,
        token_issue_limit: f.nullable(
            "token_issue_limit",
            "{\"requests\": N, \"per\": \"1s\" | \"1m\" | \"1h\"} or null",
        )?,
        ip_allowlist: f.optional("ip_allowlist", "a list of CIDR strings")?,
        ip_allowlist_on_requests: f.optional("ip_allowlist_on_requests", "true or false")?,
    })
}

/// `POST`: the account and its first credential, whose secret is shown once.
pub(super) async fn create(c: &Call<'_>) -> Handled {
    let mut f = Fields::parse(c.body, &allowed(&["name", "description", "scopes"]))?;
    let input = NewServiceAccount {
        name: f.required("name", A_STRING)?,
        description: f.nullable("description", A_STRING_OR_NULL)?.flatten(),
        scopes: f.required("scopes", SCOPE_LIST)?,
        policy: policy_fields(&mut f)?,
    };
    check_admin_grant(c, &input.scopes)?;
    let (sa, cred) = c
        .registry
        .create_service_account(c.path.org, c.actor, input)
        .await?;
    Ok(Reply::json(
        StatusCode::CREATED,
        &json!({"service_account": sa, "credential": with_secret(&cred)}),
    ))
}

/// `GET ?q=&limit=&after=`.
pub(super) async fn list(c: &Call<'_>) -> Handled {
    let p = ListParams::parse(c.query)?;
    let page = c
        .registry
        .list_service_accounts(c.path.org, p.q.as_deref(), p.limit, p.after())
        .await?;
    Ok(Reply::page(page))
}

pub(super) async fn get(c: &Call<'_>) -> Handled {
    let sa = c
        .registry
        .get_service_account(c.path.org, c.path.sa)
        .await?;
    Ok(Reply::ok(&sa))
}

/// `PATCH {name?, description?, scopes?, status?}`.
pub(super) async fn update(c: &Call<'_>) -> Handled {
    let mut f = Fields::parse(
        c.body,
        &allowed(&["name", "description", "scopes", "status"]),
    )?;
    let patch = ServiceAccountPatch {
        name: f.optional("name", A_STRING)?,
        description: f.nullable("description", A_STRING_OR_NULL)?,
        scopes: f.optional("scopes", SCOPE_LIST)?,
        status: f.optional("status", "\"active\" or \"disabled\"")?,
        policy: policy_fields(&mut f)?,
    };
    if let Some(scopes) = &patch.scopes {
        check_admin_grant(c, scopes)?;
    }
    let sa = c
        .registry
        .update_service_account(c.path.org, c.path.sa, c.actor, patch)
        .await?;
    Ok(Reply::ok(&sa))
}

pub(super) async fn delete(c: &Call<'_>) -> Handled {
    c.registry
        .delete_service_account(c.path.org, c.path.sa, c.actor)
        .await?;
    Ok(Reply::no_content())
}

/// `POST /rotate-secret {grace_seconds?}`: only for an account with one
/// credential.
pub(super) async fn rotate_secret(c: &Call<'_>) -> Handled {
    let grace = rotate_body(c.body)?;
    check_admin_secret(c).await?;
    let issued = c
        .registry
        .rotate_service_account_secret(c.path.org, c.path.sa, c.actor, grace)
        .await?;
    Ok(Reply::ok(&with_secret(&issued)))
}

/// `POST /revoke-tokens`: every live token of the account.
pub(super) async fn revoke_tokens(c: &Call<'_>) -> Handled {
    // No body, `{}` or whitespace; any field is unknown (400).
    Fields::parse_optional(c.body, &[])?;
    let n = c
        .registry
        .revoke_service_account_tokens(c.path.org, c.path.sa, c.actor)
        .await?;
    Ok(Reply::ok(&json!({"revoked": n})))
}
