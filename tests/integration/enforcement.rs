//! docs/contract.md §5.2 against the real binary: every denial has its status, body
//! `error`, `WWW-Authenticate` and `Cache-Control: no-store`, and reaches no
//! upstream; report mode forwards a would-be denial and records it; the
//! store being down fails closed; `tollgate explain` prints the decision.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// With [`WORKFLOW_ROUTES`] and [`TOOLS_ROUTE`]: an admin route under
/// `/api/v1/workflows` listing every method, and a report-mode route.
const ADMIN_AND_REPORT_ROUTES: &str = r#"
[[route]]
name = "workflows-admin"
methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
path = "/api/v1/workflows/admin/**"
upstream = "backend"
scope = "workflows:write"
workspace_role = "admin"

[[route]]
name = "audit-report"
path = "/api/v1/logs/**"
upstream = "backend"
scope = "logs:read"
workspace_role = "member"
mode = "report"
"#;

/// Read and write routes under `/api/v1/workflows` that need a workspace
/// member, an admin route listing every method, a scope-only route, a
/// public route and a report-mode route.
fn policy() -> String {
    [WORKFLOW_ROUTES, TOOLS_ROUTE, ADMIN_AND_REPORT_ROUTES].concat()
}

/// A [`World`] with [`policy`]. The account holds `workflows:write tools:read` (no `logs:*`), role `member`.
async fn world() -> World {
    world_with(TollgateOptions::new()).await
}

/// [`world`] with these options.
async fn world_with(opts: TollgateOptions) -> World {
    World::start_with_policy(opts, &policy(), &["workflows:write", "tools:read"]).await
}

impl World {
    /// Sends raw bytes to the proxy listener and parses the answer.
    async fn raw(&self, request: &str) -> RawResponse {
        RawResponse::fetch(self.tollgate.proxy_addr(), request).await
    }

    /// `METHOD target HTTP/1.1` with Host, the given header lines and `Connection: close`.
    async fn raw_request(&self, method: &str, target: &str, headers: &[&str]) -> RawResponse {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: tollgate.test\r\n");
        for line in headers {
            request.push_str(line);
            request.push_str("\r\n");
        }
        request.push_str("Connection: close\r\n\r\n");
        self.raw(&request).await
    }

    /// `GET /api/v1/workflows/x{query}` with this world's token is refused
    /// 400 `invalid_request`.
    async fn assert_workflows_query_refused(&self, query: &str) {
        let target = format!("/api/v1/workflows/x{query}");
        let response = self.raw_request("GET", &target, &[&self.bearer()]).await;
        let what = format!("query {query:?}");
        assert_denied(&what, &response, 400, "invalid_request", None);
    }

    /// A GET on the proxy with this world's token.
    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.tollgate
            .proxy_request(Method::GET, path, Some(&self.token))
            .await
    }
}

/// Asserts a denial's status, body `error`, `WWW-Authenticate` (exactly, or
/// absent) and `Cache-Control: no-store`.
fn assert_denied(
    what: &str,
    response: &RawResponse,
    status: u16,
    error: &str,
    www_authenticate: Option<&str>,
) {
    assert_eq!(response.status, status, "{what}: {}", response.body_str());
    let body = response.json();
    assert_eq!(body["error"], error, "{what}: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: no error_description in {body}"
    );
    assert_eq!(
        response.header("www-authenticate"),
        www_authenticate,
        "{what}: WWW-Authenticate"
    );
    assert_eq!(
        response.header("cache-control"),
        Some("no-store"),
        "{what}: Cache-Control"
    );
}

