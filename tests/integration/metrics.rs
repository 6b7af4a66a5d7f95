//! docs/contract.md §6 from the outside: a scripted mix of proxied and token requests
//! against a real tollgate, then `/metrics` must show every family with
//! bounded labels and counts that moved by exactly what the script did.
//! Also: the shipped Grafana dashboard and alert rules only reference
//! families the binary exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// A workspace-member write route and a report-mode route: the middle of
/// [`policy`].
const WRITE_AND_REPORT_ROUTES: &str = r#"
[[route]]
name = "workflows-write"
methods = ["POST"]
path = "/api/v1/workflows/**"
upstream = "app"
scope = "workflows:write"
workspace_role = "member"

[[route]]
name = "logs-report"
methods = ["GET"]
path = "/api/v1/logs/**"
upstream = "app"
scope = "logs:read"
mode = "report"
"#;

/// The routes of [`ROUTES`], in that order, all to `app`.
fn policy() -> String {
    [
        APP_TOOLS_READ_ROUTE,
        WRITE_AND_REPORT_ROUTES,
        APP_STATUS_ROUTE,
    ]
    .concat()
}

const ROUTES: [&str; 4] = [
    "tools-read",
    "workflows-write",
    "logs-report",
    "status-public",
];

const DECISIONS: [&str; 3] = ["allow", "deny", "report_deny"];
const REASONS: [&str; 10] = [
    "ok",
    "public",
    "missing_token",
    "invalid_token",
    "insufficient_scope",
    "workspace_access_denied",
    "organization_mismatch",
    "invalid_request",
    "no_route",
    "store_unavailable",
];
const OUTCOMES: [&str; 11] = [
    "issued",
    "invalid_client",
    "invalid_scope",
    "invalid_request",
    "invalid_target",
    "unsupported_grant_type",
    "slow_down",
    "store_unavailable",
    "overloaded",
    "too_many_tokens",
    "issue_rate_limited",
];
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// A client id of the right shape that no account has.
const UNKNOWN_CLIENT: &str = "sa_UnknownClientUnknownClient";

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    l
}

fn decision(route: &str, decision: &str, reason: &str) -> Labels {
    labels(&[("route", route), ("decision", decision), ("reason", reason)])
}

fn upstream(route: &str, class: &str) -> Labels {
    labels(&[("route", route), ("status_class", class)])
}

/// How much each series of `name` moved between two scrapes.
fn deltas(before: &str, after: &str, name: &str) -> BTreeMap<Labels, f64> {
    let old: BTreeMap<Labels, f64> = metric_samples(before, name).into_iter().collect();
    metric_samples(after, name)
        .into_iter()
        .map(|(l, v)| {
            let was = old.get(&l).copied().unwrap_or(0.0);
            (l, v - was)
        })
        .collect()
}

/// Every series of `name` moved by exactly `expected` (absent = 0), and
/// every expected series exists.
fn assert_moved_exactly(before: &str, after: &str, name: &str, expected: &[(Labels, f64)]) {
    let moved = deltas(before, after, name);
    let expected: BTreeMap<Labels, f64> = expected.iter().cloned().collect();
    for (series, want) in &expected {
        assert!(
            moved.contains_key(series),
            "{name}{series:?} is not exported; scrape:\n{after}"
        );
        assert_eq!(moved[series], *want, "{name}{series:?} moved by");
    }
    for (series, got) in &moved {
        if !expected.contains_key(series) {
            assert_eq!(
                *got, 0.0,
                "{name}{series:?} moved but the script did not touch it"
            );
        }
    }
}

fn value(text: &str, name: &str, pairs: &[(&str, &str)]) -> f64 {
    metric_value(text, name, pairs).unwrap_or_else(|| panic!("{name}{pairs:?} missing:\n{text}"))
}

/// The family names a scrape declares (`# TYPE name kind`), with the series
/// names a histogram adds.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

struct World {
    tollgate: Tollgate,
    _upstream: EchoUpstream,
    org: String,
    workspace: String,
    environment: String,
    member: Account,
    outsider: Account,
}

struct Account {
    id: String,
    client_id: String,
    secret: String,
    token: String,
}

