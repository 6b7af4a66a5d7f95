//! Decision-service mode (docs/decisions.md) against the real binary: the
//! decision listener answers check requests shaped as Traefik's ForwardAuth
//! and Envoy's HTTP ext_authz send them with the proxy's own decision — 200
//! and the identity headers, or the proxy's status, JSON body and
//! `WWW-Authenticate` — reads only its configured convention, fails closed
//! (400 on a check request that does not describe the original request, 503
//! while the store is down), and counts its decisions apart. `grpc` covers
//! Envoy's gRPC ext_authz, `nginx` a real nginx with `auth_request`.

mod grpc;
mod http1;
mod nginx;

use std::net::SocketAddr;

use crate::common::*;

/// A route whose scope the world's account lacks: with [`WORKFLOW_ROUTES`]
/// and [`TOOLS_ROUTE`], the policy of [`Decisions`].
const LOGS_ROUTE: &str = r#"
[[route]]
name = "logs"
path = "/api/v1/logs/**"
upstream = "backend"
scope = "logs:read"
"#;

/// The identity headers an allowed workspace request carries.
pub(crate) const IDENTITY: [&str; 7] = [
    "x-tollgate-organization-id",
    "x-tollgate-client-id",
    "x-tollgate-service-account-id",
    "x-tollgate-scopes",
    "x-tollgate-workspace-id",
    "x-tollgate-workspace-role",
    "x-tollgate-environment-id",
];

/// The routes: public, workspace-member, scope-only and one whose scope
/// the world's account lacks.
pub(crate) fn policy() -> String {
    [WORKFLOW_ROUTES, TOOLS_ROUTE, LOGS_ROUTE].concat()
}

/// The world's account's scopes.
pub(crate) const SCOPES: &[&str] = &["workflows:write", "tools:read"];

/// A [`World`] (account with `workflows:write tools:read`, member of the
/// workspace) whose tollgate also runs the decision listener with
/// `[decisions]` as given.
pub(crate) struct Decisions {
    pub world: World,
    pub addr: SocketAddr,
}

impl Decisions {
    pub(crate) async fn start(decisions_toml: &str, extra: &str) -> Decisions {
        Decisions::start_with(TollgateOptions::new(), decisions_toml, extra).await
    }

    pub(crate) async fn start_with(
        opts: TollgateOptions,
        decisions_toml: &str,
        extra: &str,
    ) -> Decisions {
        Decisions::start_server(opts, "", decisions_toml, extra).await
    }