#[tokio::test]
async fn unsafe_request_targets_are_rejected_before_reaching_the_upstream() {
    let world = world().await;
    let q = format!("?environmentId={}", world.env);
    let cases = [
        (
            "absolute-form",
            format!("http://tollgate.test/api/v1/tools/x{q}"),
        ),
        (
            "absolute-form, https",
            "https://tollgate.test/public/x".to_string(),
        ),
        ("authority-form", "tollgate.test:443".to_string()),
        ("CONNECT with a path", "/public/x".to_string()),
        ("asterisk-form", "*".to_string()),
        ("asterisk-form with OPTIONS", "*".to_string()),
        // http::Uri drops a fragment silently; tollgate reads the request line.
        ("fragment", "/api/v1/tools/x#frag".to_string()),
        ("fragment after a query", "/public/x?a=1#frag".to_string()),
        ("encoded slash", "/api/v1/tools/a%2Fb".to_string()),
        (
            "encoded slash, lower case",
            "/api/v1/tools/a%2fb".to_string(),
        ),
        ("encoded backslash", "/api/v1/tools/a%5Cb".to_string()),
        ("raw backslash", "/api/v1/tools/a\\b".to_string()),
        ("encoded NUL", "/api/v1/tools/a%00b".to_string()),
        (
            "encoded control character",
            "/api/v1/tools/a%1Fb".to_string(),
        ),
        ("encoded DEL", "/api/v1/tools/a%7Fb".to_string()),
        ("empty segment", "/api/v1//tools/x".to_string()),
        ("matrix parameter", "/api/v1/tools/x;x=1".to_string()),
        (
            "dot segments above the root",
            "/api/../../etc/passwd".to_string(),
        ),
        (
            "encoded dot segments above the root",
            "/%2e%2e/api/v1/tools/x".to_string(),
        ),
        (
            "access_token in the query",
            "/api/v1/tools/x?access_token=abc".to_string(),
        ),
        (
            "encoded access_token name",
            "/api/v1/tools/x?access%5Ftoken=abc".to_string(),
        ),
        (
            "access_token on a public route",
            "/public/x?access_token=abc".to_string(),
        ),
    ];
    for (what, target) in cases {
        let method = match what {
            "authority-form" | "CONNECT with a path" => "CONNECT",
            "asterisk-form with OPTIONS" => "OPTIONS",
            _ => "GET",
        };
        let response = world.raw_request(method, &target, &[&world.bearer()]).await;
        assert_denied(what, &response, 400, "invalid_request", None);
    }
    assert_eq!(world.echo.count(), 0, "nothing may reach the upstream");
}

#[tokio::test]
async fn ambiguous_framing_and_repeated_authorization_are_rejected_on_every_route() {
    let world = world().await;
    let bearer = world.bearer();
    for path in ["/api/v1/tools/x", "/public/x"] {
        let smuggle = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\n{bearer}\r\nContent-Length: 5\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
        );
        let response = world.raw(&smuggle).await;
        assert_denied(
            &format!("CL+TE on {path}"),
            &response,
            400,
            "invalid_request",
            None,
        );

        let response = world.raw_request("GET", path, &[&bearer, &bearer]).await;
        assert_denied(
            &format!("repeated Authorization on {path}"),
            &response,
            400,
            "invalid_request",
            None,
        );

        // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
        let no_host = format!("GET {path} HTTP/1.1\r\n{bearer}\r\nConnection: close\r\n\r\n");
        let response = world.raw(&no_host).await;
        assert_denied(
            &format!("HTTP/1.1 without Host on {path}"),
            &response,
            400,
            "invalid_request",
            None,
        );
    }
    assert_eq!(world.echo.count(), 0, "nothing may reach the upstream");

    // HTTP/1.0 does not require Host.
    let response = world
        .raw("GET /public/x HTTP/1.0\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(response.status, 200, "HTTP/1.0 without Host");
}

#[tokio::test]
async fn semicolons_in_the_path_are_forwarded_when_the_config_allows_them() {
    let world =
        world_with(TollgateOptions::new().toml("[proxy]\nallow_semicolon_in_path = true")).await;

    let response = world
        .raw_request("GET", "/api/v1/tools/x;v=1", &[&world.bearer()])
        .await;

    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(
        world.echo.last().expect("forwarded").path(),
        "/api/v1/tools/x;v=1"
    );
}

