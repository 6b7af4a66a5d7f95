//! The service-account registry: accounts, credentials, workspaces,
//! environments and memberships. Validates input, applies the token
//! lifecycle rules (`tokens.revoke_on`) and records audit events; the store
//! does the persistence.

mod limits;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{Action, Audit, Event};
use crate::bus::Bus;
use crate::cache::Invalidation;
use crate::config::RevokeOn;
use crate::hashing::Hasher;
use crate::ids::{is_valid_generated_id, is_valid_name_id, new_client_id, new_id};
use crate::model::{
    Credential, Environment, Membership, SaStatus, ServiceAccount, StoredCredential, Workspace,
};
use crate::scope::{Role, ScopeSet};
use crate::secret::new_client_secret;
use crate::store::{EnvPutOutcome, MemberPutOutcome, PutOutcome, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error")]
    Internal,
}

pub(crate) type RegistryResult<T> = Result<T, RegistryError>;

fn invalid(field: &str, problem: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        field: field.to_string(),
        problem: problem.into(),
    }
}

pub(crate) const MAX_GRACE_SECONDS: u64 = 86_400;

/// Reads and writes of one change to a record before giving up with 409
/// (another change came first each time).
const CHANGE_ATTEMPTS: usize = 5;

mod policy;
pub(crate) use policy::AccountPolicyPatch;

pub(crate) struct NewServiceAccount {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) scopes: Vec<String>,
    /// Token settings and IP allowlist; absent fields keep their defaults.
    pub(crate) policy: AccountPolicyPatch,
}

#[derive(Default)]
pub(crate) struct ServiceAccountPatch {
    pub(crate) name: Option<String>,
    /// `Some(None)` clears the description.
    pub(crate) description: Option<Option<String>>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) status: Option<String>,
    pub(crate) policy: AccountPolicyPatch,
}

#[derive(Default)]
pub(crate) struct CredentialPatch {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<Option<String>>,
}

/// A credential with the secret shown once.
pub(crate) struct IssuedCredential {
    pub(crate) credential: Credential,
    pub(crate) client_secret: SecretString,
}

pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_cursor: Option<String>,
}

pub struct Registry {
    store: Arc<dyn Store>,
    hasher: Arc<Hasher>,
    resources: Vec<String>,
    revoke_on: RevokeOn,
    audit: Audit,
    /// Evicts cached decisions here and in every other instance.
    bus: Arc<Bus>,
    /// `tokens.max_ttl_seconds`: the bound of an account's token lifetime.
    max_token_ttl: u64,
}

