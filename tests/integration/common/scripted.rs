//! An upstream whose every connection runs a test's own script, byte by
//! byte: for framing, informational responses, upgrades and connection
//! reuse, where the echo upstream's well-behaved answers cannot reach.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use super::echo::{read_body, read_head, Conn};
use super::{RecordedRequest, IO_TIMEOUT};

/// A running scripted upstream on the test's runtime; dropping it aborts
/// the accept loop and every connection script.
pub struct ScriptedUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    accepted: AtomicUsize,
    /// Every request head read, with the number of its connection (from 1).
    requests: Mutex<Vec<(usize, RecordedRequest)>>,
}

impl Shared {
    fn record(&self, connection: usize, request: &RecordedRequest) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((connection, request.clone()));
    }
}

impl ScriptedUpstream {
    /// Runs `script` on each accepted connection, concurrently.
    pub async fn start<F, Fut>(script: F) -> ScriptedUpstream
    where
        F: Fn(UpstreamConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the scripted upstream");
        let addr = listener.local_addr().expect("scripted upstream address");
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            // Owned here, so aborting this task aborts every script too.
            let mut scripts = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let index = accept_shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                scripts.spawn(script(UpstreamConn {
                    index,
                    conn: Conn::new(stream),
                    shared: Arc::clone(&accept_shared),
                }));
                while scripts.try_join_next().is_some() {}
            }
        });
        ScriptedUpstream { addr, shared, task }
    }

    /// Answers each request on a connection, in turn, with the bytes
    /// `answer` gives for it (bodies are read by their framing first); a
    /// connection is closed after an answer that says `connection: close`.
    pub async fn answering<F>(answer: F) -> ScriptedUpstream
    where
        F: Fn(&RecordedRequest) -> Vec<u8> + Send + Sync + 'static,
    {
        let answer = Arc::new(answer);
        Self::start(move |mut conn| {
            let answer = Arc::clone(&answer);
            async move {
                while let Some(request) = conn.request().await {
                    let bytes = answer(&request);
                    let closing = String::from_utf8_lossy(&bytes)
                        .split("\r\n\r\n")
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase()
                        .contains("\r\nconnection: close");
                    if !conn.write(&bytes).await || closing {
                        conn.close().await;
                        return;
                    }
                }
            }
        })
        .await
    }

    /// `127.0.0.1:PORT`, as written in `[upstreams.NAME] addrs`.
    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first, with its connection's
    /// number (1 for the first connection accepted).
    pub fn requests(&self) -> Vec<(usize, RecordedRequest)> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One accepted connection, as a script sees it. Every read is bounded by
/// `IO_TIMEOUT`; a read that fails, times out or meets the end of the
/// stream gives None.
pub struct UpstreamConn {
    /// 1 for the first connection the upstream accepted, and so on.
    pub index: usize,
    conn: Conn,
    shared: Arc<Shared>,
}

impl UpstreamConn {
    /// Reads and records the next request head, leaving its body unread.
    pub async fn head(&mut self) -> Option<RecordedRequest> {
        let request = timeout(IO_TIMEOUT, read_head(&mut self.conn))
            .await
            .ok()?
            .ok()??;
        self.shared.record(self.index, &request);
        Some(request)
    }

    /// Reads the next whole request (its body by its framing) and records it.
    pub async fn request(&mut self) -> Option<RecordedRequest> {
        let mut request = timeout(IO_TIMEOUT, read_head(&mut self.conn))
            .await
            .ok()?
            .ok()??;
        timeout(IO_TIMEOUT, read_body(&mut self.conn, &mut request))
            .await
            .ok()?
            .ok()?;
        self.shared.record(self.index, &request);
        Some(request)
    }

    /// Like [`UpstreamConn::request`], but bytes that are not an HTTP
    /// request are an `Err` (what a server would answer 400), apart from
    /// the end of the stream or a stall (`Ok(None)`).
    pub async fn parse_request(&mut self) -> Result<Option<RecordedRequest>, String> {
        let Ok(head) = timeout(IO_TIMEOUT, read_head(&mut self.conn)).await else {
            return Ok(None);
        };
        let Some(mut request) = head? else {
            return Ok(None);
        };
        match timeout(IO_TIMEOUT, read_body(&mut self.conn, &mut request)).await {
            Ok(read) => read?,
            Err(_) => return Ok(None),
        }
        self.shared.record(self.index, &request);
        Ok(Some(request))
    }

    /// Reads exactly `n` more bytes.
    pub async fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        timeout(IO_TIMEOUT, self.conn.take_exact(n))
            .await
            .ok()?
            .ok()
    }

    /// Whatever arrives next (already buffered bytes first), within `wait`;
    /// empty at the end of the stream.
    pub async fn read_some(&mut self, wait: Duration) -> Option<Vec<u8>> {
        if self.conn.buf.is_empty() {
            timeout(wait, self.conn.fill()).await.ok()?.ok()?;
        }
        Some(std::mem::take(&mut self.conn.buf))
    }

    /// Writes `bytes` and flushes; false if the peer is gone.
    pub async fn write(&mut self, bytes: impl AsRef<[u8]>) -> bool {
        let stream = &mut self.conn.stream;
        matches!(
            timeout(IO_TIMEOUT, stream.write_all(bytes.as_ref())).await,
            Ok(Ok(()))
        )
    }

    /// Shuts down the write side and drops the connection.
    pub async fn close(mut self) {
        let _ = timeout(IO_TIMEOUT, self.conn.stream.shutdown()).await;
    }
}
