//! The enforcement decision of docs/contract.md §5.2 as pure functions. The proxy gathers
//! `RequestFacts`, asks `plan` what to load, loads it, and calls `decide` with
//! the results and the current time; `Denial` is the one mapping to HTTP.

use std::borrow::Cow;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::model::{EnvironmentRef, TokenRecord};
use crate::pathnorm::{self, PathError, Target};
use crate::policy::{Access, Mode, PolicySet, Route};
use crate::scope::{Role, Scope, ScopeSet};
use crate::secret;

/// The bearer credential of a request.
#[derive(Debug)]
pub enum Bearer {
    /// No `Authorization` header, or one with another scheme.
    Missing,
    /// `Bearer <token>`; the value may still be malformed (then it is
    /// refused as `invalid_token` without a store look-up).
    Present(SecretString),
    /// More than one `Authorization` header: a request-safety error.
    Repeated,
}

/// Reads the `Authorization` header values (all of them, in order).
pub fn parse_bearer(authorization_values: &[&[u8]]) -> Bearer {
    let value = match authorization_values {
        [] => return Bearer::Missing,
        [value] => value.trim_ascii(),
        _ => return Bearer::Repeated,
    };
    let (scheme, credentials) = match value.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&value[..i], value[i..].trim_ascii()),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Bearer::Missing;
    }
    Bearer::Present(SecretString::from(
        String::from_utf8_lossy(credentials).into_owned(),
    ))
}

/// The `environmentId` query parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvironmentParam {
    Missing,
    One(String),
    Repeated,
    /// Present once but empty or not `[A-Za-z0-9_-]{1,64}`.
    Invalid,
    /// The query holds a raw `;`, which Rack 2 and old Go split pairs on:
    /// which parameters the upstream sees cannot be told.
    Semicolon,
}

/// What the query string says that matters to the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryFacts {
    pub environment_id: EnvironmentParam,
    /// An `access_token` parameter, whatever its value.
    pub has_access_token: bool,
}

/// Parses the raw query as `application/x-www-form-urlencoded`, the way an
/// upstream framework would, so `access%5Ftoken` counts as `access_token`.
pub fn parse_query(query: Option<&str>) -> QueryFacts {
    let query = query.unwrap_or("");
    let mut facts = parse_query_pairs(query);
    // A raw `;` separates pairs for some frameworks and not others, so a
    // route that checks a workspace cannot know what the upstream reads.
    // An encoded `%3B` inside a value is data to all of them.
    if query.contains(';') {
        facts.environment_id = EnvironmentParam::Semicolon;
    }
    facts
}

fn parse_query_pairs(query: &str) -> QueryFacts {
    // Without `%` or `+` nothing decodes to something else: the pairs can be
    // read in place, which is what most queries allow.
    if query.bytes().any(|b| b == b'%' || b == b'+') {
        query_facts(form_urlencoded::parse(query.as_bytes()))
    } else {
        query_facts(
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .map(|(name, value)| (Cow::Borrowed(name), Cow::Borrowed(value))),
        )
    }
}

fn query_facts<'a>(pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>) -> QueryFacts {
    let mut first_environment_id = None;
    let mut environment_ids = 0;
    let mut aliases = 0;
    let mut has_access_token = false;
    for (name, value) in pairs {
        match name.as_ref() {
            "environmentId" => {
                environment_ids += 1;
                first_environment_id.get_or_insert(value);
            }
            "access_token" => has_access_token = true,
            other if aliases_environment_id(other) => aliases += 1,
            _ => {}
        }
    }
    let environment_id = match (environment_ids, aliases, first_environment_id) {
        (0, _, _) => EnvironmentParam::Missing,
        // Next to an alias, the upstream might read another environment
        // than the one checked.
        (1, 0, Some(id)) if crate::ids::is_valid_name_id(&id) => {
            EnvironmentParam::One(id.into_owned())
        }
        (1, 0, _) => EnvironmentParam::Invalid,
        _ => EnvironmentParam::Repeated,
    };
    QueryFacts {
        environment_id,
        has_access_token,
    }
}

/// A parameter name that is not `environmentId` but that some upstream
/// framework may read as it. The name (already percent- and `+`-decoded) is
/// canonicalised the way the most permissive framework would, then compared
/// with `environmentId` ignoring case:
///
/// | framework        | what it does to a name                                   |
/// |------------------|----------------------------------------------------------|
/// | PHP              | drops leading spaces, cuts at NUL, `name[...]` is `name`, |
/// |                  | trailing ` ` / `.` become `_` (treated as stripped here)  |
/// | Rack 2           | strips leading `[`/`]`, `name]` and `name[x]` are `name`, |
/// |                  | splits pairs on `;` too (see [`parse_query`])             |
/// | Rack 3, Go, Python, Node, Java servlets | exact name; old Go splits on `;` |
/// | ASP.NET          | case-insensitive (ordinal, `ı` upper-cases to `I`)        |
///
/// Leading and trailing whitespace, control characters and the BOM are
/// dropped, the name is cut at NUL and at the first `[` or `]`, trailing
/// `.` are dropped. Ordinary names (`environment`, `environmentIds`,
/// `env_id`) do not canonicalise to `environmentId` and pass.
fn aliases_environment_id(name: &str) -> bool {
    name != "environmentId" && canonically_environment_id(name)
}

fn canonically_environment_id(name: &str) -> bool {
    const TARGET: &str = "environmentId";
    if name.len() < TARGET.len() {
        return false;
    }
    let strippable = |c: char| c.is_whitespace() || c.is_control() || c == '\u{feff}';
    let name = name.split('\0').next().unwrap_or("");
    let name = name.trim_start_matches(|c: char| strippable(c) || c == '[' || c == ']');
    let name = name.split(['[', ']']).next().unwrap_or("");
    let name = name.trim_end_matches(|c: char| strippable(c) || c == '.');
    let mut chars = name.chars();
    for want in TARGET.chars() {
        match chars.next() {
            Some(c) if c.eq_ignore_ascii_case(&want) => {}
            Some(c) if !c.is_ascii() => {
                let mut upper = c.to_uppercase();
                if upper.next() != Some(want.to_ascii_uppercase()) || upper.next().is_some() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    chars.next().is_none()
}

/// Header facts the proxy reads from the request.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderFacts<'a> {
    pub authorization: &'a [&'a [u8]],
    pub content_length: bool,
    pub transfer_encoding: bool,
    /// An HTTP/1.1 request without a `Host` field.
    pub host_missing: bool,
}

/// Everything the decision needs to know about a request.
#[derive(Debug)]
pub struct RequestFacts {
    pub method: String,
    pub target: Result<Target, PathError>,
    pub bearer: Bearer,
    pub query: QueryFacts,
    /// Both `Content-Length` and `Transfer-Encoding` (request smuggling).
    pub length_conflict: bool,
    /// An HTTP/1.1 request without `Host`: RFC 9112 §3.2 says 400.
    pub host_missing: bool,
}

impl RequestFacts {
    pub fn gather(
        method: &str,
        raw_target: &[u8],
        headers: HeaderFacts<'_>,
        allow_semicolon: bool,
    ) -> RequestFacts {
        let target = pathnorm::normalize_target(raw_target, allow_semicolon);
        let query = parse_query(target.as_ref().ok().and_then(Target::query));
        RequestFacts {
            method: method.to_string(),
            target,
            bearer: parse_bearer(headers.authorization),
            query,
            length_conflict: headers.content_length && headers.transfer_encoding,
            host_missing: headers.host_missing,
        }
    }
}

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
}

