//! The test harness tested on its own: the echo upstream, raw HTTP and the
//! helpers that need neither the tollgate binary nor its config.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test]
async fn echo_upstream_records_method_target_headers_and_body() {
    let upstream = EchoUpstream::start();
    let request = "POST /api/v1/things?x=1&y=%2F HTTP/1.1\r\n\
                   Host: example.test\r\n\
                   X-Mixed-Case: One\r\n\
                   x-mixed-case: two\r\n\
                   Content-Length: 11\r\n\
                   Connection: close\r\n\
                   \r\n\
                   hello world";

    let response = RawResponse::fetch(upstream.addr(), request).await;

    assert_eq!(response.status, 200);
    let recorded = upstream.last().expect("one request recorded");
    assert_eq!(upstream.count(), 1);
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.target, "/api/v1/things?x=1&y=%2F");
    assert_eq!(recorded.path(), "/api/v1/things");
    assert_eq!(recorded.query(), Some("x=1&y=%2F"));
    assert_eq!(recorded.body, b"hello world");
    assert_eq!(
        recorded.headers[..3],
        [
            ("Host".to_string(), "example.test".to_string()),
            ("X-Mixed-Case".to_string(), "One".to_string()),
            ("x-mixed-case".to_string(), "two".to_string()),
        ]
    );
    assert_eq!(recorded.header_all("X-MIXED-CASE"), ["One", "two"]);

    let body = response.json();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["target"], "/api/v1/things?x=1&y=%2F");
    assert_eq!(body["headers"][1], json!(["X-Mixed-Case", "One"]));
    assert_eq!(body["body"], "hello world");
}

#[tokio::test]
async fn echo_upstream_decodes_a_chunked_body_with_extensions_and_trailers() {
    let upstream = EchoUpstream::start();
    let request = "PUT /upload HTTP/1.1\r\n\
                   Host: x\r\n\
                   Transfer-Encoding: chunked\r\n\
                   \r\n\
                   5;ext=1\r\nhello\r\n\
                   1\r\n \r\n\
                   c\r\nworld, again\r\n\
                   0\r\n\
                   X-Trailer: t\r\n\
                   \r\n";

    let response = RawResponse::fetch(upstream.addr(), request).await;

    assert_eq!(response.status, 200);
    assert_eq!(
        upstream.last().expect("recorded").body_str(),
        "hello world, again"
    );
    assert_eq!(response.json()["body"], "hello world, again");
}

