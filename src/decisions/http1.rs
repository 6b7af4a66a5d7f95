//! The decision listener's HTTP/1: check requests read and answered here,
//! from the bytes read, rather than through pingora's HTTP/1 session.
//!
//! A check request is small and its answer smaller: a head with a handful
//! of fields (nginx's `auth_request` sends `Authorization` and the original
//! method and URI) and a head with the identity headers back. pingora's
//! session copied each into header maps, kept a case map of the answer,
//! and reset itself for reuse, about as much work as the decision; here
//! the head is parsed in place (`httparse`, as pingora does) and the answer
//! written in one piece.
//!
//! The limits of every listener hold as they do under [`HeadGuard`]
//! (`crate::listen`): each head is bounded by `server.max_request_head_bytes`
//! (431) and by one deadline, from the accept for the first head and from
//! its first byte for the next ones (408); an idle keep-alive connection is
//! closed after 60 s. Framing is read strictly:
//!
//! - a head that does not parse, or a `Content-Length` that is not one
//!   number, is answered 400 and the connection closed;
//! - a body declared by `Content-Length` (at most 64 KiB) is read and
//!   dropped after the answer, so that the next request starts where it
//!   should; a larger one, a `Transfer-Encoding` body, `Expect`, HTTP/1.0
//!   and `Connection: close` get their answer and the connection closes.
//!
//! [`HeadGuard`]: crate::listen::HeadGuard

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::listen::{self, HeadScan, Limits, ServeHttp1, LARGE_HEAD, TIMED_OUT, TOO_LARGE};

use super::service::{Answer, Check};
use super::Decider;

/// As many header fields as pingora's HTTP/1 session reads.
const MAX_FIELDS: usize = 256;

/// How long a keep-alive connection waits for its next request, as on the
/// other listeners.
const IDLE: Duration = Duration::from_secs(60);

/// The largest check-request body read (and dropped) to keep the
/// connection; past it the connection closes after the answer.
const MAX_DRAINED: usize = 64 * 1024;

/// Room made in the read buffer before a read.
const ROOM: usize = 4096;

