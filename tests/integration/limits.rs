//! Limits every listener puts on client connections: the size of a request
//! head, the time to send it, and the number of connections open at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;

async fn start(extra: &str) -> Tollgate {
    Tollgate::start(
        TollgateOptions::new()
            .memory()
            .upstream("app", &[dead_addr()])
            .policy("routes.toml", APP_STATUS_ROUTE)
            .toml(extra),
    )
    .await
}

/// A head of `lines` header lines of `len` bytes each, without its blank line.
fn unfinished_head(lines: usize, len: usize) -> Vec<u8> {
    let mut head = b"GET /api/v1/status HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..lines {
        head.extend_from_slice(format!("x-filler-{i}: ").as_bytes());
        head.extend(std::iter::repeat_n(b'a', len));
        head.extend_from_slice(b"\r\n");
    }
    head
}

async fn oversized_head_is_refused(addr: SocketAddr) {
    let mut c = RawConnection::open(addr).await;
    // 80 KiB of header lines: over the 64 KiB default.
    c.send(unfinished_head(10, 8 * 1024)).await;
    let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 431 "),
        "{addr}: a head over the limit gets 431, got {text:?}"
    );
    assert!(text.contains("invalid_request"), "{text}");
    assert!(closed, "{addr}: the connection closes after the 431");
}

#[tokio::test]
async fn a_request_head_over_the_limit_gets_431_and_the_connection_closes_on_every_listener() {
    let tg = start("").await;
    for addr in [tg.proxy_addr(), tg.admin_addr(), tg.metrics_addr()] {
        oversized_head_is_refused(addr).await;
    }
    // A head just under the limit is served as usual.
    let mut c = RawConnection::open(tg.metrics_addr()).await;
    let mut head = b"GET /metrics HTTP/1.1\r\nhost: x\r\n".to_vec();
    head.extend_from_slice(b"x-filler: ");
    head.extend(std::iter::repeat_n(b'a', 60 * 1024));
    head.extend_from_slice(b"\r\n\r\n");
    let answer = c.exchange(head).await.expect("an answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&answer[..40])
    );
}

#[tokio::test]
async fn the_head_limit_is_configurable() {
    let tg = start("[server]\nmax_request_head_bytes = 2048").await;
    let mut c = RawConnection::open(tg.proxy_addr()).await;
    c.send(unfinished_head(1, 3000)).await;
    let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed);
}

#[tokio::test]
async fn a_head_trickled_past_the_deadline_is_cut_off_though_bytes_keep_arriving() {
    let tg = start("[server]\nrequest_head_timeout_ms = 1500").await;
    for addr in [tg.proxy_addr(), tg.admin_addr()] {
        let mut c = RawConnection::open(addr).await;
        let began = Instant::now();
        assert!(
            c.send(b"GET /api/v1/status HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
        );
        let mut cut = false;
        // One header byte every 100 ms, for up to 6 s: every read is quick,
        // only the head as a whole is slow.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !c.send(b"a").await {
                cut = true;
                break;
            }
            if began.elapsed() > Duration::from_millis(2500) {
                break;
            }
        }
        let (answer, closed) = c.read_to_close(Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(cut || closed, "{addr}: a trickled head is cut off");
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408 "),
            "{addr}: {text:?}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(6),
            "{addr}: cut off near the deadline"
        );
    }
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_counted() {
    let tg = start("[server]\nmax_connections = 3").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = RawConnection::open(tg.proxy_addr()).await;
        // A partial head keeps each connection open and busy.
        assert!(c.send(b"GET /api/v1/status HTTP/1.1\r\n").await);
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = RawConnection::open(tg.proxy_addr()).await;
    extra
        .send(b"GET /api/v1/status HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let (answer, closed) = extra.read_to_close(Duration::from_secs(5)).await;
    assert!(closed, "a connection over the cap is closed");
    assert!(
        answer.is_empty(),
        "and gets no answer: {:?}",
        String::from_utf8_lossy(&answer)
    );

    let metrics = tg.metrics().await;
    assert!(
        metrics.contains("tollgate_connections_refused_total{listener=\"proxy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_connections{listener=\"proxy\"} 3"),
        "{metrics}"
    );

    // Once they close, new connections are served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = RawConnection::open(tg.metrics_addr()).await;
    let answer = again
        .exchange(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("an answer");
    assert!(answer.starts_with(b"HTTP/1.1 200 "));
    eventually(Duration::from_secs(5), "the gauge falls back", || async {
        tg.metrics()
            .await
            .contains("tollgate_connections{listener=\"proxy\"} 0")
    })
    .await;
}

#[tokio::test]
async fn a_head_left_unfinished_in_silence_gets_408_at_the_deadline() {
    let tg = start("[server]\nrequest_head_timeout_ms = 1000").await;
    let mut c = RawConnection::open(tg.metrics_addr()).await;
    let began = Instant::now();
    assert!(c.send(b"GET /metrics HTTP/1.1\r\nhost: x\r\n").await);
    let (answer, closed) = c.read_to_close(Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(closed, "closed at the deadline");
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}
