//! HTTP/2 downstream: h2c with prior knowledge against curl, every
//! decision as for HTTP/1.1, and the known HTTP/2 attacks — rapid reset,
//! CONTINUATION flood, HPACK bomb — each bounded in memory and CPU, with
//! a hand-written client that sends the frames an attacker would.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;
use crate::tls::edge_policy;

async fn h2_world(extra: &str) -> World {
    World::start_with_policy(
        TollgateOptions::new().toml(extra),
        &edge_policy(),
        &["tools:read"],
    )
    .await
}

/// curl against the proxy listener: `mode` is `--http2-prior-knowledge`
/// or `--http1.1`; returns (status, response headers and body).
fn curl_status(w: &World, mode: &str, target: &str, headers: &[&str]) -> (String, String) {
    curl_at(w.tollgate.proxy_addr(), mode, target, headers)
}

fn curl_at(
    addr: std::net::SocketAddr,
    mode: &str,
    target: &str,
    headers: &[&str],
) -> (String, String) {
    let url = format!("http://{addr}{target}");
    let mut a = vec![
        mode,
        "--path-as-is",
        "-i",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ];
    for h in headers {
        a.extend(["-H", h]);
    }
    a.push(&url);
    let (_, out, _) = curl(&a);
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_string(), body.to_string())
}

#[tokio::test]
async fn h2c_prior_knowledge_is_decided_as_http1_is() {
    let w = h2_world("").await;
    let bearer = w.bearer();
    let (status, out) = curl_status(
        &w,
        "--http2-prior-knowledge",
        "/api/v1/tools/x?a=1",
        &[
            &bearer,
            "x-tollgate-client-id: spoofed",
            "X_Forwarded_For: 6.6.6.6",
        ],
    );
    assert_eq!(status, "200", "{out}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    let seen = w.echo.last().expect("forwarded");
    assert_eq!(seen.target, "/api/v1/tools/x?a=1");
    assert_eq!(seen.version, "HTTP/1.1");
    // `:authority` arrives as Host; identity headers are tollgate's own.
    assert_eq!(
        seen.header("host"),
        Some(w.tollgate.proxy_addr().to_string().as_str())
    );
    assert_eq!(
        seen.header("x-tollgate-client-id"),
        Some(w.client_id.as_str())
    );
    assert!(!seen.has_header("x_forwarded_for"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert!(
        !seen.headers.iter().any(|(n, _)| n.starts_with(':')),
        "no pseudo-headers"
    );

    // A request body over HTTP/2 reaches the HTTP/1.1 upstream whole.
    let body = "x".repeat(100_000);
    let url = format!("http://{}/api/v1/tools/upload", w.tollgate.proxy_addr());
    let (code, out, err) = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &bearer,
        "--data-binary",
        &body,
        &url,
    ]);
    assert_eq!((code, out.as_str()), (0, "200"), "{err}");
    let seen = w.echo.last().expect("forwarded");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body.len(), body.len());

    // The same answers, target by target, as over HTTP/1.1.
    for (target, auth) in [
        ("/api/v1/tools/a/../b", true),
        ("/api/v1/tools/%2e%2e/secret", true),
        ("/api/v1/tools/./x//y", true),
        ("/api/v1/tools;x=1/y", true),
        ("/api/v1/tools/x", false),
        ("/public/../api/v1/tools/x", false),
        ("/nowhere", true),
        ("/api/v1/service-account/whoami", true),
    ] {
        let headers: Vec<&str> = if auth { vec![bearer.as_str()] } else { vec![] };
        let (h1, h1_out) = curl_status(&w, "--http1.1", target, &headers);
        w.echo.clear();
        let (h2, h2_out) = curl_status(&w, "--http2-prior-knowledge", target, &headers);
        assert_eq!(h1, h2, "{target}\nHTTP/1.1: {h1_out}\nHTTP/2: {h2_out}");
        if h2 == "200" {
            assert_eq!(
                w.echo.count(),
                usize::from(!target.contains("whoami")),
                "{target}"
            );
        }
    }
}

