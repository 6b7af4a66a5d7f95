//! Audit events: every admin mutation, token issuance, failed token request
//! and revocation. Emitted as a structured log line (target `audit`) and,
//! when the event has an organization, kept in the store (bounded, newest
//! first). Never carries a secret or a token.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::ids::new_sortable_id;
use crate::model::AuditEvent;
use crate::store::Store;

#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn Store>,
    cap: usize,
}

/// What happened, before it gets an id and a time.
pub(crate) struct Event<'a> {
    pub(crate) organization_id: Option<&'a str>,
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) target: Option<&'a str>,
    pub(crate) outcome: &'a str,
    pub(crate) details: serde_json::Value,
}

/// The action of an admin change (docs/contract.md §7), named once: the
/// registry records it when the change is made, the admin API when it is
/// refused. The token endpoint names its own actions (`token.issue`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    ServiceAccountCreate,
    ServiceAccountUpdate,
    ServiceAccountDelete,
    CredentialCreate,
    CredentialUpdate,
    CredentialDelete,
    CredentialRotateSecret,
    TokenRevoke,
    WorkspacePut,
    WorkspaceDelete,
    EnvironmentPut,
    EnvironmentDelete,
    MembershipPut,
    MembershipDelete,
    AdminKeyCreate,
    AdminKeyRevoke,
    LimitsPut,
    LimitsDelete,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::ServiceAccountCreate => "service_account.create",
            Action::ServiceAccountUpdate => "service_account.update",
            Action::ServiceAccountDelete => "service_account.delete",
            Action::CredentialCreate => "credential.create",
            Action::CredentialUpdate => "credential.update",
            Action::CredentialDelete => "credential.delete",
            Action::CredentialRotateSecret => "credential.rotate_secret",
            Action::TokenRevoke => "token.revoke",
            Action::WorkspacePut => "workspace.put",
            Action::WorkspaceDelete => "workspace.delete",
            Action::EnvironmentPut => "environment.put",
            Action::EnvironmentDelete => "environment.delete",
            Action::MembershipPut => "membership.put",
            Action::MembershipDelete => "membership.delete",
            Action::AdminKeyCreate => "admin_key.create",
            Action::AdminKeyRevoke => "admin_key.revoke",
            Action::LimitsPut => "limits.put",
            Action::LimitsDelete => "limits.delete",
        }
    }
}

impl Audit {
    pub(crate) fn new(store: Arc<dyn Store>, cap: usize) -> Audit {
        Audit { store, cap }
    }

    pub(crate) async fn record(&self, ev: Event<'_>) {
        let now = OffsetDateTime::now_utc();
        let millis = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let event = AuditEvent {
            id: new_sortable_id(millis),
            time: now,
            organization_id: ev.organization_id.map(str::to_string),
            actor: ev.actor.to_string(),
            action: ev.action.to_string(),
            target: ev.target.map(str::to_string),
            outcome: ev.outcome.to_string(),
            details: ev.details,
        };
        tracing::info!(
            target: "audit",
            id = %event.id,
            organization_id = event.organization_id.as_deref().unwrap_or("-"),
            actor = %event.actor,
            action = %event.action,
            target_id = event.target.as_deref().unwrap_or("-"),
            outcome = %event.outcome,
            details = %event.details,
            "audit event"
        );
        if let Some(org) = &event.organization_id {
            if let Err(e) = self.store.append_audit(org, &event, self.cap).await {
                tracing::warn!(target: "audit", id = %event.id, error = %e, "audit event not stored");
            }
        }
    }
}
