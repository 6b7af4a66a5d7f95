//! docs/contract.md §5.3 against the real binary: exactly what an allowed request looks
//! like at a recording echo upstream (path, query, headers, body), round
//! robin, and the 502/504 answers when the upstream fails.

mod bodies;
mod edges;
mod setup;
mod tunnels;

use std::time::{Duration, Instant};

use crate::common::*;

const POLICY: &str = r#"
[[route]]
name = "workflows"
methods = ["GET", "HEAD", "POST", "PUT"]
path = "/api/v1/workflows/**"
upstream = "backend"
scope = "workflows:read"
workspace_role = "member"

[[route]]
name = "tools"
methods = ["GET", "POST"]
path = "/api/v1/tools/**"
upstream = "backend"
scope = "tools:read"

[[route]]
name = "stripped"
path = "/svc/**"
upstream = "backend"
scope = "tools:read"
strip_prefix = "/svc"

[[route]]
name = "public"
path = "/public/**"
upstream = "backend"
auth = "none"
"#;

/// A [`World`] with [`POLICY`]. The account holds `workflows:read tools:read`, role `member`.
async fn world() -> World {
    world_with(TollgateOptions::new()).await
}

/// [`world`] with these options.
async fn world_with(opts: TollgateOptions) -> World {
    World::start_with_policy(opts, POLICY, &["workflows:read", "tools:read"]).await
}

impl World {
    /// Sends `METHOD target` with Host, these header lines and `Connection:
    /// close`, expects 200, and returns the answer and what the upstream got.
    async fn forward(
        &self,
        method: &str,
        target: &str,
        headers: &[&str],
    ) -> (RawResponse, RecordedRequest) {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: tollgate.test\r\n");
        for line in headers {
            request.push_str(line);
            request.push_str("\r\n");
        }
        request.push_str("Connection: close\r\n\r\n");
        self.echo.clear();
        let response = RawResponse::fetch(self.tollgate.proxy_addr(), &request).await;
        assert_eq!(response.status, 200, "{target}: {}", response.body_str());
        assert_eq!(self.echo.count(), 1, "{target}: forwarded once");
        (response, self.echo.last().expect("forwarded"))
    }

    fn workspace_query(&self) -> String {
        format!("environmentId={}", self.env)
    }
}

#[tokio::test]
async fn the_upstream_receives_the_normalised_path_and_the_query_unchanged() {
    let world = world().await;
    let q = world.workspace_query();
    let cases = [
        (
            format!("/api/v1/workflows/./a/../b?{q}"),
            format!("/api/v1/workflows/b?{q}"),
        ),
        (
            format!("/api/v1/workflows/%7euser/%41?{q}"),
            format!("/api/v1/workflows/~user/A?{q}"),
        ),
        (
            format!("/api/v1/workflows/a%3ab/%e2%82%ac?{q}&x=%2F&y=a+b&z"),
            format!("/api/v1/workflows/a%3Ab/%E2%82%AC?{q}&x=%2F&y=a+b&z"),
        ),
        // %2e is an unreserved '.', so this is a dot segment too.
        (
            format!("/api/v1/workflows/x/%2e%2E/y/?{q}"),
            format!("/api/v1/workflows/y/?{q}"),
        ),
        // Already normal: forwarded byte for byte.
        (
            format!("/api/v1/workflows/b?{q}&x=%2F&y=a+b&z=(1)!*'~"),
            format!("/api/v1/workflows/b?{q}&x=%2F&y=a+b&z=(1)!*'~"),
        ),
        (
            format!("/api/v1/workflows/b?{q}"),
            format!("/api/v1/workflows/b?{q}"),
        ),
    ];
    for (sent, expected) in cases {
        let (_, got) = world.forward("GET", &sent, &[&world.bearer()]).await;
        assert_eq!(got.target, expected, "sent {sent}");
    }
}

