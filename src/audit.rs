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
pub struct Event<'a> {
    pub organization_id: Option<&'a str>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: &'a str,
    pub details: serde_json::Value,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>, cap: usize) -> Audit {
        Audit { store, cap }
    }

    pub async fn record(&self, ev: Event<'_>) {
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
