//! The admin API's one route table: method and path pattern → [`Operation`]
//! (docs/contract.md §4). A `{name}` segment matches any one segment,
//! empty included (the registry then refuses a malformed id with a 400
//! naming it); every other segment matches itself. A path with routes
//! but none for the method is a 405 whose `Allow` lists the table's methods.

use http::Method;

use crate::audit::Action;

/// One thing the admin API does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Healthz,
    Readyz,
    OpenApi,
    CreateServiceAccount,
    ListServiceAccounts,
    GetServiceAccount,
    UpdateServiceAccount,
    DeleteServiceAccount,
    RotateServiceAccountSecret,
    RevokeServiceAccountTokens,
    CreateCredential,
    ListCredentials,
    GetCredential,
    UpdateCredential,
    DeleteCredential,
    RotateCredentialSecret,
    RevokeOrganizationTokens,
    ListWorkspaces,
    PutWorkspace,
    GetWorkspace,
    DeleteWorkspace,
    ListEnvironments,
    PutEnvironment,
    DeleteEnvironment,
    ListMembers,
    PutMember,
    DeleteMember,
    ListAuditEvents,
    CreateAdminKey,
    ListAdminKeys,
    GetAdminKey,
    DeleteAdminKey,
    Swagger,
    GetServiceAccountLimits,
    PutServiceAccountLimits,
    DeleteServiceAccountLimits,
}

/// A path parameter, `{org}` … `{env}` in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    Org,
    Sa,
    Cred,
    Ws,
    Env,
    Key,
}

impl Param {
    fn named(name: &str) -> Option<Param> {
        Some(match name {
            "org" => Param::Org,
            "sa" => Param::Sa,
            "cred" => Param::Cred,
            "ws" => Param::Ws,
            "env" => Param::Env,
            "key" => Param::Key,
            _ => return None,
        })
    }
}

impl Operation {
    /// Whether the operation needs an admin key (all but the probes and
    /// the document).
    pub(crate) fn needs_key(self) -> bool {
        !matches!(
            self,
            Operation::Healthz | Operation::Readyz | Operation::OpenApi | Operation::Swagger
        )
    }

    /// The audit action of a change and the path parameter it is about;
    /// `None` for reads. The registry records a change that was made; the
    /// admin API one that was refused.
    pub(crate) fn audit(self) -> Option<(Action, Param)> {
        use Operation as Op;
        let found = match self {
            Op::CreateServiceAccount => (Action::ServiceAccountCreate, Param::Org),
            Op::UpdateServiceAccount => (Action::ServiceAccountUpdate, Param::Sa),
            Op::DeleteServiceAccount => (Action::ServiceAccountDelete, Param::Sa),
            Op::RotateServiceAccountSecret => (Action::CredentialRotateSecret, Param::Sa),
            Op::RevokeServiceAccountTokens => (Action::TokenRevoke, Param::Sa),
            Op::CreateCredential => (Action::CredentialCreate, Param::Sa),
            Op::UpdateCredential => (Action::CredentialUpdate, Param::Cred),
            Op::DeleteCredential => (Action::CredentialDelete, Param::Cred),
            Op::RotateCredentialSecret => (Action::CredentialRotateSecret, Param::Cred),
            Op::RevokeOrganizationTokens => (Action::TokenRevoke, Param::Org),
            Op::PutWorkspace => (Action::WorkspacePut, Param::Ws),
            Op::DeleteWorkspace => (Action::WorkspaceDelete, Param::Ws),
            Op::PutEnvironment => (Action::EnvironmentPut, Param::Env),
            Op::DeleteEnvironment => (Action::EnvironmentDelete, Param::Env),
            Op::PutMember => (Action::MembershipPut, Param::Sa),
            Op::DeleteMember => (Action::MembershipDelete, Param::Sa),
            Op::CreateAdminKey => (Action::AdminKeyCreate, Param::Org),
            Op::DeleteAdminKey => (Action::AdminKeyRevoke, Param::Key),
            Op::PutServiceAccountLimits => (Action::LimitsPut, Param::Sa),
            Op::DeleteServiceAccountLimits => (Action::LimitsDelete, Param::Sa),
            Op::Healthz
            | Op::Readyz
            | Op::OpenApi
            | Op::ListServiceAccounts
            | Op::GetServiceAccount
            | Op::ListCredentials
            | Op::GetCredential
            | Op::ListWorkspaces
            | Op::GetWorkspace
            | Op::ListEnvironments
            | Op::ListMembers
            | Op::ListAuditEvents
            | Op::ListAdminKeys
            | Op::GetAdminKey
            | Op::Swagger
            | Op::GetServiceAccountLimits => return None,
        };
        Some(found)
    }
}