    /// As [`Decisions::start_with`], with these lines in `[server]` too.
    pub(crate) async fn start_server(
        opts: TollgateOptions,
        server_toml: &str,
        decisions_toml: &str,
        extra: &str,
    ) -> Decisions {
        let port = free_port();
        let opts = opts.toml(format!(
            "[server]\ndecisions_listen = \"127.0.0.1:{port}\"\n{server_toml}\n[decisions]\n{decisions_toml}\n{extra}"
        ));
        let world = World::start_with_policy(opts, &policy(), SCOPES).await;
        Decisions {
            world,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// A check request: the request line, `Host`, these header lines and
    /// `Connection: close`.
    pub(crate) async fn check(&self, request_line: &str, lines: &[String]) -> RawResponse {
        send(self.addr, request_line, "tollgate-decisions", lines).await
    }

    /// As Traefik's ForwardAuth asks about `method target` (a GET to the
    /// configured address, the original in `X-Forwarded-*`), with these
    /// extra lines (the original request's headers).
    pub(crate) async fn traefik(
        &self,
        method: &str,
        target: &str,
        lines: &[String],
    ) -> RawResponse {
        let mut all = vec![
            "User-Agent: Go-http-client/1.1".to_string(),
            "X-Forwarded-For: 192.0.2.7".to_string(),
            "X-Forwarded-Host: api.example.com".to_string(),
            format!("X-Forwarded-Method: {method}"),
            "X-Forwarded-Port: 443".to_string(),
            "X-Forwarded-Proto: https".to_string(),
            "X-Forwarded-Server: traefik-1".to_string(),
            format!("X-Forwarded-Uri: {target}"),
            "X-Real-Ip: 192.0.2.7".to_string(),
            "Accept-Encoding: gzip".to_string(),
        ];
        all.extend_from_slice(lines);
        self.check("GET /auth HTTP/1.1", &all).await
    }

    /// The same original request sent to the proxy listener.
    pub(crate) async fn via_proxy(
        &self,
        method: &str,
        target: &str,
        lines: &[String],
    ) -> RawResponse {
        let line = format!("{method} {target} HTTP/1.1");
        send(
            self.world.tollgate.proxy_addr(),
            &line,
            "api.example.com",
            lines,
        )
        .await
    }

    pub(crate) fn bearer(&self) -> Vec<String> {
        vec![self.world.bearer()]
    }
}

/// One HTTP/1.1 request: the request line, `Host`, these header lines and
/// `Connection: close`.
pub(crate) async fn send(
    addr: SocketAddr,
    request_line: &str,
    host: &str,
    lines: &[String],
) -> RawResponse {
    let mut req = format!("{request_line}\r\nHost: {host}\r\n");
    for l in lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    RawResponse::fetch(addr, req).await
}

/// The original requests of every denial kind, with the reason's `error`.
pub(crate) fn denials(d: &Decisions) -> Vec<(&'static str, String, Vec<String>, &'static str)> {
    let env = &d.world.env;
    vec![
        ("GET", "/api/v1/tools/x".into(), vec![], "missing_token"),
        (
            "GET",
            "/api/v1/tools/x".into(),
            vec!["Authorization: Bearer tg_at_not-a-token".into()],
            "invalid_token",
        ),
        (
            "GET",
            "/api/v1/logs/x".into(),
            d.bearer(),
            "insufficient_scope",
        ),
        (
            "GET",
            "/api/v1/workflows/x?environmentId=env-of-nobody".into(),
            d.bearer(),
            "workspace_access_denied",
        ),
        (
            "GET",
            "/api/v1/workflows/x".into(),
            d.bearer(),
            "invalid_request",
        ),
        (
            "GET",
            "/api/v1/tools/a%2Fb".into(),
            d.bearer(),
            "invalid_request",
        ),
        (
            "GET",
            format!("/api/v1/tools/x?access_token={}", d.world.token),
            vec![],
            "invalid_request",
        ),
        (
            "GET",
            format!("/nowhere?environmentId={env}"),
            d.bearer(),
            "not_found",
        ),
    ]
}

/// A Traefik check answers every denial exactly as the proxy listener
/// answers the same request: status, JSON body, `WWW-Authenticate`,
/// `Cache-Control`; and the denied requests reach no upstream.
#[tokio::test]
async fn traefik_denials_are_the_proxys() {
    let d = Decisions::start("convention = \"traefik\"", "").await;
    for (method, target, lines, error) in denials(&d) {
        let got = d.traefik(method, &target, &lines).await;
        let want = d.via_proxy(method, &target, &lines).await;
        assert_eq!(
            got.status,
            want.status,
            "{error} {target}: {}",
            got.body_str()
        );
        assert!(got.status >= 400, "{target} was allowed");
        assert_eq!(got.json()["error"], error, "{target}");
        assert_eq!(got.json(), want.json(), "{target}");
        assert_eq!(
            got.header("www-authenticate"),
            want.header("www-authenticate"),
            "{target}"
        );
        assert_eq!(got.header("cache-control"), Some("no-store"), "{target}");
        for name in IDENTITY {
            assert!(got.header(name).is_none(), "{target} answered {name}");
        }
    }
    let scope = d.traefik("GET", "/api/v1/logs/x", &d.bearer()).await;
    assert_eq!(
        scope.header("www-authenticate"),
        Some(format!("{REALM}, error=\"insufficient_scope\", scope=\"logs:read\"").as_str())
    );
    let missing = d.traefik("GET", "/api/v1/tools/x", &[]).await;
    assert_eq!(missing.header("www-authenticate"), Some(REALM));
    assert_eq!(d.world.echo.count(), 0, "a denial was forwarded");
}

/// An allowed Traefik check: 200 with the identity headers the proxy
/// injects upstream, and nothing is forwarded by tollgate itself. A public
/// route is allowed with no identity.
#[tokio::test]
async fn traefik_allows_with_the_identity_headers() {
    let d = Decisions::start("convention = \"traefik\"", "").await;
    let target = format!("/api/v1/workflows/run?environmentId={}", d.world.env);
    let got = d.traefik("GET", &target, &d.bearer()).await;
    assert_eq!(got.status, 200, "{}", got.body_str());
    let proxied = d.via_proxy("GET", &target, &d.bearer()).await;
    assert_eq!(proxied.status, 200);
    let upstream = d.world.echo.last().expect("the proxy forwarded");
    for name in IDENTITY {
        assert_eq!(got.header(name), upstream.header(name), "{name}");
        assert!(got.header(name).is_some(), "{name} missing");
    }
    assert_eq!(
        got.header("x-tollgate-organization-id"),
        Some(d.world.org.as_str())
    );
    assert_eq!(got.header("x-tollgate-workspace-role"), Some("member"));
    assert_eq!(d.world.echo.count(), 1, "the decision listener forwarded");

    // A write with the same token: the method comes from X-Forwarded-Method.
    let write = d.traefik("DELETE", &target, &d.bearer()).await;
    assert_eq!(write.status, 200, "{}", write.body_str());
    let public = d.traefik("POST", "/public/a", &[]).await;
    assert_eq!(public.status, 200);
    assert!(public.header("x-tollgate-client-id").is_none());
    // Dot segments are resolved before matching, as on the proxy.
    let dots = d.traefik("GET", "/public/../api/v1/tools/x", &[]).await;
    assert_eq!(dots.status, 401);
}

/// The convention is the configured one, never guessed: nginx's headers on
/// a Traefik listener, a missing or repeated `X-Forwarded-Uri`, or no
/// method, is 400 `invalid_request` — never a decision on the check
/// request's own target.
#[tokio::test]
async fn a_check_request_outside_its_convention_is_refused() {
    let d = Decisions::start("convention = \"traefik\"", "").await;
    let public = "/public/a";
    let nginx_shaped = d
        .check(
            &format!("GET {public} HTTP/1.1"),
            &[
                "X-Original-Method: GET".into(),
                format!("X-Original-URI: {public}"),
            ],
        )
        .await;
    assert_eq!(nginx_shaped.status, 400, "{}", nginx_shaped.body_str());
    assert_eq!(nginx_shaped.json()["error"], "invalid_request");
    let repeated = d
        .check(
            "GET /auth HTTP/1.1",
            &[
                "X-Forwarded-Method: GET".into(),
                format!("X-Forwarded-Uri: {public}"),
                "X-Forwarded-Uri: /api/v1/tools/x".into(),
            ],
        )
        .await;
    assert_eq!(repeated.status, 400);
    let no_method = d
        .check(
            "GET /auth HTTP/1.1",
            &[format!("X-Forwarded-Uri: {public}")],
        )
        .await;
    assert_eq!(no_method.status, 400);
    let fine = d.traefik("GET", public, &[]).await;
    assert_eq!(fine.status, 200);
}

/// Envoy's HTTP ext_authz: the original method, the original path after
/// `path_prefix`. Allowed: the identity headers, and
/// `x-envoy-auth-headers-to-remove` naming the client-sent identity headers
/// the answer does not overwrite and `Authorization`.
#[tokio::test]
async fn envoy_http_checks_the_path_after_the_prefix() {
    let d = Decisions::start("convention = \"envoy\"\npath_prefix = \"/authz\"", "").await;
    let env = &d.world.env;
    let envoy = |method: &str, path: String, extra: Vec<String>| {
        let mut lines = vec![
            "content-length: 0".to_string(),
            "x-forwarded-proto: https".to_string(),
            "x-request-id: 3f2b9a60-6d3b-4a5e-9d8c-0c1d2e3f4a5b".to_string(),
            "x-envoy-expected-rq-timeout-ms: 200".to_string(),
            "x-envoy-internal: true".to_string(),
        ];
        lines.extend(extra);
        (format!("{method} /authz{path} HTTP/1.1"), lines)
    };
    let mut spoofed = d.bearer();
    spoofed.push("x_tollgate_organization_id: forged".into());
    spoofed.push("x-tollgate-workspace-role: admin".into());
    let (line, lines) = envoy("GET", "/api/v1/tools/x".into(), spoofed);
    let ok = d.check(&line, &lines).await;
    assert_eq!(ok.status, 200, "{}", ok.body_str());
    assert_eq!(
        ok.header("x-tollgate-organization-id"),
        Some(d.world.org.as_str())
    );
    let remove = ok
        .header("x-envoy-auth-headers-to-remove")
        .unwrap_or_default();
    let remove: Vec<&str> = remove.split(", ").collect();
    for name in [
        "authorization",
        "x_tollgate_organization_id",
        "x-tollgate-workspace-role",
    ] {
        assert!(remove.contains(&name), "{name} not removed: {remove:?}");
    }
    // The method is the original one: a write to a read route's path.
    let target = format!("/api/v1/workflows/x?environmentId={env}");
    let (line, lines) = envoy("POST", target.clone(), d.bearer());
    assert_eq!(d.check(&line, &lines).await.status, 200);
    let (line, lines) = envoy("GET", "/api/v1/logs/x".into(), d.bearer());
    let denied = d.check(&line, &lines).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["error"], "insufficient_scope");
    assert!(denied.header("x-envoy-auth-headers-to-remove").is_none());
    // A path outside the prefix describes no original request.
    let outside = d.check("GET /api/v1/tools/x HTTP/1.1", &d.bearer()).await;
    assert_eq!(outside.status, 400);
    assert_eq!(outside.json()["error"], "invalid_request");
}

/// The store being down fails closed: 503 `temporarily_unavailable` with
/// `Retry-After`, as on the proxy.
#[tokio::test]
async fn a_store_outage_answers_503() {
    let redis = PrivateRedis::start();
    let d = Decisions::start_with(
        TollgateOptions::new().redis_url(redis.url()),
        "convention = \"traefik\"",
        "[cache]\nttl_ms = 0\n[store]\ntimeout_ms = 1000",
    )
    .await;
    assert_eq!(
        d.traefik("GET", "/api/v1/tools/x", &d.bearer())
            .await
            .status,
        200
    );
    redis.stop();
    let down = d.traefik("GET", "/api/v1/tools/x", &d.bearer()).await;
    assert_eq!(down.status, 503, "{}", down.body_str());
    assert_eq!(down.json()["error"], "temporarily_unavailable");
    assert!(down.header("retry-after").is_some());
    assert!(down.header("x-tollgate-organization-id").is_none());
    // Public routes need no store.
    assert_eq!(d.traefik("GET", "/public/x", &[]).await.status, 200);
}

/// Decisions of this listener are counted in
/// `tollgate_decision_service_total{listener="decisions",…}`, not in the
/// proxy's `tollgate_authz_decisions_total`.
#[tokio::test]
async fn decisions_are_counted_apart_from_the_proxys() {
    let d = Decisions::start("convention = \"traefik\"", "").await;
    let before = d.world.tollgate.metrics().await;
    let series = |route: &'static str, decision: &'static str, reason: &'static str| {
        vec![
            ("listener", "decisions"),
            ("route", route),
            ("decision", decision),
            ("reason", reason),
        ]
    };
    assert_eq!(
        metric_value(
            &before,
            "tollgate_decision_service_total",
            &series("-", "deny", "no_route")
        ),
        Some(0.0)
    );
    d.traefik("GET", "/api/v1/tools/x", &d.bearer()).await;
    d.traefik("GET", "/api/v1/tools/x", &[]).await;
    d.traefik("GET", "/nowhere", &[]).await;
    d.check("GET /auth HTTP/1.1", &[]).await;
    let after = d.world.tollgate.metrics().await;
    let count = |labels: Vec<(&str, &str)>| {
        metric_value(&after, "tollgate_decision_service_total", &labels).unwrap_or(0.0)
    };
    assert_eq!(count(series("tools", "allow", "ok")), 1.0);
    assert_eq!(count(series("tools", "deny", "missing_token")), 1.0);
    assert_eq!(count(series("-", "deny", "no_route")), 1.0);
    assert_eq!(count(series("-", "deny", "invalid_request")), 1.0);
    let histogram = metric_value(
        &after,
        "tollgate_decision_service_duration_seconds_count",
        &[("listener", "decisions")],
    );
    assert_eq!(histogram, Some(4.0));
    let proxy = metric_value(
        &after,
        "tollgate_authz_decisions_total",
        &[("route", "tools"), ("decision", "allow"), ("reason", "ok")],
    );
    assert!(proxy.unwrap_or(0.0) == 0.0, "counted as a proxy decision");
}

