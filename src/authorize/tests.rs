//! Fixtures shared by the tests of the decision's modules: a policy set
//! with a route for each kind of check, token records and environments, and
//! `Req`, a request builder that runs the whole decision.

use std::sync::Arc;

use super::{authorize, Decision, DenyReason, HeaderFacts, Lookup, Outcome, RequestFacts};
use crate::model::{EnvironmentRef, EnvironmentRole, TokenRecord};
use crate::policy::{load_str, PolicySet};
use crate::scope::{default_resources, Role, ScopeSet};

const POLICY: &str = r#"
[[route]]
name = "status"
methods = ["GET"]
path = "/api/v1/status"
upstream = "backend"
auth = "none"

[[route]]
name = "workflows-read"
methods = ["GET", "HEAD"]
path = "/api/v1/workflows/**"
upstream = "backend"
scope = "workflows:read"
workspace_role = "member"

[[route]]
name = "workflows-write"
methods = ["POST", "PUT", "PATCH", "DELETE"]
path = "/api/v1/workflows/**"
upstream = "backend"
scope = "workflows:write"
workspace_role = "member"

[[route]]
name = "workflows-admin"
path = "/api/v1/workflows/admin/**"
upstream = "backend"
scope = "workflows:write"
workspace_role = "admin"

[[route]]
name = "logs-read"
methods = ["GET"]
path = "/api/v1/logs/**"
upstream = "backend"
scope = "logs:read"

[[route]]
name = "tools-report"
methods = ["GET"]
path = "/api/v1/tools/**"
upstream = "backend"
scope = "tools:read"
workspace_role = "member"
mode = "report"
"#;

pub(super) const NOW: i64 = 1_700_000_000;

pub(super) fn policy() -> PolicySet {
    load_str("test.toml", POLICY, &default_resources(), |_| true).expect("valid policy")
}

pub(super) fn token() -> String {
    format!("tg_at_{}", "A".repeat(43))
}

pub(super) fn record(scopes: &str) -> Arc<TokenRecord> {
    Arc::new(TokenRecord {
        organization_id: "org1".into(),
        service_account_id: "sa1".into(),
        client_id: "sa_client1".into(),
        scopes: ScopeSet::from_stored(scopes),
        expires_at: NOW + 900,
        allowed_sources: None,
        header_values: Default::default(),
    })
}

pub(super) fn environment(id: &str, organization: &str) -> Arc<EnvironmentRef> {
    Arc::new(EnvironmentRef {
        id: id.into(),
        workspace_id: "ws1".into(),
        organization_id: organization.into(),
        header_values: Default::default(),
    })
}

/// `env` as seen by an account with `role` there.
pub(super) fn with_role(env: &Arc<EnvironmentRef>, role: Option<Role>) -> EnvironmentRole {
    EnvironmentRole {
        environment: Some(env.clone()),
        role,
    }
}

/// A request under construction.
pub(super) struct Req {
    method: &'static str,
    target: String,
    authorization: Vec<String>,
    pub(super) length_conflict: bool,
}

pub(super) fn req(method: &'static str, target: &str) -> Req {
    Req {
        method,
        target: target.into(),
        authorization: Vec::new(),
        length_conflict: false,
    }
}

impl Req {
    pub(super) fn with_token(self) -> Req {
        self.authorization(&format!("Bearer {}", token()))
    }

    pub(super) fn authorization(mut self, value: &str) -> Req {
        self.authorization.push(value.into());
        self
    }

    pub(super) fn facts(&self) -> RequestFacts {
        let values: Vec<&[u8]> = self.authorization.iter().map(|v| v.as_bytes()).collect();
        let headers = HeaderFacts {
            authorization: &values,
            content_length: self.length_conflict,
            transfer_encoding: self.length_conflict,
            host_missing: false,
        };
        RequestFacts::gather(self.method, self.target.as_bytes(), headers, false)
    }

    /// Decides with the given look-up results.
    pub(super) fn run(
        &self,
        token: Lookup<&Arc<TokenRecord>>,
        environment: Option<Lookup<&EnvironmentRole>>,
    ) -> Decision {
        authorize(&self.facts(), &policy(), token, environment, NOW)
    }

    /// A known token with `scopes`, and environment `env1` of the same
    /// organization where the account has `role`.
    pub(super) fn run_as(&self, scopes: &str, role: Option<Role>) -> Decision {
        let env = environment("env1", "org1");
        self.run(
            Lookup::Found(&record(scopes)),
            Some(Lookup::Found(&with_role(&env, role))),
        )
    }
}

pub(super) fn denied(decision: &Decision) -> DenyReason {
    match decision.outcome {
        Outcome::Deny(r) => r,
        other => panic!("expected a denial, got {other:?}"),
    }
}

pub(super) fn status(decision: &Decision) -> u16 {
    decision.denial().map_or(0, |d| d.status)
}

pub(super) const WF: &str = "/api/v1/workflows/w1?environmentId=env1";
