use super::*;
use crate::authorize::tests::policy;

#[test]
fn explain_prints_each_check_and_the_decision() {
    let set = policy();
    let scopes = ScopeSet::from_stored("workflows:read");
    let e = explain_request(
        &set,
        "GET",
        "/api/v1/workflows/w1",
        Some("environmentId=e1"),
        Some(&scopes),
        Some(Role::Member),
        false,
        &ExplainToken::default(),
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
            "check quota: the account's daily and monthly quotas when set (admin API; over them: 429 quota_exceeded)",
            "decision: allow",
        ]
    );

    let e = explain_request(
        &set,
        "POST",
        "/api/v1/workflows/w1",
        Some("environmentId=e1"),
        Some(&scopes),
        None,
        false,
        &ExplainToken::default(),
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

    let e = explain_request(
        &set,
        "GET",
        "/api/v1/workflows/w1",
        Some("environmentId=e1"),
        Some(&scopes),
        None,
        false,
        &ExplainToken::default(),
    );
    assert_eq!(
        e.lines.last().map(String::as_str),
        Some("decision: deny workspace_access_denied")
    );

    let e = explain_request(
        &set,
        "GET",
        "/api/v1/status",
        None,
        None,
        None,
        false,
        &ExplainToken::default(),
    );
    assert_eq!(
        (e.exit_code, e.lines.last().map(String::as_str)),
        (0, Some("decision: allow"))
    );

    let e = explain_request(
        &set,
        "GET",
        "/nowhere",
        None,
        Some(&scopes),
        None,
        false,
        &ExplainToken::default(),
    );
    assert_eq!(
        e.lines.last().map(String::as_str),
        Some("decision: deny no_route")
    );

    let e = explain_request(
        &set,
        "GET",
        "/api/v1/logs/x",
        None,
        None,
        None,
        false,
        &ExplainToken::default(),
    );
    assert_eq!(
        e.lines.last().map(String::as_str),
        Some("decision: deny missing_token")
    );

    let e = explain_request(
        &set,
        "GET",
        "/a/%2F",
        None,
        None,
        None,
        false,
        &ExplainToken::default(),
    );
    assert_eq!(
        e.lines.last().map(String::as_str),
        Some("decision: deny invalid_request")
    );

    // Report mode: the last line is the same; the line before says
    // what happens to the request.
    let scopes = ScopeSet::from_stored("chat:read");
    let e = explain_request(
        &set,
        "GET",
        "/api/v1/tools/x",
        Some("environmentId=e1"),
        Some(&scopes),
        Some(Role::Member),
        false,
        &ExplainToken::default(),
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

#[test]
fn explain_checks_the_source_against_a_given_allowlist() {
    let set = policy();
    let scopes = ScopeSet::from_stored("logs:read");
    let token = |source: Option<&str>| ExplainToken {
        allowed_sources: Some(Arc::from(vec!["10.0.0.0/8".parse().expect("cidr")])),
        source: source.map(|s| s.parse().expect("ip")),
        ..ExplainToken::default()
    };
    let run = |source| {
        explain_request(
            &set,
            "GET",
            "/api/v1/logs/x",
            None,
            Some(&scopes),
            None,
            false,
            &token(source),
        )
    };
    let e = run(Some("10.1.2.3"));
    assert_eq!(e.exit_code, 0, "{:?}", e.lines);
    assert!(e
        .lines
        .iter()
        .any(|l| l == "check source address (ip_allowlist 10.0.0.0/8): ok (10.1.2.3)"));
    for source in [Some("192.0.2.1"), None] {
        let e = run(source);
        assert_eq!(e.exit_code, 3);
        assert_eq!(
            e.lines.last().map(String::as_str),
            Some("decision: deny ip_not_allowed")
        );
    }
    // Without an allowlist the check is not shown.
    let e = explain_request(
        &set,
        "GET",
        "/api/v1/logs/x",
        None,
        Some(&scopes),
        None,
        false,
        &ExplainToken::default(),
    );
    assert!(!e.lines.iter().any(|l| l.contains("source address")));
}

#[test]
fn explain_shows_the_organization_check_of_a_bound_route() {
    let set = crate::policy::load_str(
        "t.toml",
        "[[route]]\nname = \"t\"\npath = \"/t/{tenantId}/**\"\nupstream = \"u\"\nscope = \"logs:read\"\norganization_param = \"tenantId\"\n",
        &crate::scope::default_resources(),
        |_| true,
    )
    .expect("valid");
    let scopes = ScopeSet::from_stored("logs:read");
    let as_org = |org: &str| ExplainToken {
        organization: Some(org.into()),
        ..ExplainToken::default()
    };
    let e = explain_request(
        &set,
        "GET",
        "/t/acme/x",
        None,
        Some(&scopes),
        None,
        false,
        &as_org("acme"),
    );
    assert_eq!(e.exit_code, 0);
    assert!(e.lines.iter().any(|l| l
        == "check organization (path parameter {tenantId}): ok (the token's organization acme)"));
    let e = explain_request(
        &set,
        "GET",
        "/t/acme/x",
        None,
        Some(&scopes),
        None,
        false,
        &as_org("globex"),
    );
    assert_eq!(e.exit_code, 3);
    assert!(e.lines.iter().any(|l| l
        == "check organization (path parameter {tenantId}): fail: organization_mismatch (the token's organization is globex)"));
}

#[test]
fn explain_shows_a_route_s_rate_limit() {
    let policy = crate::policy::load_str(
        "test.toml",
        "[[route]]\nname = \"limited\"\npath = \"/a\"\nupstream = \"u\"\nscope = \"logs:read\"\nrate_limit = { requests = 5, per = \"1s\", by = \"client\" }\n\n[[route]]\nname = \"open\"\npath = \"/b\"\nupstream = \"u\"\nauth = \"none\"\nrate_limit = { requests = 9, per = \"1h\", by = \"source\", mode = \"report\" }\n",
        &crate::scope::default_resources(),
        |_| true,
    )
    .expect("valid");
    let cfg = crate::config::Config::default();
    let e = super::explain(&policy, &cfg, "GET", "/a", None, "logs:read", None).expect("runs");
    assert!(
        e.lines.contains(
            &"check rate limit: 5 per 1s by client, mode enforce (counted at request time; over it: 429 rate_limited)"
                .to_string()
        ),
        "{:?}",
        e.lines
    );
    assert_eq!(e.lines.last().map(String::as_str), Some("decision: allow"));
    let e = super::explain(&policy, &cfg, "GET", "/b", None, "", None).expect("runs");
    assert!(
        e.lines
            .iter()
            .any(|l| l.starts_with("check rate limit: 9 per 1h by source, mode report")),
        "{:?}",
        e.lines
    );
    assert!(
        !e.lines.iter().any(|l| l.starts_with("check quota")),
        "{:?}",
        e.lines
    );
    // A denied request never reaches the limits.
    let e = super::explain(&policy, &cfg, "GET", "/a", None, "tools:read", None).expect("runs");
    assert!(
        !e.lines.iter().any(|l| l.starts_with("check rate limit")),
        "{:?}",
        e.lines
    );
}