#[tokio::test]
async fn h2c_can_be_turned_off() {
    let w = h2_world("[server]\nh2c = false").await;
    let (status, _) = curl_status(&w, "--http2-prior-knowledge", "/public/x", &[]);
    assert_ne!(status, "200");
    let (status, _) = curl_status(&w, "--http1.1", "/public/x", &[]);
    assert_eq!(status, "200");
}

// A hand-written HTTP/2 client: frames as bytes, header blocks as HPACK
// literals (RFC 7541 §6.2.2, no Huffman).

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix after `flags`.
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A literal field without indexing, new name.
fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0);
    hpack_string(out, name.as_bytes());
    hpack_string(out, value);
}

fn request_block(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, ":method", b"GET");
    literal(&mut b, ":scheme", b"http");
    literal(&mut b, ":path", path.as_bytes());
    literal(&mut b, ":authority", b"tollgate.test");
    b
}

struct RawH2 {
    stream: TcpStream,
}

impl RawH2 {
    async fn open(w: &Target) -> RawH2 {
        let mut stream = TcpStream::connect(w.tollgate.proxy_addr())
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).await.expect("preface");
        RawH2 { stream }
    }

    /// Writes; false once the server has closed (it may, mid-attack).
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads frames until the server closes, `wait` passes or `seen`
    /// (given each frame's type, stream and payload) answers true.
    async fn frames(&mut self, wait: Duration, mut seen: impl FnMut(u8, u32, &[u8]) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 16384];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return,
            };
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                if seen(buf[3], stream, &buf[9..9 + len]) {
                    return;
                }
                buf.drain(..9 + len);
            }
        }
    }

    /// Reads frames until the server closes or `wait` passes; returns the
    /// GOAWAY error code if one came, and the streams answered 200.
    async fn outcome(&mut self, wait: Duration) -> (Option<u32>, Vec<u32>) {
        let mut goaway = None;
        let mut ok = Vec::new();
        self.frames(wait, |kind, stream, payload| {
            if kind == GOAWAY && payload.len() >= 8 {
                goaway = Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
            // `:status: 200` is static table entry 8.
            if kind == HEADERS && payload.first() == Some(&0x88) {
                ok.push(stream);
            }
            false
        })
        .await;
        (goaway, ok)
    }
}

/// tollgate's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A normal request still answered: the attack left the server serving.
async fn still_serving(w: &Target) {
    let (status, out) = curl_at(
        w.tollgate.proxy_addr(),
        "--http2-prior-knowledge",
        "/public/after",
        &[],
    );
    assert_eq!(status, "200", "{out}");
}

/// What the attacks are aimed at: tollgate (memory store, default HTTP/2
/// settings plus `extra`) in front of an upstream that answers after
/// `delay`, so that a request tollgate starts stays in its hands.
struct Target {
    tollgate: Tollgate,
    echo: EchoUpstream,
}

async fn target(delay: Duration, extra: &str) -> Target {
    let echo = EchoUpstream::start_delayed(delay);
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .memory()
            .policy("routes.toml", edge_policy())
            .upstream("backend", &[echo.addr_string()])
            .toml(extra),
    )
    .await;
    Target { tollgate, echo }
}

