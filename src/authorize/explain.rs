//! `tollgate explain` (docs/contract.md §9): turns CLI arguments into a
//! hypothetical request and prints how the policy set would decide it, one
//! line per check, with the same steps as the proxy.

use std::sync::Arc;

use super::binding::{check_organization, environment_param};
use super::decide::{
    authorize, check_bearer, check_request, check_scope, check_source, check_workspace, route_path,
    Lookup,
};
use super::facts::{EnvironmentParam, HeaderFacts, RequestFacts};
use super::outcome::{Decision, DenyReason, Outcome};
use crate::config::Config;
use crate::model::{EnvironmentRef, EnvironmentRole, TokenRecord};
use crate::policy::{Auth, PolicySet};
use crate::scope::{Role, ScopeSet};
use crate::secret;

/// What `tollgate explain` prints, and its exit code (0 allow, 3 deny).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub lines: Vec<String>,
    pub exit_code: i32,
}

/// The request given to `tollgate explain`, decided under `policy` with
/// `cfg`'s resources and path rules. `scopes` is space-separated ("" means a
/// token without scopes); an empty string with no role still means "a token
/// is presented".
pub fn explain(
    policy: &PolicySet,
    cfg: &Config,
    method: &str,
    path: &str,
    query: Option<&str>,
    scopes: &str,
    role: Option<&str>,
) -> Result<Explanation, String> {
    explain_as(
        policy,
        cfg,
        method,
        path,
        query,
        scopes,
        role,
        &Caller::default(),
    )
}

/// Who `tollgate explain` pretends the token belongs to, beyond its scopes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The token's organization (`--organization`); `explain-organization`
    /// when not given.
    pub organization: Option<String>,
    /// The account's `ip_allowlist` with `ip_allowlist_on_requests`
    /// (`--ip-allowlist`, CIDRs separated by spaces or commas): the token
    /// then carries it.
    pub ip_allowlist: Option<String>,
    /// The request's source address (`--source-ip`).
    pub source: Option<String>,
}

/// [`explain`] for a token of `caller`.
#[allow(clippy::too_many_arguments)]
pub fn explain_as(
    policy: &PolicySet,
    cfg: &Config,
    method: &str,
    path: &str,
    query: Option<&str>,
    scopes: &str,
    role: Option<&str>,
    caller: &Caller,
) -> Result<Explanation, String> {
    let allowlist = match &caller.ip_allowlist {
        None => None,
        Some(list) => {
            let items: Vec<String> = list
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            Some(
                crate::proxy::netaddr::parse_cidrs(&items)
                    .map_err(|e| format!("--ip-allowlist: {e}"))?,
            )
        }
    };
    let source = caller
        .source
        .as_deref()
        .map(|s| {
            s.parse::<std::net::IpAddr>()
                .map_err(|_| format!("--source-ip: {:?} is not an IP address", printable(s)))
        })
        .transpose()?;
    if let Some(org) = &caller.organization {
        if !crate::ids::is_valid_name_id(org) {
            return Err(format!(
                "--organization: {:?} is not an organization id ([A-Za-z0-9_-]{{1,64}})",
                printable(org)
            ));
        }
    }
    let scopes = ScopeSet::parse_all(scopes.split_whitespace(), &cfg.resources)
        .map_err(|e| format!("--scopes: {e}"))?;
    let role = match role {
        None => None,
        Some(r) => {
            Some(Role::parse(r).ok_or_else(|| format!("--role: {r:?} is not member or admin"))?)
        }
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "--method: {method:?} is not an HTTP method in upper case"
        ));
    }
    Ok(explain_request(
        policy,
        &method.to_ascii_uppercase(),
        path,
        query,
        Some(&scopes),
        role,
        cfg.proxy.allow_semicolon_in_path,
        &ExplainToken {
            organization: caller.organization.clone(),
            allowed_sources: allowlist.map(Arc::from),
            source,
        },
    ))
}

/// What `explain` pretends of the token beyond its scopes, parsed.
#[derive(Clone, Debug, Default)]
struct ExplainToken {
    organization: Option<String>,
    allowed_sources: Option<Arc<[ipnet::IpNet]>>,
    source: Option<std::net::IpAddr>,
}

