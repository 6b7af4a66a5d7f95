//! WebSocket tunnels opened with a token, black box: a tunnel lasts only
//! as long as its token. Revoking it (admin API or the OAuth revocation
//! endpoint) closes the tunnel within `cache.ttl_ms`, and so does its
//! expiry; a tunnel on a public route has no token and stays open.

use std::time::{Duration, Instant};

use super::setup::*;
use crate::common::*;

const SOCKET_ROUTE: &str = r#"
[[route]]
name = "socket"
path = "/ws/**"
upstream = "backend"
scope = "tools:read"
"#;

/// The cache TTL these tests run with: the bound on closing a tunnel.
const CACHE_TTL: Duration = Duration::from_millis(1000);

/// An upstream that accepts every upgrade and echoes what the tunnel carries.
async fn socket_upstream() -> ScriptedUpstream {
    ScriptedUpstream::start(|mut conn| async move {
        if conn.head().await.is_none() || !conn.write(SWITCHED).await {
            return;
        }
        while let Some(bytes) = conn.read_some(Duration::from_secs(30)).await {
            if bytes.is_empty() || !conn.write(&bytes).await {
                break;
            }
        }
        conn.close().await;
    })
    .await
}

struct Setup {
    tollgate: Tollgate,
    _upstream: ScriptedUpstream,
    org: String,
    sa_id: String,
    client_id: String,
    secret: String,
    token: String,
}

/// The options of a tollgate in front of `upstream`, with `CACHE_TTL`.
fn options(upstream: &ScriptedUpstream, extra: &str) -> TollgateOptions {
    TollgateOptions::new()
        .policy("routes.toml", format!("{SOCKET_ROUTE}{PUBLIC_ROUTE}"))
        .upstream("backend", &[upstream.addr_string()])
        .toml(format!(
            "[cache]\nttl_ms = {}\n[store]\ntimeout_ms = 2000\n{extra}",
            CACHE_TTL.as_millis()
        ))
}

async fn setup(extra: &str) -> Setup {
    let upstream = socket_upstream().await;
    let tollgate = Tollgate::start(options(&upstream, extra)).await;
    let org = unique_id("org");
    let (sa, client_id, secret) = tollgate
        .admin()
        .create_service_account(&org, &unique_id("sa"), &["tools:read"])
        .await;
    let (status, body) = tollgate.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Setup {
        org,
        sa_id: sa["id"].as_str().expect("sa id").to_string(),
        client_id,
        secret,
        token: body["access_token"].as_str().expect("token").to_string(),
        tollgate,
        _upstream: upstream,
    }
}

/// Opens a tunnel to `path` (with the bearer token, if any) and checks
/// that it carries bytes both ways.
async fn open_tunnel(tollgate: &Tollgate, path: &str, token: Option<&str>) -> RawConnection {
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    assert!(client.send(upgrade_request(path, &authorization)).await);
    let head = client.read_until(b"\r\n\r\n", IO_TIMEOUT).await;
    let head = text(&head.expect("an answer to the upgrade"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_carries(&mut client, b"ping").await;
    client
}

async fn assert_carries(client: &mut RawConnection, message: &[u8]) {
    assert!(client.send(message).await, "the tunnel refused a write");
    let echoed = client.read_until(message, IO_TIMEOUT).await;
    assert_eq!(echoed.as_deref(), Some(message), "the tunnel did not echo");
}

/// Asserts that the tunnel closes within `bound`, and that a tunnel
/// opened without a token is still open.
async fn assert_closes_within(
    client: &mut RawConnection,
    bound: Duration,
    public: &mut RawConnection,
) {
    let started = Instant::now();
    let (_, closed) = client.read_to_close(bound).await;
    assert!(
        closed,
        "the tunnel was still open {:?} after its token became invalid",
        started.elapsed()
    );
    assert_carries(public, b"still-here").await;
}

#[tokio::test]
async fn a_tunnel_closes_when_the_admin_api_revokes_its_token() {
    let s = setup("").await;
    let mut tunnel = open_tunnel(&s.tollgate, "/ws/feed", Some(&s.token)).await;
    let mut public = open_tunnel(&s.tollgate, "/public/feed", None).await;
    s.tollgate
        .admin()
        .revoke_account_tokens(&s.org, &s.sa_id)
        .await;
    assert_closes_within(&mut tunnel, CACHE_TTL, &mut public).await;
}

#[tokio::test]
async fn a_tunnel_closes_when_the_oauth_endpoint_revokes_its_token() {
    let s = setup("").await;
    let mut tunnel = open_tunnel(&s.tollgate, "/ws/feed", Some(&s.token)).await;
    let mut public = open_tunnel(&s.tollgate, "/public/feed", None).await;
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", s.token.as_str())])
        .finish();
    let revoked = s
        .tollgate
        .http()
        .post(s.tollgate.proxy_url("/api/auth/oauth2/revoke"))
        .basic_auth(&s.client_id, Some(&s.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_closes_within(&mut tunnel, CACHE_TTL, &mut public).await;
}

#[tokio::test]
async fn a_tunnel_closes_when_its_token_expires() {
    let s = setup("[tokens]\nttl_seconds = 2").await;
    let mut tunnel = open_tunnel(&s.tollgate, "/ws/feed", Some(&s.token)).await;
    let mut public = open_tunnel(&s.tollgate, "/public/feed", None).await;
    // Open and working until the token expires, at most 2 s after issue.
    assert_carries(&mut tunnel, b"before-expiry").await;
    assert_closes_within(&mut tunnel, Duration::from_secs(2) + CACHE_TTL, &mut public).await;
}

/// A revocation made through another instance reaches this one over the
/// invalidation bus (or, were the bus down, as the cache entry expires):
/// the tunnel closes within `cache.ttl_ms` either way.
#[tokio::test]
async fn a_tunnel_closes_when_another_instance_revokes_its_token() {
    let upstream = socket_upstream().await;
    let prefix = unique_prefix();
    let a = Tollgate::start(options(&upstream, "").key_prefix(prefix.clone())).await;
    let b = Tollgate::start(options(&upstream, "").key_prefix(prefix)).await;
    let org = unique_id("org");
    let (sa_id, token) = a.account_with_token(&org, &["tools:read"]).await;
    let mut tunnel = open_tunnel(&a, "/ws/feed", Some(&token)).await;
    let mut public = open_tunnel(&a, "/public/feed", None).await;
    b.admin().revoke_account_tokens(&org, &sa_id).await;
    assert_closes_within(&mut tunnel, CACHE_TTL, &mut public).await;
}
