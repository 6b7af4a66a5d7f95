//! HTTP/1.1 forwarding edge cases, black box: a client over raw TCP, tollgate,
//! and an upstream each test scripts byte by byte (upgrades, 1xx answers,
//! framing, connection reuse, hop-by-hop fields, early answers).

use std::time::Duration;

use super::setup::*;
use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::sleep;

/// How long a client waits for something that may never come.
const SHORT_WAIT: Duration = Duration::from_secs(2);

/// A keep-alive `200 OK` carrying `body` with a Content-Length.
fn ok(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// Asks for a WebSocket upgrade of `/public/socket`; the answer's head.
async fn upgrade(client: &mut RawConnection) -> String {
    assert!(client.send(upgrade_request("/public/socket", "")).await);
    let head = client.read_until(b"\r\n\r\n", IO_TIMEOUT).await;
    text(&head.expect("an answer to the upgrade request"))
}

#[tokio::test]
async fn a_websocket_upgrade_is_tunnelled_both_ways() {
    let upstream = ScriptedUpstream::start(|mut conn| async move {
        if conn.head().await.is_none() {
            return;
        }
        if !conn.write(SWITCHED).await || !conn.write("hello-from-upstream").await {
            return;
        }
        // Echo every byte back (however the reads split them) until "bye".
        let mut seen = Vec::new();
        while let Some(bytes) = conn.read_some(IO_TIMEOUT).await {
            seen.extend_from_slice(&bytes);
            if bytes.is_empty() || !conn.write(&bytes).await || seen.ends_with(b"bye") {
                break;
            }
        }
        conn.close().await;
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let head = upgrade(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");

    let (_, got) = &upstream.requests()[0];
    assert_eq!(got.header("upgrade"), Some("websocket"));
    assert_eq!(
        got.header("connection").map(str::to_ascii_lowercase),
        Some("upgrade".into())
    );
    assert_eq!(
        got.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );

    // Upstream to client, unprompted; then client bytes (binary, and
    // bytes that look like HTTP) there and back: all echoed as sent.
    assert!(client
        .read_until(b"hello-from-upstream", IO_TIMEOUT)
        .await
        .is_some());
    for message in [
        b"ping-1".to_vec(),
        b"\x00\xff\x81\x05GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        assert!(client.send(&message).await);
        let got = client.read_until(&message, IO_TIMEOUT).await;
        assert_eq!(got.as_deref(), Some(message.as_slice()), "{message:?}");
    }
    // The upstream closing its side ends the tunnel for the client too.
    assert!(client.send("bye").await);
    let (rest, closed) = client.read_to_close(IO_TIMEOUT).await;
    assert_eq!(text(&rest), "bye");
    assert!(
        closed,
        "the client connection stayed open after the upstream closed"
    );
    assert_eq!(upstream.connections(), 1);
}

/// An upgraded connection lives while either side sends; once nothing has
/// gone either way for the upstream's read timeout it is closed, with no
/// error answer written into the tunnel (the client speaks WebSocket there,
/// not HTTP).
/// A `101` whose `Sec-WebSocket-Accept` does not answer the request's key
/// (or that has none) is not a WebSocket server's: no tunnel, a 502.
#[tokio::test]
async fn a_101_without_the_right_websocket_accept_opens_no_tunnel() {
    for switched in [
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: AAAALMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nupstream-bytes",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
         upstream-bytes",
    ] {
        let upstream = ScriptedUpstream::start(move |mut conn| async move {
            if conn.head().await.is_some() && conn.write(switched).await {
                let _ = conn.read_some(IO_TIMEOUT).await;
            }
        })
        .await;
        let tollgate = tollgate_before(&upstream).await;
        let mut client = RawConnection::open(tollgate.proxy_addr()).await;
        let head = upgrade(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 502 "), "{switched:?}: {head}");
        let (rest, closed) = client.read_to_close(SHORT_WAIT).await;
        assert!(!text(&rest).contains("upstream-bytes"), "{}", text(&rest));
        assert!(text(&rest).contains("bad_gateway"), "{}", text(&rest));
        assert!(closed, "the client connection stayed open");
    }
}

#[tokio::test]
async fn a_tunnel_closes_quietly_after_the_read_timeout_passes_in_silence() {
    let upstream = ScriptedUpstream::start(|mut conn| async move {
        if conn.head().await.is_none() {
            return;
        }
        if !conn.write(SWITCHED).await {
            return;
        }
        while let Some(bytes) = conn.read_some(IO_TIMEOUT).await {
            if bytes.is_empty() || !conn.write(&bytes).await {
                break;
            }
        }
        conn.close().await;
    })
    .await;
    let read_timeout = Duration::from_millis(1000);
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", PUBLIC_ROUTE)
            .upstream("backend", &[upstream.addr_string()])
            .toml(format!(
                "[upstreams.backend]\nread_timeout_ms = {}",
                read_timeout.as_millis()
            )),
    )
    .await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let head = upgrade(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");

    // Traffic for well over the read timeout keeps the tunnel open.
    let started = std::time::Instant::now();
    let mut n = 0;
    while started.elapsed() < read_timeout * 5 / 2 {
        n += 1;
        let message = format!("m{n};");
        assert!(
            client.send(&message).await,
            "the tunnel closed under traffic"
        );
        let echoed = client.read_until(message.as_bytes(), IO_TIMEOUT).await;
        assert_eq!(
            echoed.as_deref(),
            Some(message.as_bytes()),
            "message {n} was not echoed"
        );
        sleep(read_timeout / 10).await;
    }

    // Silence: closed after the read timeout, and nothing else arrives.
    let (rest, closed) = client.read_to_close(IO_TIMEOUT).await;
    assert!(closed, "the silent tunnel stayed open");
    assert_eq!(
        text(&rest),
        "",
        "bytes written into the tunnel as it closed"
    );
    assert_eq!(upstream.connections(), 1);
}

/// Upstream: answers `100 Continue` itself when asked (if `send_continue`),
/// reads the body, then answers 200 with what it read.
async fn continue_upstream(send_continue: bool) -> ScriptedUpstream {
    ScriptedUpstream::start(move |mut conn| async move {
        let Some(head) = conn.head().await else {
            return;
        };
        if send_continue
            && head.header("expect").is_some()
            && !conn.write("HTTP/1.1 100 Continue\r\n\r\n").await
        {
            return;
        }
        let length: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let Some(body) = conn.read_exact(length).await else {
            return;
        };
        conn.write(ok([b"got:".as_slice(), &body].concat())).await;
        conn.close().await;
    })
    .await
}

const EXPECT_HEAD: &str = "POST /public/upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
                           Content-Length: 11\r\n\r\n";

#[tokio::test]
async fn expect_100_continue_is_answered_once_by_tollgate_when_allowed() {
    let upstream = continue_upstream(true).await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    assert!(client.send(EXPECT_HEAD).await);
    let interim = client.read_until(b"\r\n\r\n", IO_TIMEOUT).await;
    let interim = text(&interim.expect("an interim answer before the body"));
    assert!(interim.starts_with("HTTP/1.1 100 "), "{interim}");
    assert!(client.send("hello world").await);
    // The upstream's own 100 is not passed on after tollgate's: the next
    // answer is the final one.
    let response = parsed(client.answer(false).await, "after the body");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_str(), "got:hello world");

    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].1.header("expect"), Some("100-continue"));
}

#[tokio::test]
async fn expect_100_continue_with_a_silent_upstream_is_answered_by_tollgate() {
    let upstream = continue_upstream(false).await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    assert!(client.send(EXPECT_HEAD).await);
    // The request is allowed, so tollgate answers 100 Continue at once:
    // the client need not wait out its own timer (curl waits 1 s).
    let interim = client.read_until(b"\r\n\r\n", SHORT_WAIT).await;
    let interim = text(&interim.expect("tollgate's 100 Continue"));
    assert!(interim.starts_with("HTTP/1.1 100 "), "{interim}");
    assert!(client.send("hello world").await);
    let response = parsed(client.answer(false).await, "after the body");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_str(), "got:hello world");
    assert_eq!(
        upstream.requests()[0].1.header("expect"),
        Some("100-continue")
    );
}

/// After tollgate's `100 Continue`, an upstream that cannot be reached
/// still gets the client a final answer: 502, not a closed connection.
#[tokio::test]
async fn expect_100_continue_to_a_dead_upstream_ends_in_a_bad_gateway() {
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", PUBLIC_ROUTE)
            .upstream("backend", &[dead_addr()]),
    )
    .await;
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    assert!(client.send(EXPECT_HEAD).await);
    let interim = client.read_until(b"\r\n\r\n", IO_TIMEOUT).await;
    let interim = text(&interim.expect("tollgate's 100 Continue"));
    assert!(interim.starts_with("HTTP/1.1 100 "), "{interim}");
    assert!(client.send("hello world").await);
    let response = parsed(client.answer(false).await, "the final answer");
    assert_eq!(response.status, 502, "{}", response.body_str());
    assert_eq!(response.json()["error"], "bad_gateway");
}

