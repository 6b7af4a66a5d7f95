//! Redis failing under load (docs/operations.md, *Failure behaviour*): while
//! it is down or blocked, every answer that needs it is a quick 503 and
//! nothing protected is forwarded; once it is back, everything recovers
//! without restarting tollgate. Each test runs a Redis of its own.

use std::time::{Duration, Instant};

use crate::common::*;

const POLICY: &str = r#"
[[route]]
name = "public"
methods = ["GET"]
path = "/public/**"
upstream = "backend"
auth = "none"

[[route]]
name = "tools"
methods = ["GET"]
path = "/api/v1/tools/**"
upstream = "backend"
scope = "tools:read"
"#;

/// How many requests of each kind run at once.
const CONCURRENT: usize = 4;

/// tollgate on `redis` in front of an echo upstream, an account in `org`
/// with its credentials, and a token.
struct World {
    tollgate: Tollgate,
    echo: EchoUpstream,
    org: String,
    client_id: String,
    client_secret: String,
    token: String,
}

impl World {
    async fn start(redis: &PrivateRedis, extra_toml: &str) -> World {
        let echo = EchoUpstream::start();
        let tollgate = Tollgate::start(
            TollgateOptions::new()
                .redis_url(redis.url())
                .policy("routes.toml", POLICY)
                .upstream("backend", &[echo.addr_string()])
                .toml(extra_toml),
        )
        .await;
        let org = unique_id("org");
        let (_, client_id, client_secret) = tollgate
            .admin()
            .create_service_account(&org, &unique_id("sa"), &["tools:read"])
            .await;
        let (status, body) = tollgate.issue_token(&client_id, &client_secret, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().expect("token").to_string();
        World {
            tollgate,
            echo,
            org,
            client_id,
            client_secret,
            token,
        }
    }

    fn accounts_path(&self) -> String {
        format!("/v1/organizations/{}/service-accounts", self.org)
    }

    /// One round of `CONCURRENT` requests of each kind — protected route,
    /// token endpoint, admin API, readiness — all at once; each answer with
    /// how long it took.
    async fn round(&self) -> Vec<(&'static str, StatusCode, Value, Duration)> {
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..CONCURRENT {
            let proxy = self.tollgate.proxy_url(&format!("/api/v1/tools/{n}"));
            let token_url = self.tollgate.proxy_url("/api/auth/oauth2/token");
            let readyz = self.tollgate.admin_url("/readyz");
            let http = self.tollgate.http().clone();
            let bearer = self.token.clone();
            tasks.spawn(timed(
                "protected route",
                http.get(proxy).bearer_auth(bearer),
            ));
            let http = self.tollgate.http().clone();
            let form = [("grant_type", "client_credentials")];
            let token_request = http
                .post(token_url)
                .basic_auth(&self.client_id, Some(&self.client_secret))
                .form(&form);
            tasks.spawn(timed("token endpoint", token_request));
            tasks.spawn(timed("readyz", http.get(readyz)));
            let admin = self.tollgate.admin();
            let path = self.accounts_path();
            tasks.spawn(async move {
                let started = Instant::now();
                let (status, body) = admin.get(&path).await;
                ("admin API", status, body, started.elapsed())
            });
        }
        let mut answers = Vec::new();
        while let Some(answer) = tasks.join_next().await {
            answers.push(answer.expect("a request task panicked"));
        }
        answers
    }

    /// Asserts every kind of request works again, within a few seconds.
    async fn assert_recovers(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answers = self.round().await;
            if answers
                .iter()
                .all(|(_, status, _, _)| *status == StatusCode::OK)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not recovered after Redis came back: {answers:#?}\n{}",
                self.tollgate.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let path = "/api/v1/tools/after";
        let (status, _, _) = self
            .tollgate
            .proxy_request(Method::GET, path, Some(&self.token))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(self.echo.last().map(|r| r.target), Some(path.to_string()));
    }
}

async fn timed(
    what: &'static str,
    request: reqwest::RequestBuilder,
) -> (&'static str, StatusCode, Value, Duration) {
    let started = Instant::now();
    let response = request.send().await.expect("request failed");
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    // Record Retry-After in the body so the caller can check it per kind.
    let body = match body {
        Value::Object(mut map) => {
            map.insert("(retry-after header)".into(), retry_after.into());
            Value::Object(map)
        }
        other => other,
    };
    (what, status, body, started.elapsed())
}

/// Every answer is a 503 within `bound`; the ones docs/contract.md §3.1, §4 and §5.2
/// give a JSON error say `temporarily_unavailable`, and protected routes
/// add `Retry-After`.
fn assert_unavailable(answers: &[(&'static str, StatusCode, Value, Duration)], bound: Duration) {
    for (what, status, body, took) in answers {
        assert_eq!(
            *status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {body} (all: {answers:#?})"
        );
        assert!(*took <= bound, "{what} took {took:?}, more than {bound:?}");
        if *what != "readyz" {
            assert_eq!(body["error"], "temporarily_unavailable", "{what}: {body}");
        }
        if *what == "protected route" {
            assert_eq!(body["(retry-after header)"], true, "{what}: Retry-After");
        }
    }
}

#[tokio::test]
async fn while_redis_is_down_everything_that_needs_it_is_a_quick_503_and_then_recovers() {
    let redis = PrivateRedis::start();
    let world = World::start(&redis, "").await;
    world.assert_recovers().await;
    world.echo.clear();

    redis.stop();
    // Decisions cached before the outage may serve for cache.ttl_ms (500 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..3 {
        let answers = world.round().await;
        assert_unavailable(&answers, Duration::from_secs(2));
    }
    assert_eq!(world.echo.count(), 0, "a protected request was forwarded");
    // Public routes need no store.
    let (status, _, _) = world
        .tollgate
        .proxy_request(Method::GET, "/public/x", None)
        .await;
    assert_eq!(status, StatusCode::OK);

    redis.restart();
    world.assert_recovers().await;
}

#[tokio::test]
async fn a_blocked_redis_makes_token_and_protected_requests_503_within_the_store_timeout() {
    const STORE_TIMEOUT: Duration = Duration::from_millis(250);
    let redis = PrivateRedis::start();
    // No decision cache: every protected request must ask the store.
    let world = World::start(
        &redis,
        &format!(
            "[store]\ntimeout_ms = {}\n[cache]\nttl_ms = 0",
            STORE_TIMEOUT.as_millis()
        ),
    )
    .await;
    world.assert_recovers().await;
    world.echo.clear();

    let blocked_since = Instant::now();
    let sleeper = redis.block_for(Duration::from_secs(2)).await;
    let answers = world.round().await;
    assert!(
        blocked_since.elapsed() < Duration::from_millis(1800),
        "the round outlasted the block, so it proves nothing"
    );
    assert_unavailable(&answers, STORE_TIMEOUT + Duration::from_millis(300));
    assert_eq!(world.echo.count(), 0, "a protected request was forwarded");

    tokio::time::timeout(Duration::from_secs(5), sleeper)
        .await
        .expect("DEBUG SLEEP did not end")
        .expect("the DEBUG SLEEP task panicked");
    world.assert_recovers().await;
}