#[tokio::test]
async fn a_path_no_route_matches_is_not_found() {
    let world = world().await;
    let cases = [
        ("GET", "/api/v2/tools/x"),
        ("GET", "/"),
        // Methods outside a route's list do not match it.
        ("TRACE", "/api/v1/tools/x"),
        ("OPTIONS", "/api/v1/workflows/x"),
        // A trailing slash is significant: /public/** matches /public/, not /publicx.
        ("GET", "/publicx"),
    ];
    for (method, path) in cases {
        let response = world.raw_request(method, path, &[&world.bearer()]).await;
        assert_denied(
            &format!("{method} {path}"),
            &response,
            404,
            "not_found",
            None,
        );
    }
    assert_eq!(world.echo.count(), 0);
    let metrics = world.tollgate.metrics().await;
    let no_route = metric_value(
        &metrics,
        "tollgate_authz_decisions_total",
        &[("route", "-"), ("decision", "deny"), ("reason", "no_route")],
    );
    assert_eq!(no_route, Some(5.0), "{metrics}");
}

#[tokio::test]
async fn a_request_without_a_token_gets_a_bare_bearer_challenge() {
    let world = world().await;
    let q = format!("?environmentId={}", world.env);
    for headers in [vec![], vec!["Authorization: Basic dXNlcjpwYXNz"]] {
        let response = world
            .raw_request("GET", &format!("/api/v1/workflows/x{q}"), &headers)
            .await;
        assert_denied(
            &format!("headers {headers:?}"),
            &response,
            401,
            "missing_token",
            Some(REALM),
        );
    }
    assert_eq!(world.echo.count(), 0);
}

#[tokio::test]
async fn unknown_garbage_and_expired_tokens_are_invalid() {
    let world = world_with(TollgateOptions::new().toml("[tokens]\nttl_seconds = 2")).await;
    let challenge = format!("{REALM}, error=\"invalid_token\"");
    let unknown = format!("tg_at_{}", "A".repeat(43));
    for (what, token) in [
        ("unknown", unknown.as_str()),
        ("garbage", "not-a-token"),
        ("prefix only", "tg_at_"),
        ("empty", ""),
    ] {
        let response = world
            .raw_request(
                "GET",
                "/api/v1/tools/x",
                &[&format!("Authorization: Bearer {token}")],
            )
            .await;
        assert_denied(what, &response, 401, "invalid_token", Some(&challenge));
    }

    // The world's token lives two seconds (expiry has one-second resolution).
    let response = world
        .raw_request("GET", "/api/v1/tools/x", &[&world.bearer()])
        .await;
    assert_eq!(response.status, 200, "fresh token: {}", response.body_str());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let response = world
        .raw_request("GET", "/api/v1/tools/x", &[&world.bearer()])
        .await;
    assert_denied("expired", &response, 401, "invalid_token", Some(&challenge));
    assert_eq!(
        world.echo.count(),
        1,
        "only the fresh-token request is forwarded"
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let world = world().await;
    let response = world
        .raw_request(
            "GET",
            "/api/v1/tools/x",
            &[&format!("authorization: bEaReR {}", world.token)],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body_str());
}

#[tokio::test]
async fn a_token_without_the_route_scope_gets_insufficient_scope_naming_the_requirement() {
    let world = world().await;
    let (_, knowledge_only) = world
        .tollgate
        .account_with_token(&world.org, &["knowledge:write"])
        .await;

    let response = world
        .raw_request(
            "GET",
            "/api/v1/tools/x",
            &[&format!("Authorization: Bearer {knowledge_only}")],
        )
        .await;

    assert_denied(
        "knowledge token on tools route",
        &response,
        403,
        "insufficient_scope",
        Some(&format!(
            "{REALM}, error=\"insufficient_scope\", scope=\"tools:read\""
        )),
    );
    // A read scope never satisfies a write requirement.
    let (_, read_only) = world
        .tollgate
        .account_with_token(&world.org, &["workflows:read"])
        .await;
    let response = world
        .raw_request(
            "POST",
            &format!("/api/v1/workflows/x?environmentId={}", world.env),
            &[
                &format!("Authorization: Bearer {read_only}"),
                "Content-Length: 0",
            ],
        )
        .await;
    assert_denied(
        "read token on write route",
        &response,
        403,
        "insufficient_scope",
        Some(&format!(
            "{REALM}, error=\"insufficient_scope\", scope=\"workflows:write\""
        )),
    );
    assert_eq!(world.echo.count(), 0);
}

#[tokio::test]
async fn write_scope_satisfies_a_read_requirement() {
    let world = world().await;
    let (status, _, body) = world
        .get(&format!("/api/v1/workflows/x?environmentId={}", world.env))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(world.echo.count(), 1);
}

#[tokio::test]
async fn a_workspace_route_needs_exactly_one_environment_id() {
    let world = world().await;
    let env = &world.env;
    for query in [
        String::new(),
        "?environmentId=".to_string(),
        format!("?environmentId={env}&environmentId={env}"),
        format!("?environmentId={env}&environmentId=other"),
        // Names some framework (PHP, Rack 2, ASP.NET, old Go) reads as
        // environmentId.
        format!("?environmentId={env}&+environmentId=other"),
        format!("?environmentId={env}&%20environmentId=other"),
        format!("?environmentId={env}&environmentId%00x=other"),
        format!("?environmentId={env}&%5BenvironmentId=other"),
        format!("?environmentId={env}&environmentId%5D=other"),
        format!("?environmentId={env}&x=1;environmentId=other"),
        format!("?environmentId={env}&environmentId.=other"),
        format!("?environmentId={env}&environmentId%20=other"),
        format!("?environmentId={env}&%EF%BB%BFenvironmentId=other"),
        format!("?environmentId={env}&EnvironmentID=other"),
    ] {
        world.assert_workflows_query_refused(&query).await;
    }
    assert_eq!(world.echo.count(), 0);
}

#[tokio::test]
async fn a_raw_semicolon_in_the_query_is_refused_only_where_a_workspace_is_checked() {
    let world = world().await;
    let env = &world.env;
    // Rack 2 and old Go split pairs on `;`, others do not: the upstream may
    // read parameters tollgate did not check.
    for query in [
        format!("?environmentId={env}&q=a;b"),
        format!("?environmentId={env};x=1"),
        format!("?q=1;environmentId={env}"),
    ] {
        world.assert_workflows_query_refused(&query).await;
    }
    assert_eq!(world.echo.count(), 0);
    let encoded = world
        .raw_request(
            "GET",
            &format!("/api/v1/workflows/x?environmentId={env}&q=a%3Bb"),
            &[&world.bearer()],
        )
        .await;
    assert_eq!(
        encoded.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&encoded.body)
    );
    let elsewhere = world
        .raw_request("GET", "/api/v1/tools/x?q=a;b", &[&world.bearer()])
        .await;
    assert_eq!(
        elsewhere.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&elsewhere.body)
    );
    assert_eq!(world.echo.count(), 2);
}

