//! Rate limits on routes and quotas on service accounts (docs/limits.md):
//! the request over a limit is answered 429 with `Retry-After`,
//! `RateLimit-Policy` and `RateLimit` and never reaches the upstream; a
//! report-mode limit forwards and records; counters are shared by the
//! instances on one Redis (exact per window); limits fail closed (503) or,
//! when configured, open while the store is down.

use std::time::Duration;

use crate::common::*;

/// A route limited to `requests` per hour by `by`, another without a limit,
/// and a public one limited by source.
fn policy(requests: u64, by: &str, mode: &str) -> String {
    format!(
        r#"
[[route]]
name = "tools-limited"
methods = ["GET"]
path = "/api/v1/tools/**"
upstream = "backend"
scope = "tools:read"
rate_limit = {{ requests = {requests}, per = "1h", by = "{by}", mode = "{mode}" }}

[[route]]
name = "logs-free"
methods = ["GET"]
path = "/api/v1/logs/**"
upstream = "backend"
scope = "logs:read"

[[route]]
name = "status"
methods = ["GET"]
path = "/api/v1/status"
upstream = "backend"
auth = "none"
rate_limit = {{ requests = {requests}, per = "1h", by = "source" }}
"#
    )
}

/// Waits out the last seconds of an hour: the limits in these tests count
/// per clock hour, and a test must not straddle two.
async fn away_from_the_hour_edge() {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let left = 3600 - now % 3600;
    if left < 20 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

async fn start(opts: TollgateOptions, echo: &EchoUpstream, policy: &str) -> Tollgate {
    Tollgate::start(
        opts.policy("routes.toml", policy)
            .upstream("backend", &[echo.addr_string()]),
    )
    .await
}

async fn tools(t: &Tollgate, token: &str) -> (StatusCode, HeaderMap, Value) {
    t.proxy_request(Method::GET, "/api/v1/tools/x", Some(token))
        .await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// `limit` requests pass, the next is a 429 with every header, and the
/// upstream saw only the `limit`.
async fn the_request_over_the_limit_is_refused(opts: TollgateOptions) {
    away_from_the_hour_edge().await;
    let echo = EchoUpstream::start();
    let t = start(opts, &echo, &policy(3, "service_account", "enforce")).await;
    let org = unique_id("org");
    let (_, token) = t.account_with_token(&org, &["tools:read"]).await;
    for i in 0..3 {
        let (status, _, body) = tools(&t, &token).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
    }
    let (status, headers, body) = tools(&t, &token).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    assert_eq!(header(&headers, "ratelimit-policy"), "\"rate\";q=3;w=3600");
    let retry: u64 = header(&headers, "retry-after").parse().expect("seconds");
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(
        header(&headers, "ratelimit"),
        format!("\"rate\";r=0;t={retry}")
    );
    assert_eq!(echo.count(), 3, "the refused request reached the upstream");

    // Another account has its own counter; a route without a limit is not
    // counted at all.
    let (_, other) = t
        .account_with_token(&org, &["tools:read", "logs:read"])
        .await;
    assert_eq!(tools(&t, &other).await.0, StatusCode::OK);
    for _ in 0..5 {
        let (status, _, _) = t
            .proxy_request(Method::GET, "/api/v1/logs/x", Some(&other))
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let metrics = t.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "tollgate_authz_decisions_total",
            &[
                ("route", "tools-limited"),
                ("decision", "deny"),
                ("reason", "rate_limited")
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "tollgate_rate_limited_total",
            &[("route", "tools-limited"), ("mode", "enforce")]
        ),
        Some(1.0)
    );
    let log = t.logs();
    let access = |outcome: &str, status: &str| {
        log.lines().any(|l| {
            l.contains("access")
                && l.contains(&format!("limit={outcome}"))
                && l.contains(&format!("status={status}"))
        })
    };
    assert!(
        access("rate_limited", "429") && access("ok", "200"),
        "no access line with the limit outcome:\n{log}"
    );
    assert!(
        !log.contains(&token) && !log.contains(&other),
        "a token in the log"
    );
}

#[tokio::test]
async fn the_request_over_a_route_limit_is_refused_with_429_memory() {
    the_request_over_the_limit_is_refused(TollgateOptions::new().memory()).await;
}

#[tokio::test]
async fn the_request_over_a_route_limit_is_refused_with_429_redis() {
    the_request_over_the_limit_is_refused(TollgateOptions::new()).await;
}

#[tokio::test]
async fn a_limit_by_organization_is_shared_and_by_client_is_not() {
    away_from_the_hour_edge().await;
    let echo = EchoUpstream::start();
    let t = start(
        TollgateOptions::new(),
        &echo,
        &policy(2, "organization", "enforce"),
    )
    .await;
    let org = unique_id("org");
    let (_, a) = t.account_with_token(&org, &["tools:read"]).await;
    let (_, b) = t.account_with_token(&org, &["tools:read"]).await;
    assert_eq!(tools(&t, &a).await.0, StatusCode::OK);
    assert_eq!(tools(&t, &b).await.0, StatusCode::OK);
    assert_eq!(tools(&t, &a).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(tools(&t, &b).await.0, StatusCode::TOO_MANY_REQUESTS);
    // Another organization is counted apart.
    let (_, c) = t
        .account_with_token(&unique_id("org"), &["tools:read"])
        .await;
    assert_eq!(tools(&t, &c).await.0, StatusCode::OK);

    let t2 = start(
        TollgateOptions::new(),
        &echo,
        &policy(1, "client", "enforce"),
    )
    .await;
    let (_, x) = t2.account_with_token(&org, &["tools:read"]).await;
    let (_, y) = t2.account_with_token(&org, &["tools:read"]).await;
    assert_eq!(tools(&t2, &x).await.0, StatusCode::OK);
    assert_eq!(tools(&t2, &y).await.0, StatusCode::OK);
    assert_eq!(tools(&t2, &x).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_report_mode_limit_forwards_and_records() {
    away_from_the_hour_edge().await;
    let echo = EchoUpstream::start();
    let t = start(
        TollgateOptions::new().memory(),
        &echo,
        &policy(1, "service_account", "report"),
    )
    .await;
    let (_, token) = t
        .account_with_token(&unique_id("org"), &["tools:read"])
        .await;
    for _ in 0..3 {
        assert_eq!(tools(&t, &token).await.0, StatusCode::OK);
    }
    assert_eq!(echo.count(), 3);
    let metrics = t.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "tollgate_authz_decisions_total",
            &[
                ("route", "tools-limited"),
                ("decision", "report_deny"),
                ("reason", "rate_limited")
            ]
        ),
        Some(2.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_public_route_is_limited_by_source() {
    away_from_the_hour_edge().await;
    let echo = EchoUpstream::start();
    let t = start(
        TollgateOptions::new(),
        &echo,
        &policy(2, "service_account", "enforce"),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            t.proxy_request(Method::GET, "/api/v1/status", None).await.0,
            StatusCode::OK
        );
    }
    let (status, headers, body) = t.proxy_request(Method::GET, "/api/v1/status", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(header(&headers, "ratelimit-policy"), "\"rate\";q=2;w=3600");
}

/// Two instances on one Redis admit exactly the limit between them, and
/// ask Redis far less often than once a request.
#[tokio::test]
async fn two_instances_sharing_redis_admit_no_more_than_the_limit() {
    away_from_the_hour_edge().await;
    let echo = EchoUpstream::start();
    let prefix = unique_prefix();
    let opts = || TollgateOptions::new().key_prefix(prefix.clone());
    let limit = 200;
    let a = start(opts(), &echo, &policy(limit, "service_account", "enforce")).await;
    let b = start(opts(), &echo, &policy(limit, "service_account", "enforce")).await;
    let (_, token) = a
        .account_with_token(&unique_id("org"), &["tools:read"])
        .await;
    let mut admitted = 0u64;
    for i in 0..300 {
        let t = if i % 2 == 0 { &a } else { &b };
        match tools(t, &token).await.0 {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        admitted <= limit,
        "{admitted} admitted over a limit of {limit}"
    );
    // Units leased but unspent on the other instance are the only loss:
    // at most its last lease (an eighth of what was left, at least 1).
    assert!(
        admitted >= limit - 2 * (limit / 8),
        "only {admitted} admitted"
    );
    assert_eq!(echo.count() as u64, admitted);
    let leases = |text: &str| -> f64 {
        metric_samples(text, "tollgate_limit_leases_total")
            .iter()
            .filter(|(labels, _)| labels.iter().any(|(k, v)| k == "kind" && v == "rate"))
            .map(|(_, v)| v)
            .sum()
    };
    let round_trips = leases(&a.metrics().await) + leases(&b.metrics().await);
    assert!(
        round_trips < 100.0,
        "{round_trips} lease round trips for 300 requests"
    );
}

const PUBLIC_ONLY: &str = r#"
[[route]]
name = "status"
methods = ["GET"]
path = "/api/v1/status"
upstream = "backend"
auth = "none"
rate_limit = { requests = 100, per = "1m", by = "source" }
"#;

/// A public route needs no store, but its limit does: with Redis down it
/// fails closed (503) by default, and forwards with `on_store_error = "open"`.
#[tokio::test]
async fn with_the_store_down_limits_fail_closed_unless_configured_open() {
    let redis = PrivateRedis::start();
    let echo = EchoUpstream::start();
    let closed = start(
        TollgateOptions::new().redis_url(redis.url()),
        &echo,
        PUBLIC_ONLY,
    )
    .await;
    let open = start(
        TollgateOptions::new()
            .redis_url(redis.url())
            .toml("[limits]\non_store_error = \"open\"\n"),
        &echo,
        PUBLIC_ONLY,
    )
    .await;
    for t in [&closed, &open] {
        assert_eq!(
            t.proxy_request(Method::GET, "/api/v1/status", None).await.0,
            StatusCode::OK
        );
    }
    redis.stop();
    // Leases run out within the minute's window at the latest; spend
    // them, then the store must be asked.
    let mut closed_status = StatusCode::OK;
    for _ in 0..200 {
        closed_status = closed
            .proxy_request(Method::GET, "/api/v1/status", None)
            .await
            .0;
        if closed_status != StatusCode::OK {
            break;
        }
    }
    assert_eq!(closed_status, StatusCode::SERVICE_UNAVAILABLE);
    let (_, headers, body) = closed
        .proxy_request(Method::GET, "/api/v1/status", None)
        .await;
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(headers.contains_key("retry-after"));
    for _ in 0..200 {
        assert_eq!(
            open.proxy_request(Method::GET, "/api/v1/status", None)
                .await
                .0,
            StatusCode::OK
        );
    }
    let metrics = open.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "tollgate_limit_store_failures_total",
            &[("action", "failed_open")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
}

fn limits_path(org: &str, sa: &str) -> String {
    format!("/v1/organizations/{org}/service-accounts/{sa}/limits")
}

async fn logs(t: &Tollgate, token: &str) -> (StatusCode, HeaderMap, Value) {
    t.proxy_request(Method::GET, "/api/v1/logs/x", Some(token))
        .await
}

/// An account's override replaces the route's limit; its quotas count
/// every forwarded request, on a route without a limit too, and refuse
/// with 429 `quota_exceeded` once used up; the admin API shows what is left.
async fn overrides_and_quotas(opts: TollgateOptions) {
    away_from_the_hour_edge().await;
    let echo = EchoUpstream::start();
    let t = start(opts, &echo, &policy(100, "service_account", "enforce")).await;
    let admin = t.admin();
    let org = unique_id("org");

    let (sa, token) = t.account_with_token(&org, &["tools:read"]).await;
    let (status, body) = admin
        .put(
            &limits_path(&org, &sa),
            json!({"rate_limit": {"requests": 2, "per": "1h"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rate_limit"], json!({"requests": 2, "per": "1h"}));
    assert_eq!(body["daily_quota"], Value::Null);
    for _ in 0..2 {
        assert_eq!(tools(&t, &token).await.0, StatusCode::OK);
    }
    let (status, headers, body) = tools(&t, &token).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(header(&headers, "ratelimit-policy"), "\"rate\";q=2;w=3600");

    let (quota_sa, quota_token) = t
        .account_with_token(&org, &["tools:read", "logs:read"])
        .await;
    let (status, body) = admin
        .put(&limits_path(&org, &quota_sa), json!({"daily_quota": 3}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quota_usage"]["daily"]["remaining"], 3);
    for _ in 0..2 {
        assert_eq!(logs(&t, &quota_token).await.0, StatusCode::OK);
    }
    assert_eq!(tools(&t, &quota_token).await.0, StatusCode::OK);
    let (status, headers, body) = logs(&t, &quota_token).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "quota_exceeded", "{body}");
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        "\"daily\";q=3;w=86400"
    );
    let retry: u64 = header(&headers, "retry-after").parse().expect("seconds");
    assert!((1..=86_400).contains(&retry), "{retry}");
    let (status, body) = admin.get(&limits_path(&org, &quota_sa)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let daily = &body["quota_usage"]["daily"];
    assert_eq!(
        (&daily["used"], &daily["limit"], &daily["remaining"]),
        (&json!(3), &json!(3), &json!(0)),
        "{body}"
    );
    assert!(daily["resets_at"]
        .as_str()
        .is_some_and(|s| s.ends_with("T00:00:00Z")));
    assert_eq!(body["quota_usage"]["monthly"]["used"], 3);
    assert_eq!(body["quota_usage"]["monthly"]["remaining"], Value::Null);

    let (month_sa, month_token) = t.account_with_token(&org, &["logs:read"]).await;
    admin
        .put(
            &limits_path(&org, &month_sa),
            json!({"monthly_quota": 1, "daily_quota": 10}),
        )
        .await;
    assert_eq!(logs(&t, &month_token).await.0, StatusCode::OK);
    let (status, headers, _) = logs(&t, &month_token).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        header(&headers, "ratelimit-policy").starts_with("\"monthly\";q=1;w="),
        "{headers:?}"
    );
    assert_eq!(echo.count(), 6, "a refused request reached the upstream");

    let metrics = t.metrics().await;
    for (name, labels) in [
        ("tollgate_quota_exceeded_total", [("period", "daily")]),
        ("tollgate_quota_exceeded_total", [("period", "monthly")]),
    ] {
        assert_eq!(metric_value(&metrics, name, &labels), Some(1.0), "{name}");
    }
    assert_eq!(
        metric_value(
            &metrics,
            "tollgate_authz_decisions_total",
            &[
                ("route", "logs-free"),
                ("decision", "deny"),
                ("reason", "quota_exceeded")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "tollgate_quota_lowest_remaining",
            &[("period", "daily")]
        ),
        Some(0.0)
    );

    // Removing them: the GET shows none; the audit trail has both changes.
    let (status, _) = admin.delete(&limits_path(&org, &quota_sa)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = admin.get(&limits_path(&org, &quota_sa)).await;
    assert_eq!(body["daily_quota"], Value::Null);
    assert_eq!(body["quota_usage"]["daily"]["used"], 3, "counters stay");
    let (_, events) = admin
        .get(&format!("/v1/organizations/{org}/audit-events"))
        .await;
    let actions: Vec<&str> = events["data"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"limits.put") && actions.contains(&"limits.delete"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn an_override_replaces_the_route_limit_and_quotas_refuse_once_used_up_memory() {
    overrides_and_quotas(TollgateOptions::new().memory()).await;
}

#[tokio::test]
async fn an_override_replaces_the_route_limit_and_quotas_refuse_once_used_up_redis() {
    overrides_and_quotas(TollgateOptions::new()).await;
}

#[tokio::test]
async fn bad_limits_are_refused_naming_the_field() {
    let echo = EchoUpstream::start();
    let t = start(
        TollgateOptions::new().memory(),
        &echo,
        &policy(5, "client", "enforce"),
    )
    .await;
    let org = unique_id("org");
    let (sa, _) = t.account_with_token(&org, &["tools:read"]).await;
    let admin = t.admin();
    for (body, field) in [
        (
            json!({"rate_limit": {"requests": 0, "per": "1h"}}),
            "rate_limit",
        ),
        (
            json!({"rate_limit": {"requests": 5, "per": "2s"}}),
            "rate_limit",
        ),
        (
            json!({"rate_limit": {"requests": 5, "per": "1s", "burst": 2}}),
            "rate_limit",
        ),
        (json!({"rate_limit": "5/s"}), "rate_limit"),
        (json!({"daily_quota": -1}), "daily_quota"),
        (json!({"monthly_quota": "lots"}), "monthly_quota"),
        (json!({"weekly_quota": 3}), "weekly_quota"),
    ] {
        let (status, reply) = admin.put(&limits_path(&org, &sa), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert!(
            reply["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(field)),
            "{body}: {reply}"
        );
    }
    let (status, _) = admin
        .put(
            &limits_path(&org, "AAAAAAAAAAAAAAAAAAAAAAAAAA"),
            json!({"daily_quota": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin.get(&limits_path(&unique_id("org"), &sa)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The same on a Redis Cluster: the counters of a route's buckets and an
/// account's quota each live in one slot, and two instances on the
/// cluster admit no more than the limit or the quota between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_redis_cluster_admit_no_more_than_the_limit_or_quota() {
    away_from_the_hour_edge().await;
    let cluster = RedisCluster::start();
    let echo = EchoUpstream::start();
    let prefix = unique_prefix();
    let opts = || {
        TollgateOptions::new()
            .key_prefix(prefix.clone())
            .cluster(cluster.urls())
    };
    let limit = 40;
    let a = start(opts(), &echo, &policy(limit, "service_account", "enforce")).await;
    let b = start(opts(), &echo, &policy(limit, "service_account", "enforce")).await;
    let org = unique_id("org");
    let (_, token) = a.account_with_token(&org, &["tools:read"]).await;
    let mut admitted = 0u64;
    for i in 0..80 {
        let t = if i % 2 == 0 { &a } else { &b };
        if tools(t, &token).await.0 == StatusCode::OK {
            admitted += 1;
        }
    }
    assert!(admitted <= limit, "{admitted} admitted over {limit}");
    assert!(
        admitted >= limit - 2 * (limit / 8),
        "only {admitted} admitted"
    );

    let (sa, quota_token) = a.account_with_token(&org, &["logs:read"]).await;
    let (status, body) = a
        .admin()
        .put(&limits_path(&org, &sa), json!({"daily_quota": 5}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut forwarded = 0;
    for i in 0..12 {
        let t = if i % 2 == 0 { &a } else { &b };
        if logs(t, &quota_token).await.0 == StatusCode::OK {
            forwarded += 1;
        }
    }
    assert_eq!(forwarded, 5);
    let (_, body) = b.admin().get(&limits_path(&org, &sa)).await;
    assert_eq!(body["quota_usage"]["daily"]["used"], 5, "{body}");
}

/// The decision listener (an ingress asks, tollgate answers) applies the
/// same limits: an account's quota counts the requests it allows, and the
/// one over it is refused 429 `quota_exceeded` with the `RateLimit` headers
/// for the ingress to pass on.
#[tokio::test]
async fn the_decision_listener_applies_quotas_too() {
    use crate::decisions::Decisions;
    let d = Decisions::start("convention = \"traefik\"", "").await;
    let w = &d.world;
    let (status, body) = w
        .tollgate
        .admin()
        .put(&limits_path(&w.org, &w.sa_id), json!({"daily_quota": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..2 {
        let r = d.traefik("GET", "/api/v1/tools/x", &d.bearer()).await;
        assert_eq!(r.status, 200, "{}", r.body_str());
    }
    let r = d.traefik("GET", "/api/v1/tools/x", &d.bearer()).await;
    assert_eq!(r.status, 429, "{}", r.body_str());
    assert_eq!(r.json()["error"], "quota_exceeded");
    assert_eq!(r.header("ratelimit-policy"), Some("\"daily\";q=2;w=86400"));
    assert!(r.header("retry-after").is_some());
    // The proxy listener shares the count.
    let (status, _, _) = w
        .tollgate
        .proxy_request(Method::GET, "/api/v1/tools/x", Some(&w.token))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}