/// Every route, one line per method and path. `HEAD` is routed only where
/// it is listed.
#[rustfmt::skip]
pub(crate) const ROUTES: &[(Method, &str, Operation)] = {
    use Operation as Op;
    &[
        (Method::GET,    "/healthz",                                                                       Op::Healthz),
        (Method::HEAD,   "/healthz",                                                                       Op::Healthz),
        (Method::GET,    "/readyz",                                                                        Op::Readyz),
        (Method::HEAD,   "/readyz",                                                                        Op::Readyz),
        (Method::GET,    "/openapi.json",                                                                  Op::OpenApi),
        (Method::HEAD,   "/openapi.json",                                                                  Op::OpenApi),
        (Method::POST,   "/v1/organizations/{org}/service-accounts",                                       Op::CreateServiceAccount),
        (Method::GET,    "/v1/organizations/{org}/service-accounts",                                       Op::ListServiceAccounts),
        (Method::GET,    "/v1/organizations/{org}/service-accounts/{sa}",                                  Op::GetServiceAccount),
        (Method::PATCH,  "/v1/organizations/{org}/service-accounts/{sa}",                                  Op::UpdateServiceAccount),
        (Method::DELETE, "/v1/organizations/{org}/service-accounts/{sa}",                                  Op::DeleteServiceAccount),
        (Method::POST,   "/v1/organizations/{org}/service-accounts/{sa}/rotate-secret",                    Op::RotateServiceAccountSecret),
        (Method::POST,   "/v1/organizations/{org}/service-accounts/{sa}/revoke-tokens",                    Op::RevokeServiceAccountTokens),
        (Method::POST,   "/v1/organizations/{org}/service-accounts/{sa}/credentials",                      Op::CreateCredential),
        (Method::GET,    "/v1/organizations/{org}/service-accounts/{sa}/credentials",                      Op::ListCredentials),
        (Method::GET,    "/v1/organizations/{org}/service-accounts/{sa}/credentials/{cred}",               Op::GetCredential),
        (Method::PATCH,  "/v1/organizations/{org}/service-accounts/{sa}/credentials/{cred}",               Op::UpdateCredential),
        (Method::DELETE, "/v1/organizations/{org}/service-accounts/{sa}/credentials/{cred}",               Op::DeleteCredential),
        (Method::POST,   "/v1/organizations/{org}/service-accounts/{sa}/credentials/{cred}/rotate-secret", Op::RotateCredentialSecret),
        (Method::POST,   "/v1/organizations/{org}/revoke-tokens",                                          Op::RevokeOrganizationTokens),
        (Method::GET,    "/v1/organizations/{org}/workspaces",                                             Op::ListWorkspaces),
        (Method::PUT,    "/v1/organizations/{org}/workspaces/{ws}",                                        Op::PutWorkspace),
        (Method::GET,    "/v1/organizations/{org}/workspaces/{ws}",                                        Op::GetWorkspace),
        (Method::DELETE, "/v1/organizations/{org}/workspaces/{ws}",                                        Op::DeleteWorkspace),
        (Method::GET,    "/v1/organizations/{org}/workspaces/{ws}/environments",                           Op::ListEnvironments),
        (Method::PUT,    "/v1/organizations/{org}/workspaces/{ws}/environments/{env}",                     Op::PutEnvironment),
        (Method::DELETE, "/v1/organizations/{org}/workspaces/{ws}/environments/{env}",                     Op::DeleteEnvironment),
        (Method::GET,    "/v1/organizations/{org}/workspaces/{ws}/members",                                Op::ListMembers),
        (Method::PUT,    "/v1/organizations/{org}/workspaces/{ws}/members/{sa}",                           Op::PutMember),
        (Method::DELETE, "/v1/organizations/{org}/workspaces/{ws}/members/{sa}",                           Op::DeleteMember),
        (Method::GET,    "/v1/organizations/{org}/audit-events",                                           Op::ListAuditEvents),
        (Method::POST,   "/v1/organizations/{org}/admin-keys",                                             Op::CreateAdminKey),
        (Method::GET,    "/v1/organizations/{org}/admin-keys",                                             Op::ListAdminKeys),
        (Method::GET,    "/v1/organizations/{org}/admin-keys/{key}",                                       Op::GetAdminKey),
        (Method::DELETE, "/v1/organizations/{org}/admin-keys/{key}",                                       Op::DeleteAdminKey),
        (Method::GET,    "/swagger",                                                                       Op::Swagger),
        (Method::HEAD,   "/swagger",                                                                       Op::Swagger),
        (Method::GET,    "/v1/organizations/{org}/service-accounts/{sa}/limits",                           Op::GetServiceAccountLimits),
        (Method::PUT,    "/v1/organizations/{org}/service-accounts/{sa}/limits",                           Op::PutServiceAccountLimits),
        (Method::DELETE, "/v1/organizations/{org}/service-accounts/{sa}/limits",                           Op::DeleteServiceAccountLimits),
    ]
};