/// Runs the decision for a hypothetical request by a token carrying
/// `scopes` (`None`: no token at all). With `role`, the requested environment
/// exists in the token's organization and the account has that role in its
/// workspace; without, the account has no membership. The store is assumed
/// reachable.
#[allow(clippy::too_many_arguments)]
fn explain_request(
    policy: &PolicySet,
    method: &str,
    path: &str,
    query: Option<&str>,
    scopes: Option<&ScopeSet>,
    role: Option<Role>,
    allow_semicolon: bool,
    caller: &ExplainToken,
) -> Explanation {
    let raw = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let authorization = format!("Bearer {}{}", secret::ACCESS_TOKEN_PREFIX, "0".repeat(43));
    let values: Vec<&[u8]> = scopes
        .map(|_| authorization.as_bytes())
        .into_iter()
        .collect();
    let headers = HeaderFacts {
        authorization: &values,
        ..HeaderFacts::default()
    };
    let facts = RequestFacts::gather(method, raw.as_bytes(), headers, allow_semicolon);
    if let Some(source) = caller.source {
        let _ = facts.source.set(source);
    }
    let record = Arc::new(TokenRecord {
        organization_id: caller
            .organization
            .clone()
            .unwrap_or_else(|| "explain-organization".into()),
        service_account_id: "explain-service-account".into(),
        client_id: "sa_explain".into(),
        scopes: scopes.cloned().unwrap_or_default(),
        expires_at: i64::MAX,
        allowed_sources: caller.allowed_sources.clone(),
        header_values: Default::default(),
    });
    let route = check_request(&facts)
        .ok()
        .and_then(|target| policy.lookup(method, &route_path(target.path())));
    let requested = route.map(|route| environment_param(route, &facts));
    let environment = EnvironmentRole {
        environment: Some(Arc::new(EnvironmentRef {
            id: match requested.as_deref() {
                Some(EnvironmentParam::One(id)) => id.clone(),
                _ => "explain-environment".into(),
            },
            workspace_id: "explain-workspace".into(),
            organization_id: record.organization_id.clone(),
            header_values: Default::default(),
        })),
        role,
    };
    let access = || Some(Lookup::Found(&environment));
    let decision = authorize(&facts, policy, Lookup::Found(&record), access(), 0);

    let mut lines = vec![format!("request: {method} {}", printable(&raw))];
    lines.extend(explain_checks(&facts, &decision, &record, role, access()));
    if decision.forwards() {
        if let Some(route) = &decision.route {
            lines.extend(explain_limits(route));
        }
    }
    // The last line is exactly `decision: allow` or `decision: deny <reason>`
    // (the CLI contract, docs/contract.md §9); what report mode does with a denial goes before.
    let (last, exit_code) = match decision.outcome {
        Outcome::Allow | Outcome::Public => ("decision: allow".to_string(), 0),
        Outcome::Deny(r) => (format!("decision: deny {}", r.as_str()), 3),
        Outcome::ReportDeny(r) => {
            lines.push("mode report: the request is forwarded and recorded as report_deny".into());
            (format!("decision: deny {}", r.as_str()), 3)
        }
    };
    lines.push(last);
    Explanation { lines, exit_code }
}

