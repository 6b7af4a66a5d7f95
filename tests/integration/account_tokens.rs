//! A service account's own token settings and IP allowlist against the real
//! binary: set through the admin API, honoured by the token endpoint (the
//! lifetime in `expires_in`, a cap on live tokens, an issuance limit shared
//! by every instance through Redis, the allowlist with trusted proxies) and,
//! when asked for, by the proxy on every request.

use std::time::Duration;

use crate::common::*;

/// One instance with [`TOOLS_ROUTE`] in front of `echo`, trusting 127.0.0.1 as
/// a proxy, plus `extra` config.
async fn instance(echo: &EchoUpstream, prefix: &str, extra: &str) -> Tollgate {
    Tollgate::start(
        TollgateOptions::new()
            .key_prefix(prefix)
            .policy("p.toml", TOOLS_ROUTE)
            .upstream("backend", &[echo.addr_string()])
            .toml(format!(
                "[proxy]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[store]\ntimeout_ms = 2000\n{extra}"
            )),
    )
    .await
}

/// An account of a new organization with `tools:read` and these settings;
/// returns (org, sa id, client id, secret).
async fn account(t: &Tollgate, settings: Value) -> (String, String, String, String) {
    let org = unique_id("org");
    let mut body = json!({"name": unique_id("sa"), "scopes": ["tools:read"]});
    if let (Some(b), Some(s)) = (body.as_object_mut(), settings.as_object()) {
        b.extend(s.clone());
    }
    let (status, created) = t
        .admin()
        .post(&format!("{}/service-accounts", org_path(&org)), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let s = |v: &Value| v.as_str().expect("a string").to_string();
    (
        org,
        s(&created["service_account"]["id"]),
        s(&created["credential"]["client_id"]),
        s(&created["credential"]["client_secret"]),
    )
}

/// A token request with client_secret_basic, sent from `forwarded_for`
/// through the trusted loopback proxy when given.
async fn token_from(
    t: &Tollgate,
    client_id: &str,
    secret: &str,
    forwarded_for: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = t
        .http()
        .post(t.proxy_url("/api/auth/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(client_id, Some(secret))
        .body("grant_type=client_credentials");
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    let response = request.send().await.expect("token request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn access_token(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_string()
}

/// `GET /api/v1/tools/x` with `token`, from `forwarded_for` when given.
async fn tools(t: &Tollgate, token: &str, forwarded_for: Option<&str>) -> (StatusCode, Value) {
    let mut request = t
        .http()
        .get(t.proxy_url("/api/v1/tools/x"))
        .bearer_auth(token);
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    let response = request.send().await.expect("proxy request");
    let status = response.status();
    (
        status,
        response.json::<Value>().await.unwrap_or(Value::Null),
    )
}

fn assert_slow_down(what: &str, status: StatusCode, headers: &HeaderMap, body: &Value) -> u64 {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{what}: {body}");
    assert_eq!(body["error"], "slow_down", "{what}");
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
}

#[tokio::test]
async fn the_admin_api_sets_shows_and_clears_the_settings() {
    let echo = EchoUpstream::start();
    let t = instance(
        &echo,
        &unique_prefix(),
        "[tokens]\nmax_ttl_seconds = 1800\n",
    )
    .await;
    let (org, sa, _, _) = account(
        &t,
        json!({
            "token_ttl_seconds": 1200,
            "max_live_tokens": 5,
            "token_issue_limit": {"requests": 10, "per": "1m"},
            "ip_allowlist": ["10.1.2.3", "10.0.0.0/8", "::ffff:192.0.2.0/120"],
            "ip_allowlist_on_requests": true,
        }),
    )
    .await;
    let admin = t.admin();
    let path = format!("{}/service-accounts/{sa}", org_path(&org));
    let (status, shown) = admin.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["token_ttl_seconds"], 1200);
    assert_eq!(shown["max_live_tokens"], 5);
    assert_eq!(
        shown["token_issue_limit"],
        json!({"requests": 10, "per": "1m"})
    );
    assert_eq!(
        shown["ip_allowlist"],
        json!(["10.0.0.0/8", "10.1.2.3/32", "192.0.2.0/24"])
    );
    assert_eq!(shown["ip_allowlist_on_requests"], true);

    let (status, patched) = admin
        .patch(
            &path,
            json!({"token_ttl_seconds": null, "token_issue_limit": null, "ip_allowlist": []}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["token_ttl_seconds"], Value::Null);
    assert_eq!(patched["token_issue_limit"], Value::Null);
    assert_eq!(patched["ip_allowlist"], json!([]));
    assert_eq!(patched["max_live_tokens"], 5, "untouched fields stay");

    for (body, field) in [
        (json!({"token_ttl_seconds": 1801}), "token_ttl_seconds"),
        (json!({"token_ttl_seconds": 0}), "token_ttl_seconds"),
        (json!({"token_ttl_seconds": "60"}), "token_ttl_seconds"),
        (json!({"max_live_tokens": 0}), "max_live_tokens"),
        (
            json!({"token_issue_limit": {"requests": 5, "per": "1d"}}),
            "token_issue_limit",
        ),
        (
            json!({"token_issue_limit": {"requests": 0, "per": "1s"}}),
            "token_issue_limit",
        ),
        (json!({"ip_allowlist": ["10.0.0.0/40"]}), "ip_allowlist"),
        (json!({"ip_allowlist": "10.0.0.0/8"}), "ip_allowlist"),
        (
            json!({"ip_allowlist_on_requests": null}),
            "ip_allowlist_on_requests",
        ),
    ] {
        let (status, error) = admin.patch(&path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"], "invalid_request");
        let description = error["error_description"].as_str().unwrap_or("");
        assert!(description.starts_with(field), "{body}: {description}");
    }
    // A fresh account shows every setting at its default.
    let (org2, sa2, _, _) = account(&t, json!({})).await;
    let (_, plain) = admin
        .get(&format!("{}/service-accounts/{sa2}", org_path(&org2)))
        .await;
    assert_eq!(plain["token_ttl_seconds"], Value::Null);
    assert_eq!(plain["max_live_tokens"], Value::Null);
    assert_eq!(plain["token_issue_limit"], Value::Null);
    assert_eq!(plain["ip_allowlist"], json!([]));
    assert_eq!(plain["ip_allowlist_on_requests"], false);
}

#[tokio::test]
async fn the_token_lifetime_is_the_accounts_within_the_maximum() {
    let echo = EchoUpstream::start();
    let t = instance(
        &echo,
        &unique_prefix(),
        "[tokens]\nttl_seconds = 900\nmax_ttl_seconds = 1800\n",
    )
    .await;
    let (_, _, id, secret) = account(&t, json!({"token_ttl_seconds": 1500})).await;
    let (status, _, body) = token_from(&t, &id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 1500);
    let (_, _, id, secret) = account(&t, json!({})).await;
    let (_, _, body) = token_from(&t, &id, &secret, None).await;
    assert_eq!(body["expires_in"], 900, "the default lifetime");

    // A short lifetime is honoured by the store, not only announced.
    let (_, _, id, secret) = account(&t, json!({"token_ttl_seconds": 1})).await;
    let (_, _, body) = token_from(&t, &id, &secret, None).await;
    assert_eq!(body["expires_in"], 1);
    let token = access_token(&body);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, denied) = tools(&t, &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{denied}");
}

#[tokio::test]
async fn a_token_beyond_the_live_cap_is_refused_and_earlier_ones_keep_working() {
    let echo = EchoUpstream::start();
    let t = instance(&echo, &unique_prefix(), "").await;
    let (org, _, id, secret) = account(&t, json!({"max_live_tokens": 2})).await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, _, body) = token_from(&t, &id, &secret, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(access_token(&body));
    }
    let (status, headers, body) = token_from(&t, &id, &secret, None).await;
    let retry = assert_slow_down("third token", status, &headers, &body);
    assert!(
        (850..=900).contains(&retry),
        "the oldest expires in ~900 s: {retry}"
    );
    for token in &tokens {
        assert_eq!(tools(&t, token, None).await.0, StatusCode::OK);
    }
    // Revoking one frees its place.
    let revoke = t
        .http()
        .post(t.proxy_url("/api/auth/oauth2/revoke"))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", tokens[0]))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), StatusCode::OK);
    let (status, _, body) = token_from(&t, &id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let metrics = t.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "tollgate_token_requests_total",
            &[("outcome", "too_many_tokens")]
        ),
        Some(1.0),
        "{metrics}"
    );
    let logs = t.logs();
    assert!(
        logs.lines().any(|l| l.contains("access")
            && l.contains("builtin=token")
            && l.contains("reason=too_many_tokens")),
        "the access line names the outcome: {logs}"
    );
    let (status, events) = t
        .admin()
        .get(&format!("{}/audit-events", org_path(&org)))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        events["data"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["details"]["cause"] == "max_live_tokens")),
        "{events}"
    );
}

#[tokio::test]
async fn the_issue_limit_is_shared_by_every_instance() {
    let echo = EchoUpstream::start();
    let prefix = unique_prefix();
    let a = instance(&echo, &prefix, "").await;
    let b = instance(&echo, &prefix, "").await;
    let (_, _, id, secret) = account(
        &a,
        json!({"token_issue_limit": {"requests": 3, "per": "1h"}}),
    )
    .await;
    for via in [&a, &b, &a] {
        let (status, _, body) = token_from(via, &id, &secret, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for via in [&b, &a] {
        let (status, headers, body) = token_from(via, &id, &secret, None).await;
        let retry = assert_slow_down("fourth issuance", status, &headers, &body);
        assert!((3500..=3600).contains(&retry), "{retry}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.contains(&secret)),
            "{body}"
        );
    }
    // Another account is not affected.
    let (_, _, other, other_secret) = account(&b, json!({})).await;
    assert_eq!(
        token_from(&a, &other, &other_secret, None).await.0,
        StatusCode::OK
    );
    let metrics = b.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "tollgate_token_requests_total",
            &[("outcome", "issue_rate_limited")]
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_source_outside_the_allowlist_as_invalid_client() {
    let echo = EchoUpstream::start();
    let t = instance(&echo, &unique_prefix(), "").await;
    let (org, sa, id, secret) = account(&t, json!({"ip_allowlist": ["198.51.100.0/24"]})).await;
    // Through the trusted loopback proxy, from inside and outside the list.
    let (status, _, body) = token_from(&t, &id, &secret, Some("198.51.100.7")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, headers, refused) = token_from(&t, &id, &secret, Some("203.0.113.9")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"tollgate\"")
    );
    // The same answer as a wrong secret: a leaked secret learns nothing.
    let (_, _, wrong) = token_from(&t, &id, "tg_sk_wrong", Some("198.51.100.7")).await;
    assert_eq!(refused, wrong);
    // The peer itself (loopback) is outside the list.
    assert_eq!(
        token_from(&t, &id, &secret, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, events) = t
        .admin()
        .get(&format!("{}/audit-events", org_path(&org)))
        .await;
    let refusal = events["data"]
        .as_array()
        .and_then(|e| {
            e.iter()
                .find(|e| e["details"]["cause"] == "source_not_allowed")
        })
        .unwrap_or_else(|| panic!("{events}"))
        .clone();
    assert_eq!(refusal["target"], sa.as_str());
    let logs = t.logs();
    assert!(!logs.contains(&secret), "the secret reached the log");
}

/// From outside the allowlist a right secret counts against the failure
/// throttle exactly as a wrong one does, warm or not: the throttle tells
/// nothing about the secret (before, a right one was forgiven and a
/// refused client could tell it from wrong ones by never being slowed).
#[tokio::test]
async fn a_right_secret_from_a_refused_source_is_throttled_as_a_wrong_one() {
    let echo = EchoUpstream::start();
    let t = instance(
        &echo,
        &unique_prefix(),
        "[throttle]\nwindow_seconds = 3600\nmax_failures_per_client_source = 3\nmax_failures_per_source = 1000",
    )
    .await;
    let (_, _, id, secret) = account(&t, json!({"ip_allowlist": ["198.51.100.0/24"]})).await;
    // A token from inside the list: the secret is now recently verified.
    let (status, _, body) = token_from(&t, &id, &secret, Some("198.51.100.7")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for attempt in 1..=3 {
        let (status, _, body) = token_from(&t, &id, &secret, Some("203.0.113.9")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}: {body}"
        );
    }
    let (status, _, body) = token_from(&t, &id, &secret, Some("203.0.113.9")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "slow_down");
    // The same client from inside the list is not slowed.
    let (status, _, body) = token_from(&t, &id, &secret, Some("198.51.100.7")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let echo = EchoUpstream::start();
    // No trusted proxy: X-Forwarded-For is the client's word, ignored.
    let t = Tollgate::start(
        TollgateOptions::new()
            .key_prefix(unique_prefix())
            .policy("p.toml", TOOLS_ROUTE)
            .upstream("backend", &[echo.addr_string()]),
    )
    .await;
    let (_, _, id, secret) = account(&t, json!({"ip_allowlist": ["198.51.100.0/24"]})).await;
    assert_eq!(
        token_from(&t, &id, &secret, Some("198.51.100.7")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, _, id, secret) = account(&t, json!({"ip_allowlist": ["127.0.0.1"]})).await;
    assert_eq!(
        token_from(&t, &id, &secret, Some("198.51.100.7")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn with_ip_allowlist_on_requests_every_request_is_checked() {
    let echo = EchoUpstream::start();
    let t = instance(&echo, &unique_prefix(), "").await;
    let (org, sa, id, secret) = account(
        &t,
        json!({"ip_allowlist": ["198.51.100.0/24"], "ip_allowlist_on_requests": true}),
    )
    .await;
    let (_, _, body) = token_from(&t, &id, &secret, Some("198.51.100.7")).await;
    let token = access_token(&body);
    echo.clear();
    assert_eq!(
        tools(&t, &token, Some("198.51.100.8")).await.0,
        StatusCode::OK
    );
    for from in [Some("203.0.113.9"), None, Some("198.51.100.8, 203.0.113.9")] {
        let (status, denied) = tools(&t, &token, from).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{from:?}: {denied}");
        assert_eq!(denied["error"], "ip_not_allowed");
        assert!(!denied.to_string().contains("203.0.113.9"), "{denied}");
    }
    assert_eq!(echo.count(), 1, "refused requests reach no upstream");
    let whoami = |from: &'static str| {
        t.http()
            .get(t.proxy_url("/api/v1/service-account/whoami"))
            .bearer_auth(&token)
            .header("x-forwarded-for", from)
            .send()
    };
    assert_eq!(
        whoami("198.51.100.8").await.expect("whoami").status(),
        StatusCode::OK
    );
    assert_eq!(
        whoami("203.0.113.9").await.expect("whoami").status(),
        StatusCode::FORBIDDEN,
        "whoami is a request too"
    );

    // Without the flag, the list binds only the token endpoint.
    let (_, _, id2, secret2) = account(&t, json!({"ip_allowlist": ["198.51.100.0/24"]})).await;
    let (_, _, body) = token_from(&t, &id2, &secret2, Some("198.51.100.7")).await;
    assert_eq!(
        tools(&t, &access_token(&body), Some("203.0.113.9")).await.0,
        StatusCode::OK
    );

    // A changed list applies to live tokens: they are revoked.
    let (status, _) = t
        .admin()
        .patch(
            &format!("{}/service-accounts/{sa}", org_path(&org)),
            json!({"ip_allowlist": ["203.0.113.0/24"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tools(&t, &token, Some("198.51.100.8")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, _, body) = token_from(&t, &id, &secret, Some("203.0.113.9")).await;
    let token = access_token(&body);
    assert_eq!(
        tools(&t, &token, Some("203.0.113.9")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        tools(&t, &token, Some("198.51.100.8")).await.0,
        StatusCode::FORBIDDEN
    );

    let metrics = t.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "tollgate_authz_decisions_total",
            &[
                ("route", "tools"),
                ("decision", "deny"),
                ("reason", "ip_not_allowed")
            ]
        )
        .is_some_and(|n| n >= 4.0),
        "{metrics}"
    );
}

/// A management token of an account with `ip_allowlist_on_requests` is held
/// to the list on the admin API too (the peer address there: the admin
/// listener trusts no proxy header): from outside it, 403 before anything
/// is read or changed.
#[tokio::test]
async fn a_management_token_is_held_to_its_accounts_allowlist_on_the_admin_api() {
    let echo = EchoUpstream::start();
    let t = instance(&echo, &unique_prefix(), "").await;
    let mut tokens = Vec::new();
    for allowlist in [
        json!(["198.51.100.0/24"]),
        json!(["198.51.100.0/24", "127.0.0.1/32"]),
    ] {
        let org = unique_id("org");
        let (status, created) = t
            .admin()
            .post(
                &format!("{}/service-accounts", org_path(&org)),
                json!({
                    "name": unique_id("automation"),
                    "scopes": ["admin:write"],
                    "ip_allowlist": allowlist,
                    "ip_allowlist_on_requests": true,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let response = t
            .http()
            .post(t.proxy_url("/api/auth/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", "198.51.100.7")
            .basic_auth(
                created["credential"]["client_id"].as_str().expect("id"),
                created["credential"]["client_secret"].as_str(),
            )
            .body("grant_type=client_credentials&scope=admin:write")
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.json::<Value>().await.expect("json");
        tokens.push((org, access_token(&body)));
    }
    // Only 198.51.100.0/24: the admin API from 127.0.0.1 is refused.
    let (org, token) = &tokens[0];
    let path = format!("{}/service-accounts", org_path(org));
    let (status, body) = t.admin().with_key(token).get(&path).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    let (status, body) = t
        .admin()
        .with_key(token)
        .post(&path, json!({"name": "made from outside", "scopes": []}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, listed) = t.admin().get(&path).await;
    assert!(
        !listed.to_string().contains("made from outside"),
        "{listed}"
    );
    // 127.0.0.1 on the list: the same request is served.
    let (org, token) = &tokens[1];
    let (status, body) = t
        .admin()
        .with_key(token)
        .get(&format!("{}/service-accounts", org_path(org)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
