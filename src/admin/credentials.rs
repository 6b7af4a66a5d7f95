//! `/service-accounts/{sa}/credentials` and `…/credentials/{cred}` with its
//! `rotate-secret` (docs/contract.md §4). A secret is shown only in the
//! answers to create and rotate.

use http::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::input::{rotate_body, Fields, ListParams, A_STRING, A_STRING_OR_NULL};
use super::reply::Reply;
use super::service_accounts::check_admin_secret;
use super::{Call, Handled};
use crate::registry::{CredentialPatch, IssuedCredential};

/// CredentialWithSecret: the credential and its `client_secret`.
pub(super) fn with_secret(issued: &IssuedCredential) -> Value {
    let mut v = serde_json::to_value(&issued.credential).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert(
            "client_secret".into(),
            Value::String(issued.client_secret.expose_secret().to_string()),
        );
    }
    v
}

/// `POST {name, description?}`.
pub(super) async fn create(c: &Call<'_>) -> Handled {
    let mut f = Fields::parse(c.body, &["name", "description"])?;
    let name = f.required("name", A_STRING)?;
    let description = f.nullable("description", A_STRING_OR_NULL)?.flatten();
    check_admin_secret(c).await?;
    let issued = c
        .registry
        .create_credential(c.path.org, c.path.sa, c.actor, name, description)
        .await?;
    Ok(Reply::json(StatusCode::CREATED, &with_secret(&issued)))
}

pub(super) async fn list(c: &Call<'_>) -> Handled {
    let p = ListParams::parse(c.query)?;
    let page = c
        .registry
        .list_credentials(c.path.org, c.path.sa, p.limit, p.after())
        .await?;
    Ok(Reply::page(page))
}

pub(super) async fn get(c: &Call<'_>) -> Handled {
    let cred = c
        .registry
        .get_credential(c.path.org, c.path.sa, c.path.cred)
        .await?;
    Ok(Reply::ok(&cred))
}

/// `PATCH {name?, description?}`.
pub(super) async fn update(c: &Call<'_>) -> Handled {
    let mut f = Fields::parse(c.body, &["name", "description"])?;
    let patch = CredentialPatch {
        name: f.optional("name", A_STRING)?,
        description: f.nullable("description", A_STRING_OR_NULL)?,
    };
    let cred = c
        .registry
        .update_credential(c.path.org, c.path.sa, c.path.cred, c.actor, patch)
        .await?;
    Ok(Reply::ok(&cred))
}

pub(super) async fn delete(c: &Call<'_>) -> Handled {
    c.registry
        .delete_credential(c.path.org, c.path.sa, c.path.cred, c.actor)
        .await?;
    Ok(Reply::no_content())
}

/// `POST /rotate-secret {grace_seconds?}`.
pub(super) async fn rotate_secret(c: &Call<'_>) -> Handled {
    let grace = rotate_body(c.body)?;
    check_admin_secret(c).await?;
    let issued = c
        .registry
        .rotate_credential(c.path.org, c.path.sa, c.path.cred, c.actor, grace)
        .await?;
    Ok(Reply::ok(&with_secret(&issued)))
}