#[tokio::test]
async fn the_route_decides_on_the_normalised_path_not_the_raw_one() {
    let world = world().await;
    // Raw, this starts with /public; normalised it is a tools path and needs a token.
    let response = RawResponse::fetch(
        world.tollgate.proxy_addr(),
        "GET /public/../api/v1/tools/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 401, "{}", response.body_str());
    assert_eq!(world.echo.count(), 0);
}

#[tokio::test]
async fn strip_prefix_is_removed_before_forwarding() {
    let world = world().await;
    let bearer = world.bearer();
    for (sent, expected) in [
        ("/svc/things/1?q=1", "/things/1?q=1"),
        ("/svc", "/"),
        ("/svc/", "/"),
        ("/svc/./a/../b", "/b"),
    ] {
        let (_, got) = world.forward("GET", sent, &[&bearer]).await;
        assert_eq!(got.target, expected, "sent {sent}");
    }
}

#[tokio::test]
async fn identity_headers_name_the_caller_and_the_verified_workspace() {
    let world = world().await;
    let q = world.workspace_query();

    let (_, got) = world
        .forward(
            "GET",
            &format!("/api/v1/workflows/x?{q}"),
            &[&world.bearer()],
        )
        .await;
    assert_eq!(
        got.header("x-tollgate-organization-id"),
        Some(world.org.as_str())
    );
    assert_eq!(
        got.header("x-tollgate-client-id"),
        Some(world.client_id.as_str())
    );
    assert_eq!(
        got.header("x-tollgate-service-account-id"),
        Some(world.sa_id.as_str())
    );
    assert_eq!(
        got.header("x-tollgate-scopes"),
        Some("tools:read workflows:read")
    );
    assert_eq!(
        got.header("x-tollgate-workspace-id"),
        Some(world.workspace.as_str())
    );
    assert_eq!(got.header("x-tollgate-workspace-role"), Some("member"));
    assert_eq!(
        got.header("x-tollgate-environment-id"),
        Some(world.env.as_str())
    );
    assert!(
        !got.has_header("authorization"),
        "the token must not reach the upstream"
    );

    // No workspace check, no workspace headers (even with an environmentId).
    let (_, got) = world
        .forward("GET", &format!("/api/v1/tools/x?{q}"), &[&world.bearer()])
        .await;
    assert_eq!(
        got.header("x-tollgate-organization-id"),
        Some(world.org.as_str())
    );
    for name in [
        "x-tollgate-workspace-id",
        "x-tollgate-workspace-role",
        "x-tollgate-environment-id",
    ] {
        assert!(!got.has_header(name), "{name} without a workspace check");
    }
}

#[tokio::test]
async fn the_authorization_header_is_forwarded_only_when_configured() {
    let world =
        world_with(TollgateOptions::new().toml("[proxy]\nforward_authorization = true")).await;
    let (_, got) = world
        .forward("GET", "/api/v1/tools/x", &[&world.bearer()])
        .await;
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {}", world.token).as_str())
    );
}

/// Every spelling of the default identity header names a client could try.
fn spoofed_identity_headers() -> Vec<String> {
    let names = [
        "x-tollgate-organization-id",
        "X-Tollgate-Client-Id",
        "X-TOLLGATE-SERVICE-ACCOUNT-ID",
        "x_tollgate_scopes",
        "X_Tollgate_Workspace_Id",
        "x-tollgate_workspace-role",
        "x-tollgate-environment-id",
    ];
    names.iter().map(|n| format!("{n}: spoofed")).collect()
}

#[tokio::test]
async fn header_names_go_upstream_in_lower_case_and_the_common_ones_title_cased() {
    let world = world().await;
    let bearer = world.bearer();
    let headers = ["X-Custom-Thing: Kept-Value", "ACCEPT: */*", &bearer];
    let (response, got) = world
        .forward(
            "GET",
            &format!("/api/v1/workflows/x?{}", world.workspace_query()),
            &headers,
        )
        .await;
    assert_eq!(response.status, 200);
    let names: Vec<&str> = got.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"Host"), "{names:?}");
    assert!(names.contains(&"x-custom-thing"), "{names:?}");
    assert!(names.contains(&"accept"), "{names:?}");
    assert!(names.contains(&"x-tollgate-organization-id"), "{names:?}");
    assert!(names.contains(&"x-tollgate-workspace-role"), "{names:?}");
    assert_eq!(got.header("x-custom-thing"), Some("Kept-Value"));
    // Each name once: nothing was both kept in its old case and added anew.
    let mut lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    lower.sort();
    let count = lower.len();
    lower.dedup();
    assert_eq!(lower.len(), count, "{names:?}");
}

