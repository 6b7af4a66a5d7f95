//! The registry's records as they are stored and shown by the admin API,
//! and the access-token record the proxy checks on every request.

use std::fmt;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::account_policy::AccountPolicy;
use crate::scope::{Role, ScopeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaStatus {
    Active,
    Disabled,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    pub scopes: ScopeSet,
    pub status: SaStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Token settings and IP allowlist, shown as fields of the account.
    #[serde(flatten)]
    pub policy: AccountPolicy,
}

/// A credential as stored: the secret only as argon2id PHC hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    pub id: String,
    pub organization_id: String,
    pub service_account_id: String,
    pub client_id: String,
    pub name: String,
    pub description: Option<String>,
    pub secret_hash: String,
    /// The secret replaced by a rotation with a grace period, valid until
    /// `previous_secret_expires_at`.
    pub previous_secret_hash: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// `secret::secret_check` of the current secret, and of the previous
    /// one while it is valid; `None` for credentials made before it was
    /// kept (their previous secret is then always verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_check: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Bumped on every secret change; part of the verified-secret cache key.
    #[serde(default)]
    pub generation: u64,
}

/// A credential as the admin API shows it: never a secret or a hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub id: String,
    pub service_account_id: String,
    pub client_id: String,
    pub name: String,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
}

impl StoredCredential {
    /// The public view; a grace period that has run out shows as null.
    pub fn public(&self, now: OffsetDateTime) -> Credential {
        Credential {
            id: self.id.clone(),
            service_account_id: self.service_account_id.clone(),
            client_id: self.client_id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            previous_secret_expires_at: self.previous_secret_expires_at.filter(|t| *t > now),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub id: String,
    pub workspace_id: String,
    pub organization_id: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One environment as one service account sees it: the environment
/// (`None`: unknown) and the account's role in its workspace (`None`: no
/// membership). The store answers it, the decision cache keeps it and the
/// decision reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvironmentRole {
    pub environment: Option<Arc<EnvironmentRef>>,
    pub role: Option<Role>,
}

/// What one request's decision needs, looked up together: the token record
/// and, when an environment was asked for and the token found, the
/// account's [`EnvironmentRole`] there. The one type of the look-up, from the
/// store through the decision cache to the decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessFacts {
    pub token: Option<Arc<TokenRecord>>,
    pub environment: Option<Arc<EnvironmentRole>>,
}

/// What a decision needs of an environment: where it belongs. The proxy's
/// look-ups read only this, so a cache miss never decodes a name or parses
/// a timestamp it would not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentRef {
    pub id: String,
    pub workspace_id: String,
    pub organization_id: String,
    /// The workspace and environment ids as header values (the proxy makes
    /// them on first use).
    pub header_values: Derived<Option<[HeaderValue; 2]>>,
}

impl From<&Environment> for EnvironmentRef {
    fn from(env: &Environment) -> EnvironmentRef {
        EnvironmentRef {
            id: env.id.clone(),
            workspace_id: env.workspace_id.clone(),
            organization_id: env.organization_id.clone(),
            header_values: Derived::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub workspace_id: String,
    pub service_account_id: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What a live access token carries, kept small: Redis holds one per live
/// token. Stored under the token's hash ([`crate::secret::token_hash`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    #[serde(rename = "o")]
    pub organization_id: String,
    #[serde(rename = "s")]
    pub service_account_id: String,
    #[serde(rename = "i")]
    pub client_id: String,
    #[serde(rename = "p")]
    pub scopes: ScopeSet,
    /// Unix seconds.
    #[serde(rename = "x")]
    pub expires_at: i64,
    /// The account's IP allowlist when it asked for every request to be
    /// checked (`ip_allowlist_on_requests`), as it was at issuance.
    #[serde(
        rename = "n",
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::account_policy::cidr_option"
    )]
    pub allowed_sources: Option<Arc<[ipnet::IpNet]>>,
    /// The organization, client and account ids and the scopes as header
    /// values (the proxy makes them on first use).
    #[serde(skip)]
    pub header_values: Derived<Option<[HeaderValue; 4]>>,
}

/// A value derived from a record (or a route) on first use and kept with it
/// while it is shared: the decision cache hands one `Arc` of a record to
/// every request that needs it, and a policy's routes serve every request
/// until the next reload, so the value is made once instead of once per
/// request. Not stored, not compared (records that differ only here are
/// equal), not printed; a clone starts empty.
pub struct Derived<T>(OnceLock<T>);

impl<T> Derived<T> {
    pub fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(make)
    }
}

impl<T> Default for Derived<T> {
    fn default() -> Derived<T> {
        Derived(OnceLock::new())
    }
}

impl<T> Clone for Derived<T> {
    fn clone(&self) -> Derived<T> {
        Derived::default()
    }
}

impl<T> PartialEq for Derived<T> {
    fn eq(&self, _: &Derived<T>) -> bool {
        true
    }
}

impl<T> Eq for Derived<T> {}

impl<T> fmt::Debug for Derived<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Derived")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub organization_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub details: serde_json::Value,
}

/// An admin key made through the admin API (docs/contract.md §4.1): scoped
/// to one organization, or to one workspace of it. The key is shown once;
/// the store keeps its argon2id hash, never the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAdminKey {
    pub id: String,
    pub organization_id: String,
    /// `Some`: the key may manage only this workspace's environments and
    /// members.
    pub workspace_id: Option<String>,
    pub name: String,
    pub secret_hash: String,
    /// The audit actor of whoever made it.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Kept apart from the record by the store (it changes on use).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_used_at: Option<OffsetDateTime>,
    /// A workspace key's workspace, by its `created_at` when the key was
    /// made: the key reaches only that workspace, not one made again later
    /// under the same id. `None` for organization keys and keys made before
    /// it was kept.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub workspace_created_at: Option<OffsetDateTime>,
}

/// An admin key as the admin API shows it: never the key or its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdminKeyView {
    pub id: String,
    pub organization_id: String,
    pub workspace_id: Option<String>,
    pub name: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

impl StoredAdminKey {
    pub fn public(&self) -> AdminKeyView {
        AdminKeyView {
            id: self.id.clone(),
            organization_id: self.organization_id.clone(),
            workspace_id: self.workspace_id.clone(),
            name: self.name.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
        }
    }
}