impl RequestProblem {
    pub fn description(self) -> &'static str {
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
}

impl DenyReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::InvalidRequest(_) => "invalid_request",
            DenyReason::NoRoute => "no_route",
            DenyReason::MissingToken => "missing_token",
            DenyReason::InvalidToken => "invalid_token",
            DenyReason::InsufficientScope => "insufficient_scope",
            DenyReason::WorkspaceAccessDenied => "workspace_access_denied",
            DenyReason::StoreUnavailable => "store_unavailable",
        }
    }

    /// Whether `mode = "report"` may forward the request anyway. Malformed
    /// requests, unmatched paths and an unreachable store fail closed.
    fn reportable(self) -> bool {
        match self {
            DenyReason::InvalidRequest(p) => matches!(
                p,
                RequestProblem::EnvironmentIdMissing
                    | RequestProblem::EnvironmentIdRepeated
                    | RequestProblem::EnvironmentIdInvalid
                    | RequestProblem::QuerySemicolon
            ),
            DenyReason::MissingToken
            | DenyReason::InvalidToken
            | DenyReason::InsufficientScope
            | DenyReason::WorkspaceAccessDenied => true,
            DenyReason::NoRoute | DenyReason::StoreUnavailable => false,
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
    pub fn decision(self) -> &'static str {
        match self {
            Outcome::Allow | Outcome::Public => "allow",
            Outcome::Deny(_) => "deny",
            Outcome::ReportDeny(_) => "report_deny",
        }
    }

    /// The `reason` metric label.
    pub fn reason(self) -> &'static str {
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
    fn deny(route: Option<&Arc<Route>>, reason: DenyReason) -> Decision {
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
    pub fn route_label(&self) -> &str {
        self.route.as_deref().map_or("-", |r| r.name.as_str())
    }

    /// The answer to send instead of forwarding, if any.
    pub fn denial(&self) -> Option<Denial> {
        match self.outcome {
            Outcome::Deny(reason) => Some(Denial::new(reason, self.route.as_deref())),
            _ => None,
        }
    }
}

/// The HTTP answer to a denial (RFC 6750 §3 for token problems).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    pub www_authenticate: Option<String>,
    pub retry_after: Option<u32>,
}

const REALM: &str = "Bearer realm=\"tollgate\"";

impl Denial {
    pub fn new(reason: DenyReason, route: Option<&Route>) -> Denial {
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
            DenyReason::StoreUnavailable => (
                503,
                "temporarily_unavailable",
                "authorization is temporarily unavailable; retry later".into(),
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
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.error, "error_description": self.description })
            .to_string()
    }

    /// Every header of the answer besides the length.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
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

/// An environment and the account's membership role in its workspace
/// (`None`: no membership).
pub type EnvironmentAccess<'a> = (&'a Arc<EnvironmentRef>, Option<Role>);

/// Phase 1: decided without the store, or what to load for `decide`.
#[derive(Debug)]
pub enum Plan {
    Decided(Decision),
    Load(Load),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
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
pub fn route_path(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
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
pub fn plan(facts: &RequestFacts, policy: &PolicySet) -> Plan {
    let target = match check_request(facts) {
        Ok(target) => target,
        Err(reason) => return Plan::Decided(Decision::deny(None, reason)),
    };
    let Some(route) = policy.lookup(&facts.method, &route_path(target.path())) else {
        return Plan::Decided(Decision::deny(None, DenyReason::NoRoute));
    };
    if route.access == Access::Public {
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
            environment_id: match (&facts.query.environment_id, route.workspace_role()) {
                (EnvironmentParam::One(id), Some(_)) => Some(id.clone()),
                _ => None,
            },
        }),
    }
}