#[tokio::test]
async fn client_sent_identity_headers_never_reach_the_upstream() {
    let world = world().await;
    let spoofed = spoofed_identity_headers();
    let mut headers: Vec<&str> = spoofed.iter().map(String::as_str).collect();

    // A public route: nothing is injected and nothing spoofed survives.
    let (_, got) = world.forward("GET", "/public/x", &headers).await;
    let leaked: Vec<_> = got
        .headers
        .iter()
        .filter(|(n, _)| {
            n.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-tollgate")
        })
        .collect();
    assert!(leaked.is_empty(), "public route forwarded {leaked:?}");

    // A token route without workspace: the injected values, once each.
    let bearer = world.bearer();
    headers.push(&bearer);
    let (_, got) = world.forward("GET", "/api/v1/tools/x", &headers).await;
    let identity: Vec<_> = got
        .headers
        .iter()
        .filter(|(n, _)| {
            n.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-tollgate")
        })
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
        .collect();
    let expected = vec![
        ("x-tollgate-organization-id".to_string(), world.org.as_str()),
        ("x-tollgate-client-id".to_string(), world.client_id.as_str()),
        (
            "x-tollgate-service-account-id".to_string(),
            world.sa_id.as_str(),
        ),
        ("x-tollgate-scopes".to_string(), "tools:read workflows:read"),
    ];
    assert_eq!(identity, expected);
}

#[tokio::test]
async fn the_connection_header_cannot_remove_injected_identity_headers() {
    let world = world().await;
    let q = world.workspace_query();
    let (_, got) = world
        .forward(
            "GET",
            &format!("/api/v1/workflows/x?{q}"),
            &[
                &world.bearer(),
                "Connection: x-tollgate-organization-id, X-Tollgate-Workspace-Role",
                "Connection: x-tollgate-scopes",
            ],
        )
        .await;
    assert_eq!(
        got.header("x-tollgate-organization-id"),
        Some(world.org.as_str())
    );
    assert_eq!(got.header("x-tollgate-workspace-role"), Some("member"));
    assert_eq!(
        got.header("x-tollgate-scopes"),
        Some("tools:read workflows:read")
    );
}

#[tokio::test]
async fn identity_header_names_follow_the_config() {
    let world = world_with(
        TollgateOptions::new()
            .toml("[identity_headers]\norganization_id = \"X-Org\"\nscopes = \"x-caller-scopes\""),
    )
    .await;

    let (_, got) = world
        .forward(
            "GET",
            "/api/v1/tools/x",
            &[
                &world.bearer(),
                "x-org: spoofed",
                "X_ORG: spoofed",
                "X-Caller-Scopes: tools:write",
            ],
        )
        .await;

    assert_eq!(got.header_all("x-org"), [world.org.as_str()]);
    assert!(!got.has_header("x_org"));
    assert_eq!(
        got.header_all("x-caller-scopes"),
        ["tools:read workflows:read"]
    );
    assert!(!got.has_header("x-tollgate-organization-id"));
    assert!(!got.has_header("x-tollgate-scopes"));
    assert_eq!(
        got.header("x-tollgate-client-id"),
        Some(world.client_id.as_str())
    );
}

#[tokio::test]
async fn a_sane_request_id_is_kept_and_an_insane_one_replaced() {
    let world = world().await;
    let sane = "req-1.2_3-ABC";
    let (response, got) = world
        .forward("GET", "/public/x", &[&format!("X-Request-Id: {sane}")])
        .await;
    assert_eq!(got.header("x-request-id"), Some(sane));
    assert_eq!(response.header("x-request-id"), Some(sane));

    let too_long = "a".repeat(129);
    for sent in [
        vec![],
        vec!["X-Request-Id: has space".to_string()],
        vec!["X-Request-Id: semi;colon".to_string()],
        vec![format!("X-Request-Id: {too_long}")],
        vec!["X-Request-Id:".to_string()],
    ] {
        let headers: Vec<&str> = sent.iter().map(String::as_str).collect();
        let (response, got) = world.forward("GET", "/public/x", &headers).await;
        let forwarded = got.header_all("x-request-id");
        assert_eq!(forwarded.len(), 1, "{sent:?}: {forwarded:?}");
        let id = forwarded[0];
        assert!(
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{sent:?}: generated {id:?}"
        );
        assert!(!sent.iter().any(|s| s.ends_with(id)), "{sent:?} was kept");
        assert_eq!(
            response.header("x-request-id"),
            Some(id),
            "{sent:?}: echoed"
        );
    }
}