#[tokio::test]
async fn a_chunked_response_reaches_the_client_intact() {
    let chunks: [&[u8]; 4] = [b"first,", b"second chunk,", &[b'x'; 5000], b"\r\nlast"];
    let upstream = ScriptedUpstream::start(move |mut conn| async move {
        while conn.request().await.is_some() {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            if !conn.write(head).await {
                return;
            }
            for chunk in chunks {
                let framed = [
                    format!("{:x};ext=1\r\n", chunk.len()).as_bytes(),
                    chunk,
                    b"\r\n",
                ]
                .concat();
                if !conn.write(framed).await {
                    return;
                }
                sleep(Duration::from_millis(20)).await;
            }
            if !conn.write("0\r\n\r\n").await {
                return;
            }
        }
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    for round in 0..2 {
        let response = parsed(client.exchange(get("/public/chunks")).await, "chunked");
        assert_eq!(response.status, 200, "round {round}");
        assert_eq!(response.body, chunks.concat(), "round {round}");
    }
    assert_eq!(
        upstream.connections(),
        1,
        "the upstream connection was kept"
    );
}

/// Upstream: answers every request close-delimited (no length, no chunking).
async fn close_delimited_upstream() -> ScriptedUpstream {
    ScriptedUpstream::start(|mut conn| async move {
        if conn.request().await.is_none() {
            return;
        }
        if !conn
            .write("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
            .await
        {
            return;
        }
        for part in ["part one, ", "part two, ", "the end"] {
            if !conn.write(part).await {
                return;
            }
            sleep(Duration::from_millis(20)).await;
        }
        conn.close().await;
    })
    .await
}

#[tokio::test]
async fn a_close_delimited_response_reaches_the_client_whole() {
    let upstream = close_delimited_upstream().await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    assert!(
        client
            .send("GET /public/stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
    );
    let (bytes, closed) = client.read_to_close(IO_TIMEOUT).await;
    let response = RawResponse::parse(&bytes).expect("an HTTP answer");
    assert_eq!(response.status, 200, "{}", text(&bytes));
    assert_eq!(response.body_str(), "part one, part two, the end");
    assert!(closed);
}

#[tokio::test]
async fn a_close_delimited_response_is_chunked_to_a_kept_alive_client() {
    let upstream = close_delimited_upstream().await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    for round in 0..2 {
        let response = parsed(client.exchange(get("/public/stream")).await, "stream");
        assert_eq!(response.status, 200, "round {round}");
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));
        assert_eq!(response.body_str(), "part one, part two, the end");
    }
    assert_eq!(
        upstream.connections(),
        2,
        "one upstream connection per answer"
    );
}

#[tokio::test]
async fn bodiless_answers_leave_the_client_connection_usable() {
    let upstream = ScriptedUpstream::answering(|request| match request.path() {
        "/public/no-content" => b"HTTP/1.1 204 No Content\r\nx-case: 204\r\n\r\n".to_vec(),
        "/public/not-modified" => b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\
                                   content-length: 5\r\n\r\n"
            .to_vec(),
        "/public/head" => {
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\n".to_vec()
        }
        path => ok(format!("after {path}")),
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let cases = [
        ("GET", "/public/no-content", 204),
        ("GET", "/public/not-modified", 304),
        ("HEAD", "/public/head", 200),
    ];
    for (method, path, status) in cases {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        let response = parsed(client.exchange(request).await, path);
        assert_eq!(response.status, status, "{path}");
        assert!(
            response.body.is_empty(),
            "{path}: {:?}",
            response.body_str()
        );
        let next = parsed(client.exchange(get("/public/next")).await, "next");
        assert_eq!(next.status, 200, "after {path}");
        assert_eq!(next.body_str(), "after /public/next", "after {path}");
    }
    assert!(client
        .stray_bytes(Duration::from_millis(200))
        .await
        .is_empty());
    // HEAD keeps its Content-Length; the 304 keeps its validator.
    let response = parsed(
        client
            .exchange("HEAD /public/head HTTP/1.1\r\nHost: t\r\n\r\n")
            .await,
        "head",
    );
    assert_eq!(response.header("content-length"), Some("5"));
    let response = parsed(client.exchange(get("/public/not-modified")).await, "304");
    assert_eq!(response.header("etag"), Some("\"v1\""));
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_does_not_fail_the_next_request() {
    let upstream = ScriptedUpstream::start(|mut conn| async move {
        if conn.index == 1 {
            // Answer once with keep-alive, then drop the idle connection.
            if conn.request().await.is_some() && conn.write(ok("first")).await {
                sleep(Duration::from_millis(100)).await;
            }
            conn.close().await;
            return;
        }
        while conn.request().await.is_some() {
            if !conn.write(ok("fresh")).await {
                return;
            }
        }
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let first = parsed(client.exchange(get("/public/a")).await, "first");
    assert_eq!((first.status, first.body_str().as_str()), (200, "first"));
    sleep(Duration::from_millis(500)).await;
    let second = parsed(client.exchange(get("/public/b")).await, "second");
    assert_eq!(
        (second.status, second.body_str().as_str()),
        (200, "fresh"),
        "{}",
        second.body_str()
    );
    let on: Vec<usize> = upstream.requests().iter().map(|(c, _)| *c).collect();
    assert_eq!(on, [1, 2]);
}

/// Upstream: its first connection answers `first` with keep-alive, then
/// reads the next request and closes without answering, as a server whose
/// idle timeout fired just as the request came; later connections answer
/// `retried:METHOD:BODY`.
async fn stale_on_reuse_upstream() -> ScriptedUpstream {
    ScriptedUpstream::start(|mut conn| async move {
        if conn.index == 1 {
            if conn.request().await.is_some() && conn.write(ok("first")).await {
                conn.request().await;
            }
            conn.close().await;
            return;
        }
        while let Some(request) = conn.request().await {
            let answer = format!("retried:{}:{}", request.method, request.body_str());
            if !conn.write(ok(answer)).await {
                return;
            }
        }
    })
    .await
}

/// Sends `GET /public/a` then `second` on one client connection; returns
/// the second answer and, per request the upstream read, its connection
/// number with `METHOD TARGET BODY`.
async fn second_request_after_stale_reuse(second: &str) -> (RawResponse, Vec<(usize, String)>) {
    let upstream = stale_on_reuse_upstream().await;
    let tollgate = tollgate_before(&upstream).await;
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let first = parsed(client.exchange(get("/public/a")).await, "first");
    assert_eq!((first.status, first.body_str().as_str()), (200, "first"));
    let response = parsed(client.exchange(second).await, "second");
    let seen = requests_seen(&upstream);
    (response, seen)
}

#[tokio::test]
async fn a_reused_upstream_connection_closed_on_the_next_request_is_retried_on_a_fresh_one() {
    let (response, seen) = second_request_after_stale_reuse(&get("/public/b")).await;
    assert_eq!(
        (response.status, response.body_str().as_str()),
        (200, "retried:GET:")
    );
    assert_eq!(
        seen,
        [
            (1, "GET /public/a ".to_string()),
            (1, "GET /public/b ".to_string()),
            (2, "GET /public/b ".to_string())
        ]
    );
}

#[tokio::test]
async fn an_idempotent_request_is_retried_with_its_body() {
    let put = "PUT /public/b HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\npayload";
    let (response, seen) = second_request_after_stale_reuse(put).await;
    assert_eq!(
        (response.status, response.body_str().as_str()),
        (200, "retried:PUT:payload")
    );
    assert_eq!(
        seen,
        [
            (1, "GET /public/a ".to_string()),
            (1, "PUT /public/b payload".to_string()),
            (2, "PUT /public/b payload".to_string())
        ]
    );
}

/// The upstream may have acted on it (RFC 9110 §9.2.2): a POST is not sent twice.
/// A chunked body with trailers, sent again on a new connection after the
/// pooled one failed, ends there with one end-of-body marker: the new
/// connection then carries the next request (nothing stray closed it).
#[tokio::test]
async fn a_retried_chunked_body_with_trailers_leaves_the_new_connection_clean() {
    let upstream = stale_on_reuse_upstream().await;
    let tollgate = tollgate_before(&upstream).await;
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let first = parsed(client.exchange(get("/public/a")).await, "first");
    assert_eq!((first.status, first.body_str().as_str()), (200, "first"));
    let put = "PUT /public/b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
               5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n";
    let retried = parsed(client.exchange(put).await, "put");
    assert_eq!(
        (retried.status, retried.body_str().as_str()),
        (200, "retried:PUT:hello")
    );
    sleep(Duration::from_millis(100)).await;
    let next = parsed(client.exchange(get("/public/c")).await, "next");
    assert_eq!(
        (next.status, next.body_str().as_str()),
        (200, "retried:GET:")
    );
    let seen = requests_seen(&upstream);
    assert_eq!(
        seen,
        [
            (1, "GET /public/a ".to_string()),
            (1, "PUT /public/b hello".to_string()),
            (2, "PUT /public/b hello".to_string()),
            (2, "GET /public/c ".to_string())
        ]
    );
}

#[tokio::test]
async fn a_post_is_not_retried_after_a_stale_reused_connection() {
    let post = "POST /public/b HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\npayload";
    let (response, seen) = second_request_after_stale_reuse(post).await;
    assert_eq!(response.status, 502, "{}", response.body_str());
    assert_eq!(response.json()["error"], "bad_gateway");
    assert_eq!(
        seen,
        [
            (1, "GET /public/a ".to_string()),
            (1, "POST /public/b payload".to_string())
        ]
    );
}

#[tokio::test]
async fn an_upgrade_the_upstream_declines_leaves_the_connection_plain_http() {
    let upstream =
        ScriptedUpstream::answering(|request| ok(format!("plain {}", request.target))).await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let upgrade = "GET /public/socket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    let response = parsed(client.exchange(upgrade).await, "declined upgrade");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_str(), "plain /public/socket");
    let next = parsed(client.exchange(get("/public/next")).await, "next");
    assert_eq!(
        (next.status, next.body_str().as_str()),
        (200, "plain /public/next")
    );
    assert_eq!(upstream.requests().len(), 2);
}

/// Upstream: each request is answered with `interim` first, then `200 final`.
async fn interim_upstream(interim: &'static str) -> ScriptedUpstream {
    ScriptedUpstream::start(move |mut conn| async move {
        while conn.request().await.is_some() {
            if !conn.write(interim).await {
                return;
            }
            sleep(Duration::from_millis(50)).await;
            if !conn.write(ok("final")).await {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn early_hints_are_passed_through_before_the_final_answer() {
    let upstream =
        interim_upstream("HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n").await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    for round in 0..2 {
        let bytes = client.exchange(get("/public/page")).await;
        let bytes = bytes.unwrap_or_else(|| panic!("round {round}: no answer"));
        let all = text(&bytes);
        assert!(all.starts_with("HTTP/1.1 103 "), "round {round}: {all}");
        assert!(
            all.to_ascii_lowercase()
                .contains("\r\nlink: </app.css>; rel=preload\r\n"),
            "{all}"
        );
        let response = RawResponse::parse(&bytes).expect("a final answer");
        assert_eq!(response.status, 200, "round {round}: {all}");
        assert_eq!(response.body_str(), "final", "round {round}");
    }
}

#[tokio::test]
async fn an_unprompted_100_continue_is_passed_through_before_the_final_answer() {
    let upstream = interim_upstream("HTTP/1.1 100 Continue\r\n\r\n").await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    for round in 0..2 {
        let bytes = client.exchange(get("/public/page")).await;
        let bytes = bytes.unwrap_or_else(|| panic!("round {round}: no answer"));
        let all = text(&bytes);
        assert!(all.starts_with("HTTP/1.1 100 "), "round {round}: {all}");
        let response = RawResponse::parse(&bytes).expect("a final answer");
        assert_eq!(response.status, 200, "round {round}: {all}");
        assert_eq!(response.body_str(), "final", "round {round}");
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let upstream = ScriptedUpstream::answering(|request| {
        ok(format!("{} [{}]", request.target, request.body_str()))
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;

    // Three requests in one write, the second with a body and the third
    // to no route (answered by tollgate itself), then one more after.
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let burst = format!(
        "{}POST /public/b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz{}",
        get("/public/a"),
        get("/elsewhere")
    );
    assert!(client.send(&burst).await);
    let first = parsed(client.answer(false).await, "first");
    assert_eq!(
        (first.status, first.body_str()),
        (200, "/public/a []".into())
    );
    let second = parsed(client.answer(false).await, "second");
    assert_eq!(
        (second.status, second.body_str()),
        (200, "/public/b [xyz]".into())
    );
    let third = parsed(client.answer(false).await, "third");
    assert_eq!(third.status, 404, "{}", third.body_str());
    let fourth = parsed(client.exchange(get("/public/d")).await, "fourth");
    assert_eq!(fourth.body_str(), "/public/d []");
}

#[tokio::test]
async fn requests_on_one_kept_alive_connection_are_forwarded_in_order() {
    let upstream = ScriptedUpstream::answering(|request| {
        ok(format!(
            "{} {} [{}]",
            request.method,
            request.target,
            request.body_str()
        ))
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let exchanges = [
        (get("/public/1"), "GET /public/1 []"),
        (
            "POST /public/2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nalpha".to_string(),
            "POST /public/2 [alpha]",
        ),
        (
            "POST /public/3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                .to_string(),
            "POST /public/3 [hello world]",
        ),
        (
            "PUT /public/4 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_string(),
            "PUT /public/4 []",
        ),
        (
            "DELETE /public/5?x=1 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
            "DELETE /public/5?x=1 []",
        ),
        (
            "PATCH /public/6 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbeta".to_string(),
            "PATCH /public/6 [beta]",
        ),
        (get("/public/7"), "GET /public/7 []"),
    ];
    for (request, expected) in &exchanges {
        let response = parsed(client.exchange(request).await, expected);
        assert_eq!(response.status, 200, "{expected}");
        assert_eq!(response.body_str(), *expected);
    }
    assert!(client
        .stray_bytes(Duration::from_millis(200))
        .await
        .is_empty());
    let seen: Vec<String> = upstream
        .requests()
        .into_iter()
        .map(|(_, r)| format!("{} {} [{}]", r.method, r.target, r.body_str()))
        .collect();
    let expected: Vec<&str> = exchanges.iter().map(|(_, e)| *e).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_mebibyte_passes_intact_each_way() {
    const MIB: usize = 1 << 20;
    let upstream = ScriptedUpstream::answering(|request| match request.method.as_str() {
        "GET" => ok(pattern(MIB)),
        _ => ok(format!("{} bytes", request.body.len())),
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let response = parsed(client.exchange(get("/public/big")).await, "download");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), MIB);
    assert!(response.body == pattern(MIB), "the downloaded body differs");

    let upload = [
        format!("POST /public/big HTTP/1.1\r\nHost: t\r\nContent-Length: {MIB}\r\n\r\n").as_bytes(),
        &pattern(MIB),
    ]
    .concat();
    let response = parsed(client.exchange(upload).await, "upload");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_str(), format!("{MIB} bytes"));
    let requests = upstream.requests();
    let (_, got) = requests.last().expect("the upload was forwarded");
    assert!(got.body == pattern(MIB), "the uploaded body differs");
}

/// Upstream: answers with a `Connection` option naming a field, that
/// field, `Keep-Alive`, and one end-to-end field.
async fn hop_by_hop_upstream() -> ScriptedUpstream {
    ScriptedUpstream::answering(|_| {
        b"HTTP/1.1 200 OK\r\nConnection: x-bar\r\nX-Bar: 1\r\nKeep-Alive: timeout=5\r\n\
          X-End-To-End: kept\r\ncontent-length: 2\r\n\r\nok"
            .to_vec()
    })
    .await
}

#[tokio::test]
async fn hop_by_hop_request_fields_do_not_reach_the_upstream() {
    let upstream = hop_by_hop_upstream().await;
    let tollgate = tollgate_before(&upstream).await;

    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let request = "GET /public/hop HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, x-foo\r\n\
                   X-Foo: 1\r\nKeep-Alive: timeout=30\r\nProxy-Connection: keep-alive\r\n\
                   TE: trailers\r\nX-End-To-End: kept\r\n\r\n";
    let response = parsed(client.exchange(request).await, "hop");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_str(), "ok");
    let (_, got) = &upstream.requests()[0];
    assert_eq!(got.header("x-end-to-end"), Some("kept"));
    // RFC 9110 §7.6.1: what Connection names, and the known hop-by-hop
    // fields; a Connection of tollgate's own may stay, naming none of them.
    for name in ["x-foo", "keep-alive", "proxy-connection", "te"] {
        assert!(!got.has_header(name), "{name}: {:?}", got.headers);
    }
    let connection = got.header_all("connection").join(", ").to_ascii_lowercase();
    assert!(!connection.contains("x-foo"), "{:?}", got.headers);
    // The response side: the upstream's Connection options are its own
    // (the next test checks the rest).
    assert_eq!(response.header("x-end-to-end"), Some("kept"));
    let connection = response.header("connection").unwrap_or_default();
    assert!(!connection.contains("x-bar"), "{:?}", response.headers);
    let again = parsed(client.exchange(get("/public/hop")).await, "again");
    assert_eq!(again.status, 200);
}

/// A client may not make a header the upstream relies on hop-by-hop.
#[tokio::test]
async fn connection_naming_a_forwarding_header_is_refused_not_forwarded() {
    let upstream = ScriptedUpstream::answering(|_| ok("forwarded")).await;
    let tollgate = tollgate_before(&upstream).await;
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    let request = "GET /public/x HTTP/1.1\r\nHost: t\r\nConnection: X-Forwarded-For\r\n\r\n";
    let response = parsed(client.exchange(request).await, "refused");
    assert_eq!(response.status, 400, "{}", response.body_str());
    assert_eq!(response.json()["error"], "invalid_request");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn hop_by_hop_response_fields_do_not_reach_the_client() {
    let upstream = hop_by_hop_upstream().await;
    let tollgate = tollgate_before(&upstream).await;

    let response = RawResponse::fetch(tollgate.proxy_addr(), get("/public/hop")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-end-to-end"), Some("kept"));
    for name in ["x-bar", "keep-alive"] {
        assert!(
            response.header(name).is_none(),
            "{name}: {:?}",
            response.headers
        );
    }
}

#[tokio::test]
async fn an_early_413_from_an_upstream_that_skips_the_body_reaches_the_client() {
    const BODY: usize = 8 << 20;
    let upstream = ScriptedUpstream::start(|mut conn| async move {
        if conn.head().await.is_none() {
            return;
        }
        let early = "HTTP/1.1 413 Content Too Large\r\ncontent-type: text/plain\r\n\
                     content-length: 9\r\nconnection: close\r\n\r\ntoo large";
        conn.write(early).await;
        conn.close().await;
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;

    let stream = tokio::time::timeout(
        IO_TIMEOUT,
        tokio::net::TcpStream::connect(tollgate.proxy_addr()),
    )
    .await
    .expect("connect timed out")
    .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!("POST /public/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n");
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = pattern(64 * 1024);
        for _ in 0..BODY / chunk.len() {
            writer.write_all(&chunk).await?;
        }
        std::io::Result::Ok(())
    });
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(IO_TIMEOUT, reader.read_to_end(&mut bytes)).await;
    sender.abort();
    let response = RawResponse::parse(&bytes).expect("an answer");
    assert_eq!(response.status, 413, "{}", text(&bytes));
    assert_eq!(response.body_str(), "too large");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        matches!(read, Ok(Ok(_))),
        "the client connection was not closed cleanly: {read:?}"
    );
}