/// Phase 2: token (step 3), scope (step 4), workspace (step 5), allow
/// (step 6), then `mode`. `environment` is `None` when it was not loaded;
/// a route that needs it then denies.
pub fn decide(
    route: &Arc<Route>,
    facts: &RequestFacts,
    token: Lookup<&Arc<TokenRecord>>,
    environment: Option<Lookup<EnvironmentAccess<'_>>>,
    now_unix: i64,
) -> Decision {
    let Access::Token {
        scope,
        workspace_role,
    } = &route.access
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
    if let Err(reason) = check_scope(record, scope) {
        return finish(route, Err(reason), Some(identity));
    }
    if let Some(required) = workspace_role {
        match check_workspace(*required, &facts.query.environment_id, record, environment) {
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
    environment: Option<Lookup<EnvironmentAccess<'_>>>,
    now_unix: i64,
) -> Decision {
    match plan(facts, policy) {
        Plan::Decided(decision) => decision,
        Plan::Load(load) => decide(&load.route, facts, token, environment, now_unix),
    }
}

/// Step 1 (what pathnorm and the header facts found).
pub fn check_request(facts: &RequestFacts) -> Result<&Target, DenyReason> {
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
fn check_bearer(bearer: &Bearer) -> Result<&str, DenyReason> {
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
pub fn check_token(
    token: Lookup<&Arc<TokenRecord>>,
    now_unix: i64,
) -> Result<&Arc<TokenRecord>, DenyReason> {
    match token {
        Lookup::Found(record) if record.expires_at > now_unix => Ok(record),
        Lookup::Found(_) | Lookup::NotFound => Err(DenyReason::InvalidToken),
        Lookup::Unavailable => Err(DenyReason::StoreUnavailable),
    }
}

/// Step 4: write covers read.
pub fn check_scope(record: &TokenRecord, required: &Scope) -> Result<(), DenyReason> {
    if record.scopes.covers(required) {
        Ok(())
    } else {
        Err(DenyReason::InsufficientScope)
    }
}

/// Step 5. Unknown environment, another organization's environment, no
/// membership and a role too low are the same denial, so that they cannot
/// be told apart from outside.
pub fn check_workspace(
    required: Role,
    param: &EnvironmentParam,
    record: &TokenRecord,
    environment: Option<Lookup<EnvironmentAccess<'_>>>,
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
    };
    let denied = Err(DenyReason::WorkspaceAccessDenied);
    let (env, role) = match environment {
        Some(Lookup::Found(found)) => found,
        Some(Lookup::Unavailable) => return Err(DenyReason::StoreUnavailable),
        Some(Lookup::NotFound) | None => return denied,
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

/// What `tollgate explain` prints, and its exit code (0 allow, 3 deny).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub lines: Vec<String>,
    pub exit_code: i32,
}

/// Runs the decision for a hypothetical request by a token carrying
/// `scopes` (`None`: no token at all). With `role`, the requested environment
/// exists in the token's organization and the account has that role in its
/// workspace; without, the account has no membership. The store is assumed
/// reachable.
pub fn explain(
    policy: &PolicySet,
    method: &str,
    path: &str,
    query: Option<&str>,
    scopes: Option<&ScopeSet>,
    role: Option<Role>,
    allow_semicolon: bool,
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
    let record = Arc::new(TokenRecord {
        organization_id: "explain-organization".into(),
        service_account_id: "explain-service-account".into(),
        client_id: "sa_explain".into(),
        scopes: scopes.cloned().unwrap_or_default(),
        expires_at: i64::MAX,
        header_values: Default::default(),
    });
    let environment = Arc::new(EnvironmentRef {
        id: match &facts.query.environment_id {
            EnvironmentParam::One(id) => id.clone(),
            _ => "explain-environment".into(),
        },
        workspace_id: "explain-workspace".into(),
        organization_id: record.organization_id.clone(),
        header_values: Default::default(),
    });
    let access = || Some(Lookup::Found((&environment, role)));
    let decision = authorize(&facts, policy, Lookup::Found(&record), access(), 0);

    let mut lines = vec![format!("request: {method} {}", printable(&raw))];
    lines.extend(explain_checks(&facts, &decision, &record, role, access()));
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
    environment: Option<Lookup<EnvironmentAccess<'_>>>,
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
    let Access::Token {
        scope,
        workspace_role,
    } = &route.access
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
    match check_scope(record, scope) {
        Ok(()) => lines.push(format!("check scope {scope}: ok")),
        Err(r) => {
            lines.push(format!("check scope {scope}: {}", fail(r)));
            return lines;
        }
    }
    let Some(required) = workspace_role else {
        lines.push("check workspace: not required".into());
        return lines;
    };
    let param = &facts.query.environment_id;
    match check_workspace(*required, param, record, environment) {
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

fn printable(s: &str) -> String {
    s.escape_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn the_query_shortcut_reads_what_form_urlencoded_reads(
            query in "[a-zA-Z_=&%+0-9-]{0,40}",
            env in "[a-z0-9_-]{0,6}",
        ) {
            // Either an arbitrary query or one built around environmentId.
            for q in [query.clone(), format!("environmentId={env}&{query}"), format!("{query}&access_token")] {
                let slow = query_facts(form_urlencoded::parse(q.as_bytes()));
                proptest::prop_assert_eq!(parse_query(Some(&q)), slow);
            }
        }
    }
    use crate::policy::load_str;
    use crate::scope::default_resources;

    /// How PHP 8 turns a decoded query name into a `$_GET` key: leading
    /// spaces dropped, cut at NUL, `name[...]` is `name`, and ` ` / `.` in
    /// the base become `_`.
    fn php_key(name: &str) -> String {
        let name = name.trim_start_matches(' ');
        let name = name.split('\0').next().unwrap_or("");
        let base = match name.find('[') {
            Some(i) if name[i..].contains(']') => &name[..i],
            _ => name,
        };
        base.replace([' ', '.'], "_")
    }

    /// How Rack 2 reads a name: leading `[`/`]` dropped, then up to the
    /// first `[` or `]`.
    fn rack2_key(name: &str) -> &str {
        let name = name.trim_start_matches(['[', ']']);
        name.split(['[', ']']).next().unwrap_or("")
    }

    fn query_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop::sample::select(vec![
            " ", "\0", "[", "]", ".", "_", "\u{feff}", "\t", "x", "0", "\u{131}",
        ]);
        let core = prop::sample::select(vec![
            "environmentId",
            "EnvironmentID",
            "environment Id",
            "environment.Id",
            "environmentI",
            "nvironmentId",
        ]);
        (
            prop::collection::vec(piece.clone(), 0..3),
            core,
            prop::collection::vec(piece, 0..3),
        )
            .prop_map(|(pre, core, post)| format!("{}{core}{}", pre.concat(), post.concat()))
    }

    proptest::proptest! {
        #[test]
        fn a_name_php_rack_or_asp_net_reads_as_environment_id_is_a_repeat(
            name in query_name(),
        ) {
            let encoded: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
            let q = format!("environmentId=env1&{encoded}=env2");
            let read_as_environment_id = php_key(&name) == "environmentId"
                || rack2_key(&name) == "environmentId"
                || name.eq_ignore_ascii_case("environmentId");
            let facts = parse_query(Some(&q)).environment_id;
            if read_as_environment_id {
                proptest::prop_assert_eq!(facts, EnvironmentParam::Repeated, "{}", q);
            } else {
                proptest::prop_assert!(
                    matches!(facts, EnvironmentParam::One(_) | EnvironmentParam::Repeated),
                    "{}", q
                );
            }
        }
    }

    #[test]
    fn routes_match_segments_without_their_matrix_parameters() {
        assert_eq!(route_path("/admin;jsessionid=1/y"), "/admin/y");
        assert_eq!(route_path("/a;x/b;y=1;z/c"), "/a/b/c");
        assert_eq!(route_path("/a/b;"), "/a/b");
        assert!(matches!(route_path("/plain/path"), Cow::Borrowed(_)));

        let policy = load_str(
            "semicolon.toml",
            r#"
[[route]]
name = "admin"
methods = ["GET"]
path = "/admin/**"
upstream = "backend"
scope = "tools:write"

[[route]]
name = "loose"
methods = ["GET"]
path = "/{any}/y"
upstream = "backend"
auth = "none"
"#,
            &default_resources(),
            |_| true,
        )
        .expect("policy");
        let facts = RequestFacts::gather(
            "GET",
            b"/admin;jsessionid=1/y",
            HeaderFacts::default(),
            true,
        );
        let Plan::Decided(d) = plan(&facts, &policy) else {
            panic!("the strict route needs a token, so the plan must be decided (missing token)");
        };
        assert_eq!(d.route.as_ref().map(|r| r.name.as_str()), Some("admin"));
    }

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

    const NOW: i64 = 1_700_000_000;

    fn policy() -> PolicySet {
        load_str("test.toml", POLICY, &default_resources(), |_| true).expect("valid policy")
    }

    fn token() -> String {
        format!("tg_at_{}", "A".repeat(43))
    }

    fn record(scopes: &str) -> Arc<TokenRecord> {
        Arc::new(TokenRecord {
            organization_id: "org1".into(),
            service_account_id: "sa1".into(),
            client_id: "sa_client1".into(),
            scopes: ScopeSet::from_stored(scopes),
            expires_at: NOW + 900,
            header_values: Default::default(),
        })
    }

    fn environment(id: &str, organization: &str) -> Arc<EnvironmentRef> {
        Arc::new(EnvironmentRef {
            id: id.into(),
            workspace_id: "ws1".into(),
            organization_id: organization.into(),
            header_values: Default::default(),
        })
    }

    /// A request under construction.
    struct Req {
        method: &'static str,
        target: String,
        authorization: Vec<String>,
        length_conflict: bool,
    }

    fn req(method: &'static str, target: &str) -> Req {
        Req {
            method,
            target: target.into(),
            authorization: Vec::new(),
            length_conflict: false,
        }
    }

    impl Req {
        fn with_token(self) -> Req {
            self.authorization(&format!("Bearer {}", token()))
        }

        fn authorization(mut self, value: &str) -> Req {
            self.authorization.push(value.into());
            self
        }

        fn facts(&self) -> RequestFacts {
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
        fn run(
            &self,
            token: Lookup<&Arc<TokenRecord>>,
            environment: Option<Lookup<EnvironmentAccess<'_>>>,
        ) -> Decision {
            authorize(&self.facts(), &policy(), token, environment, NOW)
        }

        /// A known token with `scopes`, and environment `env1` of the same
        /// organization where the account has `role`.
        fn run_as(&self, scopes: &str, role: Option<Role>) -> Decision {
            let env = environment("env1", "org1");
            self.run(
                Lookup::Found(&record(scopes)),
                Some(Lookup::Found((&env, role))),
            )
        }
    }

    fn denied(decision: &Decision) -> DenyReason {
        match decision.outcome {
            Outcome::Deny(r) => r,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn status(decision: &Decision) -> u16 {
        decision.denial().map_or(0, |d| d.status)
    }

    const WF: &str = "/api/v1/workflows/w1?environmentId=env1";

    // Step 1: request safety.

    #[test]
    fn absolute_authority_and_asterisk_forms_are_invalid_requests() {
        for target in ["http://evil.example/api/v1/status", "evil.example:443", "*"] {
            let d = req("GET", target).run_as("workflows:read", Some(Role::Member));
            assert_eq!(status(&d), 400, "{target}");
            assert_eq!(d.outcome.reason(), "invalid_request");
            assert_eq!(d.route_label(), "-");
        }
    }

    #[test]
    fn unsafe_paths_are_invalid_requests_even_on_public_routes() {
        for target in [
            "/api/v1/status%2F..",
            "/api/v1%5Cstatus",
            "/api/v1/status%00",
            "/api/v1//status",
            "/api/v1/status;x=1",
            "/api/../../status",
        ] {
            let d = req("GET", target).run(Lookup::Unavailable, None);
            assert!(
                matches!(
                    denied(&d),
                    DenyReason::InvalidRequest(RequestProblem::Target(_))
                ),
                "{target}"
            );
            assert_eq!(status(&d), 400);
        }
    }

    #[test]
    fn routes_are_matched_on_the_normalised_path() {
        let d = req("GET", "/api/v1/logs/../workflows/%77?environmentId=env1")
            .with_token()
            .run_as("workflows:read", Some(Role::Member));
        assert_eq!(d.route_label(), "workflows-read");
        assert_eq!(d.outcome, Outcome::Allow);
        let facts = req("GET", "/api/v1/logs/../status").facts();
        let target = facts.target.as_ref().expect("valid");
        assert_eq!(target.path(), "/api/v1/status");
    }

    #[test]
    fn both_content_length_and_transfer_encoding_are_rejected_on_public_routes_too() {
        let mut r = req("GET", "/api/v1/status");
        r.length_conflict = true;
        let d = r.run(Lookup::NotFound, None);
        assert_eq!(
            denied(&d),
            DenyReason::InvalidRequest(RequestProblem::LengthConflict)
        );
    }

    #[test]
    fn connect_is_an_invalid_request_whatever_its_target() {
        let facts =
            RequestFacts::gather("CONNECT", b"/api/v1/status", HeaderFacts::default(), false);
        assert_eq!(
            check_request(&facts).err(),
            Some(DenyReason::InvalidRequest(RequestProblem::Connect))
        );
    }

    #[test]
    fn an_http_1_1_request_without_host_is_rejected_on_public_routes_too() {
        let headers = HeaderFacts {
            host_missing: true,
            ..HeaderFacts::default()
        };
        let facts = RequestFacts::gather("GET", b"/api/v1/status", headers, false);
        assert_eq!(
            check_request(&facts).err(),
            Some(DenyReason::InvalidRequest(RequestProblem::MissingHost))
        );
    }

    #[test]
    fn repeated_authorization_header_is_rejected_on_public_routes_too() {
        let d = req("GET", "/api/v1/status")
            .with_token()
            .with_token()
            .run(Lookup::NotFound, None);
        assert_eq!(
            denied(&d),
            DenyReason::InvalidRequest(RequestProblem::RepeatedAuthorization)
        );
        assert_eq!(d.route_label(), "-");
    }

    #[test]
    fn access_token_in_the_query_is_rejected_on_every_route() {
        for target in [
            "/api/v1/status?access_token=x",
            "/api/v1/status?a=1&access%5Ftoken=",
            "/api/v1/nowhere?access_token=x",
            "/api/v1/workflows/w1?environmentId=env1&access_token=x",
        ] {
            let d = req("GET", target)
                .with_token()
                .run_as("workflows:read", Some(Role::Member));
            assert_eq!(
                denied(&d),
                DenyReason::InvalidRequest(RequestProblem::AccessTokenInQuery),
                "{target}"
            );
        }
    }

    // Step 2: route lookup.

    #[test]
    fn a_path_without_a_route_is_not_found_and_nothing_is_forwarded() {
        let d = req("GET", "/api/v2/anything")
            .with_token()
            .run_as("workflows:read", None);
        assert_eq!(denied(&d), DenyReason::NoRoute);
        assert_eq!(
            (d.outcome.decision(), d.outcome.reason(), d.route_label()),
            ("deny", "no_route", "-")
        );
        let denial = d.denial().expect("denial");
        assert_eq!((denial.status, denial.error), (404, "not_found"));
    }

    #[test]
    fn a_method_no_route_lists_is_not_found() {
        let d = req("TRACE", "/api/v1/status").run(Lookup::NotFound, None);
        assert_eq!(denied(&d), DenyReason::NoRoute);
        let d = req("POST", "/api/v1/status").run(Lookup::NotFound, None);
        assert_eq!(denied(&d), DenyReason::NoRoute);
    }

    #[test]
    fn public_route_is_forwarded_without_a_token_and_without_the_store() {
        let facts = req("GET", "/api/v1/status").facts();
        let Plan::Decided(d) = plan(&facts, &policy()) else {
            panic!("a public route needs no look-up");
        };
        assert_eq!(
            (d.outcome.decision(), d.outcome.reason()),
            ("allow", "public")
        );
        assert!(d.forwards() && d.identity.is_none() && d.denial().is_none());
        let with_bad_token = req("GET", "/api/v1/status").authorization("Bearer nope");
        assert_eq!(
            with_bad_token.run(Lookup::Unavailable, None).outcome,
            Outcome::Public
        );
    }

    // Step 3: the bearer token.

    #[test]
    fn missing_token_is_401_with_a_bare_bearer_challenge() {
        let facts = req("GET", WF).facts();
        let Plan::Decided(d) = plan(&facts, &policy()) else {
            panic!("a missing token needs no look-up");
        };
        assert_eq!(denied(&d), DenyReason::MissingToken);
        let denial = d.denial().expect("denial");
        assert_eq!((denial.status, denial.error), (401, "missing_token"));
        assert_eq!(
            denial.www_authenticate.as_deref(),
            Some("Bearer realm=\"tollgate\"")
        );
    }

    #[test]
    fn another_authorization_scheme_counts_as_a_missing_token() {
        let d = req("GET", WF)
            .authorization("Basic c2FfeDp5")
            .run_as("workflows:read", Some(Role::Member));
        assert_eq!(denied(&d), DenyReason::MissingToken);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let d = req("GET", WF)
            .authorization(&format!("bEaReR   {}", token()))
            .run_as("workflows:read", Some(Role::Member));
        assert_eq!(d.outcome, Outcome::Allow);
    }

    #[test]
    fn malformed_token_is_invalid_without_a_store_lookup() {
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer tg_at_short",
            "Bearer tg_sk_abc",
            "Bearer a b",
        ] {
            let facts = req("GET", WF).authorization(value).facts();
            let Plan::Decided(d) = plan(&facts, &policy()) else {
                panic!("{value}: a malformed token needs no look-up");
            };
            assert_eq!(denied(&d), DenyReason::InvalidToken, "{value}");
        }
    }

    #[test]
    fn a_well_formed_token_is_looked_up_by_its_hash() {
        let facts = req("GET", WF).with_token().facts();
        let Plan::Load(load) = plan(&facts, &policy()) else {
            panic!("expected a look-up");
        };
        assert_eq!(load.token_hash, secret::token_hash(&token()));
        assert_eq!(load.environment_id.as_deref(), Some("env1"));
        assert_eq!(load.route.name, "workflows-read");
        let facts = req("GET", "/api/v1/logs/x").with_token().facts();
        let Plan::Load(load) = plan(&facts, &policy()) else {
            panic!("expected a look-up");
        };
        assert_eq!(
            load.environment_id, None,
            "no workspace role, no environment look-up"
        );
    }

    #[test]
    fn unknown_token_is_401_invalid_token() {
        let d = req("GET", WF).with_token().run(Lookup::NotFound, None);
        assert_eq!(denied(&d), DenyReason::InvalidToken);
        let denial = d.denial().expect("denial");
        assert_eq!((denial.status, denial.error), (401, "invalid_token"));
        assert_eq!(
            denial.www_authenticate.as_deref(),
            Some("Bearer realm=\"tollgate\", error=\"invalid_token\"")
        );
    }

    #[test]
    fn expired_token_is_invalid_from_its_expiry_second_on() {
        let mut rec = record("workflows:read");
        Arc::make_mut(&mut rec).expires_at = NOW;
        let d = req("GET", "/api/v1/logs/x")
            .with_token()
            .run(Lookup::Found(&rec), None);
        assert_eq!(denied(&d), DenyReason::InvalidToken);
        let rec = Arc::new(TokenRecord {
            expires_at: NOW + 1,
            scopes: ScopeSet::from_stored("logs:read"),
            ..TokenRecord::clone(&rec)
        });
        let d = req("GET", "/api/v1/logs/x")
            .with_token()
            .run(Lookup::Found(&rec), None);
        assert_eq!(d.outcome, Outcome::Allow);
    }

    #[test]
    fn an_unreachable_store_is_503_with_retry_after_and_never_forwarded() {
        let d = req("GET", WF).with_token().run(Lookup::Unavailable, None);
        assert_eq!(denied(&d), DenyReason::StoreUnavailable);
        assert_eq!(d.outcome.reason(), "store_unavailable");
        let denial = d.denial().expect("denial");
        assert_eq!(
            (denial.status, denial.error, denial.retry_after),
            (503, "temporarily_unavailable", Some(1))
        );
        assert!(denial.headers().contains(&("retry-after", "1".to_string())));

        let rec = record("workflows:read");
        let d = req("GET", WF)
            .with_token()
            .run(Lookup::Found(&rec), Some(Lookup::Unavailable));
        assert_eq!(denied(&d), DenyReason::StoreUnavailable);
    }

    // Step 4: scope.

    #[test]
    fn write_scope_satisfies_read_requirement() {
        let d = req("GET", WF)
            .with_token()
            .run_as("workflows:write", Some(Role::Member));
        assert_eq!(d.outcome, Outcome::Allow);
    }

    #[test]
    fn read_scope_does_not_satisfy_write_requirement() {
        let d = req("POST", WF)
            .with_token()
            .run_as("workflows:read", Some(Role::Member));
        assert_eq!(denied(&d), DenyReason::InsufficientScope);
        let denial = d.denial().expect("denial");
        assert_eq!((denial.status, denial.error), (403, "insufficient_scope"));
        assert_eq!(
            denial.www_authenticate.as_deref(),
            Some("Bearer realm=\"tollgate\", error=\"insufficient_scope\", scope=\"workflows:write\"")
        );
    }

    #[test]
    fn a_denial_names_a_valid_tokens_caller_but_injects_nothing() {
        let d = req("GET", WF).with_token().run_as("logs:read", None);
        assert_eq!(denied(&d), DenyReason::InsufficientScope);
        assert!(d.identity.is_none());
        let caller = d.caller.expect("the valid token's caller");
        assert_eq!(
            (caller.organization_id.as_str(), caller.client_id.as_str()),
            ("org1", "sa_client1")
        );
        let d = req("GET", WF).with_token().run_as("workflows:read", None);
        assert_eq!(denied(&d), DenyReason::WorkspaceAccessDenied);
        assert!(d.identity.is_none() && d.caller.is_some());

        let unknown = req("GET", WF).with_token().run(Lookup::NotFound, None);
        let missing = req("GET", WF).run(Lookup::NotFound, None);
        let unrouted = req("GET", "/nowhere")
            .with_token()
            .run(Lookup::NotFound, None);
        for d in [unknown, missing, unrouted] {
            assert!(d.caller.is_none(), "{:?}", d.outcome);
        }
        let allowed = req("GET", WF)
            .with_token()
            .run_as("workflows:read", Some(Role::Member));
        assert_eq!(allowed.caller, allowed.identity.map(|i| i.token));
    }

    #[test]
    fn scope_of_another_resource_is_insufficient() {
        let d = req("GET", WF)
            .with_token()
            .run_as("logs:write knowledge:read", Some(Role::Admin));
        assert_eq!(denied(&d), DenyReason::InsufficientScope);
    }

    #[test]
    fn scope_is_checked_before_the_environment() {
        let d = req("GET", "/api/v1/workflows/w1")
            .with_token()
            .run_as("logs:read", None);
        assert_eq!(denied(&d), DenyReason::InsufficientScope);
        let d = req("GET", "/api/v1/workflows/w1").run_as("workflows:read", None);
        assert_eq!(denied(&d), DenyReason::MissingToken);
    }

    // Step 5: workspace.

    /// Spellings of `environmentId` that some framework reads as it.
    pub(crate) const ENVIRONMENT_ID_ALIASES: &[&str] = &[
        "+environmentId",
        "%20environmentId",
        "environmentId%00x",
        "%5BenvironmentId",
        "environmentId%5D",
        "environmentId.",
        "environmentId%20",
        "%EF%BB%BFenvironmentId",
        "EnvironmentID",
        "environmentId[]",
        "environmentId%5B0%5D",
        "%09environmentId",
        "environment%C4%B1d",
        "environmentId..",
    ];

    #[test]
    fn every_framework_alias_of_environment_id_is_a_repeat() {
        for alias in ENVIRONMENT_ID_ALIASES {
            let q = format!("environmentId=env1&{alias}=env2");
            assert_eq!(
                parse_query(Some(&q)).environment_id,
                EnvironmentParam::Repeated,
                "{q}"
            );
        }
        for other in [
            "environment",
            "environmentIds",
            "env_id",
            "environment_Id",
            "xenvironmentId",
            "environmentIdx",
            "a%3Bb=c",
        ] {
            let q = format!("environmentId=env1&{other}=v");
            assert_eq!(
                parse_query(Some(&q)).environment_id,
                EnvironmentParam::One("env1".into()),
                "{q}"
            );
        }
    }

    #[test]
    fn a_raw_semicolon_anywhere_in_the_query_makes_the_environment_unknowable() {
        for q in [
            "environmentId=env1&x=1;environmentId=env2",
            "environmentId=env1&x=1;%20EnvironmentId=env2",
            "environmentId=env1;x=1",
            "environmentId=env1&a;b=c",
            "x=1;environmentId=env1",
            ";",
        ] {
            assert_eq!(
                parse_query(Some(q)).environment_id,
                EnvironmentParam::Semicolon,
                "{q}"
            );
        }
        assert_eq!(
            parse_query(Some("environmentId=env1&q=a%3Bb")).environment_id,
            EnvironmentParam::One("env1".into())
        );
    }

    #[test]
    fn a_missing_repeated_empty_or_malformed_environment_id_is_an_invalid_request() {
        let cases = [
            ("/api/v1/workflows/w1", RequestProblem::EnvironmentIdMissing),
            (
                "/api/v1/workflows/w1?environmentid=env1",
                RequestProblem::EnvironmentIdMissing,
            ),
            (
                "/api/v1/workflows/w1?environmentId=env1&environmentId=env1",
                RequestProblem::EnvironmentIdRepeated,
            ),
            // Spellings an upstream framework may read as environmentId.
            (
                "/api/v1/workflows/w1?environmentId=env1&environmentId[]=env2",
                RequestProblem::EnvironmentIdRepeated,
            ),
            (
                "/api/v1/workflows/w1?environmentId=env1&environmentId%5B0%5D=env2",
                RequestProblem::EnvironmentIdRepeated,
            ),
            (
                "/api/v1/workflows/w1?environmentid=env2&environmentId=env1",
                RequestProblem::EnvironmentIdRepeated,
            ),
            (
                "/api/v1/workflows/w1?environmentId[]=env1",
                RequestProblem::EnvironmentIdMissing,
            ),
            (
                "/api/v1/workflows/w1?environmentId=",
                RequestProblem::EnvironmentIdInvalid,
            ),
            (
                "/api/v1/workflows/w1?environmentId=a%2Fb",
                RequestProblem::EnvironmentIdInvalid,
            ),
            (
                "/api/v1/workflows/w1?environmentId=a+b",
                RequestProblem::EnvironmentIdInvalid,
            ),
            (
                "/api/v1/workflows/w1?environmentId=env1&q=a;b",
                RequestProblem::QuerySemicolon,
            ),
        ];
        for (target, problem) in cases {
            let d = req("GET", target)
                .with_token()
                .run_as("workflows:read", Some(Role::Admin));
            assert_eq!(denied(&d), DenyReason::InvalidRequest(problem), "{target}");
            assert_eq!(status(&d), 400);
        }
    }

    #[test]
    fn a_route_without_a_workspace_role_ignores_the_environment() {
        let d = req("GET", "/api/v1/logs/x?environmentId=a&environmentId=b")
            .with_token()
            .run(Lookup::Found(&record("logs:read")), None);
        assert_eq!(d.outcome, Outcome::Allow);
        assert_eq!(d.identity.as_ref().and_then(|i| i.workspace.as_ref()), None);
    }

    #[test]
    fn unknown_environment_is_denied() {
        let d = req("GET", WF).with_token().run(
            Lookup::Found(&record("workflows:read")),
            Some(Lookup::NotFound),
        );
        assert_eq!(denied(&d), DenyReason::WorkspaceAccessDenied);
        let denial = d.denial().expect("denial");
        assert_eq!(
            (denial.status, denial.error, denial.www_authenticate.clone()),
            (403, "workspace_access_denied", None)
        );
    }

    #[test]
    fn environment_of_another_organization_is_denied_like_an_unknown_one() {
        let rec = record("workflows:read");
        let foreign = environment("env1", "org2");
        let d = req("GET", WF).with_token().run(
            Lookup::Found(&rec),
            Some(Lookup::Found((&foreign, Some(Role::Admin)))),
        );
        let unknown = req("GET", WF)
            .with_token()
            .run(Lookup::Found(&rec), Some(Lookup::NotFound));
        assert_eq!(denied(&d), DenyReason::WorkspaceAccessDenied);
        assert_eq!(d.denial(), unknown.denial());
    }

    #[test]
    fn no_membership_is_denied_like_an_unknown_environment() {
        let d = req("GET", WF).with_token().run_as("workflows:read", None);
        let unknown = req("GET", WF).with_token().run(
            Lookup::Found(&record("workflows:read")),
            Some(Lookup::NotFound),
        );
        assert_eq!(denied(&d), DenyReason::WorkspaceAccessDenied);
        assert_eq!(d.denial(), unknown.denial());
    }

    #[test]
    fn member_role_is_below_an_admin_requirement() {
        let target = "/api/v1/workflows/admin/purge?environmentId=env1";
        let d = req("POST", target)
            .with_token()
            .run_as("workflows:write", Some(Role::Member));
        assert_eq!(denied(&d), DenyReason::WorkspaceAccessDenied);
        let d = req("POST", target)
            .with_token()
            .run_as("workflows:write", Some(Role::Admin));
        assert_eq!(d.outcome, Outcome::Allow);
    }

    #[test]
    fn admin_role_satisfies_a_member_requirement() {
        let d = req("PATCH", WF)
            .with_token()
            .run_as("workflows:write", Some(Role::Admin));
        assert_eq!(d.outcome, Outcome::Allow);
    }

    #[test]
    fn an_environment_not_loaded_for_a_workspace_route_is_denied() {
        let d = req("GET", WF)
            .with_token()
            .run(Lookup::Found(&record("workflows:read")), None);
        assert_eq!(denied(&d), DenyReason::WorkspaceAccessDenied);
        let other = environment("env2", "org1");
        let d = req("GET", WF).with_token().run(
            Lookup::Found(&record("workflows:read")),
            Some(Lookup::Found((&other, Some(Role::Admin)))),
        );
        assert_eq!(
            denied(&d),
            DenyReason::WorkspaceAccessDenied,
            "a look-up of another environment"
        );
    }

    // Step 6: allow.

    #[test]
    fn an_allowed_request_carries_the_identity_and_the_verified_workspace() {
        let d = req("GET", WF)
            .with_token()
            .run_as("workflows:write logs:read", Some(Role::Admin));
        assert_eq!(
            (d.outcome.decision(), d.outcome.reason(), d.route_label()),
            ("allow", "ok", "workflows-read")
        );
        let identity = d.identity.expect("identity");
        let token = &identity.token;
        assert_eq!(token.organization_id, "org1");
        assert_eq!(token.client_id, "sa_client1");
        assert_eq!(token.service_account_id, "sa1");
        assert_eq!(token.scopes.to_string(), "logs:read workflows:write");
        let workspace = identity.workspace.expect("workspace");
        assert_eq!(
            (
                workspace.environment.workspace_id.as_str(),
                workspace.environment.id.as_str(),
                workspace.role
            ),
            ("ws1", "env1", Role::Admin)
        );
    }

    // mode = "report".

    #[test]
    fn report_mode_forwards_a_would_be_denial_as_report_deny() {
        let t = "/api/v1/tools/x?environmentId=env1";
        let d = req("GET", t).run(Lookup::NotFound, None);
        assert_eq!(d.outcome, Outcome::ReportDeny(DenyReason::MissingToken));
        assert_eq!(
            (d.outcome.decision(), d.outcome.reason()),
            ("report_deny", "missing_token")
        );
        assert!(d.forwards() && d.denial().is_none());

        let d = req("GET", t)
            .with_token()
            .run_as("logs:read", Some(Role::Member));
        assert_eq!(
            d.outcome,
            Outcome::ReportDeny(DenyReason::InsufficientScope)
        );
        let identity = d
            .identity
            .expect("a valid token's identity is still injected");
        assert_eq!(identity.workspace, None);

        let d = req("GET", t).with_token().run_as("tools:read", None);
        assert_eq!(
            d.outcome,
            Outcome::ReportDeny(DenyReason::WorkspaceAccessDenied)
        );
        assert_eq!(
            d.identity.and_then(|i| i.workspace),
            None,
            "an unverified workspace is never injected"
        );

        let d = req("GET", "/api/v1/tools/x")
            .with_token()
            .run_as("tools:read", Some(Role::Member));
        assert_eq!(
            d.outcome,
            Outcome::ReportDeny(DenyReason::InvalidRequest(
                RequestProblem::EnvironmentIdMissing
            ))
        );

        let d = req("GET", t)
            .with_token()
            .run_as("tools:read", Some(Role::Member));
        assert_eq!(d.outcome, Outcome::Allow);
    }

    #[test]
    fn report_mode_never_forwards_unsafe_requests_or_store_failures() {
        let d = req("GET", "/api/v1/tools/x?environmentId=env1")
            .with_token()
            .run(Lookup::Unavailable, None);
        assert_eq!(d.outcome, Outcome::Deny(DenyReason::StoreUnavailable));
        let d = req("GET", "/api/v1/tools/x%2Fy").run(Lookup::NotFound, None);
        assert!(matches!(
            d.outcome,
            Outcome::Deny(DenyReason::InvalidRequest(_))
        ));
        let d = req("GET", "/api/v1/tools/x?access_token=t").run(Lookup::NotFound, None);
        assert!(!d.forwards());
    }

    // The HTTP answer.

    #[test]
    fn every_denial_is_json_with_error_and_description_and_not_cached() {
        let d = req("GET", WF).with_token().run(Lookup::NotFound, None);
        let denial = d.denial().expect("denial");
        let body: serde_json::Value = serde_json::from_str(&denial.body()).expect("json");
        assert_eq!(body["error"], "invalid_token");
        assert!(body["error_description"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        let headers = denial.headers();
        assert!(headers.contains(&("cache-control", "no-store".to_string())));
        assert!(headers.contains(&("content-type", "application/json".to_string())));
    }

    #[test]
    fn demarkerions_never_echo_request_input() {
        let targets = [
            "/api/v1/workflows/%3Cmarker%3E?environmentId=%3Cmarker%3E",
            "/api/v1/<marker>%2F",
            "/api/v1/workflows/<marker>?environmentId=<marker>",
            "/<marker>",
        ];
        for target in targets {
            for d in [
                req("GET", target).run(Lookup::NotFound, None),
                req("GET", target).with_token().run_as("logs:read", None),
                req("GET", target).with_token().run(Lookup::NotFound, None),
            ] {
                if let Some(denial) = d.denial() {
                    let body = denial.body().to_lowercase();
                    assert!(
                        !denial.description.to_lowercase().contains("marker"),
                        "{target}"
                    );
                    assert!(!body.contains("marker"), "{target}: {body}");
                }
            }
        }
    }

    #[test]
    fn a_store_error_is_an_unavailable_lookup() {
        let failed: Result<Option<u8>, &str> = Err("connection reset");
        assert_eq!(Lookup::from_result(failed), Lookup::Unavailable);
        assert_eq!(
            Lookup::from_result(Ok::<_, ()>(None::<u8>)),
            Lookup::NotFound
        );
        assert_eq!(
            Lookup::from_result(Ok::<_, ()>(Some(1))).as_ref(),
            Lookup::Found(&1)
        );
    }

    #[test]
    fn parse_bearer_distinguishes_missing_present_and_repeated() {
        assert!(matches!(parse_bearer(&[]), Bearer::Missing));
        assert!(matches!(parse_bearer(&[b""]), Bearer::Missing));
        assert!(matches!(parse_bearer(&[b"Basic abc"]), Bearer::Missing));
        assert!(matches!(parse_bearer(&[b"Bearerx abc"]), Bearer::Missing));
        assert!(matches!(
            parse_bearer(&[b"Bearer a", b"Bearer a"]),
            Bearer::Repeated
        ));
        let Bearer::Present(t) = parse_bearer(&[b"  BEARER \t tok "]) else {
            panic!("present");
        };
        assert_eq!(t.expose_secret(), "tok");
        assert!(!format!("{:?}", parse_bearer(&[b"Bearer secret-value"])).contains("secret-value"));
    }

    #[test]
    fn explain_prints_each_check_and_the_decision() {
        let set = policy();
        let scopes = ScopeSet::from_stored("workflows:read");
        let e = explain(
            &set,
            "GET",
            "/api/v1/workflows/w1",
            Some("environmentId=e1"),
            Some(&scopes),
            Some(Role::Member),
            false,
        );
        assert_eq!(e.exit_code, 0);
        assert_eq!(
            e.lines,
            [
                "request: GET /api/v1/workflows/w1?environmentId=e1",
                "check request: ok (normalised path /api/v1/workflows/w1)",
                "route: workflows-read (test.toml: GET HEAD /api/v1/workflows/**, mode enforce)",
                "check token: ok (scopes: workflows:read)",
                "check scope workflows:read: ok",
                "check workspace role member: ok (role member in environment e1)",
                "decision: allow",
            ]
        );

        let e = explain(
            &set,
            "POST",
            "/api/v1/workflows/w1",
            Some("environmentId=e1"),
            Some(&scopes),
            None,
            false,
        );
        assert_eq!(e.exit_code, 3);
        assert_eq!(
            e.lines.last().map(String::as_str),
            Some("decision: deny insufficient_scope")
        );
        assert!(e
            .lines
            .iter()
            .any(|l| l == "check scope workflows:write: fail: insufficient_scope"));

        let e = explain(
            &set,
            "GET",
            "/api/v1/workflows/w1",
            Some("environmentId=e1"),
            Some(&scopes),
            None,
            false,
        );
        assert_eq!(
            e.lines.last().map(String::as_str),
            Some("decision: deny workspace_access_denied")
        );

        let e = explain(&set, "GET", "/api/v1/status", None, None, None, false);
        assert_eq!(
            (e.exit_code, e.lines.last().map(String::as_str)),
            (0, Some("decision: allow"))
        );

        let e = explain(&set, "GET", "/nowhere", None, Some(&scopes), None, false);
        assert_eq!(
            e.lines.last().map(String::as_str),
            Some("decision: deny no_route")
        );

        let e = explain(&set, "GET", "/api/v1/logs/x", None, None, None, false);
        assert_eq!(
            e.lines.last().map(String::as_str),
            Some("decision: deny missing_token")
        );

        let e = explain(&set, "GET", "/a/%2F", None, None, None, false);
        assert_eq!(
            e.lines.last().map(String::as_str),
            Some("decision: deny invalid_request")
        );

        // Report mode: the last line is the same; the line before says
        // what happens to the request.
        let scopes = ScopeSet::from_stored("chat:read");
        let e = explain(
            &set,
            "GET",
            "/api/v1/tools/x",
            Some("environmentId=e1"),
            Some(&scopes),
            Some(Role::Member),
            false,
        );
        assert_eq!(e.exit_code, 3);
        let n = e.lines.len();
        assert_eq!(
            e.lines[n - 2..],
            [
                "mode report: the request is forwarded and recorded as report_deny",
                "decision: deny insufficient_scope",
            ]
        );
    }
}