#[tokio::test]
async fn denials_carry_the_request_id_too() {
    let world = world().await;
    let response = RawResponse::fetch(
        world.tollgate.proxy_addr(),
        "GET /api/v1/tools/x HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-42\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.header("x-request-id"), Some("trace-42"));
}

#[tokio::test]
async fn forwarded_for_is_appended_and_forwarded_proto_is_set() {
    let world = world().await;
    let (_, got) = world
        .forward(
            "GET",
            "/public/x",
            &["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"],
        )
        .await;
    assert_eq!(
        got.header_all("x-forwarded-for"),
        ["203.0.113.7, 127.0.0.1"]
    );
    // The peer is not a trusted proxy: its claim is replaced.
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);

    let (_, got) = world.forward("GET", "/public/x", &[]).await;
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);

    // `_` spellings, which CGI-style upstreams read as the same headers,
    // are dropped; the ones tollgate builds stay.
    let (_, got) = world
        .forward(
            "GET",
            "/public/x",
            &["X_Forwarded_For: 198.51.100.9", "x_forwarded_proto: https"],
        )
        .await;
    let names: Vec<String> = got
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    assert!(!names.iter().any(|n| n.contains('_')), "{names:?}");
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn request_bodies_reach_the_upstream_intact() {
    let world = world().await;
    let json = r#"{"name":"flow","steps":[1,2,3],"note":"ünïcödé"}"#;
    let response = world
        .tollgate
        .http()
        .post(
            world
                .tollgate
                .proxy_url(&format!("/api/v1/workflows/x?{}", world.workspace_query())),
        )
        .bearer_auth(&world.token)
        .header("content-type", "application/json")
        .body(json)
        .send()
        .await
        .expect("POST through tollgate");
    assert_eq!(response.status(), StatusCode::OK);
    let got = world.echo.last().expect("forwarded");
    assert_eq!(got.method, "POST");
    assert_eq!(got.body, json.as_bytes());
    assert_eq!(got.header("content-type"), Some("application/json"));

    world.echo.clear();
    let chunked = format!(
        "POST /api/v1/tools/x HTTP/1.1\r\nHost: t\r\n{}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
        world.bearer()
    );
    let response = RawResponse::fetch(world.tollgate.proxy_addr(), chunked).await;
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(
        world.echo.last().expect("forwarded").body_str(),
        "hello, world"
    );
}

#[tokio::test]
async fn requests_are_spread_round_robin_over_the_upstream_addresses() {
    let (a, b) = (EchoUpstream::start(), EchoUpstream::start());
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", POLICY)
            .upstream("backend", &[a.addr_string(), b.addr_string()]),
    )
    .await;
    for _ in 0..6 {
        let (status, _, _) = tollgate.proxy_request(Method::GET, "/public/x", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!((a.count(), b.count()), (3, 3));
}

#[tokio::test]
async fn active_health_checks_take_a_dead_address_out_of_rotation() {
    let live = EchoUpstream::start();
    let dead = dead_addr();
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", POLICY)
            .upstream("backend", &[live.addr_string(), dead.clone()])
            .toml("[upstreams.backend]\nhealth_check_path = \"/health\"\n"),
    )
    .await;
    // The first check runs at start-up; after it, every request reaches the
    // live address. Without health checks every other one would be a 502.
    eventually(
        Duration::from_secs(10),
        "the dead address is skipped",
        || async {
            let mut all_ok = true;
            for _ in 0..4 {
                let (status, _, _) = tollgate.proxy_request(Method::GET, "/public/x", None).await;
                all_ok &= status == StatusCode::OK;
            }
            all_ok
        },
    )
    .await;
    for _ in 0..10 {
        let (status, _, _) = tollgate.proxy_request(Method::GET, "/public/x", None).await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// Asserts a gateway error body and that it names no address or port.
fn assert_gateway_error(response: &RawResponse, status: u16, error: &str, addr: &str) {
    assert_eq!(response.status, status, "{}", response.body_str());
    let body = response.json();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    let text = response.body_str();
    let port = addr.rsplit(':').next().expect("port");
    assert!(
        !text.contains(addr) && !text.contains(port),
        "body names the upstream: {text}"
    );
    assert!(!text.contains("127.0.0.1"), "body names an address: {text}");
}

async fn public_get(tollgate: &Tollgate) -> RawResponse {
    RawResponse::fetch(
        tollgate.proxy_addr(),
        "GET /public/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_is_a_bad_gateway() {
    let dead = dead_addr();
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", POLICY)
            .upstream("backend", std::slice::from_ref(&dead)),
    )
    .await;
    let response = public_get(&tollgate).await;
    assert_gateway_error(&response, 502, "bad_gateway", &dead);
}

#[tokio::test]
async fn an_upstream_that_closes_without_answering_is_a_bad_gateway() {
    let closing = EchoUpstream::start_closing();
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", POLICY)
            .upstream("backend", &[closing.addr_string()]),
    )
    .await;
    let response = public_get(&tollgate).await;
    assert_gateway_error(&response, 502, "bad_gateway", &closing.addr_string());
}

/// An upstream that never answers a connection attempt: a listener whose
/// accept queue is full (the kernel then drops the SYNs, as a host that
/// does not answer would). The listener and the connections that fill it
/// are returned to be held.
async fn unanswering_upstream() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("local addr");
    let mut held = Vec::new();
    for _ in 0..8 {
        let attempt = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(300), attempt).await {
            held.push(s);
        }
    }
    let attempt = tokio::net::TcpStream::connect(addr);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), attempt)
            .await
            .is_err(),
        "a connection attempt to the full listener did not hang"
    );
    (listener, held, addr.to_string())
}

