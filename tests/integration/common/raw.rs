//! Raw HTTP over TCP, for requests no well-behaved client would send
//! (absolute-form targets, repeated headers, CL+TE, `%2F`, …).

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::{timeout, Instant};

use super::{find, IO_TIMEOUT};

/// Sends `request` as is and returns the bytes of one complete response
/// (framed by Content-Length or chunking, else read to end of stream).
/// Everything read so far is returned if the server stalls for `IO_TIMEOUT`.
pub async fn raw_http(addr: impl ToSocketAddrs, request: impl AsRef<[u8]>) -> Vec<u8> {
    let request = request.as_ref();
    let head_request = request
        .get(..5)
        .is_some_and(|m| m.eq_ignore_ascii_case(b"HEAD "));
    exchange(addr, request, |buf| response_end(buf, head_request)).await
}

/// Like [`raw_http`], but a refused connection is an `Err` instead of a
/// panic (shutdown and upgrade tests, where refusing is expected).
pub async fn try_raw_http(
    addr: impl ToSocketAddrs,
    request: impl AsRef<[u8]>,
) -> std::io::Result<Vec<u8>> {
    let request = request.as_ref();
    let head_request = request
        .get(..5)
        .is_some_and(|m| m.eq_ignore_ascii_case(b"HEAD "));
    let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(read_answer(stream, request, |buf| response_end(buf, head_request)).await)
}

/// Sends `request` and reads until the server closes (pipelining tests).
pub async fn raw_http_until_close(addr: impl ToSocketAddrs, request: impl AsRef<[u8]>) -> Vec<u8> {
    exchange(addr, request.as_ref(), |_| None).await
}

async fn exchange(
    addr: impl ToSocketAddrs,
    request: &[u8],
    complete: impl Fn(&[u8]) -> Option<usize>,
) -> Vec<u8> {
    let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("raw_http: connect timed out")
        .expect("raw_http: connect");
    read_answer(stream, request, complete).await
}