impl World {
    /// A tollgate with the four routes, one workspace and environment, a
    /// member account (tools, workflows, logs) and an outsider (workflows
    /// only, no membership), each holding one token.
    async fn start() -> World {
        let upstream = EchoUpstream::start();
        let tollgate = Tollgate::start(
            TollgateOptions::new()
                .upstream("app", &[upstream.addr_string()])
                .policy("routes.toml", policy())
                .toml("[throttle]\nwindow_seconds = 86400\nmax_failures_per_client_source = 2\n")
                .env("TOLLGATE_ACTIVE_TOKENS_INTERVAL_MS", "100"),
        )
        .await;
        let admin = tollgate.admin();
        let org = unique_id("org");
        let workspace = unique_id("ws");
        let environment = unique_id("env");
        admin.put_workspace(&org, &workspace).await;
        admin.put_environment(&org, &workspace, &environment).await;
        let member = account(
            &tollgate,
            &org,
            &["tools:read", "workflows:write", "logs:read"],
        )
        .await;
        admin
            .put_member(&org, &workspace, &member.id, "member")
            .await;
        let outsider = account(&tollgate, &org, &["workflows:write"]).await;
        World {
            tollgate,
            _upstream: upstream,
            org,
            workspace,
            environment,
            member,
            outsider,
        }
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> StatusCode {
        self.tollgate
            .proxy_request(Method::GET, path, bearer)
            .await
            .0
    }

    async fn post(&self, path: &str, bearer: Option<&str>) -> StatusCode {
        self.tollgate
            .proxy_request(Method::POST, path, bearer)
            .await
            .0
    }
}

async fn account(tollgate: &Tollgate, org: &str, scopes: &[&str]) -> Account {
    let (sa, client_id, secret) = tollgate
        .admin()
        .create_service_account(org, &unique_id("sa"), scopes)
        .await;
    let token = token_for(tollgate, &client_id, &secret).await;
    Account {
        id: sa["id"].as_str().expect("sa id").to_string(),
        client_id,
        secret,
        token,
    }
}

async fn token_for(tollgate: &Tollgate, client_id: &str, secret: &str) -> String {
    let (status, body) = tollgate.issue_token(client_id, secret, None).await;
    assert_eq!(status, StatusCode::OK, "issue token: {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

#[tokio::test]
async fn every_family_moves_by_exactly_what_a_scripted_mix_of_requests_did() {
    let w = World::start().await;
    let tg = &w.tollgate;
    let member = Some(w.member.token.as_str());
    let outsider = Some(w.outsider.token.as_str());
    let in_env = format!("/api/v1/workflows/run?environmentId={}", w.environment);
    let bogus = format!("tg_at_{}", "x".repeat(43));
    let before = tg.metrics().await;

    // Proxied requests: allowed, each denial reason, report mode, public.
    for _ in 0..3 {
        assert_eq!(w.get("/api/v1/tools/hammer", member).await, StatusCode::OK);
    }
    let failing = tg
        .http()
        .get(tg.proxy_url("/api/v1/tools/hammer"))
        .bearer_auth(&w.member.token)
        .header("x-echo-status", "500")
        .send()
        .await
        .expect("proxy request");
    assert_eq!(failing.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(w.post(&in_env, member).await, StatusCode::OK);
    assert_eq!(w.get("/api/v1/status", None).await, StatusCode::OK);
    assert_eq!(w.get("/api/v1/status", None).await, StatusCode::OK);
    assert_eq!(
        w.get("/api/v1/tools/hammer", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        w.get("/api/v1/tools/hammer", Some(&bogus)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        w.get("/api/v1/tools/hammer", outsider).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(w.post(&in_env, outsider).await, StatusCode::FORBIDDEN);
    assert_eq!(
        w.post("/api/v1/workflows/run", member).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        w.get("/api/v1/tools/a%2Fb", member).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        w.get("/nowhere/at-all", member).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(w.get("/api/v1/logs/today", None).await, StatusCode::OK);
    assert_eq!(w.get("/api/v1/logs/today", outsider).await, StatusCode::OK);
    assert_eq!(w.get("/api/v1/logs/today", member).await, StatusCode::OK);

    // Token requests: one of each outcome but store_unavailable.
    let (m_id, m_secret) = (w.member.client_id.as_str(), w.member.secret.as_str());
    let issued = [
        token_for(tg, m_id, m_secret).await,
        token_for(tg, m_id, m_secret).await,
    ];
    let expect_error = |(status, _, body): (StatusCode, HeaderMap, Value), code: &str| {
        assert_eq!(body["error"], code, "{status} {body}");
    };
    let cc = ("grant_type", "client_credentials");
    expect_error(
        tg.token_request(Some((m_id, "not-the-secret")), &[cc])
            .await,
        "invalid_client",
    );
    expect_error(
        tg.token_request(Some((m_id, m_secret)), &[cc, ("scope", "chat:write")])
            .await,
        "invalid_scope",
    );
    expect_error(
        tg.token_request(Some((m_id, m_secret)), &[("scope", "tools:read")])
            .await,
        "invalid_request",
    );
    expect_error(
        tg.token_request(Some((m_id, m_secret)), &[("grant_type", "password")])
            .await,
        "unsupported_grant_type",
    );
    expect_error(
        tg.token_request(
            Some((m_id, m_secret)),
            &[cc, ("resource", "https://api.test")],
        )
        .await,
        "invalid_target",
    );
    for _ in 0..2 {
        expect_error(
            tg.token_request(Some((UNKNOWN_CLIENT, "guess")), &[cc])
                .await,
            "invalid_client",
        );
    }
    expect_error(
        tg.token_request(Some((UNKNOWN_CLIENT, "guess")), &[cc])
            .await,
        "slow_down",
    );

    // Two tokens from the set-up, two from the script: the sampled gauge
    // (every 100 ms here) catches up.
    eventually(
        Duration::from_secs(5),
        "tollgate_active_tokens = 4",
        || async { metric_value(&tg.metrics().await, "tollgate_active_tokens", &[]) == Some(4.0) },
    )
    .await;
    let after = tg.metrics().await;

    assert_moved_exactly(
        &before,
        &after,
        "tollgate_authz_decisions_total",
        &[
            (decision("tools-read", "allow", "ok"), 4.0),
            (decision("workflows-write", "allow", "ok"), 1.0),
            (decision("status-public", "allow", "public"), 2.0),
            (decision("tools-read", "deny", "missing_token"), 1.0),
            (decision("tools-read", "deny", "invalid_token"), 1.0),
            (decision("tools-read", "deny", "insufficient_scope"), 1.0),
            (
                decision("workflows-write", "deny", "workspace_access_denied"),
                1.0,
            ),
            (decision("workflows-write", "deny", "invalid_request"), 1.0),
            (decision("-", "deny", "invalid_request"), 1.0),
            (decision("-", "deny", "no_route"), 1.0),
            (decision("logs-report", "report_deny", "missing_token"), 1.0),
            (
                decision("logs-report", "report_deny", "insufficient_scope"),
                1.0,
            ),
            (decision("logs-report", "allow", "ok"), 1.0),
        ],
    );
    assert_moved_exactly(
        &before,
        &after,
        "tollgate_upstream_responses_total",
        &[
            (upstream("tools-read", "2xx"), 3.0),
            (upstream("tools-read", "5xx"), 1.0),
            (upstream("workflows-write", "2xx"), 1.0),
            (upstream("status-public", "2xx"), 2.0),
            (upstream("logs-report", "2xx"), 3.0),
        ],
    );
    let outcome = |o: &str| labels(&[("outcome", o)]);
    assert_moved_exactly(
        &before,
        &after,
        "tollgate_token_requests_total",
        &[
            (outcome("issued"), 2.0),
            (outcome("invalid_client"), 3.0),
            (outcome("invalid_scope"), 1.0),
            (outcome("invalid_request"), 1.0),
            (outcome("unsupported_grant_type"), 1.0),
            (outcome("invalid_target"), 1.0),
            (outcome("slow_down"), 1.0),
            (outcome("store_unavailable"), 0.0),
        ],
    );
    // Every request that got past the request-safety checks was timed; the
    // one rejected before route matching (the %2F path) was not.
    assert_moved_exactly(
        &before,
        &after,
        "tollgate_authz_duration_seconds_count",
        &[(vec![], 16.0)],
    );
    assert_moved_exactly(
        &before,
        &after,
        "tollgate_token_issue_duration_seconds_count",
        &[(vec![], 10.0)],
    );
    for histogram in [
        "tollgate_authz_duration_seconds",
        "tollgate_token_issue_duration_seconds",
    ] {
        let sum = value(&after, &format!("{histogram}_sum"), &[]);
        assert!(sum > 0.0, "{histogram}_sum = {sum}");
        let inf = value(&after, &format!("{histogram}_bucket"), &[("le", "+Inf")]);
        let count = value(&after, &format!("{histogram}_count"), &[]);
        assert_eq!(
            inf, count,
            "{histogram}: the +Inf bucket holds every observation"
        );
    }

    assert_eq!(
        value(&after, "tollgate_policy_routes", &[]),
        ROUTES.len() as f64
    );
    assert_eq!(
        value(&after, "tollgate_policy_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "tollgate_policy_reloads_total",
            &[("result", "error")]
        ),
        0.0
    );
    let store_errors = metric_samples(&after, "tollgate_store_errors_total");
    assert!(
        !store_errors.is_empty(),
        "store errors not exported:\n{after}"
    );
    for (series, count) in store_errors {
        assert_eq!(count, 0.0, "tollgate_store_errors_total{series:?}");
    }

    let mut secrets = vec![
        bogus.clone(),
        w.member.token.clone(),
        w.outsider.token.clone(),
        w.member.secret.clone(),
        w.outsider.secret.clone(),
    ];
    secrets.extend(issued);
    let ids = [
        w.org.as_str(),
        w.workspace.as_str(),
        w.environment.as_str(),
        w.member.id.as_str(),
        w.outsider.id.as_str(),
        w.member.client_id.as_str(),
        w.outsider.client_id.as_str(),
        UNKNOWN_CLIENT,
    ];
    let paths = [
        "/api/v1/tools/hammer",
        "/api/v1/tools/a%2Fb",
        "/api/v1/workflows/run",
        "/api/v1/logs/today",
        "/api/v1/status",
        "/nowhere/at-all",
        "hammer",
    ];
    for needle in secrets.iter().map(String::as_str).chain(ids).chain(paths) {
        assert!(
            !after.contains(needle),
            "the scrape contains {needle:?}:\n{after}"
        );
    }
}

#[tokio::test]
async fn every_label_value_comes_from_a_bounded_set() {
    let w = World::start().await;
    let tg = &w.tollgate;
    let member = Some(w.member.token.as_str());
    // Paths, ids and tokens of every shape a label could be fed from.
    w.get("/api/v1/tools/some/deep/path?environmentId=x", member)
        .await;
    w.get("/api/v1/tools/x", Some("tg_at_not-a-real-token"))
        .await;
    w.post("/api/v1/workflows/x?environmentId=unknown-env", member)
        .await;
    w.get(&format!("/api/v1/{}", w.member.id), member).await;
    w.get("/api/v1/logs/x", Some("garbage")).await;
    tg.token_request(Some((&w.member.client_id, "wrong")), &[])
        .await;

    let text = tg.metrics().await;
    let route_values: BTreeSet<&str> = ROUTES.iter().copied().chain(["-"]).collect();
    let allowed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        ("route", route_values),
        ("decision", DECISIONS.into_iter().collect()),
        ("reason", REASONS.into_iter().collect()),
        ("outcome", OUTCOMES.into_iter().collect()),
        ("status_class", STATUS_CLASSES.into_iter().collect()),
        (
            "result",
            ["ok", "error", "granted", "refused"].into_iter().collect(),
        ),
        ("kind", ["rate", "quota"].into_iter().collect()),
        ("period", ["daily", "monthly"].into_iter().collect()),
        (
            "action",
            ["failed_closed", "failed_open"].into_iter().collect(),
        ),
        (
            "listener",
            ["proxy", "admin", "metrics", "decisions"]
                .into_iter()
                .collect(),
        ),
    ]);
    let label_names: BTreeMap<&str, &[&str]> = BTreeMap::from([
        (
            "tollgate_authz_decisions_total",
            &["decision", "reason", "route"][..],
        ),
        ("tollgate_token_requests_total", &["outcome"][..]),
        (
            "tollgate_upstream_responses_total",
            &["route", "status_class"][..],
        ),
        ("tollgate_store_errors_total", &["op"][..]),
        ("tollgate_policy_reloads_total", &["result"][..]),
        ("tollgate_policy_routes", &[][..]),
        ("tollgate_active_tokens", &[][..]),
        ("tollgate_connections", &["listener"][..]),
        ("tollgate_connections_refused_total", &["listener"][..]),
        ("tollgate_authz_duration_seconds_bucket", &["le"][..]),
        ("tollgate_authz_duration_seconds_sum", &[][..]),
        ("tollgate_authz_duration_seconds_count", &[][..]),
        ("tollgate_token_issue_duration_seconds_bucket", &["le"][..]),
        ("tollgate_token_issue_duration_seconds_sum", &[][..]),
        ("tollgate_token_issue_duration_seconds_count", &[][..]),
        ("tollgate_quota_exceeded_total", &["period"][..]),
        ("tollgate_quota_requests_total", &[][..]),
        ("tollgate_quota_lowest_remaining", &["period"][..]),
        ("tollgate_limit_leases_total", &["kind", "result"][..]),
        ("tollgate_limit_store_failures_total", &["action"][..]),
        (
            "tollgate_decision_service_total",
            &["decision", "listener", "reason", "route"][..],
        ),
        (
            "tollgate_decision_service_duration_seconds_bucket",
            &["le", "listener"][..],
        ),
        (
            "tollgate_decision_service_duration_seconds_sum",
            &["listener"][..],
        ),
        (
            "tollgate_decision_service_duration_seconds_count",
            &["listener"][..],
        ),
    ]);
    for (name, names) in &label_names {
        let samples = metric_samples(&text, name);
        assert!(!samples.is_empty(), "{name} is not exported:\n{text}");
        for (series, _) in samples {
            let got: Vec<&str> = series.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(&got, names, "{name}: label names");
            for (label, v) in &series {
                if let Some(set) = allowed.get(label.as_str()) {
                    assert!(
                        set.contains(v.as_str()),
                        "{name}: {label}={v:?} is unbounded"
                    );
                } else if label == "op" {
                    assert!(
                        v.len() <= 32 && v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                        "{name}: op={v:?} is not an operation name"
                    );
                }
            }
        }
    }
    // A family added later must be added here too, with its label names.
    for family in exported_names(&text) {
        if family.starts_with("tollgate_") && !family.ends_with("_seconds") {
            assert!(
                label_names.contains_key(family.as_str()),
                "{family} is exported but this test does not know its labels"
            );
        }
    }
    for needle in [
        w.member.id.as_str(),
        w.member.client_id.as_str(),
        w.member.token.as_str(),
        "tg_at_not-a-real-token",
        "garbage",
        "unknown-env",
        "deep/path",
    ] {
        assert!(!text.contains(needle), "the scrape contains {needle:?}");
    }
}

#[tokio::test]
async fn policy_reloads_are_counted_by_result_and_the_route_gauge_follows_the_set_in_force() {
    let upstream = EchoUpstream::start();
    let one_route = policy()
        .split("\n[[route]]")
        .take(2)
        .collect::<Vec<_>>()
        .join("\n[[route]]");
    let tg = Tollgate::start(
        TollgateOptions::new()
            .upstream("app", &[upstream.addr_string()])
            .policy("routes.toml", &one_route),
    )
    .await;
    let text = tg.metrics().await;
    assert_eq!(value(&text, "tollgate_policy_routes", &[]), 1.0);
    assert_eq!(
        value(&text, "tollgate_policy_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tollgate_policy_reloads_total",
            &[("result", "error")]
        ),
        0.0
    );

    tg.write_policy("routes.toml", "[[route]]\nname = \"broken\"\n");
    eventually(
        Duration::from_secs(10),
        "a rejected reload is counted",
        || async {
            let text = tg.metrics().await;
            metric_value(
                &text,
                "tollgate_policy_reloads_total",
                &[("result", "error")],
            ) == Some(1.0)
        },
    )
    .await;
    let text = tg.metrics().await;
    assert_eq!(
        value(&text, "tollgate_policy_routes", &[]),
        1.0,
        "the old set stays"
    );
    assert_eq!(
        value(&text, "tollgate_policy_reloads_total", &[("result", "ok")]),
        1.0
    );

    tg.write_policy("routes.toml", &policy());
    eventually(
        Duration::from_secs(10),
        "the new set is counted",
        || async {
            let text = tg.metrics().await;
            metric_value(&text, "tollgate_policy_routes", &[]) == Some(ROUTES.len() as f64)
        },
    )
    .await;
    let text = tg.metrics().await;
    assert_eq!(
        value(&text, "tollgate_policy_reloads_total", &[("result", "ok")]),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "tollgate_policy_reloads_total",
            &[("result", "error")]
        ),
        1.0
    );
}

/// Metric names a PromQL expression selects: identifiers outside label
/// matchers, ranges, grouping clauses and strings that are not functions,
/// aggregations, keywords or Grafana variables.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "inf",
        "nan",
        "atan2",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut previous_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if GROUPING.contains(&previous_word.as_str()) => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                previous_word.clear();
            }
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    while i < chars.len() && chars[i] != '}' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let is_call = chars.get(j) == Some(&'(');
                if !is_call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    names.insert(word.clone());
                }
                previous_word = word;
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers and durations (`0.99`, `5m`, `1e3`).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => {
                if !c.is_whitespace() {
                    previous_word.clear();
                }
                i += 1;
            }
        }
    }
    names
}

