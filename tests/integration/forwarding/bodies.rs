//! Request bodies on their way upstream, black box: chunked bodies however
//! the client's writes split their framing, with trailers, large uploads,
//! and the pooled upstream connection they leave behind. The upstream
//! answers `METHOD TARGET LENGTH` for each request and counts whatever
//! arrives after a request that is not a request (a body cut short by an
//! early end-of-body marker leaves the rest there).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::setup::*;
use crate::common::*;
use tokio::time::sleep;

/// A strict upstream and the count of stray bytes it met: each request is
/// answered `METHOD TARGET LENGTH`, and bytes that are not a request are
/// answered 400 and counted, then the connection is closed.
async fn strict_upstream() -> (ScriptedUpstream, Arc<AtomicUsize>) {
    let strays = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&strays);
    let upstream = ScriptedUpstream::start(move |mut conn| {
        let strays = Arc::clone(&counted);
        async move {
            loop {
                match conn.parse_request().await {
                    Ok(Some(request)) => {
                        let answer = format!(
                            "{} {} {}",
                            request.method,
                            request.target,
                            request.body.len()
                        );
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        );
                        if !conn.write(head + &answer).await {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => {
                        strays.fetch_add(1, Ordering::SeqCst);
                        conn.write(
                            "HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\
                             connection: close\r\n\r\nstray",
                        )
                        .await;
                        conn.close().await;
                        return;
                    }
                }
            }
        }
    })
    .await;
    (upstream, strays)
}

const CHUNKED_HEAD: &str =
    "POST /public/split HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Sends `head` and `body` on a new connection, the body in two writes
/// `at` bytes apart with a pause between, and returns the answer.
async fn send_split(tollgate: &Tollgate, head: &str, body: &[u8], at: usize) -> RawResponse {
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    client.no_delay();
    let mut first = head.as_bytes().to_vec();
    first.extend_from_slice(&body[..at]);
    assert!(client.send(&first).await);
    sleep(Duration::from_millis(15)).await;
    assert!(client.send(&body[at..]).await);
    parsed(client.answer(false).await, &format!("split at {at}"))
}

#[tokio::test]
async fn a_chunked_body_split_at_any_byte_reaches_the_upstream_whole() {
    let (upstream, strays) = strict_upstream().await;
    let tollgate = tollgate_before(&upstream).await;
    let bodies: [(&[u8], &[u8]); 3] = [
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (
            b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 6\r\nX-More: a\r\n\r\n",
            b"hello!",
        ),
        (b"0\r\n\r\n", b""),
    ];
    let mut expected = 0;
    for (body, content) in bodies {
        for at in 1..body.len() {
            let response = send_split(&tollgate, CHUNKED_HEAD, body, at).await;
            let wanted = format!("POST /public/split {}", content.len());
            assert_eq!(
                (response.status, response.body_str()),
                (200, wanted),
                "{:?} split at {at}",
                String::from_utf8_lossy(body)
            );
            expected += 1;
            let requests = upstream.requests();
            let (_, last) = requests.last().expect("a request upstream");
            assert_eq!(last.body, content, "split at {at}");
        }
    }
    assert_eq!(strays.load(Ordering::SeqCst), 0, "bytes after a request");
    assert_eq!(upstream.requests().len(), expected);
}

#[tokio::test]
async fn a_large_upload_reaches_the_upstream_byte_for_byte() {
    let (upstream, strays) = strict_upstream().await;
    let tollgate = tollgate_before(&upstream).await;
    let body = pattern(3 * 1024 * 1024);

    // Chunked, in chunks of assorted sizes, each chunk's size line, data
    // and CRLF written apart.
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    client.no_delay();
    assert!(client.send(CHUNKED_HEAD).await);
    let mut sent = 0;
    let mut size = 1000;
    while sent < body.len() {
        let end = (sent + size).min(body.len());
        assert!(client.send(format!("{:x}\r\n", end - sent)).await);
        sleep(Duration::from_millis(1)).await;
        assert!(client.send(&body[sent..end]).await);
        sleep(Duration::from_millis(1)).await;
        assert!(client.send("\r\n").await);
        sent = end;
        size = size * 3 % 100_003 + 1000;
    }
    assert!(client.send("0\r\n\r\n").await);
    let response = parsed(client.answer(false).await, "chunked upload");
    assert_eq!(
        (response.status, response.body_str()),
        (200, format!("POST /public/split {}", body.len()))
    );
    let requests = upstream.requests();
    assert!(requests[0].1.body == body, "the chunked body differs");

    // With a Content-Length, in writes of assorted sizes.
    let head = format!(
        "PUT /public/length HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    assert!(client.send(head).await);
    for piece in body.chunks(70_001) {
        assert!(client.send(piece).await);
        sleep(Duration::from_millis(1)).await;
    }
    let response = parsed(client.answer(false).await, "length upload");
    assert_eq!(
        (response.status, response.body_str()),
        (200, format!("PUT /public/length {}", body.len()))
    );
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].1.body == body,
        "the Content-Length body differs"
    );
    assert_eq!(strays.load(Ordering::SeqCst), 0, "bytes after a request");
}