/// A connect that does not complete is a connect failure: 502 once
/// `connect_timeout_ms` has passed, the configured time and not another.
#[tokio::test]
async fn an_upstream_that_does_not_answer_is_a_bad_gateway_after_the_connect_timeout() {
    let (_listener, _held, addr) = unanswering_upstream().await;
    for (connect_timeout_ms, at_least, below) in [(200, 150, 2_000), (2_500, 2_400, 9_000)] {
        let tollgate = Tollgate::start(
            TollgateOptions::new()
                .policy("routes.toml", POLICY)
                .upstream("backend", std::slice::from_ref(&addr))
                .toml(format!(
                    "[upstreams.backend]\nconnect_timeout_ms = {connect_timeout_ms}"
                )),
        )
        .await;
        let started = Instant::now();
        let response = public_get(&tollgate).await;
        let took = started.elapsed();
        assert_gateway_error(&response, 502, "bad_gateway", &addr);
        assert!(
            took >= Duration::from_millis(at_least) && took < Duration::from_millis(below),
            "connect_timeout_ms = {connect_timeout_ms}: answered after {took:?}"
        );
    }
}

#[tokio::test]
async fn an_upstream_slower_than_the_read_timeout_is_a_gateway_timeout() {
    let slow = EchoUpstream::start_delayed(Duration::from_secs(5));
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", POLICY)
            .upstream("backend", &[slow.addr_string()])
            .toml("[upstreams.backend]\nread_timeout_ms = 300"),
    )
    .await;
    let started = Instant::now();
    let response = public_get(&tollgate).await;
    assert_gateway_error(&response, 504, "gateway_timeout", &slow.addr_string());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(slow.count(), 1, "the request did reach the upstream");
}

#[tokio::test]
async fn upstream_responses_are_counted_by_route_and_status_class() {
    let world = world().await;
    world.forward("GET", "/public/x", &[]).await;
    let response = RawResponse::fetch(
        world.tollgate.proxy_addr(),
        "GET /public/y HTTP/1.1\r\nHost: t\r\nX-Echo-Status: 503\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        response.status, 503,
        "the upstream's own status passes through"
    );
    // Counted in the logging phase, which may run just after the answer is sent.
    let tollgate = &world.tollgate;
    eventually(
        Duration::from_secs(2),
        "one 2xx and one 5xx counted",
        || async move {
            let metrics = tollgate.metrics().await;
            let count = |class| {
                metric_value(
                    &metrics,
                    "tollgate_upstream_responses_total",
                    &[("route", "public"), ("status_class", class)],
                )
            };
            count("2xx") == Some(1.0) && count("5xx") == Some(1.0)
        },
    )
    .await;
}

#[tokio::test]
async fn public_routes_forward_no_authorization_either() {
    let world = world().await;
    let (_, got) = world.forward("GET", "/public/x", &[&world.bearer()]).await;
    assert!(!got.has_header("authorization"));
    assert!(!got.has_header("x-tollgate-organization-id"));
}

