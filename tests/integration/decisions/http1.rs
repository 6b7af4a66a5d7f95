//! The decision listener reads and answers HTTP/1 itself
//! (src/decisions/http1.rs): a keep-alive connection stays in step through
//! check-request bodies, pipelining and `HEAD`; framing it cannot trust is
//! refused or ends the connection; and the head limits of every listener
//! (size, deadline, field count) hold on it.

use std::time::{Duration, Instant};

use super::*;

/// An nginx-convention listener with small head limits.
async fn start() -> Decisions {
    Decisions::start_server(
        TollgateOptions::new(),
        "max_request_head_bytes = 8192\nrequest_head_timeout_ms = 1000",
        "convention = \"nginx\"",
        "",
    )
    .await
}

/// nginx's `/_tollgate` subrequest about `GET target`, with these lines
/// and this body.
fn check(target: &str, lines: &[String], body: &str) -> String {
    let mut req = format!(
        "GET /_tollgate HTTP/1.1\r\nHost: tollgate_decisions\r\nX-Original-Method: GET\r\nX-Original-URI: {target}\r\n"
    );
    for l in lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

fn status(answer: &[u8]) -> u16 {
    RawResponse::parse(answer)
        .unwrap_or_else(|| panic!("not an answer: {:?}", String::from_utf8_lossy(answer)))
        .status
}

#[tokio::test]
async fn a_keep_alive_connection_stays_in_step_through_bodies_pipelining_and_head() {
    let d = start().await;
    let allowed = format!("/api/v1/workflows/x?environmentId={}", d.world.env);
    let mut c = RawConnection::open(d.addr).await;

    // A body is read past, unread: the next request on the connection is
    // the next request, not the body's bytes.
    let a = c
        .exchange(check(
            &allowed,
            &d.bearer(),
            "GET /public/x HTTP/1.1\r\n\r\n",
        ))
        .await
        .expect("an answer");
    let a = RawResponse::parse(&a).unwrap();
    assert_eq!(a.status, 200, "{}", a.body_str());
    assert_eq!(
        a.header("x-tollgate-organization-id"),
        Some(d.world.org.as_str())
    );

    // Two requests in one write: answered in order.
    let pipelined = format!(
        "{}{}",
        check("/api/v1/tools/x", &[], ""),
        check(&allowed, &d.bearer(), "")
    );
    assert!(c.send(pipelined).await);
    assert_eq!(status(&c.answer(false).await.expect("first")), 401);
    assert_eq!(status(&c.answer(false).await.expect("second")), 200);

    // A denial answered to HEAD says its length and sends no body.
    let head = check("/api/v1/tools/x", &[], "").replacen("GET", "HEAD", 1);
    let h = c.exchange(head).await.expect("an answer to HEAD");
    let h = RawResponse::parse(&h).unwrap();
    assert_eq!(h.status, 401);
    assert!(h.body.is_empty(), "{}", h.body_str());
    assert_ne!(h.header("content-length"), Some("0"));
    assert!(c.stray_bytes(Duration::from_millis(200)).await.is_empty());

    let again = c
        .exchange(check(&allowed, &d.bearer(), ""))
        .await
        .expect("the connection is still in step");
    assert_eq!(status(&again), 200);
    assert_eq!(d.world.echo.count(), 0, "the decision listener forwarded");
}

#[tokio::test]
async fn framing_the_listener_cannot_trust_is_refused_or_ends_the_connection() {
    let d = start().await;
    let allowed = format!("/api/v1/workflows/x?environmentId={}", d.world.env);

    // Two lengths: 400, closed, nothing decided on it.
    let mut c = RawConnection::open(d.addr).await;
    let mut lines = d.bearer();
    lines.push("Content-Length: 3".into());
    lines.push("Content-Length: 30".into());
    assert!(c.send(check(&allowed, &lines, "")).await);
    let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
    assert_eq!(status(&answer), 400);
    assert!(closed);

    // A head that does not parse: 400, closed.
    for bad in [
        "GET /_tollgate HTTP/7.1\r\nHost: x\r\n\r\n",
        "GET /_tollgate HTTP/1.1\r\nHost x\r\n\r\n",
        "GET /_tol gate HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut c = RawConnection::open(d.addr).await;
        assert!(c.send(bad).await);
        let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
        assert_eq!(status(&answer), 400, "{bad:?}");
        assert!(closed, "{bad:?}");
    }

    // A chunked body is never read: the check is answered and the
    // connection closes, so the body's bytes are never taken for a request.
    let mut c = RawConnection::open(d.addr).await;
    let smuggled = check("/api/v1/tools/x", &[], "");
    let mut lines = d.bearer();
    lines.push("Transfer-Encoding: chunked".into());
    let req = format!(
        "{}{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        check(&allowed, &lines, ""),
        smuggled.len()
    );
    assert!(c.send(req).await);
    let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
    assert!(
        closed,
        "the connection closes after a chunked check request"
    );
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert_eq!(status(&answer), 200, "{text}");

    // More fields than are read: 431, closed.
    let many: Vec<String> = (0..300).map(|i| format!("x-f{i}: 1")).collect();
    let mut c = RawConnection::open(d.addr).await;
    assert!(c.send(check(&allowed, &many, "")).await);
    let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
    assert_eq!(status(&answer), 431);
    assert!(closed);
}

#[tokio::test]
async fn check_request_heads_are_bounded_in_size_and_time() {
    let d = start().await;
    // Over max_request_head_bytes, unfinished: 431 at once.
    let mut c = RawConnection::open(d.addr).await;
    let mut big = "GET /_tollgate HTTP/1.1\r\nHost: x\r\n".to_string();
    big.push_str(&format!("x-filler: {}\r\n", "a".repeat(9000)));
    assert!(c.send(&big).await);
    let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
    assert_eq!(status(&answer), 431);
    assert!(closed);

    // A head left unfinished: 408 at the deadline.
    let mut c = RawConnection::open(d.addr).await;
    let began = Instant::now();
    assert!(c.send("GET /_tollgate HTTP/1.1\r\nHost: x\r\n").await);
    let (answer, closed) = c.read_to_close(Duration::from_secs(10)).await;
    assert_eq!(status(&answer), 408);
    assert!(closed);
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );

    // A keep-alive connection's next head, trickled a byte at a time, is
    // cut off near its own deadline though every read is quick.
    let mut c = RawConnection::open(d.addr).await;
    c.no_delay();
    let allowed = format!("/api/v1/workflows/x?environmentId={}", d.world.env);
    let first = c.exchange(check(&allowed, &d.bearer(), "")).await.unwrap();
    assert_eq!(status(&first), 200);
    let began = Instant::now();
    let mut cut = false;
    for b in check(&allowed, &d.bearer(), "").bytes() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !c.send([b]).await || began.elapsed() > Duration::from_secs(4) {
            cut = true;
            break;
        }
    }
    let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
    assert!(cut || closed, "a trickled head is cut off");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408 "),
        "{text:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(6),
        "{:?}",
        began.elapsed()
    );
}