/// Opens `streams` requests to a slow route and resets each at once, in
/// one burst; returns the GOAWAY code and how many reached the upstream.
async fn rapid_reset(w: &Target, streams: u32) -> (Option<u32>, usize) {
    let mut c = RawH2::open(w).await;
    let block = request_block("/public/slow");
    let mut burst = Vec::new();
    for i in 0..streams {
        let id = 1 + 2 * i;
        burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = c.send(&burst).await;
    let (goaway, _) = c.outcome(Duration::from_secs(5)).await;
    (goaway, w.echo.count())
}

#[tokio::test]
async fn rapid_reset_is_bounded_by_goaway() {
    // The upstream answers after a while: every stream tollgate starts
    // stays in its hands while the client resets them.
    let w = target(Duration::from_secs(2), "").await;
    let started = Instant::now();
    let (goaway, forwarded) = rapid_reset(&w, 5000).await;
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "the connection is closed as abusive"
    );
    // At most the concurrent-stream bound plus the reset budget (100 + 100)
    // went upstream, not one per stream opened.
    assert!(
        forwarded <= 250,
        "{forwarded} of 5000 reset streams forwarded"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    still_serving(&w).await;
}

#[tokio::test]
async fn continuation_flood_is_cut_off() {
    let w = target(Duration::ZERO, "").await;
    let pid = w.tollgate.pid();
    let before = rss_kib(pid);
    let mut c = RawH2::open(&w).await;
    let mut first = request_block("/public/x");
    literal(&mut first, "x-pad-0", &[b'a'; 1000]);
    let _ = c.send(&frame(HEADERS, END_STREAM, 1, &first)).await;
    // 16 KiB CONTINUATION frames, never END_HEADERS: 64 MiB if all were read.
    let mut piece = Vec::new();
    for i in 0..14 {
        literal(&mut piece, &format!("x-pad-{i}"), &[b'b'; 1150]);
    }
    let cont = frame(CONTINUATION, 0, 1, &piece);
    let mut sent = 0usize;
    for _ in 0..4096 {
        if !c.send(&cont).await {
            break;
        }
        sent += cont.len();
    }
    let (goaway, ok) = c.outcome(Duration::from_secs(3)).await;
    assert!(ok.is_empty(), "no request came of it");
    assert!(
        goaway.is_some() || sent < 64 * 1024 * 1024,
        "the server stopped the flood (GOAWAY or closed); sent {sent} bytes"
    );
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 32 * 1024, "resident memory grew {grown} KiB");
    assert_eq!(w.echo.count(), 0);
    still_serving(&w).await;
}

#[tokio::test]
async fn hpack_bomb_is_refused_without_decoding_it_all() {
    let w = target(Duration::ZERO, "").await;
    let pid = w.tollgate.pid();
    let before = rss_kib(pid);
    let mut c = RawH2::open(&w).await;
    // One 4 KiB field into the dynamic table, then referenced over and
    // over: 14 KiB on the wire, about 60 MiB of header list decoded.
    let mut block = request_block("/public/x");
    block.push(0x40);
    hpack_string(&mut block, b"x-bomb");
    hpack_string(&mut block, &[b'z'; 4000]);
    // Index 62 (the first dynamic entry), as an indexed field.
    block.extend(std::iter::repeat_n(0x80 | 62, 14_000));
    let mut frames = frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &block[..16_000.min(block.len())],
    );
    if block.len() > 16_000 {
        frames = frame(HEADERS, END_STREAM, 1, &block[..16_000]);
        frames.extend(frame(CONTINUATION, END_HEADERS, 1, &block[16_000..]));
    }
    let _ = c.send(&frames).await;
    let _ = c.send(&frame(DATA, 0, 0, &[])).await;
    let (_, ok) = c.outcome(Duration::from_secs(3)).await;
    assert!(!ok.contains(&1), "the bomb's request is not served");
    assert_eq!(w.echo.count(), 0, "nothing forwarded");
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 32 * 1024, "resident memory grew {grown} KiB");
    still_serving(&w).await;
}

#[tokio::test]
async fn an_h2_upstream_over_tls_is_reached_by_alpn() {
    reaches_a_tls_upstream("h2").await;
}

/// `tls = true` with the default `protocol = "h1"`: HTTP/1.1 over TLS to
/// the upstream, whatever the client spoke.
#[tokio::test]
async fn an_h1_upstream_over_tls_is_reached() {
    reaches_a_tls_upstream("h1").await;
}