/// The order of methods in an `Allow` value.
const ALLOW_ORDER: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The path's parameters; one the route does not have is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PathParams<'a> {
    pub(crate) org: &'a str,
    pub(crate) sa: &'a str,
    pub(crate) cred: &'a str,
    pub(crate) ws: &'a str,
    pub(crate) env: &'a str,
    pub(crate) key: &'a str,
}

impl<'a> PathParams<'a> {
    pub(crate) fn get(&self, p: Param) -> &'a str {
        match p {
            Param::Org => self.org,
            Param::Sa => self.sa,
            Param::Cred => self.cred,
            Param::Ws => self.ws,
            Param::Env => self.env,
            Param::Key => self.key,
        }
    }

    fn set(&mut self, p: Param, value: &'a str) {
        let slot = match p {
            Param::Org => &mut self.org,
            Param::Sa => &mut self.sa,
            Param::Cred => &mut self.cred,
            Param::Ws => &mut self.ws,
            Param::Env => &mut self.env,
            Param::Key => &mut self.key,
        };
        *slot = value;
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Routed<'a> {
    Found(Operation, PathParams<'a>),
    /// The path is routed, not for this method.
    WrongMethod {
        /// The `Allow` value.
        allow: String,
        /// Whether the path's operations need a key (then the 405 comes
        /// after the key check).
        needs_key: bool,
    },
    NotFound,
}

/// Looks the request up in [`ROUTES`]. Leading slashes are ignored.
pub(crate) fn route<'a>(method: &Method, path: &'a str) -> Routed<'a> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut other_methods: Vec<(&Method, Operation)> = Vec::new();
    for (m, pattern, op) in ROUTES {
        let Some(params) = matches(pattern, &segments) else {
            continue;
        };
        if m == method {
            return Routed::Found(*op, params);
        }
        other_methods.push((m, *op));
    }
    if other_methods.is_empty() {
        return Routed::NotFound;
    }
    other_methods.sort_by_key(|(m, _)| ALLOW_ORDER.iter().position(|o| o == *m));
    let allow: Vec<&str> = other_methods.iter().map(|(m, _)| m.as_str()).collect();
    Routed::WrongMethod {
        allow: allow.join(", "),
        needs_key: other_methods.iter().any(|(_, op)| op.needs_key()),
    }
}

