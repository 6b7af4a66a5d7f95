//! The two phases of the decision (docs/contract.md §5.2). `plan` settles
//! what needs no store (request safety, the route, public routes, a missing
//! or malformed bearer) or says what to load; `decide` takes the look-ups and
//! the time, checks token, scope and workspace, then applies the route's
//! mode. `explain` runs the same `check_*` steps.

use std::borrow::Cow;
use std::sync::Arc;

use secrecy::ExposeSecret;

use super::binding::{check_organization, environment_param};
use super::facts::{Bearer, EnvironmentParam, RequestFacts};
use super::outcome::{Decision, DenyReason, Identity, Outcome, RequestProblem, WorkspaceIdentity};
use super::pathnorm::Target;
use crate::model::{EnvironmentRole, TokenRecord};
use crate::policy::{Auth, Mode, PolicySet, Route};
use crate::scope::{Role, Scope};
use crate::secret;

/// The result of a store look-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    NotFound,
    /// The store failed or timed out.
    Unavailable,
}

impl<T> Lookup<T> {
    /// From a store call: an error (or timeout) is `Unavailable`.
    pub fn from_result<E>(result: Result<Option<T>, E>) -> Lookup<T> {
        match result {
            Ok(Some(v)) => Lookup::Found(v),
            Ok(None) => Lookup::NotFound,
            Err(_) => Lookup::Unavailable,
        }
    }

    pub fn as_ref(&self) -> Lookup<&T> {
        match self {
            Lookup::Found(v) => Lookup::Found(v),
            Lookup::NotFound => Lookup::NotFound,
            Lookup::Unavailable => Lookup::Unavailable,
        }
    }
}

/// Phase 1: decided without the store, or what to load for `decide`.
#[derive(Debug)]
pub(crate) enum Plan {
    Decided(Decision),
    Load(Load),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Load {
    pub route: Arc<Route>,
    /// The store key of the presented token.
    pub token_hash: String,
    /// The environment to load (with the account's membership in its
    /// workspace) once the token is found; `None` when not needed.
    pub environment_id: Option<String>,
}

/// The path routes are matched on: the normalised path without the
/// matrix parameters of its segments (`/admin;jsessionid=1/y` is matched
/// as `/admin/y`), since servlet containers dispatch on that, while the
/// path is forwarded as it is. A `;` reaches here only with
/// `proxy.allow_semicolon_in_path`; without one nothing is copied.
pub(crate) fn route_path(path: &str) -> Cow<'_, str> {
    if memchr::memchr(b';', path.as_bytes()).is_none() {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(""));
    }
    Cow::Owned(out)
}

/// Phase 1: request safety (step 1), route lookup (step 2), public routes,
/// and a missing or malformed bearer, none of which need the store.
pub(crate) fn plan(facts: &RequestFacts, policy: &PolicySet) -> Plan {
    let target = match check_request(facts) {
        Ok(target) => target,
        Err(reason) => return Plan::Decided(Decision::deny(None, reason)),
    };
    let Some(route) = policy.lookup(&facts.method, &route_path(target.path())) else {
        return Plan::Decided(Decision::deny(None, DenyReason::NoRoute));
    };
    if route.auth == Auth::Public {
        return Plan::Decided(Decision {
            route: Some(route.clone()),
            outcome: Outcome::Public,
            identity: None,
            caller: None,
        });
    }
    match check_bearer(&facts.bearer) {
        Err(reason) => Plan::Decided(finish(route, Err(reason), None)),
        Ok(token) => Plan::Load(Load {
            route: route.clone(),
            token_hash: secret::token_hash(token),
            environment_id: match route.workspace_role() {
                Some(_) => match environment_param(route, facts).as_ref() {
                    EnvironmentParam::One(id) => Some(id.clone()),
                    _ => None,
                },
                None => None,
            },
        }),
    }
}

/// Phase 2: token (step 3) and its account's source allowlist, scope
/// (step 4), the route's organization
/// binding, workspace (step 5), allow
/// (step 6), then `mode`. `environment` is `None` when it was not loaded;
/// a route that needs it then denies.
pub(crate) fn decide(
    route: &Arc<Route>,
    facts: &RequestFacts,
    token: Lookup<&Arc<TokenRecord>>,
    environment: Option<Lookup<&EnvironmentRole>>,
    now_unix: i64,
) -> Decision {
    let Auth::Token {
        scope,
        workspace_role,
    } = &route.auth
    else {
        return Decision {
            route: Some(route.clone()),
            outcome: Outcome::Public,
            identity: None,
            caller: None,
        };
    };
    let record = match check_bearer(&facts.bearer).and_then(|_| check_token(token, now_unix)) {
        Ok(record) => record,
        Err(reason) => return finish(route, Err(reason), None),
    };
    let mut identity = Identity {
        token: record.clone(),
        workspace: None,
    };
    if let Err(reason) = check_source(record, facts.source.get().copied()) {
        return finish(route, Err(reason), Some(identity));
    }
    if let Err(reason) = check_scope(record, scope) {
        return finish(route, Err(reason), Some(identity));
    }
    if let Err(reason) = check_organization(route, facts, record) {
        return finish(route, Err(reason), Some(identity));
    }
    if let Some(required) = workspace_role {
        let param = environment_param(route, facts);
        match check_workspace(*required, &param, record, environment) {
            Ok(workspace) => identity.workspace = Some(workspace),
            Err(reason) => return finish(route, Err(reason), Some(identity)),
        }
    }
    finish(route, Ok(()), Some(identity))
}