/// On SIGTERM an idle keep-alive connection is closed at once, not at the
/// end of the grace period, so that the ingress's next check goes to a
/// fresh connection (the process that goes on, after an upgrade).
#[tokio::test]
async fn an_idle_connection_closes_when_the_process_begins_to_shut_down() {
    let d = Decisions::start_server(
        TollgateOptions::new(),
        "shutdown_grace_seconds = 30",
        "convention = \"nginx\"",
        "",
    )
    .await;
    let allowed = format!("/api/v1/workflows/x?environmentId={}", d.world.env);
    let mut c = RawConnection::open(d.addr).await;
    let first = c.exchange(check(&allowed, &d.bearer(), "")).await.unwrap();
    assert_eq!(status(&first), 200);
    let signalled = Instant::now();
    d.world.tollgate.send_signal("TERM");
    let (rest, closed) = c.read_to_close(Duration::from_secs(10)).await;
    assert!(closed, "the idle connection stayed open");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
}

/// A small deterministic generator (no seed to manage, same cases every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next() as usize % from.len()]
    }

    /// Up to `max` bytes, mostly printable, sometimes anything.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.next() as usize % (max + 1);
        (0..n)
            .map(|_| match self.next() % 10 {
                0 => (self.next() % 256) as u8,
                _ => b' ' + (self.next() % 95) as u8,
            })
            .collect()
    }
}