/// What is answered to a head that does not parse.
const MALFORMED: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 72\r\nconnection: close\r\n\r\n{\"error\":\"invalid_request\",\"error_description\":\"malformed request head\"}";

/// Check requests over HTTP/1, one connection at a time.
pub(crate) struct CheckHttp1 {
    decider: Arc<Decider>,
}

impl CheckHttp1 {
    pub(crate) fn new(decider: Arc<Decider>) -> CheckHttp1 {
        CheckHttp1 { decider }
    }
}

/// One connection: the stream, what has been read of it and not yet
/// consumed, and the buffer answers are written from.
struct Connection {
    stream: Stream,
    read: BytesMut,
    out: Vec<u8>,
    limits: Limits,
    /// When the last head began: an idle connection is timed from it.
    last_head: Instant,
    /// A head past [`LARGE_HEAD`] was read: give memory back at the end.
    large: bool,
    /// The keep-alive idle timer ([`Connection::read_or_idle`]).
    idle: Option<Pin<Box<Sleep>>>,
    shutdown: ShutdownWatch,
}

/// How a request is framed, from its head.
struct Framing {
    /// A body of this many bytes follows the head.
    length: usize,
    /// The connection ends after the answer.
    close: bool,
    /// The answer carries no body (`HEAD`).
    head_only: bool,
}

#[async_trait]
impl ServeHttp1 for CheckHttp1 {
    async fn serve_http1(
        &self,
        stream: Stream,
        limits: Limits,
        accepted: Instant,
        shutdown: &ShutdownWatch,
    ) {
        let mut conn = Connection {
            stream,
            read: BytesMut::with_capacity(ROOM),
            out: Vec::with_capacity(1024),
            limits,
            last_head: accepted,
            large: false,
            idle: None,
            shutdown: shutdown.clone(),
        };
        // The first head is due within the head timeout of the accept.
        let mut due = Some(accepted + limits.head_timeout);
        loop {
            let end = match conn.read_head(due).await {
                Ok(Some(end)) => end,
                Ok(None) => break,
                Err(refusal) => {
                    conn.send(refusal).await;
                    break;
                }
            };
            match self.answer(&mut conn, end).await {
                Ok(true) if !*shutdown.borrow() => {}
                _ => break,
            }
            due = None;
        }
        let _ = conn.stream.shutdown().await;
        if conn.large {
            listen::release_memory_soon();
        }
    }
}

impl CheckHttp1 {
    /// Answers the check request whose head ends at `end` of what was
    /// read; whether the connection goes on.
    async fn answer(&self, conn: &mut Connection, end: usize) -> Result<bool, ()> {
        let decider = &self.decider;
        let parsed = {
            let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
            let mut req = httparse::Request::new(&mut []);
            match req.parse_with_uninit_headers(&conn.read[..end], &mut fields) {
                Ok(httparse::Status::Complete(_)) => {
                    let method = req.method.unwrap_or("");
                    let target = req.path.unwrap_or("").as_bytes();
                    match framing(method, req.version, req.headers) {
                        Some(framing) => {
                            Ok((Check::read(decider, method, target, &*req.headers), framing))
                        }
                        None => Err(MALFORMED),
                    }
                }
                Err(httparse::Error::TooManyHeaders) => Err(TOO_LARGE),
                Ok(httparse::Status::Partial) | Err(_) => Err(MALFORMED),
            }
        };
        let (check, framing) = match parsed {
            Ok(parsed) => parsed,
            Err(refusal) => {
                tracing::debug!(listener = "decisions", "unreadable check request; closed");
                conn.send(refusal).await;
                return Err(());
            }
        };
        let answer = check.decide(decider).await;
        let close = framing.close || framing.length > MAX_DRAINED;
        write_answer(&mut conn.out, &answer, close, framing.head_only);
        if conn.write_out().await.is_err() || close {
            return Ok(false);
        }
        // The check request's body is not the original request's: dropped, unread.
        conn.read.advance(end);
        conn.skip(framing.length).await.map(|()| true)
    }
}

/// The framing of a parsed request: `None` when it cannot be trusted (a
/// `Content-Length` that is not one number).
fn framing(method: &str, version: Option<u8>, fields: &[httparse::Header<'_>]) -> Option<Framing> {
    let mut length: Option<usize> = None;
    let mut close = version != Some(1);
    for field in fields {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            // Repeated or comma-joined values must all be the same number.
            for value in field.value.split(|&b| b == b',') {
                let n = parse_length(value.trim_ascii())?;
                if length.is_some_and(|l| l != n) {
                    return None;
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
        {
            // Never read: the connection ends with the answer.
            close = true;
        } else if name.eq_ignore_ascii_case("connection") {
            let tokens = || field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
            if tokens().any(|t| t.eq_ignore_ascii_case(b"close")) {
                close = true;
            } else if version == Some(0) && tokens().any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
            {
                close = false;
            }
        }
    }
    Some(Framing {
        length: length.unwrap_or(0),
        close,
        head_only: method == "HEAD",
    })
}

/// A `Content-Length` value: decimal digits only, bounded.
fn parse_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// The answer's bytes: status line, the answer's fields, `Date`, and the
/// body unless the request was `HEAD`.
fn write_answer(out: &mut Vec<u8>, answer: &Answer, close: bool, head_only: bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(answer.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(answer.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &answer.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(pingora::protocols::http::date::get_cached_date().as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&answer.body);
    }
}

impl Connection {
    /// Reads until a whole head is in `read`: the offset just past it;
    /// `None` when the connection ended or stayed idle, between requests;
    /// the refusal to send when the head is too large or too slow.
    async fn read_head(
        &mut self,
        mut due: Option<Instant>,
    ) -> Result<Option<usize>, &'static [u8]> {
        let mut scan = HeadScan::default();
        let mut scanned = 0;
        loop {
            if scanned < self.read.len() {
                let end = scan.feed(&self.read[scanned..]);
                if scan.count > LARGE_HEAD {
                    self.large = true;
                }
                if scan.count > self.limits.max_head_bytes {
                    return Err(TOO_LARGE);
                }
                if let Some(end) = end {
                    return Ok(Some(scanned + end));
                }
                scanned = self.read.len();
            }
            if self.read.capacity() - self.read.len() < ROOM / 4 {
                self.read.reserve(ROOM);
            }
            let read = match due {
                Some(at) => tokio::time::timeout_at(at, self.stream.read_buf(&mut self.read))
                    .await
                    .map_err(|_| TIMED_OUT)?,
                None => match self.read_or_idle().await {
                    Some(read) => read,
                    None => return Ok(None),
                },
            };
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) if due.is_none() => {
                    // A keep-alive connection's next head: due within the
                    // head timeout of its first byte.
                    self.last_head = Instant::now();
                    due = Some(self.last_head + self.limits.head_timeout);
                }
                Ok(_) => {}
            }
        }
    }

    /// Reads between requests; `None` once the connection has been idle
    /// for [`IDLE`] since its last head began, or when the process begins
    /// to shut down. The timer is made once per
    /// connection and pushed back only when it fires early, so that a
    /// busy connection does not register a timer per request.
    async fn read_or_idle(&mut self) -> Option<std::io::Result<usize>> {
        let last_head = self.last_head;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(last_head + IDLE)));
        loop {
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.read) => return Some(read),
                // Shutting down (SIGTERM, or a graceful upgrade): an idle
                // connection closes now, so that the ingress opens its next
                // one to the process that goes on.
                _ = self.shutdown.changed() => return None,
                () = idle.as_mut() => {
                    let until = self.last_head + IDLE;
                    if Instant::now() >= until {
                        return None;
                    }
                    idle.as_mut().reset(until);
                }
            }
        }
    }

    /// Reads and drops `length` bytes of body, within the head timeout.
    async fn skip(&mut self, length: usize) -> Result<(), ()> {
        let buffered = self.read.len().min(length);
        self.read.advance(buffered);
        let mut left = length - buffered;
        if left == 0 {
            if self.read.is_empty() && self.read.capacity() > LARGE_HEAD {
                self.read = BytesMut::with_capacity(ROOM);
            }
            return Ok(());
        }
        let due = Instant::now() + self.limits.head_timeout;
        let mut sink = [0u8; 4096];
        while left > 0 {
            let want = left.min(sink.len());
            match tokio::time::timeout_at(due, self.stream.read(&mut sink[..want])).await {
                Ok(Ok(n)) if n > 0 => left -= n,
                _ => return Err(()),
            }
        }
        Ok(())
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await
    }

    /// Sends a fixed answer before closing.
    async fn send(&mut self, answer: &'static [u8]) {
        if self.stream.write_all(answer).await.is_ok() {
            let _ = self.stream.flush().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &[u8]) -> Option<Framing> {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut fields);
        assert!(req.parse(head).unwrap().is_complete());
        framing(req.method.unwrap(), req.version, req.headers)
    }

    #[test]
    fn framing_reads_the_length_and_when_to_close() {
        let f = parsed(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!((f.length, f.close, f.head_only), (5, false, false));
        let f =
            parsed(b"GET / HTTP/1.1\r\ncontent-length: 5, 5\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(f.length, 5);
        let f = parsed(b"HEAD / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((f.length, f.close, f.head_only), (0, false, true));
        for closes in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        ] {
            assert!(
                parsed(closes).unwrap().close,
                "{}",
                String::from_utf8_lossy(closes)
            );
        }
        assert!(
            !parsed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .close
        );
    }

    #[test]
    fn a_length_that_is_not_one_number_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ] {
            assert!(parsed(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_fixed_answers_say_their_length() {
        for answer in [MALFORMED, TOO_LARGE, TIMED_OUT] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.contains(&format!("content-length: {}\r\n", body.len())),
                "{text}"
            );
        }
    }
}
