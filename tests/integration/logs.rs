//! The access log (target `access`), the audit log (target `audit`) and
//! what must never be logged, read from a real tollgate's output.

use std::time::Duration;

use crate::common::*;

/// `logs-read`: `GET /api/v1/logs/**` to `app` with `logs:read`.
const LOGS_READ_ROUTE: &str = r#"
[[route]]
name = "logs-read"
methods = ["GET"]
path = "/api/v1/logs/**"
upstream = "app"
scope = "logs:read"
"#;

/// `tools-read`, `logs-read` and `status-public`, all to `app`.
fn policy() -> String {
    [APP_TOOLS_READ_ROUTE, LOGS_READ_ROUTE, APP_STATUS_ROUTE].concat()
}

/// The fields every access line carries.
const ACCESS_FIELDS: [&str; 11] = [
    "request_id",
    "method",
    "route",
    "builtin",
    "decision",
    "reason",
    "status",
    "organization_id",
    "client_id",
    "upstream",
    "latency_ms",
];

async fn start(upstream: &EchoUpstream, format: &str, filter: &str) -> Tollgate {
    Tollgate::start(
        TollgateOptions::new()
            .upstream("app", &[upstream.addr_string()])
            .policy("routes.toml", policy())
            .env("TOLLGATE_LOG_FORMAT", format)
            .log_filter(filter),
    )
    .await
}

/// A GET on the proxy listener with our own `x-request-id`; returns the status.
async fn get(tg: &Tollgate, path: &str, request_id: &str, bearer: Option<&str>) -> u16 {
    let mut request = tg
        .http()
        .get(tg.proxy_url(path))
        .header("x-request-id", request_id);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("proxy request")
        .status()
        .as_u16()
}

/// Every line of the process output, parsed as JSON; panics on one that is not.
fn json_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

fn access_lines(lines: &[Value], request_id: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["target"] == "access" && l["message"] == "request")
        .filter(|l| l["request_id"] == request_id)
        .cloned()
        .collect()
}

/// Waits until the access line of every id is written (it is written after
/// the response is sent), then returns exactly one line per id.
async fn access_lines_for(tg: &Tollgate, ids: &[&str]) -> Vec<Value> {
    eventually(
        Duration::from_secs(5),
        "every access line is written",
        || async {
            let lines = json_lines(&tg.logs());
            ids.iter().all(|id| !access_lines(&lines, id).is_empty())
        },
    )
    .await;
    let lines = json_lines(&tg.logs());
    ids.iter()
        .map(|id| {
            let mut found = access_lines(&lines, id);
            assert_eq!(found.len(), 1, "access lines for {id}: {found:?}");
            found.remove(0)
        })
        .collect()
}