/// Check-request heads built from odd parts — methods, targets, versions,
/// framing fields, names and values with control and non-ASCII bytes,
/// bare LFs — each answered with a status (or the connection closed),
/// never a hang or a crash; the listener serves a normal check after.
#[tokio::test]
async fn odd_heads_get_an_answer_and_the_listener_keeps_serving() {
    let d = start().await;
    let mut g = Lcg(0x7011_6a7e);
    let methods = ["GET", "HEAD", "POST", "G\tET", "", "CONNECT", "gEt", "PRI"];
    let targets = [
        "/_tollgate",
        "*",
        "http://x/y",
        "/a b",
        "/%00",
        "",
        "/\u{7f}",
    ];
    let versions = [
        "HTTP/1.1",
        "HTTP/1.0",
        "HTTP/2.0",
        "HTTP/1.1 x",
        "http/1.1",
        "",
    ];
    let fields = [
        "Content-Length: 4",
        "Content-Length: -1",
        "Content-Length: 4, 5",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip",
        "Expect: 100-continue",
        "Connection: close",
        "X-Original-Method: GET",
        "X-Original-Method: ",
        "X-Original-URI: /api/v1/tools/x",
        "X-Original-URI: /public/../api",
        "Authorization: Bearer x",
        "Authorization: Bearer tg_at_\u{e9}",
        " folded: value",
        "no-colon",
        ": empty-name",
    ];
    for case in 0..150 {
        let mut head = format!(
            "{} {} {}\r\n",
            g.pick(&methods),
            g.pick(&targets),
            g.pick(&versions)
        )
        .into_bytes();
        for _ in 0..g.next() % 6 {
            if g.next() % 3 == 0 {
                let mut name = g.bytes(12);
                name.retain(|b| *b != b'\r' && *b != b'\n');
                head.extend_from_slice(&name);
                head.extend_from_slice(b": ");
                let mut value = g.bytes(40);
                value.retain(|b| *b != b'\r' && *b != b'\n');
                head.extend_from_slice(&value);
            } else {
                head.extend_from_slice(g.pick(&fields).as_bytes());
            }
            head.extend_from_slice(if g.next() % 8 == 0 { b"\n" } else { b"\r\n" });
        }
        head.extend_from_slice(b"\r\n");
        let mut c = RawConnection::open(d.addr).await;
        assert!(c.send(&head).await);
        // Whatever body was declared is not sent: a wait for it ends at
        // the head deadline (1 s) with the connection closed.
        let (answer, closed) = c.read_to_close(Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            closed || text.starts_with("HTTP/1.1 "),
            "case {case}: no answer and still open for {:?}",
            String::from_utf8_lossy(&head)
        );
        if !answer.is_empty() {
            let status = status(&answer);
            assert!(
                [200, 400, 401, 403, 404, 408, 431].contains(&status),
                "case {case}: {status} for {:?}",
                String::from_utf8_lossy(&head)
            );
        }
    }
    let allowed = format!("/api/v1/workflows/x?environmentId={}", d.world.env);
    let mut c = RawConnection::open(d.addr).await;
    let ok = c.exchange(check(&allowed, &d.bearer(), "")).await.unwrap();
    assert_eq!(status(&ok), 200);
    assert_eq!(d.world.echo.count(), 0);
    // A panic would have closed its connection quietly: the log says.
    let logs = d.world.tollgate.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}