/// One line per check, up to the first that fails.
fn explain_checks(
    facts: &RequestFacts,
    decision: &Decision,
    record: &TokenRecord,
    role: Option<Role>,
    environment: Option<Lookup<&EnvironmentRole>>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let fail = |r: DenyReason| match r {
        DenyReason::InvalidRequest(p) => format!("fail: invalid_request ({})", p.description()),
        r => format!("fail: {}", r.as_str()),
    };
    match check_request(facts) {
        Ok(target) => lines.push(format!(
            "check request: ok (normalised path {})",
            target.path()
        )),
        Err(r) => {
            lines.push(format!("check request: {}", fail(r)));
            return lines;
        }
    }
    let Some(route) = &decision.route else {
        lines.push("route: none (no route matches this method and path)".into());
        return lines;
    };
    let methods: Vec<&str> = route.methods.iter().map(|m| m.as_str()).collect();
    lines.push(format!(
        "route: {} ({}: {} {}, mode {})",
        route.name,
        route.source,
        methods.join(" "),
        route.path,
        route.mode.as_str()
    ));
    let Auth::Token {
        scope,
        workspace_role,
    } = &route.auth
    else {
        lines.push("check auth: none (public route, forwarded without checks)".into());
        return lines;
    };
    match check_bearer(&facts.bearer) {
        Ok(_) => lines.push(format!("check token: ok (scopes: {})", record.scopes)),
        Err(r) => {
            lines.push(format!("check token: {}", fail(r)));
            return lines;
        }
    }
    if let Some(list) = &record.allowed_sources {
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        let what = format!("check source address (ip_allowlist {})", shown.join(" "));
        match (
            check_source(record, facts.source.get().copied()),
            facts.source.get(),
        ) {
            (Ok(()), Some(ip)) => lines.push(format!("{what}: ok ({ip})")),
            (Ok(()), None) => lines.push(format!("{what}: ok")),
            (Err(r), ip) => {
                let ip = ip.map_or("no --source-ip given".to_string(), ToString::to_string);
                lines.push(format!("{what}: {} ({ip})", fail(r)));
                return lines;
            }
        }
    }
    match check_scope(record, scope) {
        Ok(()) => lines.push(format!("check scope {scope}: ok")),
        Err(r) => {
            lines.push(format!("check scope {scope}: {}", fail(r)));
            return lines;
        }
    }
    if let Some(source) = &route.binding.organization {
        let what = format!("check organization ({})", source.describe());
        match check_organization(route, facts, record) {
            Ok(()) => lines.push(format!(
                "{what}: ok (the token's organization {})",
                record.organization_id
            )),
            Err(r) => {
                let why = match r {
                    DenyReason::OrganizationMismatch => {
                        format!(" (the token's organization is {})", record.organization_id)
                    }
                    _ => String::new(),
                };
                lines.push(format!("{what}: {}{why}", fail(r)));
                return lines;
            }
        }
    }
    let Some(required) = workspace_role else {
        lines.push("check workspace: not required".into());
        return lines;
    };
    let param = environment_param(route, facts);
    if let Some(source) = &route.binding.environment {
        lines.push(format!("environment from: {}", source.describe()));
    }
    match check_workspace(*required, &param, record, environment) {
        Ok(w) => lines.push(format!(
            "check workspace role {}: ok (role {} in environment {})",
            required.as_str(),
            w.role.as_str(),
            w.environment.id
        )),
        Err(r) => {
            let why = match (r, role) {
                (DenyReason::WorkspaceAccessDenied, None) => " (no role given: no membership)",
                (DenyReason::WorkspaceAccessDenied, Some(_)) => " (role too low)",
                _ => "",
            };
            lines.push(format!(
                "check workspace role {}: {}{why}",
                required.as_str(),
                fail(r)
            ));
        }
    }
    lines
}

/// The limit checks of a request that would be forwarded: what the route
/// and the account's quotas count. Their state lives in the store, so
/// explain says what is counted, not whether the request is over.
fn explain_limits(route: &crate::policy::Route) -> Vec<String> {
    let mut lines: Vec<String> = route
        .rate_limit
        .iter()
        .map(|rl| {
            let over = match rl.mode {
                crate::policy::Mode::Enforce => "429 rate_limited",
                crate::policy::Mode::Report => "forwarded, recorded as report_deny rate_limited",
            };
            format!(
                "check rate limit: {} (counted at request time; over it: {over})",
                rl.describe()
            )
        })
        .collect();
    if matches!(route.auth, Auth::Token { .. }) {
        lines.push(
            "check quota: the account's daily and monthly quotas when set (admin API; over them: 429 quota_exceeded)"
                .to_string(),
        );
    }
    lines
}

fn printable(s: &str) -> String {
    s.escape_default().to_string()
}

#[cfg(test)]
mod tests;