#[tokio::test]
async fn every_kind_of_workspace_refusal_looks_the_same() {
    let world = world().await;
    let admin = world.tollgate.admin();

    // An environment of another organization, where the account is not known.
    let other_org = unique_id("org");
    let other_ws = unique_id("ws");
    let other_env = unique_id("env");
    admin.put_workspace(&other_org, &other_ws).await;
    admin
        .put_environment(&other_org, &other_ws, &other_env)
        .await;
    // A workspace of the same organization without membership.
    let lonely_ws = unique_id("ws");
    let lonely_env = unique_id("env");
    admin.put_workspace(&world.org, &lonely_ws).await;
    admin
        .put_environment(&world.org, &lonely_ws, &lonely_env)
        .await;

    let cases = [
        (
            "unknown environment",
            "/api/v1/workflows/x",
            unique_id("env"),
        ),
        (
            "another organization's environment",
            "/api/v1/workflows/x",
            other_env,
        ),
        ("no membership", "/api/v1/workflows/x", lonely_env),
        // The account is a member; the admin route needs admin.
        (
            "role too low",
            "/api/v1/workflows/admin/x",
            world.env.clone(),
        ),
    ];
    let mut bodies = Vec::new();
    for (what, path, env) in cases {
        let response = world
            .raw_request(
                "GET",
                &format!("{path}?environmentId={env}"),
                &[&world.bearer()],
            )
            .await;
        assert_denied(what, &response, 403, "workspace_access_denied", None);
        bodies.push((what, response.body_str()));
    }
    for (what, body) in &bodies[1..] {
        assert_eq!(body, &bodies[0].1, "{what} differs from {}", bodies[0].0);
    }
    assert_eq!(world.echo.count(), 0);
}