#[tokio::test]
async fn every_proxied_request_writes_one_json_access_line_with_the_documented_fields() {
    let upstream = EchoUpstream::start();
    let tg = start(&upstream, "json", "info").await;
    let org = unique_id("org");
    let (_sa, client_id, secret) = tg
        .admin()
        .create_service_account(&org, &unique_id("sa"), &["tools:read"])
        .await;
    let (status, body) = tg.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().expect("token").to_string();

    assert_eq!(
        get(&tg, "/api/v1/tools/x", "log-allow", Some(&token)).await,
        200
    );
    assert_eq!(get(&tg, "/api/v1/tools/x", "log-missing", None).await, 401);
    assert_eq!(
        get(&tg, "/api/v1/logs/x", "log-scope", Some(&token)).await,
        403
    );
    assert_eq!(get(&tg, "/api/v1/status", "log-public", None).await, 200);
    assert_eq!(get(&tg, "/not/routed", "log-no-route", None).await, 404);
    let failing = tg
        .http()
        .get(tg.proxy_url("/api/v1/tools/x"))
        .header("x-request-id", "log-upstream-500")
        .header("x-echo-status", "503")
        .bearer_auth(&token)
        .send()
        .await
        .expect("proxy request");
    assert_eq!(failing.status(), StatusCode::SERVICE_UNAVAILABLE);

    let ids = [
        "log-allow",
        "log-missing",
        "log-public",
        "log-no-route",
        "log-upstream-500",
        "log-scope",
    ];
    let lines = access_lines_for(&tg, &ids).await;
    for line in &lines {
        assert_eq!(line["level"], "INFO", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        for field in ACCESS_FIELDS {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
        let latency = line["latency_ms"].as_f64().expect("latency_ms is a number");
        assert!((0.0..10_000.0).contains(&latency), "{line}");
        assert_eq!(line["method"], "GET");
    }
    let fields = |line: &Value| {
        [
            "route",
            "decision",
            "reason",
            "organization_id",
            "client_id",
            "upstream",
        ]
        .map(|f| line[f].as_str().unwrap_or("?").to_string())
    };
    let [allow, missing, public, no_route, failed, scope] = [0, 1, 2, 3, 4, 5].map(|i| &lines[i]);
    assert_eq!(
        fields(allow),
        [
            "tools-read",
            "allow",
            "ok",
            org.as_str(),
            client_id.as_str(),
            "app"
        ]
    );
    assert_eq!(allow["status"], 200);
    assert_eq!(
        fields(missing),
        ["tools-read", "deny", "missing_token", "-", "-", "-"]
    );
    assert_eq!(missing["status"], 401);
    assert_eq!(
        fields(public),
        ["status-public", "allow", "public", "-", "-", "app"]
    );
    assert_eq!(public["status"], 200);
    assert_eq!(fields(no_route), ["-", "deny", "no_route", "-", "-", "-"]);
    assert_eq!(no_route["status"], 404);
    assert_eq!(
        fields(failed),
        [
            "tools-read",
            "allow",
            "ok",
            org.as_str(),
            client_id.as_str(),
            "app"
        ]
    );
    assert_eq!(failed["status"], 503);
    // A denied request with a valid token names its caller.
    assert_eq!(
        fields(scope),
        [
            "logs-read",
            "deny",
            "insufficient_scope",
            org.as_str(),
            client_id.as_str(),
            "-"
        ]
    );
    assert_eq!(scope["status"], 403);
}

#[tokio::test]
async fn the_token_endpoint_is_logged_as_a_builtin_without_a_route() {
    let upstream = EchoUpstream::start();
    let tg = start(&upstream, "json", "info").await;
    let response = tg
        .http()
        .post(tg.proxy_url("/api/auth/oauth2/token"))
        .header("x-request-id", "log-token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=sa_x&client_secret=y")
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let line = &access_lines_for(&tg, &["log-token"]).await[0];
    assert_eq!(line["builtin"], "token");
    assert_eq!(line["route"], "-");
    assert_eq!(line["status"], 401);
    assert_eq!(
        line["reason"], "invalid_client",
        "the token endpoint's outcome"
    );
    assert_eq!(line["method"], "POST");
}

#[tokio::test]
async fn text_access_lines_read_as_key_value_pairs() {
    let upstream = EchoUpstream::start();
    let tg = start(&upstream, "text", "info").await;
    let org = unique_id("org");
    let (_sa, token) = tg.account_with_token(&org, &["tools:read"]).await;

    assert_eq!(
        get(&tg, "/api/v1/tools/x", "log-text", Some(&token)).await,
        200
    );

    let access_line = || {
        tg.logs()
            .lines()
            .find(|l| l.contains("request_id=log-text"))
            .map(str::to_string)
    };
    eventually(
        Duration::from_secs(5),
        "the access line is written",
        || async { access_line().is_some() },
    )
    .await;
    let line = access_line().expect("the access line");
    assert!(!line.trim_start().starts_with('{'), "not text: {line}");
    for part in [
        " INFO ",
        "access:",
        "route=tools-read",
        "decision=allow",
        "reason=ok",
        "status=200",
        &format!("organization_id={org}"),
        "client_id=sa_",
        "upstream=app",
        "latency_ms=",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
}

#[tokio::test]
async fn audit_events_are_logged_at_target_audit() {
    let upstream = EchoUpstream::start();
    let tg = start(&upstream, "json", "info").await;
    let org = unique_id("org");
    let (sa, client_id, secret) = tg
        .admin()
        .create_service_account(&org, &unique_id("sa"), &["tools:read"])
        .await;
    let sa_id = sa["id"].as_str().expect("sa id");
    let (status, _) = tg.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = tg
        .issue_token("sa_NoSuchClientNoSuchClient00", "guess", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let find = |lines: &[Value], action: &str| -> Option<Value> {
        lines
            .iter()
            .find(|l| l["target"] == "audit" && l["action"] == action)
            .cloned()
    };
    eventually(Duration::from_secs(5), "three audit lines", || async {
        let lines = json_lines(&tg.logs());
        [
            "service_account.create",
            "token.issue",
            "token.issue_failed",
        ]
        .iter()
        .all(|a| find(&lines, a).is_some())
    })
    .await;
    let lines = json_lines(&tg.logs());

    let created = find(&lines, "service_account.create").expect("create");
    assert_eq!(created["actor"], "admin:env");
    assert_eq!(created["organization_id"], org.as_str());
    assert_eq!(created["outcome"], "success");
    let issued = find(&lines, "token.issue").expect("issue");
    assert_eq!(issued["actor"], client_id.as_str());
    assert_eq!(issued["organization_id"], org.as_str());
    assert_eq!(issued["target_id"], sa_id);
    let failed = find(&lines, "token.issue_failed").expect("failed");
    assert_eq!(failed["actor"], "sa_NoSuchClientNoSuchClient00");
    assert_eq!(failed["outcome"], "failure");
    assert!(
        failed["organization_id"].is_null() || failed["organization_id"] == "-",
        "an unknown client has no organization: {failed}"
    );

    // A body over the limit is refused unread, and logged like any failure.
    let (status, _, _) = tg
        .token_request(
            Some((&client_id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("padding", &"a".repeat(17 * 1024)),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    eventually(
        Duration::from_secs(5),
        "the oversized request's audit line",
        || async {
            json_lines(&tg.logs())
                .iter()
                .any(|l| l["action"] == "token.issue_failed" && l["reason"] == "invalid_request")
        },
    )
    .await;
}

#[tokio::test]
async fn no_token_secret_or_admin_key_used_during_a_run_appears_in_the_logs_or_metrics() {
    let upstream = EchoUpstream::start();
    // Everything at debug, pingora included: secrets must not appear at any level.
    let tg = start(&upstream, "text", "debug").await;
    let admin = tg.admin();
    let org = unique_id("org");
    let (sa, client_id, first_secret) = admin
        .create_service_account(&org, &unique_id("sa"), &["tools:read"])
        .await;
    let sa_id = sa["id"].as_str().expect("sa id").to_string();
    let base = format!("/v1/organizations/{org}/service-accounts/{sa_id}");

    let mut secrets = vec![tg.admin_key().to_string(), first_secret.clone()];
    let issue = |client: String, secret: String| {
        let tg = &tg;
        async move {
            let (status, body) = tg.issue_token(&client, &secret, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["access_token"].as_str().expect("token").to_string()
        }
    };
    let first_token = issue(client_id.clone(), first_secret.clone()).await;

    // A rotation with a grace period: both secrets work for a while.
    let (status, rotated) = admin
        .post(
            &format!("{base}/rotate-secret"),
            json!({"grace_seconds": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second_secret = rotated["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let second_token = issue(client_id.clone(), second_secret.clone()).await;
    let grace_token = issue(client_id.clone(), first_secret.clone()).await;

    // A second credential, used with client_secret_post.
    let (status, cred) = admin
        .post(&format!("{base}/credentials"), json!({"name": "second"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cred}");
    let cred_client = cred["client_id"].as_str().expect("client_id").to_string();
    let cred_secret = cred["client_secret"].as_str().expect("secret").to_string();
    let (status, _, body) = tg
        .token_request(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &cred_client),
                ("client_secret", &cred_secret),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let post_token = body["access_token"].as_str().expect("token").to_string();

    // Tokens used every way a request can carry one, allowed and denied.
    let wrong_secret = "tg_sk_wrong-secret-that-must-not-be-logged";
    let bogus_token = "tg_at_bogus-token-that-must-not-be-logged-000000";
    assert_eq!(
        get(&tg, "/api/v1/tools/x", "leak-1", Some(&first_token)).await,
        200
    );
    assert_eq!(
        get(&tg, "/api/v1/status", "leak-2", Some(&second_token)).await,
        200
    );
    assert_eq!(
        get(&tg, "/api/v1/tools/x", "leak-3", Some(bogus_token)).await,
        401
    );
    assert_eq!(
        get(
            &tg,
            &format!("/api/v1/tools/x?access_token={grace_token}"),
            "leak-4",
            None
        )
        .await,
        400
    );
    let whoami = tg
        .proxy_request(
            Method::GET,
            "/api/v1/service-account/whoami",
            Some(&post_token),
        )
        .await;
    assert_eq!(whoami.0, StatusCode::OK);
    let (status, _) = tg.issue_token(&client_id, wrong_secret, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let revoke_body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", first_token.as_str())])
        .finish();
    let revoked = tg
        .http()
        .post(tg.proxy_url("/api/auth/oauth2/revoke"))
        .basic_auth(&client_id, Some(&second_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(revoke_body)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);
    let (status, _) = admin
        .post(&format!("{base}/revoke-tokens"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    secrets.extend([
        second_secret,
        cred_secret,
        first_token,
        second_token,
        grace_token,
        post_token,
        wrong_secret.to_string(),
        bogus_token.to_string(),
    ]);
    // The access line of the last proxied request is written after its
    // response; wait for it so the check covers the whole run.
    eventually(Duration::from_secs(5), "the last access line", || async {
        tg.logs().contains("request_id=leak-4")
    })
    .await;
    let logs = tg.logs();
    let metrics = tg.metrics().await;
    assert!(
        logs.contains("audit event"),
        "no audit lines at all:\n{logs}"
    );
    assert!(logs.contains(" DEBUG "), "debug logging is not on:\n{logs}");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the logs contain {secret:?}:\n{logs}"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "/metrics contains {secret:?}"
        );
    }
}

#[tokio::test]
async fn the_error_line_for_a_failed_upstream_names_no_path_or_query() {
    let tg = Tollgate::start(
        TollgateOptions::new()
            .upstream("app", &[dead_addr()])
            .policy("routes.toml", policy())
            .env("TOLLGATE_LOG_FORMAT", "text"),
    )
    .await;
    assert_eq!(
        get(
            &tg,
            "/api/v1/status?api_key=query-secret-marker",
            "dead-1",
            None
        )
        .await,
        502
    );
    // The access line is written after the error line.
    eventually(
        Duration::from_secs(5),
        "the access line is written",
        || async { tg.logs().contains("access: request request_id=dead-1") },
    )
    .await;
    let logs = tg.logs();
    assert!(
        logs.lines().any(|l| l.contains("proxying failed")
            && l.contains("request_id=dead-1")
            && l.contains("error_type=ConnectRefused")),
        "the error line names the request id and what failed: {logs}"
    );
    assert!(!logs.contains("query-secret-marker"), "{logs}");
    assert!(!logs.contains("/api/v1/status"), "{logs}");
}

/// Malformed requests carrying an admin key or a bearer token, to every
/// listener, with everything logged down to TRACE (pingora included): the
/// secret reaches neither stdout nor stderr. pingora's own HTTP server used
/// to log an unreadable head whole at ERROR, and every head at TRACE.
#[tokio::test]
async fn a_malformed_request_carrying_a_secret_logs_no_secret_at_trace() {
    let upstream = EchoUpstream::start();
    let tg = start(&upstream, "text", "trace").await;
    let bearer = "tg_at_malformed-request-secret-that-must-not-be-logged";
    let requests = [
        // A field name with a space: httparse refuses the head.
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\nAuthorization: Bearer {bearer}\r\nbad field: 1\r\n\r\n"),
        // A request line that is not one.
        format!("GET\x01 / HTTP/1.1\r\nAuthorization: Bearer {bearer}\r\n\r\n"),
    ];
    for addr in [tg.admin_addr(), tg.metrics_addr(), tg.proxy_addr()] {
        for (i, request) in requests.iter().enumerate() {
            let answer = raw_http_until_close(addr, request).await;
            let text = String::from_utf8_lossy(&answer);
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 400 "),
                "{addr} request {i}: {text:?}"
            );
        }
        // A well-formed admin request with the admin key, at TRACE too.
        let key = tg.admin_key();
        let _ = raw_http_until_close(
            addr,
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\nAuthorization: Bearer {key}\r\nconnection: close\r\n\r\n"),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (logs, stdout) = (tg.logs(), tg.stdout());
    assert!(
        !logs.is_empty() || !stdout.is_empty(),
        "something was logged at TRACE"
    );
    for secret in [bearer, tg.admin_key()] {
        assert!(!logs.contains(secret), "a secret in stderr:\n{logs}");
        assert!(!stdout.contains(secret), "a secret in stdout:\n{stdout}");
    }
}
