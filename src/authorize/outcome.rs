//! What the decision says: the `Outcome` and its metric labels
//! (docs/contract.md §6), the `Decision` the proxy acts on with the
//! `Identity` it injects upstream, and `Denial`, the one mapping of a refusal
//! to HTTP (docs/contract.md §5.2).

use std::sync::Arc;

use super::pathnorm::PathError;
use crate::model::{EnvironmentRef, TokenRecord};
use crate::policy::Route;
use crate::scope::{Role, Scope};

/// Why a request is malformed (400 `invalid_request`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestProblem {
    Target(PathError),
    LengthConflict,
    MissingHost,
    /// `CONNECT`, whatever its target: tollgate never tunnels.
    Connect,
    RepeatedAuthorization,
    AccessTokenInQuery,
    EnvironmentIdMissing,
    EnvironmentIdRepeated,
    EnvironmentIdInvalid,
    /// A raw `;` in the query of a route that checks a workspace.
    QuerySemicolon,
    /// A decision listener's check request that does not describe the
    /// original request as its ingress convention says.
    CheckRequest,
    /// The route's `organization_param` is a query parameter the request
    /// does not give.
    OrganizationParamMissing,
    /// The organization parameter is repeated, spelled so that a framework
    /// could read it as the name, or given in the query unlike the path.
    OrganizationParamAmbiguous,
    /// `environment_param`: a query value disagrees with the path.
    EnvironmentIdConflict,
}

impl RequestProblem {
    pub(crate) fn description(self) -> &'static str {
        match self {
            RequestProblem::Target(e) => e.description(),
            RequestProblem::LengthConflict => {
                "the request carries both Content-Length and Transfer-Encoding"
            }
            RequestProblem::MissingHost => "an HTTP/1.1 request must carry a Host header",
            RequestProblem::Connect => "CONNECT is not supported: tollgate does not tunnel",
            RequestProblem::RepeatedAuthorization => "the Authorization header is repeated",
            RequestProblem::AccessTokenInQuery => {
                "access tokens are not accepted in the query string; send Authorization: Bearer"
            }
            RequestProblem::EnvironmentIdMissing => "the environmentId query parameter is required",
            RequestProblem::EnvironmentIdRepeated => {
                "the environmentId query parameter must be given exactly once"
            }
            RequestProblem::EnvironmentIdInvalid => {
                "the environmentId query parameter must match [A-Za-z0-9_-]{1,64}"
            }
            RequestProblem::QuerySemicolon => {
                "this route reads environmentId: a ';' in the query must be sent as %3B"
            }
            RequestProblem::CheckRequest => {
                "the check request does not describe the original request"
            }
            RequestProblem::OrganizationParamMissing => {
                "this route needs the organization in the query"
            }
            RequestProblem::OrganizationParamAmbiguous => {
                "the organization parameter must be given once, agree with the path, and the query must not hold a raw ';'"
            }
            RequestProblem::EnvironmentIdConflict => {
                "this route takes the environment from the path; a query value for it must agree"
            }
        }
    }
}

/// Why a request is (or, in report mode, would be) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    InvalidRequest(RequestProblem),
    NoRoute,
    MissingToken,
    InvalidToken,
    InsufficientScope,
    WorkspaceAccessDenied,
    StoreUnavailable,
    /// Over the route's rate limit (`crate::limits`).
    RateLimited,
    /// The account's daily or monthly quota is used up.
    QuotaExceeded,
    /// The route's `organization_param` names another organization than the
    /// token's.
    OrganizationMismatch,
    /// The token's account checks every request's source address
    /// (`ip_allowlist_on_requests`) and this one is outside its allowlist.
    IpNotAllowed,
}

impl DenyReason {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DenyReason::InvalidRequest(_) => "invalid_request",
            DenyReason::NoRoute => "no_route",
            DenyReason::MissingToken => "missing_token",
            DenyReason::InvalidToken => "invalid_token",
            DenyReason::InsufficientScope => "insufficient_scope",
            DenyReason::WorkspaceAccessDenied => "workspace_access_denied",
            DenyReason::StoreUnavailable => "store_unavailable",
            DenyReason::RateLimited => "rate_limited",
            DenyReason::QuotaExceeded => "quota_exceeded",
            DenyReason::OrganizationMismatch => "organization_mismatch",
            DenyReason::IpNotAllowed => "ip_not_allowed",
        }
    }

    /// Whether `mode = "report"` may forward the request anyway. Malformed
    /// requests, unmatched paths and an unreachable store fail closed.
    pub(super) fn reportable(self) -> bool {
        match self {
            DenyReason::InvalidRequest(p) => matches!(
                p,
                RequestProblem::EnvironmentIdMissing
                    | RequestProblem::EnvironmentIdRepeated
                    | RequestProblem::EnvironmentIdInvalid
                    | RequestProblem::QuerySemicolon
                    | RequestProblem::OrganizationParamMissing
                    | RequestProblem::OrganizationParamAmbiguous
                    | RequestProblem::EnvironmentIdConflict
            ),
            DenyReason::OrganizationMismatch | DenyReason::IpNotAllowed => true,
            DenyReason::MissingToken
            | DenyReason::InvalidToken
            | DenyReason::InsufficientScope
            | DenyReason::WorkspaceAccessDenied => true,
            // A limit's own `mode` says whether it refuses.
            DenyReason::NoRoute
            | DenyReason::StoreUnavailable
            | DenyReason::RateLimited
            | DenyReason::QuotaExceeded => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passed (reason `ok`).
    Allow,
    /// An `auth = "none"` route (reason `public`).
    Public,
    Deny(DenyReason),
    /// `mode = "report"`: would have been denied, forwarded anyway.
    ReportDeny(DenyReason),
}

impl Outcome {
    /// The `decision` metric label.
    pub(crate) fn decision(self) -> &'static str {
        match self {
            Outcome::Allow | Outcome::Public => "allow",
            Outcome::Deny(_) => "deny",
            Outcome::ReportDeny(_) => "report_deny",
        }
    }

    /// The `reason` metric label.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Outcome::Allow => "ok",
            Outcome::Public => "public",
            Outcome::Deny(r) | Outcome::ReportDeny(r) => r.as_str(),
        }
    }
}