#[tokio::test]
async fn trailers_leave_nothing_behind_on_the_pooled_upstream_connection() {
    let (upstream, strays) = strict_upstream().await;
    let tollgate = tollgate_before(&upstream).await;

    let first = RawResponse::fetch(
        tollgate.proxy_addr(),
        "POST /public/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n",
    )
    .await;
    assert_eq!(
        (first.status, first.body_str().as_str()),
        (200, "POST /public/a 5")
    );
    // Another client, whose request goes on the pooled connection.
    sleep(Duration::from_millis(100)).await;
    let second = RawResponse::fetch(
        tollgate.proxy_addr(),
        "GET /public/b HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_eq!(
        (second.status, second.body_str().as_str()),
        (200, "GET /public/b 0")
    );
    let seen = requests_seen(&upstream);
    assert_eq!(
        seen,
        [
            (1, "POST /public/a hello".to_string()),
            (1, "GET /public/b ".to_string())
        ]
    );
    assert_eq!(strays.load(Ordering::SeqCst), 0, "bytes after a request");
}

/// Any chunked body — chunk sizes, extensions, trailers — sent in up to
/// four writes split anywhere, reaches the upstream whole, and nothing of
/// it is left on the pooled connection.
#[test]
fn chunked_framing_split_anywhere_proptest() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (upstream, strays, tollgate) = runtime.block_on(async {
        let (upstream, strays) = strict_upstream().await;
        let tollgate = tollgate_before(&upstream).await;
        (upstream, strays, tollgate)
    });
    let framing = (
        proptest::collection::vec(1usize..300, 0..5),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
    );
    let mut runner = TestRunner::new(Config::with_cases(48));
    runner
        .run(&framing, |(sizes, extension, trailers, cuts)| {
            let content = pattern(sizes.iter().sum());
            let mut body = Vec::new();
            let mut at = 0;
            for size in &sizes {
                let ext = if extension { ";x=y" } else { "" };
                body.extend_from_slice(format!("{size:x}{ext}\r\n").as_bytes());
                body.extend_from_slice(&content[at..at + size]);
                body.extend_from_slice(b"\r\n");
                at += size;
            }
            body.extend_from_slice(b"0\r\n");
            if trailers {
                body.extend_from_slice(b"X-Sum: 1\r\n");
            }
            body.extend_from_slice(b"\r\n");
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(body.len())).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let (status, answer, got) = runtime.block_on(async {
                let mut client = RawConnection::open(tollgate.proxy_addr()).await;
                client.no_delay();
                assert!(client.send(CHUNKED_HEAD).await);
                let mut from = 0;
                for cut in cuts.iter().copied().chain([body.len()]) {
                    assert!(client.send(&body[from..cut]).await);
                    sleep(Duration::from_millis(5)).await;
                    from = cut;
                }
                let response = parsed(client.answer(false).await, "proptest");
                let last = upstream.requests().last().map(|(_, r)| r.body.clone());
                (response.status, response.body_str(), last)
            });
            prop_assert_eq!(status, 200);
            prop_assert_eq!(answer, format!("POST /public/split {}", content.len()));
            prop_assert_eq!(got, Some(content));
            prop_assert_eq!(strays.load(Ordering::SeqCst), 0);
            Ok(())
        })
        .expect("every framing split reaches the upstream whole");
    drop(tollgate);
    drop(upstream);
}

/// The answer's direction: a chunked answer with extensions and trailers,
/// written by the upstream in two parts split anywhere, reaches the client
/// whole, and the client's connection then serves its next request.
#[tokio::test]
async fn a_chunked_answer_split_at_any_byte_reaches_the_client_whole() {
    const ANSWER: &[u8] = b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n";
    let upstream = ScriptedUpstream::start(|mut conn| async move {
        while let Some(request) = conn.request().await {
            let at: usize = request
                .target
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            let mut first = head.as_bytes().to_vec();
            first.extend_from_slice(&ANSWER[..at]);
            if !conn.write(&first).await {
                return;
            }
            sleep(Duration::from_millis(15)).await;
            if !conn.write(&ANSWER[at..]).await {
                return;
            }
        }
    })
    .await;
    let tollgate = tollgate_before(&upstream).await;
    let mut client = RawConnection::open(tollgate.proxy_addr()).await;
    for at in 0..ANSWER.len() {
        let request = format!("GET /public/answer/{at} HTTP/1.1\r\nHost: t\r\n\r\n");
        let response = parsed(client.exchange(request).await, &format!("split at {at}"));
        assert_eq!(
            (response.status, response.body_str().as_str()),
            (200, "hello world"),
            "split at {at}"
        );
    }
    assert!(client
        .stray_bytes(Duration::from_millis(100))
        .await
        .is_empty());
}