/// Writes `request`, then reads until `complete` finds the end, the server
/// closes, or `IO_TIMEOUT` passes; returns what was read (a failed write
/// returns nothing).
async fn read_answer(
    mut stream: TcpStream,
    request: &[u8],
    complete: impl Fn(&[u8]) -> Option<usize>,
) -> Vec<u8> {
    match timeout(IO_TIMEOUT, stream.write_all(request)).await {
        Ok(Ok(())) => {}
        _ => return Vec::new(),
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = complete(&buf) {
            buf.truncate(end);
            return buf;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return buf,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One kept-alive connection for requests sent one after the other (not
/// pipelined): each `exchange` writes a request and reads exactly its answer.
pub struct RawConnection {
    stream: TcpStream,
    /// Bytes read past the previous answer (there should be none).
    pending: Vec<u8>,
}

impl RawConnection {
    pub async fn open(addr: impl ToSocketAddrs) -> RawConnection {
        let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("RawConnection: connect timed out")
            .expect("RawConnection: connect");
        RawConnection {
            stream,
            pending: Vec::new(),
        }
    }

    /// Sends each write at once (no Nagle delay), so that bytes sent apart
    /// reach the server in separate segments.
    pub fn no_delay(&self) {
        self.stream.set_nodelay(true).expect("set TCP_NODELAY");
    }

    /// Sends `request` and returns the bytes of its complete answer; None
    /// when the server closed the connection or stalled for `IO_TIMEOUT`
    /// before a complete answer arrived.
    pub async fn exchange(&mut self, request: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let request = request.as_ref();
        let head_request = request
            .get(..5)
            .is_some_and(|m| m.eq_ignore_ascii_case(b"HEAD "));
        timeout(IO_TIMEOUT, self.stream.write_all(request))
            .await
            .ok()?
            .ok()?;
        self.answer(head_request).await
    }

    /// Reads one complete answer without sending anything (after a head and
    /// a body sent apart with [`RawConnection::send`]); None as for `exchange`.
    pub async fn answer(&mut self, head_request: bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = std::mem::take(&mut self.pending);
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = response_end(&buf, head_request) {
                self.pending = buf.split_off(end);
                return Some(buf);
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Writes `bytes` as they are (a head alone, a body later, tunnelled
    /// bytes); false if the write failed or stalled for `IO_TIMEOUT`.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) -> bool {
        matches!(
            timeout(IO_TIMEOUT, self.stream.write_all(bytes.as_ref())).await,
            Ok(Ok(()))
        )
    }

    /// The bytes up to and including the first `needle` (what follows is
    /// kept for the next read); None if the server closed or `wait` passed
    /// first, with what was read kept too.
    pub async fn read_until(
        &mut self,
        needle: &[u8],
        wait: std::time::Duration,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(at) = find(&self.pending, needle) {
                let rest = self.pending.split_off(at + needle.len());
                return Some(std::mem::replace(&mut self.pending, rest));
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Everything until the server closes the connection, and whether it
    /// did within `wait` (false: it was still open).
    pub async fn read_to_close(&mut self, wait: std::time::Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 8192];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (std::mem::take(&mut self.pending), true),
                Err(_) => return (std::mem::take(&mut self.pending), false),
                Ok(Ok(n)) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Bytes received after the last complete answer (a stray body, say).
    pub async fn stray_bytes(&mut self, wait: std::time::Duration) -> Vec<u8> {
        let mut chunk = [0u8; 8192];
        if let Ok(Ok(n)) = timeout(wait, self.stream.read(&mut chunk)).await {
            self.pending.extend_from_slice(&chunk[..n]);
        }
        std::mem::take(&mut self.pending)
    }
}

/// Where the first non-1xx response in `buf` ends, once it is complete.
fn response_end(buf: &[u8], head_request: bool) -> Option<usize> {
    let mut start = 0;
    loop {
        let head_len = find(&buf[start..], b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&buf[start..start + head_len]).into_owned();
        let (status, headers) = parse_head(&head)?;
        let body_start = start + head_len;
        if (100..200).contains(&status) {
            start = body_start;
            continue;
        }
        if head_request || status == 204 || status == 304 {
            return Some(body_start);
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            return dechunk(&buf[body_start..]).map(|(_, used)| body_start + used);
        }
        if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            return (buf.len() >= body_start + length).then_some(body_start + length);
        }
        return None;
    }
}

fn parse_head(head: &str) -> Option<(u16, Vec<(String, String)>)> {
    let mut lines = head.trim_end_matches("\r\n").split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    Some((status, headers))
}

/// Decodes a complete chunked body; returns it and how many bytes it used.
fn dechunk(mut data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = data.len();
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let line = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Skip trailer fields up to the empty line.
            loop {
                let end = find(data, b"\r\n")?;
                data = &data[end + 2..];
                if end == 0 {
                    return Some((body, total - data.len()));
                }
            }
        }
        if data.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A parsed HTTP/1.x response.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Parses the first non-1xx response in `bytes`; None if there is none.
    pub fn parse(bytes: &[u8]) -> Option<RawResponse> {
        let mut start = 0;
        loop {
            let head_len = find(&bytes[start..], b"\r\n\r\n")? + 4;
            let head = String::from_utf8_lossy(&bytes[start..start + head_len]).into_owned();
            let (status, headers) = parse_head(&head)?;
            let rest = &bytes[start + head_len..];
            if (100..200).contains(&status) {
                start += head_len;
                continue;
            }
            let chunked = headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
            });
            let body = if chunked {
                dechunk(rest).map_or_else(|| rest.to_vec(), |(body, _)| body)
            } else {
                rest.to_vec()
            };
            return Some(RawResponse {
                status,
                headers,
                body,
            });
        }
    }

    /// Sends `request` with [`raw_http`] and parses the answer; panics if none came.
    pub async fn fetch(addr: impl ToSocketAddrs, request: impl AsRef<[u8]>) -> RawResponse {
        let bytes = raw_http(addr, request).await;
        RawResponse::parse(&bytes).unwrap_or_else(|| {
            panic!(
                "no HTTP response, got {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body_str()))
    }
}