#[tokio::test]
async fn admin_role_satisfies_a_member_requirement_and_reaches_admin_routes() {
    let world = world().await;
    let admin = world.tollgate.admin();
    admin
        .put_member(&world.org, &world.workspace, &world.sa_id, "admin")
        .await;
    let q = format!("?environmentId={}", world.env);

    for path in ["/api/v1/workflows/x", "/api/v1/workflows/admin/x"] {
        let (status, _, body) = world.get(&format!("{path}{q}")).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let forwarded = world.echo.last().expect("forwarded");
        assert_eq!(forwarded.header("x-tollgate-workspace-role"), Some("admin"));
    }
    assert_eq!(world.echo.count(), 2);
}

#[tokio::test]
async fn membership_removal_takes_effect_on_later_requests() {
    let world = world().await;
    let path = format!("/api/v1/workflows/x?environmentId={}", world.env);
    assert_eq!(world.get(&path).await.0, StatusCode::OK);

    let (status, body) = world
        .tollgate
        .admin()
        .delete(&format!(
            "/v1/organizations/{}/workspaces/{}/members/{}",
            world.org, world.workspace, world.sa_id
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Within the cache TTL (≤ 1 s) the removal reaches the decision.
    let tollgate = &world.tollgate;
    let token = world.token.clone();
    eventually(Duration::from_secs(2), "membership removal denies", || {
        let path = path.clone();
        let token = token.clone();
        async move {
            let (status, _, _) = tollgate
                .proxy_request(Method::GET, &path, Some(&token))
                .await;
            status == StatusCode::FORBIDDEN
        }
    })
    .await;
}

#[tokio::test]
async fn a_report_mode_route_forwards_a_would_be_denial_and_records_it() {
    let world = world().await;

    // The account has no logs scope: enforce mode would answer 403.
    let (status, _, body) = world
        .get(&format!("/api/v1/logs/x?environmentId={}", world.env))
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(world.echo.count(), 1, "the request is forwarded");
    let metrics = world.tollgate.metrics().await;
    let reported = metric_value(
        &metrics,
        "tollgate_authz_decisions_total",
        &[
            ("route", "audit-report"),
            ("decision", "report_deny"),
            ("reason", "insufficient_scope"),
        ],
    );
    assert_eq!(reported, Some(1.0), "{metrics}");
    let logs = world.tollgate.logs();
    assert!(
        logs.lines().any(|l| l.contains("report")
            && l.contains("audit-report")
            && l.contains("insufficient_scope")),
        "no log line records the report-mode denial:\n{logs}"
    );

    // Without any token the request is still forwarded, without identity.
    let (status, _, _) = world
        .tollgate
        .proxy_request(Method::GET, "/api/v1/logs/y", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let forwarded = world.echo.last().expect("forwarded");
    assert!(!forwarded.has_header("x-tollgate-organization-id"));
}

#[tokio::test]
async fn a_report_mode_route_still_refuses_unsafe_requests() {
    let world = world().await;
    let response = world
        .raw_request("GET", "/api/v1/logs/a%2Fb", &[&world.bearer()])
        .await;
    assert_denied("encoded slash", &response, 400, "invalid_request", None);
    assert_eq!(world.echo.count(), 0);
}

#[tokio::test]
async fn decisions_are_counted_by_route_and_reason() {
    let world = world().await;
    let q = format!("?environmentId={}", world.env);
    world.get(&format!("/api/v1/workflows/x{q}")).await;
    world
        .tollgate
        .proxy_request(Method::GET, "/api/v1/tools/x", None)
        .await;
    world
        .tollgate
        .proxy_request(Method::GET, "/public/x", None)
        .await;

    let metrics = world.tollgate.metrics().await;
    let count = |route, decision, reason| {
        metric_value(
            &metrics,
            "tollgate_authz_decisions_total",
            &[("route", route), ("decision", decision), ("reason", reason)],
        )
    };
    assert_eq!(
        count("workflows-read", "allow", "ok"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        count("tools", "deny", "missing_token"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(count("public", "allow", "public"), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn no_token_appears_in_logs_or_error_bodies() {
    let world = world().await;
    let q = format!("?environmentId={}", world.env);
    world.get(&format!("/api/v1/workflows/x{q}")).await;
    world.get("/api/v1/workflows/admin/x").await;
    let response = world
        .raw_request(
            "GET",
            &format!("/api/v1/tools/x?access_token={}", world.token),
            &[],
        )
        .await;
    assert_eq!(response.status, 400);
    assert!(!response.body_str().contains(&world.token));

    let secret_part = &world.token["tg_at_".len()..];
    let logs = world.tollgate.logs();
    assert!(!logs.contains(secret_part), "a token leaked into the logs");
}

#[tokio::test]
async fn an_unreachable_store_fails_closed_quickly_and_recovers_without_a_restart() {
    let redis = PrivateRedis::start();
    // The default store timeout (250 ms), as an operator would run it.
    let mut world = world_with(
        TollgateOptions::new()
            .redis_url(redis.url())
            .toml("[store]\ntimeout_ms = 250"),
    )
    .await;
    let path = format!("/api/v1/workflows/x?environmentId={}", world.env);
    assert_eq!(world.get(&path).await.0, StatusCode::OK);
    world.echo.clear();

    redis.stop();
    // Answers cached before the outage may serve for at most cache.ttl_ms
    // (default 500 ms, docs/contract.md §8); after that nothing can be decided.
    tokio::time::sleep(Duration::from_millis(600)).await;

    // A report-mode route fails closed too: it cannot decide, so it cannot forward.
    let report = format!("/api/v1/logs/x?environmentId={}", world.env);
    for path in [path.as_str(), "/api/v1/tools/x", report.as_str()] {
        let started = Instant::now();
        let response = world.raw_request("GET", path, &[&world.bearer()]).await;
        let took = started.elapsed();
        assert_denied(path, &response, 503, "temporarily_unavailable", None);
        assert!(
            response.header("retry-after").is_some(),
            "{path}: Retry-After"
        );
        assert!(took < Duration::from_secs(2), "{path}: took {took:?}");
    }
    assert_eq!(world.echo.count(), 0, "a store failure must never forward");
    let metrics = world.tollgate.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "tollgate_authz_decisions_total",
            &[
                ("route", "tools"),
                ("decision", "deny"),
                ("reason", "store_unavailable"),
            ],
        )
        .is_some(),
        "{metrics}"
    );

    // Public routes need no store.
    let (status, _, _) = world
        .tollgate
        .proxy_request(Method::GET, "/public/x", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.echo.count(), 1);

    // Same port, same (AOF) data: the token works again, tollgate untouched.
    redis.restart();
    let tollgate = &world.tollgate;
    let token = world.token.clone();
    eventually(Duration::from_secs(5), "requests succeed again", || {
        let (path, token) = (path.clone(), token.clone());
        async move {
            let (status, _, _) = tollgate
                .proxy_request(Method::GET, &path, Some(&token))
                .await;
            status == StatusCode::OK
        }
    })
    .await;
    assert!(world.tollgate.is_running(), "tollgate was not restarted");
}

fn explain(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("explain")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TOLLGATE_REDIS_URL")
        .output()
        .expect("run tollgate explain");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn explain_prints_the_route_each_check_and_the_decision() {
    let world = world().await;
    let config = world.tollgate.config_path();

    let (code, out, err) = explain(
        config,
        &[
            "--method",
            "GET",
            "--path",
            "/api/v1/workflows/./a/../b",
            "--query",
            "environmentId=e1",
            "--scopes",
            "workflows:write",
            "--role",
            "admin",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("workflows-read"), "{out}");
    assert!(out.contains("/api/v1/workflows/b"), "{out}");
    assert_eq!(out.lines().last(), Some("decision: allow"), "{out}");

    let (code, out, _) = explain(
        config,
        &[
            "--method",
            "GET",
            "--path",
            "/api/v1/tools/x",
            "--scopes",
            "knowledge:read",
        ],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("tools"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("decision: deny insufficient_scope"),
        "{out}"
    );

    let (code, out, _) = explain(
        config,
        &[
            "--method",
            "GET",
            "--path",
            "/api/v1/workflows/admin/x",
            "--query",
            "environmentId=e1",
            "--scopes",
            "workflows:write",
            "--role",
            "member",
        ],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("workflows-admin"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("decision: deny workspace_access_denied"),
        "{out}"
    );

    let (code, out, _) = explain(config, &["--method", "GET", "--path", "/nowhere"]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(out.lines().last(), Some("decision: deny no_route"), "{out}");

    let (code, out, _) = explain(config, &["--method", "GET", "--path", "/a%2Fb"]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(
        out.lines().last(),
        Some("decision: deny invalid_request"),
        "{out}"
    );
}

#[tokio::test]
async fn explain_exits_2_on_usage_and_config_errors() {
    let world = world().await;
    let config = world.tollgate.config_path();

    let (code, _, err) = explain(config, &["--method", "GET"]);
    assert_eq!(code, 2, "missing --path: {err}");
    let (code, _, err) = explain(
        config,
        &[
            "--method",
            "GET",
            "--path",
            "/api/v1/tools/x",
            "--scopes",
            "nope:read",
        ],
    );
    assert_eq!(code, 2, "bad scope: {err}");
    let (code, _, err) = explain(
        config,
        &["--method", "GET", "--path", "/x", "--role", "owner"],
    );
    assert_eq!(code, 2, "bad role: {err}");

    let missing = world.tollgate.dir().join("missing.toml");
    let (code, _, err) = explain(&missing, &["--method", "GET", "--path", "/x"]);
    assert_eq!(code, 2, "missing config: {err}");

    world
        .tollgate
        .write_policy("broken.toml", "[[route]]\nname = \"x\"\n");
    let (code, _, err) = explain(config, &["--method", "GET", "--path", "/x"]);
    assert_eq!(code, 2, "invalid policy: {err}");
    assert!(
        err.contains("broken.toml"),
        "the message names the file: {err}"
    );
}

#[tokio::test]
async fn the_shipped_example_policy_never_lets_a_member_reach_an_admin_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policy dir");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/policies/example.toml"),
        policies.join("example.toml"),
    )
    .expect("copy the shipped example");
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        "[policies]\ndir = \"policies\"\n[store]\nbackend = \"memory\"\n\
         [upstreams.backend]\naddrs = [\"127.0.0.1:9\"]\n",
    )
    .expect("write config");

    for resource in [
        "chat",
        "workflows",
        "storage",
        "knowledge",
        "templates",
        "tools",
        "logs",
    ] {
        let scopes = format!("{resource}:write");
        for method in ["GET", "HEAD", "OPTIONS", "POST", "DELETE"] {
            for path in ["admin", "admin/x", "./x/../admin/y", "%61dmin/x"] {
                let path = format!("/api/v1/{resource}/{path}");
                let args = |role| {
                    [
                        "--method",
                        method,
                        "--path",
                        &path,
                        "--query",
                        "environmentId=e1",
                        "--scopes",
                        &scopes,
                        "--role",
                        role,
                    ]
                    .map(str::to_string)
                };
                let member = args("member");
                let member: Vec<&str> = member.iter().map(String::as_str).collect();
                let (code, out, err) = explain(&config, &member);
                assert_eq!(code, 3, "member {method} {path}: {out}{err}");
                assert!(out.contains(&format!("{resource}-admin")), "{out}");
                assert_eq!(
                    out.lines().last(),
                    Some("decision: deny workspace_access_denied"),
                    "{out}"
                );
            }
        }
        let path = format!("/api/v1/{resource}/admin/x");
        let (code, out, err) = explain(
            &config,
            &[
                "--method",
                "GET",
                "--path",
                &path,
                "--query",
                "environmentId=e1",
                "--scopes",
                &scopes,
                "--role",
                "admin",
            ],
        );
        assert_eq!(code, 0, "admin GET {path}: {out}{err}");
    }
}

#[tokio::test]
async fn the_body_of_a_denied_request_is_never_read_as_another_request() {
    let world = world().await;
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    for framing in [
        format!("Content-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        format!(
            "Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
    ] {
        // Denied (no token), then an honest request on the same connection.
        let mut conn = RawConnection::open(world.tollgate.proxy_addr()).await;
        let denied = conn
            .exchange(format!(
                "POST /api/v1/tools/x HTTP/1.1\r\nHost: t\r\n{framing}"
            ))
            .await
            .expect("an answer to the denied request");
        assert!(
            denied.starts_with(b"HTTP/1.1 401"),
            "{}",
            String::from_utf8_lossy(&denied)
        );
        // The connection may be kept (the body drained) or closed; never misread.
        if let Some(answer) = conn
            .exchange("GET /public/honest HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
        {
            assert!(
                answer.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
        let targets: Vec<String> = world
            .echo
            .requests()
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert!(
            !targets.iter().any(|t| t.contains("smuggled")),
            "a denied request's body reached the upstream as a request: {targets:?}"
        );
    }
}

/// Accepts TCP connections and never answers: a Redis that hangs.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_store_that_never_answers_is_a_quick_503_not_a_hang() {
    let (addr, _silent) = silent_server().await;
    let echo = EchoUpstream::start();
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .redis_url(format!("redis://{addr}/0"))
            .toml("[store]\ntimeout_ms = 200")
            .policy("routes.toml", policy())
            .upstream("backend", &[echo.addr_string()])
            .no_wait_ready(),
    )
    .await;
    let token = format!("Authorization: Bearer tg_at_{}", "A".repeat(43));

    for _ in 0..3 {
        let started = Instant::now();
        let response = RawResponse::fetch(
            tollgate.proxy_addr(),
            format!(
                "GET /api/v1/tools/x HTTP/1.1\r\nHost: t\r\n{token}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_denied(
            "silent store",
            &response,
            503,
            "temporarily_unavailable",
            None,
        );
        assert!(response.header("retry-after").is_some());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(echo.count(), 0);
    let (status, _, _) = tollgate.proxy_request(Method::GET, "/public/x", None).await;
    assert_eq!(status, StatusCode::OK, "public routes need no store");
}

#[tokio::test]
async fn denials_keep_the_connection_usable_and_a_head_denial_has_no_body() {
    let world = world().await;
    let mut conn = RawConnection::open(world.tollgate.proxy_addr()).await;
    for method in ["HEAD", "GET", "HEAD"] {
        let answer = conn
            .exchange(format!(
                "{method} /api/v1/tools/x HTTP/1.1\r\nHost: t\r\n\r\n"
            ))
            .await
            .unwrap_or_else(|| panic!("{method}: no answer on the kept-alive connection"));
        let text = String::from_utf8_lossy(&answer).into_owned();
        assert!(text.starts_with("HTTP/1.1 401"), "{method}: {text}");
        if method == "HEAD" {
            assert!(
                text.ends_with("\r\n\r\n"),
                "HEAD answer with a body: {text}"
            );
        }
    }
    let answer = conn
        .exchange("GET /public/after HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("an answer after the denials");
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(conn
        .stray_bytes(Duration::from_millis(200))
        .await
        .is_empty());
    assert_eq!(
        world.echo.last().expect("forwarded").target,
        "/public/after"
    );
}

#[tokio::test]
async fn no_token_appears_in_the_logs_even_at_trace_level() {
    let world = world_with(TollgateOptions::new().log_filter("trace")).await;
    let q = format!("?environmentId={}", world.env);
    let (status, _, _) = world.get(&format!("/api/v1/workflows/x{q}")).await;
    assert_eq!(status, StatusCode::OK);
    world.get("/api/v1/nowhere").await;
    world.get("/api/v1/tools/a%2Fb").await;

    // A token request at trace level too: its form body and Basic header.
    let (_, client_id, client_secret) = world
        .tollgate
        .admin()
        .create_service_account(&world.org, &unique_id("sa"), &["tools:read"])
        .await;
    let (_, _, body) = world
        .tollgate
        .token_request(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &client_secret),
            ],
        )
        .await;
    let second_token = body["access_token"].as_str().expect("issued").to_string();

    let logs = world.tollgate.logs();
    assert!(
        logs.contains("workflows-read"),
        "the access log is written:\n{logs}"
    );
    for (what, secret) in [
        ("token", &world.token["tg_at_".len()..]),
        ("client secret", client_secret.as_str()),
        (
            "token issued at trace level",
            &second_token["tg_at_".len()..],
        ),
    ] {
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "the {what} leaked into the logs:\n{}",
            leaks.join("\n")
        );
    }
}
