//! What the `bodies`, `edges` and `tunnels` modules share: a tollgate in
//! front of an upstream each test scripts, on a route anyone may use, and
//! reading what comes back over raw TCP.

use crate::common::*;

/// A tollgate with [`PUBLIC_ROUTE`] alone, in front of `upstream`.
pub async fn tollgate_before(upstream: &ScriptedUpstream) -> Tollgate {
    Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", PUBLIC_ROUTE)
            .upstream("backend", &[upstream.addr_string()]),
    )
    .await
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses an answer `RawConnection::exchange` returned; panics if there was none.
pub fn parsed(answer: Option<Vec<u8>>, what: &str) -> RawResponse {
    let bytes = answer.unwrap_or_else(|| panic!("{what}: no complete answer"));
    RawResponse::parse(&bytes).unwrap_or_else(|| panic!("{what}: not HTTP: {:?}", text(&bytes)))
}

/// A body no two offsets of which are alike for long (so shifts show).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Per request the upstream read: its connection number and
/// `METHOD TARGET BODY`.
pub fn requests_seen(upstream: &ScriptedUpstream) -> Vec<(usize, String)> {
    upstream
        .requests()
        .into_iter()
        .map(|(c, r)| (c, format!("{} {} {}", r.method, r.target, r.body_str())))
        .collect()
}

/// A WebSocket upgrade request for `path`, with `headers` (lines ending in
/// CRLF) added; [`SWITCHED`] is the upstream's acceptance of it.
pub fn upgrade_request(path: &str, headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Upgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// An upstream's acceptance of an [`upgrade_request`] (its accept answers
/// the request's key, RFC 6455 §1.3).
pub const SWITCHED: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                            Connection: Upgrade\r\n\
                            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