/// The verified workspace access injected upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceIdentity {
    /// The requested environment (its workspace and organization), shared
    /// with the decision cache.
    pub environment: Arc<EnvironmentRef>,
    /// The account's role (which may exceed the required one).
    pub role: Role,
}

/// Who is calling, as injected in the identity headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's record (organization, account, client, scopes), shared
    /// with the decision cache: an allowed request copies no id.
    pub token: Arc<TokenRecord>,
    /// Only when a workspace role was required and verified.
    pub workspace: Option<WorkspaceIdentity>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `None` when rejected before a route was matched.
    pub route: Option<Arc<Route>>,
    pub outcome: Outcome,
    /// For allows, and for report-mode denials with a valid token: what is
    /// injected upstream.
    pub identity: Option<Identity>,
    /// The record of a valid token, whatever the outcome: who the access log
    /// names, denials included. Never injected.
    pub caller: Option<Arc<TokenRecord>>,
}

impl Decision {
    pub(super) fn deny(route: Option<&Arc<Route>>, reason: DenyReason) -> Decision {
        Decision {
            route: route.cloned(),
            outcome: Outcome::Deny(reason),
            identity: None,
            caller: None,
        }
    }

    pub fn forwards(&self) -> bool {
        !matches!(self.outcome, Outcome::Deny(_))
    }

    /// The `route` metric label: the route name, or `-`.
    pub(crate) fn route_label(&self) -> &str {
        self.route.as_deref().map_or("-", |r| r.name.as_str())
    }

    /// The answer to send instead of forwarding, if any.
    pub(crate) fn denial(&self) -> Option<Denial> {
        match self.outcome {
            Outcome::Deny(reason) => Some(Denial::new(reason, self.route.as_deref())),
            _ => None,
        }
    }
}

/// The HTTP answer to a denial (RFC 6750 §3 for token problems).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Denial {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    pub www_authenticate: Option<String>,
    pub retry_after: Option<u32>,
}

const REALM: &str = "Bearer realm=\"tollgate\"";

impl Denial {
    pub(crate) fn new(reason: DenyReason, route: Option<&Route>) -> Denial {
        let (status, error, description, www_authenticate) = match reason {
            DenyReason::InvalidRequest(p) => (400, "invalid_request", p.description().into(), None),
            DenyReason::NoRoute => (
                404,
                "not_found",
                "no route matches the request".into(),
                None,
            ),
            DenyReason::MissingToken => (
                401,
                "missing_token",
                "a bearer token is required".into(),
                Some(REALM.to_string()),
            ),
            DenyReason::InvalidToken => (
                401,
                "invalid_token",
                "the access token is invalid or has expired".into(),
                Some(format!("{REALM}, error=\"invalid_token\"")),
            ),
            DenyReason::InsufficientScope => {
                let scope = route
                    .and_then(Route::required_scope)
                    .map(Scope::to_string)
                    .unwrap_or_default();
                (
                    403,
                    "insufficient_scope",
                    format!("the access token does not carry the required scope {scope}"),
                    Some(format!(
                        "{REALM}, error=\"insufficient_scope\", scope=\"{scope}\""
                    )),
                )
            }
            DenyReason::WorkspaceAccessDenied => (
                403,
                "workspace_access_denied",
                "the service account has no sufficient role in the environment's workspace".into(),
                None,
            ),
            DenyReason::OrganizationMismatch => (
                403,
                "organization_mismatch",
                "the access token belongs to another organization than the one the request names"
                    .into(),
                None,
            ),
            DenyReason::IpNotAllowed => (
                403,
                "ip_not_allowed",
                "the service account may not make requests from this address".into(),
                None,
            ),
            DenyReason::StoreUnavailable => (
                503,
                "temporarily_unavailable",
                "authorization is temporarily unavailable; retry later".into(),
                None,
            ),
            DenyReason::RateLimited => (
                429,
                "rate_limited",
                "the rate limit of this route is exceeded; retry later".into(),
                None,
            ),
            DenyReason::QuotaExceeded => (
                429,
                "quota_exceeded",
                "the service account's request quota is used up".into(),
                None,
            ),
        };
        Denial {
            status,
            error,
            description,
            www_authenticate,
            retry_after: (reason == DenyReason::StoreUnavailable).then_some(1),
        }
    }

    /// `{"error":…,"error_description":…}`
    pub(crate) fn body(&self) -> Vec<u8> {
        crate::errors::error_body(self.error, &self.description)
    }

    /// Every header of the answer besides the length.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        if let Some(v) = &self.www_authenticate {
            headers.push(("www-authenticate", v.clone()));
        }
        if let Some(v) = self.retry_after {
            headers.push(("retry-after", v.to_string()));
        }
        headers
    }
}

#[cfg(test)]
mod tests;
