use super::*;
use crate::authorize::tests::{
    denied, environment, policy, record, req, status, token, with_role, NOW, WF,
};
use crate::authorize::HeaderFacts;
use crate::policy::load_str;
use crate::scope::{default_resources, ScopeSet};

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
    let facts = RequestFacts::gather("CONNECT", b"/api/v1/status", HeaderFacts::default(), false);
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
        Some(Lookup::Found(&with_role(&foreign, Some(Role::Admin)))),
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
        Some(Lookup::Found(&with_role(&other, Some(Role::Admin)))),
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
