use super::*;
use crate::authorize::tests::{environment, record, token, with_role, NOW};
use crate::authorize::{authorize, Decision, HeaderFacts, Lookup, Outcome};
use crate::policy::{load_str, PolicySet};
use crate::scope::{default_resources, Role};

const POLICY: &str = r#"
[[route]]
name = "tenant-path"
path = "/tenants/{tenantId}/**"
upstream = "backend"
scope = "tools:read"
organization_param = "tenantId"

[[route]]
name = "tenant-query"
path = "/reports/**"
upstream = "backend"
scope = "tools:read"
organization_param = "org"

[[route]]
name = "env-path"
path = "/orgs/{orgId}/envs/{environmentId}/**"
upstream = "backend"
scope = "tools:read"
workspace_role = "member"
organization_param = "orgId"
environment_param = "environmentId"

[[route]]
name = "env-named"
path = "/spaces/{env}/**"
upstream = "backend"
scope = "tools:read"
workspace_role = "member"
environment_param = "env"

[[route]]
name = "tenant-report"
path = "/audit/{tenantId}/**"
upstream = "backend"
scope = "tools:read"
organization_param = "tenantId"
mode = "report"
"#;

fn policy() -> PolicySet {
    load_str("test.toml", POLICY, &default_resources(), |_| true).expect("valid policy")
}

fn facts(target: &str, allow_semicolon: bool) -> RequestFacts {
    let authorization = format!("Bearer {}", token());
    let values: Vec<&[u8]> = vec![authorization.as_bytes()];
    let headers = HeaderFacts {
        authorization: &values,
        ..HeaderFacts::default()
    };
    RequestFacts::gather("GET", target.as_bytes(), headers, allow_semicolon)
}

/// A token of `org1` with `tools:read`, member of environment `env1` (of
/// `org1`) when the route asks for it.
fn decide(target: &str) -> Decision {
    decide_with(target, false)
}

fn decide_with(target: &str, allow_semicolon: bool) -> Decision {
    let env = environment("env1", "org1");
    let access = with_role(&env, Some(Role::Member));
    authorize(
        &facts(target, allow_semicolon),
        &policy(),
        Lookup::Found(&record("tools:read")),
        Some(Lookup::Found(&access)),
        NOW,
    )
}

fn outcome(target: &str) -> Outcome {
    decide(target).outcome
}

fn bad(problem: RequestProblem) -> Outcome {
    Outcome::Deny(DenyReason::InvalidRequest(problem))
}

#[test]
fn the_tenant_in_the_path_must_be_the_tokens_organization() {
    assert_eq!(outcome("/tenants/org1/items"), Outcome::Allow);
    assert_eq!(
        outcome("/tenants/org2/items"),
        Outcome::Deny(DenyReason::OrganizationMismatch)
    );
    let denial = decide("/tenants/org2/items").denial().expect("denied");
    assert_eq!(
        (denial.status, denial.error),
        (403, "organization_mismatch")
    );
    assert_eq!(denial.www_authenticate, None);
}

#[test]
fn the_tenant_is_read_from_the_normalised_path() {
    // Dot segments are gone before the parameter is read.
    assert_eq!(outcome("/tenants/org2/../org1/items"), Outcome::Allow);
    assert_eq!(
        outcome("/tenants/org1/../org2/items"),
        Outcome::Deny(DenyReason::OrganizationMismatch)
    );
    assert_eq!(
        outcome("/tenants/org1/%2e%2e/org2/items"),
        Outcome::Deny(DenyReason::OrganizationMismatch)
    );
    assert_eq!(outcome("/x/../tenants/org1/items"), Outcome::Allow);
    // Unreserved escapes are decoded: %6F is `o`.
    assert_eq!(outcome("/tenants/%6Frg1/items"), Outcome::Allow);
    // Other escapes stay, and never equal an organization id.
    assert_eq!(
        outcome("/tenants/org1%20/items"),
        Outcome::Deny(DenyReason::OrganizationMismatch)
    );
    assert_eq!(
        outcome("/tenants/ORG1/items"),
        Outcome::Deny(DenyReason::OrganizationMismatch)
    );
}

#[test]
fn a_matrix_parameter_on_the_tenant_segment_never_matches() {
    // Routed as /tenants/org1/items, but an upstream may read `org1;x=org2`.
    assert_eq!(
        decide_with("/tenants/org1;x=org2/items", true).outcome,
        Outcome::Deny(DenyReason::OrganizationMismatch)
    );
    assert_eq!(
        decide_with("/tenants/org1/items;x=1", true).outcome,
        Outcome::Allow
    );
}

#[test]
fn a_query_value_for_a_path_tenant_must_agree_with_the_path() {
    assert_eq!(outcome("/tenants/org1/items?tenantId=org1"), Outcome::Allow);
    for query in [
        "tenantId=org2",
        "tenantId=org1&tenantId=org1",
        "tenantid=org2",
        "tenantId[]=org2",
        "tenantId%5B%5D=org2",
        "q=a;tenantId=org2",
    ] {
        assert_eq!(
            outcome(&format!("/tenants/org1/items?{query}")),
            bad(RequestProblem::OrganizationParamAmbiguous),
            "{query}"
        );
    }
    // Unrelated names pass.
    assert_eq!(
        outcome("/tenants/org1/items?tenant=org2&tenantIds=x"),
        Outcome::Allow
    );
}