/// The parameters when `segments` fit `pattern`.
fn matches<'a>(pattern: &str, segments: &[&'a str]) -> Option<PathParams<'a>> {
    let mut pattern = pattern.trim_start_matches('/').split('/');
    let mut params = PathParams::default();
    for segment in segments {
        let expected = pattern.next()?;
        match expected.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => params.set(Param::named(name)?, segment),
            None if expected == *segment => {}
            None => return None,
        }
    }
    pattern.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn found(method: Method, path: &str) -> (Operation, PathParams<'_>) {
        match route(&method, path) {
            Routed::Found(op, params) => (op, params),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn every_pattern_names_only_known_parameters_and_is_routed_to_itself() {
        let mut seen = BTreeSet::new();
        for (method, pattern, op) in ROUTES {
            assert!(
                seen.insert((method.as_str(), *pattern)),
                "{method} {pattern} twice"
            );
            for segment in pattern.split('/') {
                if let Some(name) = segment.strip_prefix('{') {
                    let name = name.strip_suffix('}').expect("a closed {");
                    assert!(Param::named(name).is_some(), "{pattern}: {{{name}}}");
                }
            }
            let path = pattern.replace(['{', '}'], "");
            assert_eq!(found(method.clone(), &path).0, *op, "{method} {pattern}");
        }
    }

    #[test]
    fn parameters_are_taken_from_their_segments() {
        let (op, p) = found(
            Method::POST,
            "/v1/organizations/acme/service-accounts/S/credentials/C/rotate-secret",
        );
        assert_eq!(op, Operation::RotateCredentialSecret);
        assert_eq!(
            (p.org, p.sa, p.cred, p.ws, p.env),
            ("acme", "S", "C", "", "")
        );
        let (op, p) = found(
            Method::DELETE,
            "/v1/organizations/acme/workspaces/W/members/S",
        );
        assert_eq!(op, Operation::DeleteMember);
        assert_eq!((p.org, p.ws, p.sa), ("acme", "W", "S"));
    }

    #[test]
    fn a_parameter_matches_an_empty_segment_and_leading_slashes_are_ignored() {
        let (op, p) = found(Method::GET, "/v1/organizations//workspaces/");
        assert_eq!(op, Operation::GetWorkspace);
        assert_eq!((p.org, p.ws), ("", ""));
        assert_eq!(found(Method::GET, "//healthz").0, Operation::Healthz);
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "/",
            "/healthz/",
            "/v1/organizations/acme",
            "/v1/organizations/acme/nothing",
            "/v1/organizations/acme/service-accounts/S/credentials/C/x",
            "/v2/organizations/acme/workspaces",
        ] {
            assert_eq!(route(&Method::GET, path), Routed::NotFound, "{path}");
        }
    }

    #[test]
    fn a_wrong_method_lists_the_path_s_methods_in_a_fixed_order() {
        let allow = |method: Method, path: &str| match route(&method, path) {
            Routed::WrongMethod { allow, needs_key } => (allow, needs_key),
            other => panic!("{method} {path}: {other:?}"),
        };
        assert_eq!(
            allow(Method::POST, "/healthz"),
            ("GET, HEAD".to_string(), false)
        );
        assert_eq!(
            allow(Method::PUT, "/v1/organizations/o/service-accounts"),
            ("GET, POST".to_string(), true)
        );
        assert_eq!(
            allow(Method::POST, "/v1/organizations/o/service-accounts/s"),
            ("GET, PATCH, DELETE".to_string(), true)
        );
        assert_eq!(
            allow(Method::HEAD, "/v1/organizations/o/workspaces/w"),
            ("GET, PUT, DELETE".to_string(), true)
        );
        assert_eq!(
            allow(Method::GET, "/v1/organizations/o/workspaces/w/members/s"),
            ("PUT, DELETE".to_string(), true)
        );
        assert_eq!(
            allow(Method::GET, "/v1/organizations/o/revoke-tokens"),
            ("POST".to_string(), true)
        );
    }

    #[test]
    fn only_changes_have_an_audit_action() {
        for (method, pattern, op) in ROUTES {
            let change = !matches!(*method, Method::GET | Method::HEAD);
            assert_eq!(op.audit().is_some(), change, "{method} {pattern}");
            if let Some((_, param)) = op.audit() {
                let name = format!("{param:?}").to_ascii_lowercase();
                assert!(pattern.contains(&format!("{{{name}}}")), "{pattern}");
            }
        }
    }

    /// `src/openapi.json` documents exactly the routes of the table (HEAD
    /// aside), so the document cannot drift from the router.
    #[test]
    fn the_openapi_document_describes_exactly_the_route_table() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::openapi::DOCUMENT).expect("the document is JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            // The proxy listener's endpoints name their own server.
            if item.get("servers").is_some() {
                continue;
            }
            for method in [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ] {
                if item.get(method).is_some() {
                    documented.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .filter(|(m, _, _)| *m != Method::HEAD)
            .map(|(m, p, _)| (m.as_str().to_string(), p.to_string()))
            .collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        assert!(missing.is_empty(), "routed but not documented: {missing:?}");
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    }
}