/// A token whose account checks every request's source
/// (`ip_allowlist_on_requests`) is refused by the decision listener, whose
/// peer is the ingress, while the proxy listener admits it from an allowed
/// source: the decision listener fails closed rather than skip the check.
#[tokio::test]
async fn a_token_checked_per_request_by_source_is_refused_here() {
    let d = Decisions::start("convention = \"traefik\"", "").await;
    let (t, org) = (&d.world.tollgate, &d.world.org);
    let admin = t.admin();
    let (sa, client_id, secret) = admin
        .create_service_account(org, &unique_id("sa"), &["tools:read"])
        .await;
    let sa_id = sa["id"].as_str().expect("sa id");
    let (status, body) = admin
        .patch(
            &format!("{}/service-accounts/{sa_id}", org_path(org)),
            json!({"ip_allowlist": ["0.0.0.0/0", "::/0"], "ip_allowlist_on_requests": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = t.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bearer = vec![format!(
        "Authorization: Bearer {}",
        body["access_token"].as_str().expect("token")
    )];
    let proxied = d.via_proxy("GET", "/api/v1/tools/x", &bearer).await;
    assert_eq!(proxied.status, 200, "{}", proxied.body_str());
    let got = d.traefik("GET", "/api/v1/tools/x", &bearer).await;
    assert_eq!(got.status, 403, "{}", got.body_str());
    assert!(
        got.body_str().contains("ip_not_allowed"),
        "{}",
        got.body_str()
    );
    assert!(got.header("x-tollgate-client-id").is_none());
}