#[test]
fn promql_metric_names_skip_functions_labels_and_variables() {
    let expr = r#"histogram_quantile(0.99, sum by (le, route) (rate(tollgate_authz_duration_seconds_bucket{route=~"$route", job="x"}[$__rate_interval])))
        / on (route) group_left sum without (instance) (increase(tollgate_b_total[5m] offset 1d)) > bool 0.5 and tollgate_c"#;
    assert_eq!(
        promql_metric_names(expr),
        BTreeSet::from([
            "tollgate_authz_duration_seconds_bucket".to_string(),
            "tollgate_b_total".to_string(),
            "tollgate_c".to_string(),
        ])
    );
}

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Every PromQL expression in the dashboard: panel targets and template
/// variable queries (`label_values(metric, label)` → `metric`).
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(p) = stack.pop() {
        stack.extend(p["panels"].as_array().into_iter().flatten());
        panels.push(p);
    }
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?} has a target without expr"));
            exprs.push((title.clone(), expr.to_string()));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let query = match &var["query"] {
            Value::String(s) => s.clone(),
            q => q["query"].as_str().unwrap_or_default().to_string(),
        };
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| {
                panic!("variable query {query:?} is not label_values(metric, label)")
            });
        let metric = inner.rsplit_once(',').map_or(inner, |(m, _)| m).trim();
        exprs.push((format!("variable {}", var["name"]), metric.to_string()));
    }
    exprs
}