#[tokio::test]
async fn head_and_http_1_0_requests_are_forwarded_as_such() {
    let world = world().await;
    let q = world.workspace_query();
    let (response, got) = world
        .forward(
            "HEAD",
            &format!("/api/v1/workflows/x?{q}"),
            &[&world.bearer()],
        )
        .await;
    assert_eq!(got.method, "HEAD");
    assert!(response.body.is_empty());

    world.echo.clear();
    let response = RawResponse::fetch(
        world.tollgate.proxy_addr(),
        format!("GET /api/v1/tools/x HTTP/1.0\r\n{}\r\n\r\n", world.bearer()),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body_str());
    let got = world.echo.last().expect("forwarded");
    assert_eq!(
        got.header("x-tollgate-organization-id"),
        Some(world.org.as_str())
    );
}

/// HTTP/1.0 lets a client leave `Host` out; the request goes upstream as
/// HTTP/1.1, which needs one: the upstream's own address (or its `sni`).
#[tokio::test]
async fn an_http_1_0_request_without_host_goes_upstream_with_the_upstreams_host() {
    let world = world().await;
    for (request, path) in [
        ("GET /public/x HTTP/1.0\r\n\r\n".to_string(), "/public/x"),
        (
            format!("GET /api/v1/tools/x HTTP/1.0\r\n{}\r\n\r\n", world.bearer()),
            "/api/v1/tools/x",
        ),
    ] {
        world.echo.clear();
        let response = RawResponse::fetch(world.tollgate.proxy_addr(), &request).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body_str());
        let got = world.echo.last().expect("forwarded");
        assert_eq!(got.target, path);
        assert_eq!(got.version, "HTTP/1.1");
        assert_eq!(
            got.header_all("host"),
            [world.echo.addr_string().as_str()],
            "{path}"
        );
    }
    // A Host the client sent is kept.
    world.echo.clear();
    let response = RawResponse::fetch(
        world.tollgate.proxy_addr(),
        "GET /public/y HTTP/1.0\r\nHost: client.example\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200);
    let got = world.echo.last().expect("forwarded");
    assert_eq!(got.header_all("host"), ["client.example"]);
}

#[tokio::test]
async fn every_forwarded_for_line_received_is_kept_before_the_peer() {
    let world = world().await;
    let (_, got) = world
        .forward(
            "GET",
            "/public/x",
            &[
                "X-Forwarded-For: 203.0.113.7",
                "x-forwarded-for: 198.51.100.1, 192.0.2.9",
            ],
        )
        .await;
    assert_eq!(
        got.header_all("x-forwarded-for"),
        ["203.0.113.7, 198.51.100.1, 192.0.2.9, 127.0.0.1"]
    );
}

#[tokio::test]
async fn a_trusted_proxy_may_state_the_original_protocol() {
    let world =
        world_with(TollgateOptions::new().toml("[proxy]\ntrusted_proxies = [\"127.0.0.0/8\"]"))
            .await;
    let (_, got) = world
        .forward("GET", "/public/x", &["X-Forwarded-Proto: https"])
        .await;
    assert_eq!(got.header_all("x-forwarded-proto"), ["https"]);
    let (_, got) = world.forward("GET", "/public/x", &[]).await;
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
    // ...and its client's address and host in the other common headers.
    let (_, got) = world.forward("GET", "/public/x", &CLIENT_CLAIMS).await;
    assert_eq!(got.header_all("forwarded"), ["for=198.51.100.9"]);
    assert_eq!(got.header_all("x-real-ip"), ["198.51.100.9"]);
    assert_eq!(got.header_all("x-forwarded-host"), ["shop.example"]);
}

/// What a client (or a proxy in front) may say about the original request.
const CLIENT_CLAIMS: [&str; 3] = [
    "Forwarded: for=198.51.100.9",
    "X-Real-IP: 198.51.100.9",
    "X-Forwarded-Host: shop.example",
];

#[tokio::test]
async fn an_untrusted_client_cannot_state_its_address_or_host() {
    let world = world().await;
    let mut claims = CLIENT_CLAIMS.to_vec();
    claims.push("X_Real_IP: 198.51.100.9");
    let (_, got) = world.forward("GET", "/public/x", &claims).await;
    for name in ["forwarded", "x-real-ip", "x-forwarded-host"] {
        assert!(
            got.header_all(name).is_empty(),
            "{name} reached the upstream"
        );
    }
    assert!(
        !got.headers.iter().any(|(n, _)| n.contains('_')),
        "{:?}",
        got.headers
    );
}

