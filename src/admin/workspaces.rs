//! `/workspaces/{ws}` and what belongs to a workspace: its environments
//! and its members (docs/contract.md §4).

use super::input::{Fields, ListParams, A_STRING};
use super::reply::Reply;
use super::{Call, Handled};

/// The `{name}` body of a workspace or an environment.
fn name_body(body: &[u8]) -> Result<String, super::error::AdminError> {
    Fields::parse(body, &["name"])?.required("name", A_STRING)
}

pub(super) async fn list(c: &Call<'_>) -> Handled {
    let p = ListParams::parse(c.query)?;
    let page = c
        .registry
        .list_workspaces(c.path.org, p.limit, p.after())
        .await?;
    Ok(Reply::page(page))
}

/// `PUT {name}`: 201 when new, 200 when renamed.
pub(super) async fn put(c: &Call<'_>) -> Handled {
    let name = name_body(c.body)?;
    let (ws, created) = c
        .registry
        .put_workspace(c.path.org, c.path.ws, c.actor, name)
        .await?;
    Ok(Reply::put(created, &ws))
}

pub(super) async fn get(c: &Call<'_>) -> Handled {
    let ws = c.registry.get_workspace(c.path.org, c.path.ws).await?;
    Ok(Reply::ok(&ws))
}

/// Its environments and memberships go with it.
pub(super) async fn delete(c: &Call<'_>) -> Handled {
    c.registry
        .delete_workspace(c.path.org, c.path.ws, c.actor)
        .await?;
    Ok(Reply::no_content())
}

pub(super) async fn list_environments(c: &Call<'_>) -> Handled {
    let p = ListParams::parse(c.query)?;
    let page = c
        .registry
        .list_environments(c.path.org, c.path.ws, p.limit, p.after())
        .await?;
    Ok(Reply::page(page))
}

/// `PUT {name}`: 201 when new, 200 when renamed, 409 when the id belongs
/// to another workspace.
pub(super) async fn put_environment(c: &Call<'_>) -> Handled {
    let name = name_body(c.body)?;
    let (env, created) = c
        .registry
        .put_environment(c.path.org, c.path.ws, c.path.env, c.actor, name)
        .await?;
    Ok(Reply::put(created, &env))
}

pub(super) async fn delete_environment(c: &Call<'_>) -> Handled {
    c.registry
        .delete_environment(c.path.org, c.path.ws, c.path.env, c.actor)
        .await?;
    Ok(Reply::no_content())
}

pub(super) async fn list_members(c: &Call<'_>) -> Handled {
    let p = ListParams::parse(c.query)?;
    let page = c
        .registry
        .list_memberships(c.path.org, c.path.ws, p.limit, p.after())
        .await?;
    Ok(Reply::page(page))
}

/// `PUT {role}`: `member` or `admin`.
pub(super) async fn put_member(c: &Call<'_>) -> Handled {
    let role: String =
        Fields::parse(c.body, &["role"])?.required("role", "\"member\" or \"admin\"")?;
    let membership = c
        .registry
        .put_membership(c.path.org, c.path.ws, c.path.sa, c.actor, &role)
        .await?;
    Ok(Reply::ok(&membership))
}

pub(super) async fn delete_member(c: &Call<'_>) -> Handled {
    c.registry
        .delete_membership(c.path.org, c.path.ws, c.path.sa, c.actor)
        .await?;
    Ok(Reply::no_content())
}