#[tokio::test]
async fn dashboard_and_alert_rules_reference_only_families_the_binary_exports() {
    let dashboard: Value = serde_json::from_str(&repo_file("config/grafana/tollgate.json"))
        .expect("the dashboard is JSON");
    let rules: serde_norway::Value =
        serde_norway::from_str(&repo_file("config/prometheus/alerts.yml"))
            .expect("the alert rules are YAML");

    // One request through a route so the route-labelled families exist.
    let w = World::start().await;
    assert_eq!(w.get("/api/v1/status", None).await, StatusCode::OK);
    // The upstream-response count is written after the answer is sent.
    eventually(
        Duration::from_secs(5),
        "the upstream response counted",
        || async {
            w.tollgate
                .metrics()
                .await
                .contains("tollgate_upstream_responses_total{")
        },
    )
    .await;
    let exported = exported_names(&w.tollgate.metrics().await);

    // The dashboard: a Prometheus datasource variable every panel uses.
    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus datasource variable");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().expect("variable name"));
    let exprs = dashboard_exprs(&dashboard);
    assert!(
        exprs.len() >= 10,
        "the dashboard has {} queries",
        exprs.len()
    );
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], ds_ref,
            "panel {} does not use the datasource variable",
            panel["title"]
        );
    }

    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{title}: no metric in {expr:?}");
        for name in names {
            assert!(exported.contains(&name), "{title}: {name} is not exported");
            used.insert(name);
        }
    }

    // The alert rules: Prometheus rule-file shape, every rule names its
    // severity and summary.
    let groups = rules["groups"].as_sequence().expect("groups");
    let mut alerts = BTreeMap::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "a group without a name");
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name").to_string();
            let expr = rule["expr"].as_str().expect("expr").to_string();
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            let names = promql_metric_names(&expr);
            assert!(!names.is_empty(), "{name}: no metric in {expr:?}");
            for metric in &names {
                assert!(
                    exported.contains(metric),
                    "alert {name}: {metric} is not exported"
                );
            }
            alerts.insert(name, names);
        }
    }
    let alerted: BTreeSet<&String> = alerts.values().flatten().collect();
    for family in [
        "tollgate_store_errors_total",
        "tollgate_authz_decisions_total",
        "tollgate_policy_reloads_total",
        "tollgate_token_requests_total",
        "tollgate_upstream_responses_total",
    ] {
        assert!(
            alerted.contains(&family.to_string()),
            "no alert on {family}"
        );
    }

    // Every family is on the dashboard.
    for family in [
        "tollgate_authz_decisions_total",
        "tollgate_authz_duration_seconds_bucket",
        "tollgate_token_requests_total",
        "tollgate_token_issue_duration_seconds_bucket",
        "tollgate_upstream_responses_total",
        "tollgate_store_errors_total",
        "tollgate_policy_reloads_total",
        "tollgate_policy_routes",
        "tollgate_active_tokens",
        "tollgate_quota_exceeded_total",
        "tollgate_quota_requests_total",
        "tollgate_quota_lowest_remaining",
        "tollgate_limit_leases_total",
        "tollgate_limit_store_failures_total",
    ] {
        assert!(
            used.contains(family),
            "the dashboard does not show {family}"
        );
    }
}