/// Headers with which some framework or proxy takes another URL, method,
/// host, port, scheme or client address than the one tollgate decided on,
/// each sent in a spelling of its own (case, `_` for `-`).
const OVERRIDE_CLAIMS: [(&str, &str); 15] = [
    ("X-Original-URL: /admin/x", "x-original-url"),
    ("x-rewrite-url: /admin/x", "x-rewrite-url"),
    ("X-HTTP-Method-Override: DELETE", "x-http-method-override"),
    ("X_HTTP_Method: DELETE", "x-http-method"),
    ("X-Method-Override: DELETE", "x-method-override"),
    ("X-Forwarded-Prefix: /admin", "x-forwarded-prefix"),
    ("X-FORWARDED-PORT: 8443", "x-forwarded-port"),
    ("X-Forwarded-Server: evil.example", "x-forwarded-server"),
    ("X_Forwarded_Scheme: https", "x-forwarded-scheme"),
    ("x-forwarded-host: evil.example", "x-forwarded-host"),
    ("True-Client-IP: 198.51.100.9", "true-client-ip"),
    ("X-Client-IP: 198.51.100.9", "x-client-ip"),
    ("Client-IP: 198.51.100.9", "client-ip"),
    ("X-Original-Host: evil.example", "x-original-host"),
    ("x_host: evil.example", "x-host"),
];

fn has_header(got: &RecordedRequest, canon: &str) -> bool {
    got.headers
        .iter()
        .any(|(n, _)| n.to_ascii_lowercase().replace('_', "-") == canon)
}

#[tokio::test]
async fn an_untrusted_client_cannot_send_url_method_or_address_overrides() {
    let world = world().await;
    let claims: Vec<&str> = OVERRIDE_CLAIMS.iter().map(|(line, _)| *line).collect();
    let (_, got) = world.forward("GET", "/public/x", &claims).await;
    for (_, canon) in OVERRIDE_CLAIMS {
        assert!(!has_header(&got, canon), "{canon} reached the upstream");
    }
}

#[tokio::test]
async fn named_override_headers_pass_and_a_trusted_proxy_sends_them_all() {
    let world =
        world_with(TollgateOptions::new().toml(
            "[proxy]\npass_override_headers = [\"X-Forwarded-Prefix\", \"x_forwarded_port\"]",
        ))
        .await;
    let claims: Vec<&str> = OVERRIDE_CLAIMS.iter().map(|(line, _)| *line).collect();
    let (_, got) = world.forward("GET", "/public/x", &claims).await;
    for (_, canon) in OVERRIDE_CLAIMS {
        let passes = matches!(canon, "x-forwarded-prefix" | "x-forwarded-port");
        assert_eq!(has_header(&got, canon), passes, "{canon}");
    }

    let world =
        world_with(TollgateOptions::new().toml("[proxy]\ntrusted_proxies = [\"127.0.0.0/8\"]"))
            .await;
    let (_, got) = world.forward("GET", "/public/x", &claims).await;
    for (line, canon) in OVERRIDE_CLAIMS {
        if !line.contains('_') {
            assert!(
                has_header(&got, canon),
                "{canon} from a trusted proxy was dropped"
            );
        }
    }
}

#[tokio::test]
async fn with_semicolons_allowed_routes_match_segments_without_matrix_parameters() {
    const ADMIN_AND_LOOSE: &str = r#"
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
"#;
    let world = World::start_with_policy(
        TollgateOptions::new().toml("[proxy]\nallow_semicolon_in_path = true"),
        ADMIN_AND_LOOSE,
        &["tools:read"],
    )
    .await;
    // A servlet container dispatches this to /admin/y: the strict route
    // decides (the token lacks tools:write), and nothing is forwarded.
    world.echo.clear();
    let request = format!(
        "GET /admin;jsessionid=1/y HTTP/1.1\r\nHost: tollgate.test\r\n{}\r\nConnection: close\r\n\r\n",
        world.bearer()
    );
    let response = RawResponse::fetch(world.tollgate.proxy_addr(), &request).await;
    assert_eq!(response.status, 403, "{}", response.body_str());
    assert_eq!(world.echo.count(), 0, "forwarded past the strict route");
    // The loose route still serves its own paths, forwarded unchanged.
    let (_, got) = world.forward("GET", "/other;v=2/y", &[]).await;
    assert_eq!(got.target, "/other;v=2/y");
}
