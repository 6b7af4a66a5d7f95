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