pub(crate) fn validate_name(field: &str, name: &str) -> RegistryResult<()> {
    let n = name.chars().count();
    if n == 0 || n > 128 {
        return Err(invalid(field, "must be 1 to 128 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    if name.trim().is_empty() {
        return Err(invalid(field, "must not be blank"));
    }
    Ok(())
}

fn validate_description(d: &Option<String>) -> RegistryResult<()> {
    if let Some(d) = d {
        if d.chars().count() > 1024 {
            return Err(invalid("description", "must be at most 1024 characters"));
        }
        if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(invalid(
                "description",
                "must not contain control characters",
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_org(org: &str) -> RegistryResult<()> {
    if is_valid_name_id(org) {
        Ok(())
    } else {
        Err(invalid("organization_id", "must match [A-Za-z0-9_-]{1,64}"))
    }
}

fn check_name_id(field: &str, id: &str) -> RegistryResult<()> {
    if is_valid_name_id(id) {
        Ok(())
    } else {
        Err(invalid(field, "must match [A-Za-z0-9_-]{1,64}"))
    }
}

/// Generated ids (service accounts, credentials) are 26 URL-safe characters.
fn check_generated(field: &str, id: &str) -> RegistryResult<()> {
    if is_valid_generated_id(id) {
        Ok(())
    } else {
        Err(invalid(field, "must be 26 characters from [A-Za-z0-9_-]"))
    }
}

/// Sorted-by-id pagination over a full list; the cursor is the last id.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    limit: usize,
    after: Option<&str>,
) -> Page<T> {
    let mut rest: Vec<T> = match after {
        Some(cursor) => items.into_iter().filter(|t| id(t) > cursor).collect(),
        None => items,
    };
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next_cursor = if more {
        rest.last().map(|t| id(t).to_string())
    } else {
        None
    };
    Page {
        items: rest,
        next_cursor,
    }
}

fn now() -> OffsetDateTime {
    // Whole seconds keep the RFC 3339 output short and stable.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

impl Registry {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        hasher: Arc<Hasher>,
        resources: Vec<String>,
        revoke_on: RevokeOn,
        audit: Audit,
        bus: Arc<Bus>,
    ) -> Registry {
        Registry {
            store,
            hasher,
            resources: crate::scope::grantable_resources(&resources),
            revoke_on,
            audit,
            bus,
            max_token_ttl: 86_400,
        }
    }

    /// Bounds the token lifetime an account may be given
    /// (`tokens.max_ttl_seconds`).
    pub(crate) fn with_max_token_ttl(mut self, seconds: u64) -> Registry {
        self.max_token_ttl = seconds;
        self
    }

    /// What an account may be granted: the configured resources and `admin`.
    pub(crate) fn resources(&self) -> &[String] {
        &self.resources
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn evict_account(&self, org: &str, sa: &str) {
        self.bus
            .publish(Invalidation::ServiceAccount {
                org: org.to_string(),
                sa: sa.to_string(),
            })
            .await;
    }

    async fn evict_workspace(&self, org: &str, ws: &str) {
        self.bus
            .publish(Invalidation::Workspace {
                org: org.to_string(),
                workspace: ws.to_string(),
            })
            .await;
    }

    async fn evict_membership(&self, org: &str, ws: &str, sa: &str) {
        self.bus
            .publish(Invalidation::Membership {
                org: org.to_string(),
                workspace: ws.to_string(),
                sa: sa.to_string(),
            })
            .await;
    }

    fn parse_scopes(&self, scopes: &[String]) -> RegistryResult<ScopeSet> {
        ScopeSet::parse_all(scopes.iter().map(String::as_str), &self.resources)
            .map_err(|e| invalid("scopes", e.to_string()))
    }

    async fn audit(
        &self,
        org: &str,
        actor: &str,
        action: Action,
        target: &str,
        details: serde_json::Value,
    ) {
        self.audit
            .record(Event {
                organization_id: Some(org),
                actor,
                action: action.as_str(),
                target: Some(target),
                outcome: "success",
                details,
            })
            .await;
    }

    /// Records an admin mutation that was refused (a 4xx answer), so that
    /// attempts show up next to what was done. An event without a valid
    /// organization id is only logged.
    pub(crate) async fn audit_refused(
        &self,
        org: &str,
        actor: &str,
        action: Action,
        target: Option<&str>,
        error: &str,
        status: u16,
    ) {
        self.audit
            .record(Event {
                organization_id: Some(org).filter(|o| is_valid_name_id(o)),
                actor,
                action: action.as_str(),
                target,
                outcome: "failure",
                details: json!({"error": error, "status": status}),
            })
            .await;
    }

    /// A new client secret, its argon2id hash and its check.
    async fn new_secret(&self) -> RegistryResult<(SecretString, String, Option<String>)> {
        let secret = new_client_secret();
        let hash = self
            .hasher
            .hash(&secret)
            .await
            .map_err(|_| RegistryError::Internal)?;
        let check = Some(crate::secret::secret_check(secret.expose_secret()));
        Ok((secret, hash, check))
    }

    async fn account(&self, org: &str, sa: &str) -> RegistryResult<ServiceAccount> {
        check_org(org)?;
        check_generated("service_account_id", sa)?;
        self.store
            .get_service_account(org, sa)
            .await?
            .ok_or(RegistryError::NotFound("service account"))
    }

    async fn revoke_if(
        &self,
        on: bool,
        org: &str,
        sa: &str,
        actor: &str,
        why: &str,
    ) -> RegistryResult<()> {
        if on {
            let n = self.store.revoke_service_account_tokens(org, sa).await?;
            self.evict_account(org, sa).await;
            self.audit(
                org,
                actor,
                Action::TokenRevoke,
                sa,
                json!({"reason": why, "revoked": n}),
            )
            .await;
        }
        Ok(())
    }

    pub(crate) async fn create_service_account(
        &self,
        org: &str,
        actor: &str,
        input: NewServiceAccount,
    ) -> RegistryResult<(ServiceAccount, IssuedCredential)> {
        check_org(org)?;
        validate_name("name", &input.name)?;
        validate_description(&input.description)?;
        let scopes = self.parse_scopes(&input.scopes)?;
        let mut policy = crate::account_policy::AccountPolicy::default();
        input.policy.apply(&mut policy, self.max_token_ttl)?;
        let (secret, hash, check) = self.new_secret().await?;
        let at = now();
        let sa = ServiceAccount {
            id: new_id(),
            organization_id: org.to_string(),
            name: input.name,
            description: input.description,
            scopes,
            status: SaStatus::Active,
            created_at: at,
            updated_at: at,
            policy,
        };
        let cred = StoredCredential {
            id: new_id(),
            organization_id: org.to_string(),
            service_account_id: sa.id.clone(),
            client_id: new_client_id(),
            name: "default".to_string(),
            description: None,
            secret_hash: hash,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            secret_check: check,
            previous_secret_check: None,
            created_at: at,
            last_used_at: None,
            generation: 0,
        };
        self.store.create_service_account(&sa, &cred).await?;
        self.audit(
            org,
            actor,
            Action::ServiceAccountCreate,
            &sa.id,
            json!({"name": sa.name, "scopes": sa.scopes, "client_id": cred.client_id}),
        )
        .await;
        Ok((
            sa,
            IssuedCredential {
                credential: cred.public(at),
                client_secret: secret,
            },
        ))
    }

    pub(crate) async fn list_service_accounts(
        &self,
        org: &str,
        q: Option<&str>,
        limit: usize,
        after: Option<&str>,
    ) -> RegistryResult<Page<ServiceAccount>> {
        check_org(org)?;
        let mut all = self.store.list_service_accounts(org).await?;
        if let Some(q) = q.filter(|q| !q.is_empty()) {
            let needle = q.to_lowercase();
            all.retain(|sa| sa.name.to_lowercase().contains(&needle));
        }
        Ok(paginate(all, |sa| &sa.id, limit, after))
    }

    pub(crate) async fn get_service_account(
        &self,
        org: &str,
        sa: &str,
    ) -> RegistryResult<ServiceAccount> {
        self.account(org, sa).await
    }

    pub(crate) async fn update_service_account(
        &self,
        org: &str,
        sa_id: &str,
        actor: &str,
        patch: ServiceAccountPatch,
    ) -> RegistryResult<ServiceAccount> {
        self.account(org, sa_id).await?;
        if let Some(name) = &patch.name {
            validate_name("name", name)?;
        }
        if let Some(d) = &patch.description {
            validate_description(d)?;
        }
        let scopes = patch
            .scopes
            .as_deref()
            .map(|s| self.parse_scopes(s))
            .transpose()?;
        let status = match patch.status.as_deref() {
            None => None,
            Some("active") => Some(SaStatus::Active),
            Some("disabled") => Some(SaStatus::Disabled),
            Some(_) => return Err(invalid("status", "must be \"active\" or \"disabled\"")),
        };
        // Applied to the record as read and written back only if it is
        // still that record (compare-and-set), else read again: a change
        // made meanwhile (a disable) is never undone by this one.
        let mut attempts = 0;
        let (sa, changed, allowlist_changed, scope_changed, disabled_now) = loop {
            attempts += 1;
            if attempts > CHANGE_ATTEMPTS {
                return Err(RegistryError::Conflict(
                    "the service account kept changing; try again".to_string(),
                ));
            }
            let Some((mut sa, read)) = self
                .store
                .get_service_account_for_update(org, sa_id)
                .await?
            else {
                return Err(RegistryError::NotFound("service account"));
            };
            let was_checking_requests = sa.policy.request_allowlist();
            let mut changed = patch
                .policy
                .clone()
                .apply(&mut sa.policy, self.max_token_ttl)?;
            // Tokens carry the allowlist they were issued under: when requests
            // are checked, a changed list applies to live tokens by revoking them.
            let allowlist_changed = changed.iter().any(|f| f.starts_with("ip_allowlist"))
                && sa.policy.request_allowlist() != was_checking_requests
                && sa.policy.request_allowlist().is_some();
            if let Some(name) = &patch.name {
                sa.name = name.clone();
                changed.push("name");
            }
            if let Some(d) = &patch.description {
                sa.description = d.clone();
                changed.push("description");
            }
            let scope_changed = scopes.as_ref().is_some_and(|s| *s != sa.scopes);
            if let Some(s) = &scopes {
                sa.scopes = s.clone();
                changed.push("scopes");
            }
            let disabled_now = status == Some(SaStatus::Disabled) && sa.status == SaStatus::Active;
            if let Some(st) = status {
                sa.status = st;
                changed.push("status");
            }
            sa.updated_at = now();
            if self.store.update_service_account(&sa, &read).await? {
                break (sa, changed, allowlist_changed, scope_changed, disabled_now);
            }
        };
        self.audit(
            org,
            actor,
            Action::ServiceAccountUpdate,
            &sa.id,
            json!({"changed": changed, "status": sa.status, "scopes": sa.scopes}),
        )
        .await;
        self.revoke_if(
            self.revoke_on.scope_change && scope_changed,
            org,
            sa_id,
            actor,
            "scope_change",
        )
        .await?;
        self.revoke_if(allowlist_changed, org, sa_id, actor, "ip_allowlist_change")
            .await?;
        self.revoke_if(
            self.revoke_on.disable && disabled_now,
            org,
            sa_id,
            actor,
            "disable",
        )
        .await?;
        Ok(sa)
    }

    pub(crate) async fn delete_service_account(
        &self,
        org: &str,
        sa: &str,
        actor: &str,
    ) -> RegistryResult<()> {
        check_org(org)?;
        check_generated("service_account_id", sa)?;
        if !self.store.delete_service_account(org, sa).await? {
            return Err(RegistryError::NotFound("service account"));
        }
        // Its memberships are gone: cached roles must go too.
        self.evict_account(org, sa).await;
        self.audit(org, actor, Action::ServiceAccountDelete, sa, json!({}))
            .await;
        self.revoke_if(self.revoke_on.delete, org, sa, actor, "delete")
            .await
    }

    pub(crate) async fn revoke_service_account_tokens(
        &self,
        org: &str,
        sa: &str,
        actor: &str,
    ) -> RegistryResult<u64> {
        self.account(org, sa).await?;
        let n = self.store.revoke_service_account_tokens(org, sa).await?;
        self.evict_account(org, sa).await;
        self.audit(
            org,
            actor,
            Action::TokenRevoke,
            sa,
            json!({"reason": "admin", "revoked": n}),
        )
        .await;
        Ok(n)
    }

    pub(crate) async fn revoke_organization_tokens(
        &self,
        org: &str,
        actor: &str,
    ) -> RegistryResult<u64> {
        check_org(org)?;
        let n = self.store.revoke_organization_tokens(org).await?;
        self.bus
            .publish(Invalidation::Organization(org.to_string()))
            .await;
        self.audit(
            org,
            actor,
            Action::TokenRevoke,
            org,
            json!({"reason": "organization", "revoked": n}),
        )
        .await;
        Ok(n)
    }

    pub(crate) async fn create_credential(
        &self,
        org: &str,
        sa: &str,
        actor: &str,
        name: String,
        description: Option<String>,
    ) -> RegistryResult<IssuedCredential> {
        self.account(org, sa).await?;
        validate_name("name", &name)?;
        validate_description(&description)?;
        let (secret, hash, check) = self.new_secret().await?;
        let at = now();
        let cred = StoredCredential {
            id: new_id(),
            organization_id: org.to_string(),
            service_account_id: sa.to_string(),
            client_id: new_client_id(),
            name,
            description,
            secret_hash: hash,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            secret_check: check,
            previous_secret_check: None,
            created_at: at,
            last_used_at: None,
            generation: 0,
        };
        if !self.store.put_credential(&cred, None).await? {
            return Err(RegistryError::NotFound("service account"));
        }
        self.audit(
            org,
            actor,
            Action::CredentialCreate,
            &cred.id,
            json!({"service_account_id": sa, "client_id": cred.client_id}),
        )
        .await;
        Ok(IssuedCredential {
            credential: cred.public(at),
            client_secret: secret,
        })
    }

    pub(crate) async fn list_credentials(
        &self,
        org: &str,
        sa: &str,
        limit: usize,
        after: Option<&str>,
    ) -> RegistryResult<Page<Credential>> {
        self.account(org, sa).await?;
        let at = OffsetDateTime::now_utc();
        let all: Vec<Credential> = self
            .store
            .list_credentials(org, sa)
            .await?
            .iter()
            .map(|c| c.public(at))
            .collect();
        Ok(paginate(all, |c| &c.id, limit, after))
    }

    async fn stored_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
    ) -> RegistryResult<StoredCredential> {
        check_org(org)?;
        check_generated("service_account_id", sa)?;
        check_generated("credential_id", id)?;
        self.store
            .get_credential(org, sa, id)
            .await?
            .ok_or(RegistryError::NotFound("credential"))
    }

    pub(crate) async fn get_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
    ) -> RegistryResult<Credential> {
        Ok(self
            .stored_credential(org, sa, id)
            .await?
            .public(OffsetDateTime::now_utc()))
    }

    pub(crate) async fn update_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
        actor: &str,
        patch: CredentialPatch,
    ) -> RegistryResult<Credential> {
        if let Some(name) = &patch.name {
            validate_name("name", name)?;
        }
        if let Some(d) = &patch.description {
            validate_description(d)?;
        }
        let cred = self
            .change_credential(org, sa, id, false, |cred| {
                if let Some(name) = &patch.name {
                    cred.name = name.clone();
                }
                if let Some(d) = &patch.description {
                    cred.description = d.clone();
                }
            })
            .await?;
        self.audit(
            org,
            actor,
            Action::CredentialUpdate,
            id,
            json!({"service_account_id": sa}),
        )
        .await;
        Ok(cred.public(OffsetDateTime::now_utc()))
    }

    pub(crate) async fn delete_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
        actor: &str,
    ) -> RegistryResult<()> {
        check_org(org)?;
        check_generated("service_account_id", sa)?;
        check_generated("credential_id", id)?;
        if !self.store.delete_credential(org, sa, id).await? {
            return Err(RegistryError::NotFound("credential"));
        }
        self.audit(
            org,
            actor,
            Action::CredentialDelete,
            id,
            json!({"service_account_id": sa}),
        )
        .await;
        Ok(())
    }

    /// Reads a credential, applies `change` and writes it back, only if it
    /// is still the one read (the store's compare-and-set on its
    /// generation); read again and retried when another change came first.
    /// A credential deleted meanwhile is 404, never written back. A change
    /// of its secret (`new_secret`) bumps the generation: it ends the
    /// verified-secret cache's entries and any token request still on the
    /// old secret ([`crate::store::Issuer`]), and no change read before it
    /// can be written over it. A rename does not bump it (a token request
    /// in flight is not failed by a rename), so two renames, or a rename
    /// and a rotation read before it, may race: the last name written wins;
    /// the secret is never lost.
    async fn change_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
        new_secret: bool,
        change: impl Fn(&mut StoredCredential),
    ) -> RegistryResult<StoredCredential> {
        for _ in 0..CHANGE_ATTEMPTS {
            let mut cred = self.stored_credential(org, sa, id).await?;
            let expected = cred.generation;
            change(&mut cred);
            cred.generation = expected + u64::from(new_secret);
            if self.store.put_credential(&cred, Some(expected)).await? {
                return Ok(cred);
            }
        }
        Err(RegistryError::Conflict(
            "the credential kept changing; try again".to_string(),
        ))
    }

    /// Replaces a credential's secret. With a grace period the old secret
    /// keeps working until it ends; otherwise it stops at once.
    pub(crate) async fn rotate_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
        actor: &str,
        grace_seconds: u64,
    ) -> RegistryResult<IssuedCredential> {
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(invalid("grace_seconds", "must be between 0 and 86400"));
        }
        self.stored_credential(org, sa, id).await?;
        let (secret, hash, check) = self.new_secret().await?;
        let at = now();
        let cred = self
            .change_credential(org, sa, id, true, |cred| {
                let (hash, check) = (hash.clone(), check.clone());
                if grace_seconds > 0 {
                    cred.previous_secret_hash =
                        Some(std::mem::replace(&mut cred.secret_hash, hash));
                    cred.previous_secret_check = std::mem::replace(&mut cred.secret_check, check);
                    cred.previous_secret_expires_at =
                        Some(at + time::Duration::seconds(grace_seconds as i64));
                } else {
                    cred.secret_hash = hash;
                    cred.secret_check = check;
                    cred.previous_secret_hash = None;
                    cred.previous_secret_check = None;
                    cred.previous_secret_expires_at = None;
                }
            })
            .await?;
        self.audit(
            org,
            actor,
            Action::CredentialRotateSecret,
            id,
            json!({"service_account_id": sa, "grace_seconds": grace_seconds}),
        )
        .await;
        self.revoke_if(self.revoke_on.rotate, org, sa, actor, "rotate")
            .await?;
        Ok(IssuedCredential {
            credential: cred.public(at),
            client_secret: secret,
        })
    }

    /// The account-level rotation: only when the account has one credential.
    pub(crate) async fn rotate_service_account_secret(
        &self,
        org: &str,
        sa: &str,
        actor: &str,
        grace_seconds: u64,
    ) -> RegistryResult<IssuedCredential> {
        self.account(org, sa).await?;
        let creds = self.store.list_credentials(org, sa).await?;
        match creds.as_slice() {
            [only] => {
                self.rotate_credential(org, sa, &only.id, actor, grace_seconds)
                    .await
            }
            _ => Err(RegistryError::Conflict(format!(
                "the service account has {} credentials; rotate one of them by id",
                creds.len()
            ))),
        }
    }

    pub(crate) async fn put_workspace(
        &self,
        org: &str,
        ws: &str,
        actor: &str,
        name: String,
    ) -> RegistryResult<(Workspace, bool)> {
        check_org(org)?;
        check_name_id("workspace_id", ws)?;
        validate_name("name", &name)?;
        let created_at = match self.store.get_workspace(org, ws).await? {
            Some(existing) => existing.created_at,
            None => now(),
        };
        let w = Workspace {
            id: ws.to_string(),
            organization_id: org.to_string(),
            name,
            created_at,
        };
        let created = self.store.put_workspace(&w).await? == PutOutcome::Created;
        self.audit(
            org,
            actor,
            Action::WorkspacePut,
            ws,
            json!({"name": w.name, "created": created}),
        )
        .await;
        Ok((w, created))
    }

    async fn workspace(&self, org: &str, ws: &str) -> RegistryResult<Workspace> {
        check_org(org)?;
        check_name_id("workspace_id", ws)?;
        self.store
            .get_workspace(org, ws)
            .await?
            .ok_or(RegistryError::NotFound("workspace"))
    }

    pub(crate) async fn get_workspace(&self, org: &str, ws: &str) -> RegistryResult<Workspace> {
        self.workspace(org, ws).await
    }

    pub(crate) async fn list_workspaces(
        &self,
        org: &str,
        limit: usize,
        after: Option<&str>,
    ) -> RegistryResult<Page<Workspace>> {
        check_org(org)?;
        let all = self.store.list_workspaces(org).await?;
        Ok(paginate(all, |w| &w.id, limit, after))
    }

    pub(crate) async fn delete_workspace(
        &self,
        org: &str,
        ws: &str,
        actor: &str,
    ) -> RegistryResult<()> {
        check_org(org)?;
        check_name_id("workspace_id", ws)?;
        if !self.store.delete_workspace(org, ws).await? {
            return Err(RegistryError::NotFound("workspace"));
        }
        self.evict_workspace(org, ws).await;
        self.audit(org, actor, Action::WorkspaceDelete, ws, json!({}))
            .await;
        // Its keys go with it. A key left by a failure here is refused all
        // the same: a workspace key is checked against its workspace on use.
        let keys = self.store.list_admin_keys(org).await?;
        for key in keys
            .iter()
            .filter(|k| k.workspace_id.as_deref() == Some(ws))
        {
            if self.store.delete_admin_key(org, &key.id).await? {
                self.audit(org, actor, Action::AdminKeyRevoke, &key.id, json!({}))
                    .await;
            }
        }
        Ok(())
    }

    pub(crate) async fn put_environment(
        &self,
        org: &str,
        ws: &str,
        env: &str,
        actor: &str,
        name: String,
    ) -> RegistryResult<(Environment, bool)> {
        check_org(org)?;
        check_name_id("workspace_id", ws)?;
        check_name_id("environment_id", env)?;
        validate_name("name", &name)?;
        // The store checks that the workspace exists in the same atomic step
        // as the write, so a concurrent workspace delete leaves no orphan.
        let created_at = match self.store.get_environment(env).await? {
            Some(e) if e.organization_id == org && e.workspace_id == ws => e.created_at,
            _ => now(),
        };
        let e = Environment {
            id: env.to_string(),
            workspace_id: ws.to_string(),
            organization_id: org.to_string(),
            name,
            created_at,
        };
        let created = match self.store.put_environment(&e).await? {
            EnvPutOutcome::Created => true,
            EnvPutOutcome::Updated => false,
            EnvPutOutcome::Conflict => {
                return Err(RegistryError::Conflict(
                    "the environment id already belongs to another workspace".into(),
                ))
            }
            EnvPutOutcome::WorkspaceMissing => return Err(RegistryError::NotFound("workspace")),
        };
        self.audit(
            org,
            actor,
            Action::EnvironmentPut,
            env,
            json!({"workspace_id": ws, "name": e.name, "created": created}),
        )
        .await;
        Ok((e, created))
    }

    pub(crate) async fn list_environments(
        &self,
        org: &str,
        ws: &str,
        limit: usize,
        after: Option<&str>,
    ) -> RegistryResult<Page<Environment>> {
        self.workspace(org, ws).await?;
        let mut all = self.store.list_environments(org, ws).await?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(paginate(all, |e| &e.id, limit, after))
    }

    pub(crate) async fn delete_environment(
        &self,
        org: &str,
        ws: &str,
        env: &str,
        actor: &str,
    ) -> RegistryResult<()> {
        check_org(org)?;
        check_name_id("workspace_id", ws)?;
        check_name_id("environment_id", env)?;
        if !self.store.delete_environment(org, ws, env).await? {
            return Err(RegistryError::NotFound("environment"));
        }
        self.evict_workspace(org, ws).await;
        self.audit(
            org,
            actor,
            Action::EnvironmentDelete,
            env,
            json!({"workspace_id": ws}),
        )
        .await;
        Ok(())
    }

    pub(crate) async fn put_membership(
        &self,
        org: &str,
        ws: &str,
        sa: &str,
        actor: &str,
        role: &str,
    ) -> RegistryResult<Membership> {
        let role =
            Role::parse(role).ok_or_else(|| invalid("role", "must be \"member\" or \"admin\""))?;
        check_org(org)?;
        check_name_id("workspace_id", ws)?;
        check_generated("service_account_id", sa)?;
        // Workspace and account are checked by the store in the same atomic
        // step as the write, so a concurrent delete of either leaves no orphan.
        let created_at = match self.store.get_membership(org, ws, sa).await? {
            Some(m) => m.created_at,
            None => now(),
        };
        let m = Membership {
            workspace_id: ws.to_string(),
            service_account_id: sa.to_string(),
            role,
            created_at,
        };
        let created = match self.store.put_membership(org, &m).await? {
            MemberPutOutcome::Created => true,
            MemberPutOutcome::Updated => false,
            MemberPutOutcome::WorkspaceMissing => return Err(RegistryError::NotFound("workspace")),
            MemberPutOutcome::ServiceAccountMissing => {
                return Err(RegistryError::NotFound("service account"))
            }
        };
        if !created {
            // A role may have gone down.
            self.evict_membership(org, ws, sa).await;
        }
        self.audit(
            org,
            actor,
            Action::MembershipPut,
            sa,
            json!({"workspace_id": ws, "role": role, "created": created}),
        )
        .await;
        Ok(m)
    }

    pub(crate) async fn list_memberships(
        &self,
        org: &str,
        ws: &str,
        limit: usize,
        after: Option<&str>,
    ) -> RegistryResult<Page<Membership>> {
        self.workspace(org, ws).await?;
        let all = self.store.list_memberships(org, ws).await?;
        Ok(paginate(all, |m| &m.service_account_id, limit, after))
    }

    pub(crate) async fn delete_membership(
        &self,
        org: &str,
        ws: &str,
        sa: &str,
        actor: &str,
    ) -> RegistryResult<()> {
        check_org(org)?;
        check_name_id("workspace_id", ws)?;
        check_generated("service_account_id", sa)?;
        if !self.store.delete_membership(org, ws, sa).await? {
            return Err(RegistryError::NotFound("membership"));
        }
        self.evict_membership(org, ws, sa).await;
        self.audit(
            org,
            actor,
            Action::MembershipDelete,
            sa,
            json!({"workspace_id": ws}),
        )
        .await;
        Ok(())
    }

    pub(crate) async fn list_audit(
        &self,
        org: &str,
        limit: usize,
        after: Option<&str>,
    ) -> RegistryResult<Page<crate::model::AuditEvent>> {
        check_org(org)?;
        let (items, more) = self.store.list_audit(org, limit, after).await?;
        let next_cursor = if more {
            items.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

/// Admin keys made through the admin API (docs/contract.md §4.1). Who may
/// make or revoke one is the admin API's check; this validates, hashes,
/// stores and audits.
impl Registry {
    pub(crate) async fn create_admin_key(
        &self,
        org: &str,
        ws: Option<&str>,
        name: String,
        actor: &str,
    ) -> RegistryResult<(crate::model::AdminKeyView, SecretString)> {
        check_org(org)?;
        validate_name("name", &name)?;
        let workspace_created_at = match ws {
            Some(ws) => Some(self.workspace(org, ws).await?.created_at),
            None => None,
        };
        let id = new_id();
        let key = crate::secret::new_admin_key(&id);
        let secret_hash = self
            .hasher
            .hash(&key)
            .await
            .map_err(|_| RegistryError::Internal)?;
        let stored = crate::model::StoredAdminKey {
            id: id.clone(),
            organization_id: org.to_string(),
            workspace_id: ws.map(str::to_string),
            name,
            secret_hash,
            created_by: actor.to_string(),
            created_at: now(),
            last_used_at: None,
            workspace_created_at,
        };
        self.store.put_admin_key(&stored).await?;
        self.audit(
            org,
            actor,
            Action::AdminKeyCreate,
            &id,
            json!({"name": stored.name, "workspace_id": stored.workspace_id}),
        )
        .await;
        Ok((stored.public(), key))
    }

    pub(crate) async fn list_admin_keys(
        &self,
        org: &str,
        limit: usize,
        after: Option<&str>,
    ) -> RegistryResult<Page<crate::model::AdminKeyView>> {
        check_org(org)?;
        let keys = self.store.list_admin_keys(org).await?;
        let views = keys.iter().map(|k| k.public()).collect();
        Ok(paginate(views, |k| &k.id, limit, after))
    }

    pub(crate) async fn get_admin_key(
        &self,
        org: &str,
        id: &str,
    ) -> RegistryResult<crate::model::StoredAdminKey> {
        check_org(org)?;
        check_generated("admin_key_id", id)?;
        self.store
            .get_admin_key(id)
            .await?
            .filter(|k| k.organization_id == org)
            .ok_or(RegistryError::NotFound("admin key"))
    }

    pub(crate) async fn revoke_admin_key(
        &self,
        org: &str,
        id: &str,
        actor: &str,
    ) -> RegistryResult<()> {
        check_org(org)?;
        check_generated("admin_key_id", id)?;
        if !self.store.delete_admin_key(org, id).await? {
            return Err(RegistryError::NotFound("admin key"));
        }
        self.audit(org, actor, Action::AdminKeyRevoke, id, json!({}))
            .await;
        Ok(())
    }
}