#[tokio::test]
async fn echo_upstream_keeps_the_connection_alive_between_requests() {
    let upstream = EchoUpstream::start();
    let two_requests = "GET /first HTTP/1.1\r\nHost: x\r\n\r\n\
                        GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    let bytes = raw_http_until_close(upstream.addr(), two_requests).await;

    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    let targets: Vec<_> = upstream.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/first", "/second"]);
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn echo_upstream_answers_an_ordinary_client_and_can_be_cleared() {
    let upstream = EchoUpstream::start();
    let client = reqwest::Client::new();

    let response = client
        .get(format!("http://{}/hello?a=b", upstream.addr()))
        .header("x-echo-status", "418")
        .send()
        .await
        .expect("request to the echo upstream");

    assert_eq!(response.status().as_u16(), 418);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["target"], "/hello?a=b");
    assert_eq!(body["upstream"], upstream.addr_string());
    assert_eq!(upstream.count(), 1);
    upstream.clear();
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn delayed_upstream_records_at_once_and_answers_after_the_delay() {
    let upstream = EchoUpstream::start_delayed(Duration::from_millis(300));
    let started = Instant::now();

    let response = RawResponse::fetch(
        upstream.addr(),
        "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(response.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(upstream.last().expect("recorded").target, "/slow");
}

#[tokio::test]
async fn closing_upstream_sends_no_response() {
    let upstream = EchoUpstream::start_closing();

    let bytes = raw_http(upstream.addr(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;

    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(upstream.count(), 0);
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn a_dropped_upstream_frees_its_port() {
    let upstream = EchoUpstream::start();
    let addr = upstream.addr();
    drop(upstream);

    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn echo_upstream_rejects_a_malformed_request_line() {
    let upstream = EchoUpstream::start();

    let response = RawResponse::fetch(upstream.addr(), "NONSENSE\r\n\r\n").await;

    assert_eq!(response.status, 400);
    assert_eq!(upstream.count(), 0);
}

#[test]
fn raw_response_parses_a_chunked_body_after_an_interim_response() {
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\n\
                  HTTP/1.1 403 Forbidden\r\n\
                  WWW-Authenticate: Bearer realm=\"tollgate\"\r\n\
                  Transfer-Encoding: chunked\r\n\
                  \r\n\
                  7\r\n{\"a\":1}\r\n0\r\n\r\n";

    let response = RawResponse::parse(bytes).expect("a response");

    assert_eq!(response.status, 403);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"tollgate\"")
    );
    assert_eq!(response.json(), json!({ "a": 1 }));
}

#[test]
fn raw_response_is_none_without_a_complete_head() {
    assert!(RawResponse::parse(b"HTTP/1.1 200 OK\r\nContent-Len").is_none());
    assert!(RawResponse::parse(b"").is_none());
}

#[test]
fn metric_value_finds_a_sample_by_name_and_labels_in_any_order() {
    let text = "# HELP tollgate_authz_decisions_total Decisions.\n\
                # TYPE tollgate_authz_decisions_total counter\n\
                tollgate_authz_decisions_total{decision=\"allow\",reason=\"ok\",route=\"r1\"} 3\n\
                tollgate_authz_decisions_total{decision=\"deny\",reason=\"no_route\",route=\"-\"} 1\n\
                tollgate_policy_routes 4\n";

    let allow = [("route", "r1"), ("decision", "allow"), ("reason", "ok")];
    assert_eq!(
        metric_value(text, "tollgate_authz_decisions_total", &allow),
        Some(3.0)
    );
    assert_eq!(metric_value(text, "tollgate_policy_routes", &[]), Some(4.0));
    let partial = [("route", "r1")];
    assert_eq!(
        metric_value(text, "tollgate_authz_decisions_total", &partial),
        None
    );
}

#[test]
fn free_ports_and_prefixes_are_usable_and_distinct() {
    let port = free_port();
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the free port can be bound");
    // Never one the kernel hands out itself, and never the same one twice.
    assert!((10_000..32_768).contains(&port), "{port}");
    let more: Vec<u16> = (0..200).map(|_| free_port()).collect();
    assert!(!more.contains(&port));
    let mut distinct = more.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), more.len());
    // A cluster node's port and its bus port (+ 10000): both in range and
    // neither given out again.
    let node = free_port_pair(10_000);
    assert!((10_000..22_000).contains(&node), "{node}");
    assert!(!more.contains(&node) && !more.contains(&(node + 10_000)));
    let after: Vec<u16> = (0..200).map(|_| free_port()).collect();
    assert!(!after.contains(&node) && !after.contains(&(node + 10_000)));

    let (a, b) = (unique_prefix(), unique_prefix());
    assert!(a.starts_with("tgtest:"));
    assert_ne!(a, b);
    let id = unique_id("org");
    assert!(id.len() <= 64);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
}

#[test]
fn extra_toml_is_merged_over_the_generated_config() {
    let opts = TollgateOptions::new()
        .memory()
        .upstream("backend", &["127.0.0.1:7001"])
        .toml("[upstreams.backend]\nread_timeout_ms = 200\n[store]\ntimeout_ms = 50\n[tokens]\nttl_seconds = 2");

    let config = opts.preview_config();

    assert_eq!(config["server"]["threads"].as_integer(), Some(1));
    assert_eq!(config["store"]["backend"].as_str(), Some("memory"));
    assert_eq!(config["store"]["timeout_ms"].as_integer(), Some(50));
    let backend = &config["upstreams"]["backend"];
    assert_eq!(backend["addrs"][0].as_str(), Some("127.0.0.1:7001"));
    assert_eq!(backend["read_timeout_ms"].as_integer(), Some(200));
    assert_eq!(config["tokens"]["ttl_seconds"].as_integer(), Some(2));
}

#[test]
fn redis_config_uses_the_test_redis_and_a_private_prefix() {
    let config = TollgateOptions::new().preview_config();

    assert_eq!(config["store"]["backend"].as_str(), Some("redis"));
    assert_eq!(config["store"]["url"].as_str(), Some(redis_url().as_str()));
    assert!(config["store"]["key_prefix"]
        .as_str()
        .is_some_and(|p| p.starts_with("tgtest:")));
}

#[tokio::test]
async fn the_test_redis_answers() {
    let mut conn = redis_connection().await;

    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("PING the test Redis");

    assert_eq!(pong, "PONG");
    let prefix = unique_prefix();
    assert!(redis_keys(&format!("{prefix}*")).await.is_empty());
}