/// Both phases at once, for callers that have every look-up at hand
/// (tests, `explain`). `token` and `environment` are ignored when not needed.
pub fn authorize(
    facts: &RequestFacts,
    policy: &PolicySet,
    token: Lookup<&Arc<TokenRecord>>,
    environment: Option<Lookup<&EnvironmentRole>>,
    now_unix: i64,
) -> Decision {
    match plan(facts, policy) {
        Plan::Decided(decision) => decision,
        Plan::Load(load) => decide(&load.route, facts, token, environment, now_unix),
    }
}

/// Step 1 (what pathnorm and the header facts found).
pub(crate) fn check_request(facts: &RequestFacts) -> Result<&Target, DenyReason> {
    let invalid = |p| Err(DenyReason::InvalidRequest(p));
    let target = match &facts.target {
        Ok(target) => target,
        Err(e) => return invalid(RequestProblem::Target(*e)),
    };
    if facts.method == "CONNECT" {
        return invalid(RequestProblem::Connect);
    }
    if facts.length_conflict {
        return invalid(RequestProblem::LengthConflict);
    }
    if facts.host_missing {
        return invalid(RequestProblem::MissingHost);
    }
    if matches!(facts.bearer, Bearer::Repeated) {
        return invalid(RequestProblem::RepeatedAuthorization);
    }
    if facts.query.has_access_token {
        return invalid(RequestProblem::AccessTokenInQuery);
    }
    Ok(target)
}

/// Step 3 without the store: a token of our shape is present.
pub(super) fn check_bearer(bearer: &Bearer) -> Result<&str, DenyReason> {
    match bearer {
        Bearer::Missing => Err(DenyReason::MissingToken),
        Bearer::Repeated => Err(DenyReason::InvalidRequest(
            RequestProblem::RepeatedAuthorization,
        )),
        Bearer::Present(token) if secret::looks_like_access_token(token.expose_secret()) => {
            Ok(token.expose_secret())
        }
        Bearer::Present(_) => Err(DenyReason::InvalidToken),
    }
}

/// Step 3 with the store: known and not expired.
pub(crate) fn check_token(
    token: Lookup<&Arc<TokenRecord>>,
    now_unix: i64,
) -> Result<&Arc<TokenRecord>, DenyReason> {
    match token {
        Lookup::Found(record) if record.expires_at > now_unix => Ok(record),
        Lookup::Found(_) | Lookup::NotFound => Err(DenyReason::InvalidToken),
        Lookup::Unavailable => Err(DenyReason::StoreUnavailable),
    }
}

/// After step 3, for an account with `ip_allowlist_on_requests`: the
/// request's source must be in the allowlist its token carries. A source
/// that was not determined denies.
pub(crate) fn check_source(
    record: &TokenRecord,
    source: Option<std::net::IpAddr>,
) -> Result<(), DenyReason> {
    let Some(list) = &record.allowed_sources else {
        return Ok(());
    };
    match source {
        Some(ip) if crate::account_policy::allowed(list, ip) => Ok(()),
        _ => Err(DenyReason::IpNotAllowed),
    }
}

/// Step 4: write covers read.
pub(crate) fn check_scope(record: &TokenRecord, required: &Scope) -> Result<(), DenyReason> {
    if record.scopes.covers(required) {
        Ok(())
    } else {
        Err(DenyReason::InsufficientScope)
    }
}

/// Step 5. Unknown environment, another organization's environment, no
/// membership and a role too low are the same denial, so that they cannot
/// be told apart from outside.
pub(crate) fn check_workspace(
    required: Role,
    param: &EnvironmentParam,
    record: &TokenRecord,
    environment: Option<Lookup<&EnvironmentRole>>,
) -> Result<WorkspaceIdentity, DenyReason> {
    let requested = match param {
        EnvironmentParam::One(id) => id,
        EnvironmentParam::Missing => {
            return Err(DenyReason::InvalidRequest(
                RequestProblem::EnvironmentIdMissing,
            ))
        }
        EnvironmentParam::Repeated => {
            return Err(DenyReason::InvalidRequest(
                RequestProblem::EnvironmentIdRepeated,
            ))
        }
        EnvironmentParam::Invalid => {
            return Err(DenyReason::InvalidRequest(
                RequestProblem::EnvironmentIdInvalid,
            ))
        }
        EnvironmentParam::Semicolon => {
            return Err(DenyReason::InvalidRequest(RequestProblem::QuerySemicolon))
        }
        EnvironmentParam::Conflict => {
            return Err(DenyReason::InvalidRequest(
                RequestProblem::EnvironmentIdConflict,
            ))
        }
    };
    let denied = Err(DenyReason::WorkspaceAccessDenied);
    let (env, role) = match environment {
        Some(Lookup::Found(EnvironmentRole {
            environment: Some(env),
            role,
        })) => (env, *role),
        Some(Lookup::Unavailable) => return Err(DenyReason::StoreUnavailable),
        Some(Lookup::Found(_) | Lookup::NotFound) | None => return denied,
    };
    if env.id != *requested || env.organization_id != record.organization_id {
        return denied;
    }
    match role {
        Some(role) if role >= required => Ok(WorkspaceIdentity {
            environment: env.clone(),
            role,
        }),
        _ => denied,
    }
}

/// Applies the route's mode to the result of steps 3–5.
fn finish(
    route: &Arc<Route>,
    result: Result<(), DenyReason>,
    identity: Option<Identity>,
) -> Decision {
    let outcome = match result {
        Ok(()) => Outcome::Allow,
        Err(reason) if route.mode == Mode::Report && reason.reportable() => {
            Outcome::ReportDeny(reason)
        }
        Err(reason) => Outcome::Deny(reason),
    };
    let caller = identity.as_ref().map(|i| i.token.clone());
    Decision {
        route: Some(route.clone()),
        identity: if matches!(outcome, Outcome::Deny(_)) {
            None
        } else {
            identity
        },
        outcome,
        caller,
    }
}

#[cfg(test)]
mod tests;
