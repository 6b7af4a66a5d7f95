//! A hand-written HTTP/1.1 upstream that records what it receives and answers
//! with a JSON description of it, so tests can see exactly what tollgate forwarded.
//! It runs on its own thread and runtime: blocking test code cannot stall it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::find;

const MAX_HEAD: usize = 64 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How the upstream treats each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoBehavior {
    /// Read the request, record it, answer 200 with its JSON description.
    Echo,
    /// Read and record the request, wait this long, then answer (timeout tests).
    Delay(Duration),
    /// Accept the connection and close it at once without reading (502 tests).
    CloseImmediately,
}

/// One request as the upstream saw it on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The raw request-target, exactly as sent (path and query).
    pub target: String,
    pub version: String,
    /// Header fields in arrival order, names with their original case.
    pub headers: Vec<(String, String)>,
    /// The body after de-chunking.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header, name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// True when any header has this name, whatever its case.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The target's path (before `?`).
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The target's query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON body the upstream answers with.
    pub fn to_json(&self, upstream: SocketAddr) -> Value {
        json!({
            "method": self.method,
            "target": self.target,
            "headers": self.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
            "body": self.body_str(),
            "upstream": upstream.to_string(),
        })
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // A panicking connection task must not hide what was recorded.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running echo upstream; stops (and frees its port) when dropped.
pub struct EchoUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoUpstream {
    /// An upstream that answers every request with its JSON description.
    pub fn start() -> EchoUpstream {
        Self::start_with(EchoBehavior::Echo)
    }

    /// An upstream that records each request and answers only after `delay`.
    pub fn start_delayed(delay: Duration) -> EchoUpstream {
        Self::start_with(EchoBehavior::Delay(delay))
    }

    /// An upstream that accepts connections and closes them without answering.
    pub fn start_closing() -> EchoUpstream {
        Self::start_with(EchoBehavior::CloseImmediately)
    }

    pub fn start_with(behavior: EchoBehavior) -> EchoUpstream {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the echo upstream");
        listener
            .set_nonblocking(true)
            .expect("make the echo listener non-blocking");
        let addr = listener.local_addr().expect("echo upstream address");
        let shared = Arc::new(Shared::default());
        let (shutdown, stop) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the echo upstream runtime");
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("echo-upstream-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, addr, behavior, thread_shared, stop));
                // Dropping the runtime cancels every connection task, delayed ones too.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn the echo upstream thread");
        EchoUpstream {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as written in `[upstreams.NAME] addrs`.
    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<RecordedRequest> {
        self.shared.requests().last().cloned()
    }

    pub fn count(&self) -> usize {
        self.shared.requests().len()
    }

    pub fn clear(&self) {
        self.shared.requests().clear();
    }

    /// How many TCP connections were accepted (keep-alive tests).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: StdListener,
    addr: SocketAddr,
    behavior: EchoBehavior,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("register the echo listener");
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                if behavior == EchoBehavior::CloseImmediately {
                    drop(stream);
                    continue;
                }
                tokio::spawn(handle(stream, addr, behavior, Arc::clone(&shared)));
            }
        }
    }
}

async fn handle(stream: TcpStream, addr: SocketAddr, behavior: EchoBehavior, shared: Arc<Shared>) {
    let mut conn = Conn::new(stream);
    loop {
        let request = match tokio::time::timeout(IDLE_TIMEOUT, read_request(&mut conn)).await {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(reason)) => {
                let body = json!({ "error": reason }).to_string();
                let _ = conn
                    .stream
                    .write_all(response_bytes(400, &body, true, false).as_slice())
                    .await;
                return;
            }
        };
        let keep_alive = wants_keep_alive(&request);
        let status = request
            .header("x-echo-status")
            .and_then(|s| s.trim().parse::<u16>().ok())
            .filter(|s| (200..600).contains(s))
            .unwrap_or(200);
        let body = request.to_json(addr).to_string();
        let head_only = request.method.eq_ignore_ascii_case("HEAD");
        shared.requests().push(request);
        if let EchoBehavior::Delay(delay) = behavior {
            tokio::time::sleep(delay).await;
        }
        let response = response_bytes(status, &body, !keep_alive, head_only);
        if conn.stream.write_all(&response).await.is_err() || !keep_alive {
            let _ = conn.stream.shutdown().await;
            return;
        }
    }
}

fn wants_keep_alive(request: &RecordedRequest) -> bool {
    let connection = request
        .header_all("connection")
        .join(",")
        .to_ascii_lowercase();
    let says = |token: &str| connection.split(',').any(|t| t.trim() == token);
    if request.version.eq_ignore_ascii_case("HTTP/1.0") {
        says("keep-alive")
    } else {
        !says("close")
    }
}

fn response_bytes(status: u16, body: &str, close: bool, head_only: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Echo",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

/// A buffered reader over the connection that keeps pipelined bytes.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes; false at end of stream.
    pub(super) async fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Takes bytes up to and including `delim`; None at a clean end of stream.
    async fn take_until(&mut self, delim: &[u8], limit: usize) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(at) = find(&self.buf, delim) {
                let rest = self.buf.split_off(at + delim.len());
                return Ok(Some(std::mem::replace(&mut self.buf, rest)));
            }
            if self.buf.len() > limit {
                return Err("request head too large".into());
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err("connection closed mid-message".into())
                };
            }
        }
    }

    pub(super) async fn take_exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err("connection closed mid-body".into());
            }
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    async fn take_line(&mut self) -> Result<String, String> {
        let line = self
            .take_until(b"\r\n", MAX_HEAD)
            .await?
            .ok_or("connection closed mid-body")?;
        Ok(String::from_utf8_lossy(&line[..line.len() - 2]).into_owned())
    }
}

async fn read_request(conn: &mut Conn) -> Result<Option<RecordedRequest>, String> {
    let Some(mut request) = read_head(conn).await? else {
        return Ok(None);
    };
    read_body(conn, &mut request).await?;
    Ok(Some(request))
}

/// Reads a request head; the body, if any, is left unread.
pub(super) async fn read_head(conn: &mut Conn) -> Result<Option<RecordedRequest>, String> {
    let Some(head) = conn.take_until(b"\r\n\r\n", MAX_HEAD).await? else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&head[..head.len() - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.splitn(3, ' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line: {request_line:?}"));
    };
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line: {line:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some(RecordedRequest {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        body: Vec::new(),
    }))
}

/// Reads the body `request`'s head announces (chunked or Content-Length) into it.
pub(super) async fn read_body(
    conn: &mut Conn,
    request: &mut RecordedRequest,
) -> Result<(), String> {
    let chunked = request
        .header_all("transfer-encoding")
        .iter()
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
    if chunked {
        request.body = read_chunked(conn).await?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad content-length: {length:?}"))?;
        request.body = conn.take_exact(length).await?;
    }
    Ok(())
}

async fn read_chunked(conn: &mut Conn) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = conn.take_line().await?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size: {line:?}"))?;
        if size == 0 {
            // Trailer fields, if any, end with an empty line.
            while !conn.take_line().await?.is_empty() {}
            return Ok(body);
        }
        body.extend_from_slice(&conn.take_exact(size).await?);
        if !conn.take_line().await?.is_empty() {
            return Err("chunk not followed by CRLF".into());
        }
    }
}