#[test]
fn a_query_tenant_must_be_given_exactly_once() {
    assert_eq!(outcome("/reports/x?org=org1"), Outcome::Allow);
    assert_eq!(outcome("/reports/x?org=%6Frg1"), Outcome::Allow);
    assert_eq!(
        outcome("/reports/x?org=org2"),
        Outcome::Deny(DenyReason::OrganizationMismatch)
    );
    assert_eq!(
        outcome("/reports/x"),
        bad(RequestProblem::OrganizationParamMissing)
    );
    assert_eq!(
        outcome("/reports/x?organization=org1"),
        bad(RequestProblem::OrganizationParamMissing)
    );
    for query in [
        "org=org1&org=org2",
        "org=org1&ORG=org2",
        "org=org1&org[x]=org2",
        "org=org1;",
    ] {
        assert_eq!(
            outcome(&format!("/reports/x?{query}")),
            bad(RequestProblem::OrganizationParamAmbiguous),
            "{query}"
        );
    }
    assert_eq!(
        outcome("/reports/x?org="),
        Outcome::Deny(DenyReason::OrganizationMismatch)
    );
}

#[test]
fn the_organization_is_checked_after_the_scope_and_before_the_workspace() {
    let env = environment("env1", "org1");
    let d = authorize(
        &facts("/tenants/org2/items", false),
        &policy(),
        Lookup::Found(&record("chat:read")),
        None,
        NOW,
    );
    assert_eq!(d.outcome, Outcome::Deny(DenyReason::InsufficientScope));
    // Member of the environment, but the path names another organization.
    let d = authorize(
        &facts("/orgs/org2/envs/env1/x", false),
        &policy(),
        Lookup::Found(&record("tools:read")),
        Some(Lookup::Found(&with_role(&env, Some(Role::Member)))),
        NOW,
    );
    assert_eq!(d.outcome, Outcome::Deny(DenyReason::OrganizationMismatch));
}

#[test]
fn the_environment_comes_from_the_path_with_environment_param() {
    let d = decide("/orgs/org1/envs/env1/x");
    assert_eq!(d.outcome, Outcome::Allow);
    let workspace = d.identity.and_then(|i| i.workspace).expect("workspace");
    assert_eq!(workspace.environment.id, "env1");
    // The loaded environment is another one than the path names: denied.
    assert_eq!(
        outcome("/orgs/org1/envs/env2/x"),
        Outcome::Deny(DenyReason::WorkspaceAccessDenied)
    );
    assert_eq!(outcome("/spaces/env1/x"), Outcome::Allow);
    assert_eq!(
        outcome("/spaces/env1%20/x"),
        bad(RequestProblem::EnvironmentIdInvalid)
    );
}

#[test]
fn the_environment_to_load_is_the_one_in_the_path() {
    let policy = policy();
    match crate::authorize::plan(&facts("/orgs/org1/envs/env7/x", false), &policy) {
        crate::authorize::Plan::Load(load) => {
            assert_eq!(load.environment_id.as_deref(), Some("env7"));
        }
        other => panic!("expected a load, got {other:?}"),
    }
}

#[test]
fn a_query_environment_that_disagrees_with_the_path_is_refused() {
    assert_eq!(
        outcome("/orgs/org1/envs/env1/x?environmentId=env1"),
        Outcome::Allow
    );
    for query in [
        "environmentId=env2",
        "environmentId=env1&environmentId=env1",
        "environmentid=env2",
        "environmentId=",
    ] {
        assert_eq!(
            outcome(&format!("/orgs/org1/envs/env1/x?{query}")),
            bad(RequestProblem::EnvironmentIdConflict),
            "{query}"
        );
    }
    assert_eq!(
        outcome("/spaces/env1/x?a=b;c"),
        bad(RequestProblem::QuerySemicolon)
    );
    assert_eq!(
        outcome("/orgs/org1/envs/env1/x?a=b;c"),
        bad(RequestProblem::OrganizationParamAmbiguous)
    );
    // A path parameter of another name: its query spelling must agree too.
    assert_eq!(outcome("/spaces/env1/x?env=env1"), Outcome::Allow);
    assert_eq!(
        outcome("/spaces/env1/x?env=env2"),
        bad(RequestProblem::EnvironmentIdConflict)
    );
    assert_eq!(
        outcome("/spaces/env1/x?environmentId=env2"),
        bad(RequestProblem::EnvironmentIdConflict)
    );
}

#[test]
fn report_mode_forwards_an_organization_mismatch_as_report_deny() {
    let d = decide("/audit/org2/x");
    assert_eq!(
        d.outcome,
        Outcome::ReportDeny(DenyReason::OrganizationMismatch)
    );
    assert!(d.forwards());
}

#[test]
fn routes_without_a_binding_are_unchanged() {
    let policy = policy();
    let route = policy.route("tenant-path").expect("route");
    assert!(!route.binding.is_empty());
    let plain = crate::authorize::tests::policy();
    assert!(plain.routes().iter().all(|r| r.binding.is_empty()));
}

#[test]
fn names_an_upstream_framework_reads_as_the_parameter_are_aliases() {
    assert!(canonically_named("tenant.id", "tenant_id"));
    assert!(canonically_named("tenant id", "tenant_id"));
    assert!(canonically_named("TENANT_ID[]", "tenant_id"));
    assert!(!canonically_named("tenant_ids", "tenant_id"));
    assert!(!canonically_named("tenantid", "tenant_id"));
}