/// A tollgate whose upstream is another tollgate with TLS in front of an
/// echo, reached with `tls = true` and `protocol`: each request arrives
/// through TLS, as the inner one says.
async fn reaches_a_tls_upstream(protocol: &str) {
    let inner = crate::tls::TlsWorld::start("", "").await;
    let outer = Tollgate::start(
        TollgateOptions::new()
            .memory()
            .policy("routes.toml", edge_policy())
            .upstream(
                "backend",
                &[format!("localhost:{}", inner.tollgate.proxy_addr().port())],
            )
            .toml(format!(
                "[upstreams.backend]\ntls = true\nsni = \"localhost\"\nprotocol = \"{protocol}\""
            ))
            // pingora's rustls connector trusts the platform's roots and this file.
            .env("SSL_CERT_FILE", inner.pki.ca_file().display().to_string()),
    )
    .await;
    for mode in ["--http1.1", "--http2-prior-knowledge"] {
        let before = inner.echo.count();
        let (status, out) = curl_at(outer.proxy_addr(), mode, "/public/deep?x=1", &[]);
        assert_eq!(status, "200", "{protocol}, {mode}: {out}\n{}", outer.logs());
        assert_eq!(inner.echo.count(), before + 1, "{protocol}, {mode}");
        let seen = inner.echo.last().expect("reached the inner echo");
        assert_eq!(seen.target, "/public/deep?x=1");
        // The inner tollgate terminated TLS and says so.
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    }
}

/// A request head with the given method and path (and no end of stream).
fn request_block_with(method: &str, path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, ":method", method.as_bytes());
    literal(&mut b, ":scheme", b"http");
    literal(&mut b, ":path", path.as_bytes());
    literal(&mut b, ":authority", b"tollgate.test");
    literal(&mut b, "content-type", b"application/x-www-form-urlencoded");
    b
}

/// Reads frames until each of `streams` was answered (HEADERS) or reset
/// (RST_STREAM), or `wait` passes; the streams ended, in order.
async fn ended_streams(c: &mut RawH2, streams: &[u32], wait: Duration) -> Vec<u32> {
    let mut ended = Vec::new();
    if streams.is_empty() {
        return ended;
    }
    c.frames(wait, |kind, stream, _| {
        if matches!(kind, HEADERS | RST_STREAM)
            && streams.contains(&stream)
            && !ended.contains(&stream)
        {
            ended.push(stream);
        }
        streams.iter().all(|s| ended.contains(s))
    })
    .await;
    ended
}

/// A stream that sends its head and then no body data is ended after
/// `server.h2_body_timeout_ms`, on a proxied route (whose upstream would
/// otherwise wait its 30 s read timeout) and on the token endpoint (which
/// otherwise waited for ever); other streams on the connection are served.
#[tokio::test]
async fn an_http2_body_that_never_comes_is_cut_off() {
    let w = target(Duration::ZERO, "[server]\nh2_body_timeout_ms = 1000").await;
    let mut c = RawH2::open(&w).await;
    let mut burst = frame(
        HEADERS,
        END_HEADERS,
        1,
        &request_block_with("POST", "/public/upload"),
    );
    burst.extend(frame(
        HEADERS,
        END_HEADERS,
        3,
        &request_block_with("POST", "/api/auth/oauth2/token"),
    ));
    // A little body, then silence.
    burst.extend(frame(DATA, 0, 1, b"part"));
    assert!(c.send(&burst).await);
    let began = Instant::now();
    let ended = ended_streams(&mut c, &[1, 3], Duration::from_secs(10)).await;
    assert!(
        ended.contains(&1) && ended.contains(&3),
        "streams still open after {:?}: ended {ended:?}",
        began.elapsed()
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    // The connection itself still serves.
    assert!(
        c.send(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            5,
            &request_block("/public/ok")
        ))
        .await
    );
    assert_eq!(
        ended_streams(&mut c, &[5], Duration::from_secs(5)).await,
        vec![5]
    );
    still_serving(&w).await;
}
