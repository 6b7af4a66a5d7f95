//! `/admin-keys` and `/admin-keys/{key}` (docs/contract.md §4.1): keys
//! scoped to the organization or to one of its workspaces, made by a
//! holder of a wider key, shown once, revocable.

use http::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::error::AdminError;
use super::input::{Fields, ListParams, A_STRING};
use super::reply::Reply;
use super::{Call, Handled};

const NOT_WIDER: &str = "an admin key is made only by the holder of a wider key";

/// `POST {name, workspace_id?}`: 201 with the key, shown once.
pub(super) async fn create(c: &Call<'_>) -> Handled {
    let mut f = Fields::parse(c.body, &["name", "workspace_id"])?;
    let name: String = f.required("name", A_STRING)?;
    let ws: Option<String> = f
        .nullable("workspace_id", "a workspace id or null")?
        .flatten();
    if !c.principal.may_issue_key(ws.as_deref()) {
        return Err(AdminError::Forbidden(NOT_WIDER));
    }
    let (view, key) = c
        .registry
        .create_admin_key(c.path.org, ws.as_deref(), name, c.actor)
        .await?;
    let mut body = serde_json::to_value(&view).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("key".into(), Value::String(key.expose_secret().to_string()));
    }
    Ok(Reply::json(StatusCode::CREATED, &body))
}

/// Only keys that reach the whole organization list and read keys.
fn may_read_keys(c: &Call<'_>) -> Result<(), AdminError> {
    if c.principal.may_manage_keys() {
        Ok(())
    } else {
        Err(AdminError::Forbidden(NOT_WIDER))
    }
}

pub(super) async fn list(c: &Call<'_>) -> Handled {
    may_read_keys(c)?;
    let p = ListParams::parse(c.query)?;
    let page = c
        .registry
        .list_admin_keys(c.path.org, p.limit, p.after())
        .await?;
    Ok(Reply::page(page))
}

pub(super) async fn get(c: &Call<'_>) -> Handled {
    may_read_keys(c)?;
    let key = c.registry.get_admin_key(c.path.org, c.path.key).await?;
    Ok(Reply::ok(&key.public()))
}

/// `DELETE`: by a holder of a wider key, or the key itself.
pub(super) async fn delete(c: &Call<'_>) -> Handled {
    let own = c.principal.stored_key() == Some(c.path.key);
    if !own {
        may_read_keys(c)?;
        let key = c.registry.get_admin_key(c.path.org, c.path.key).await?;
        if !c.principal.may_issue_key(key.workspace_id.as_deref()) {
            return Err(AdminError::Forbidden(NOT_WIDER));
        }
    }
    c.registry
        .revoke_admin_key(c.path.org, c.path.key, c.actor)
        .await?;
    Ok(Reply::no_content())
}
