//! The process lifecycle against the real binary: SIGTERM drains accepted
//! requests and exits 0, `serve --upgrade` takes the listening sockets over
//! from a process that gets SIGQUIT without failing a request, and
//! `serve --dev` does what the README's quick start says.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

const POLICY: &str = r#"
[[route]]
name = "tools"
methods = ["GET"]
path = "/api/v1/tools/**"
upstream = "backend"
scope = "tools:read"
"#;

const WORKERS: usize = 8;
/// Bound on the requests one load worker sends.
const MAX_REQUESTS_PER_WORKER: usize = 400;
/// Bound on how long a load runs, whatever the test does.
const MAX_LOAD: Duration = Duration::from_secs(30);

/// One tollgate in front of `echo` with the `tools` route and a token for it.
async fn start_gateway(echo: &EchoUpstream, extra_toml: &str) -> (Tollgate, String) {
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", POLICY)
            .upstream("backend", &[echo.addr_string()])
            // Generous: the load must not turn into store timeouts on a busy machine.
            .toml("[store]\ntimeout_ms = 2000")
            .toml(extra_toml),
    )
    .await;
    let (_, token) = tollgate
        .account_with_token(&unique_id("org"), &["tools:read"])
        .await;
    (tollgate, token)
}

/// What one request of the load saw.
#[derive(Debug)]
enum Outcome {
    /// A complete 200 from the upstream, echoing this request's path and id.
    Answered,
    /// The connection was refused: nothing listens any more.
    Refused,
    /// Connected, but the connection closed without a byte of answer.
    ClosedWithoutAnswer,
    /// Anything else (an error status, a truncated or wrong answer).
    Broken(String),
}

#[derive(Debug)]
struct Attempt {
    id: String,
    sent: Instant,
    done: Instant,
    outcome: Outcome,
}

/// `WORKERS` tasks sending proxied requests one after the other, each on a
/// fresh connection, until `stop` (bounded in count and time).
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Attempt>>>,
}

impl Load {
    fn start(proxy: SocketAddr, token: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers = (0..WORKERS)
            .map(|worker| {
                let (stop, token) = (stop.clone(), token.to_string());
                tokio::spawn(async move {
                    let mut attempts = Vec::new();
                    for n in 0..MAX_REQUESTS_PER_WORKER {
                        if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_LOAD {
                            break;
                        }
                        let id = format!("load-{worker}-{n}");
                        let attempt = send_one(proxy, &token, id).await;
                        if matches!(attempt.outcome, Outcome::Refused) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        attempts.push(attempt);
                    }
                    attempts
                })
            })
            .collect();
        Load { stop, workers }
    }

    async fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.expect("a load worker panicked"));
        }
        all
    }
}

async fn send_one(proxy: SocketAddr, token: &str, id: String) -> Attempt {
    let path = format!("/api/v1/tools/{id}");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: tollgate\r\nAuthorization: Bearer {token}\r\n\
         x-request-id: {id}\r\nConnection: close\r\n\r\n"
    );
    let sent = Instant::now();
    let outcome = match try_raw_http(proxy, request).await {
        Err(_) => Outcome::Refused,
        Ok(bytes) if bytes.is_empty() => Outcome::ClosedWithoutAnswer,
        Ok(bytes) => judge(&bytes, &path, &id),
    };
    Attempt {
        id,
        sent,
        done: Instant::now(),
        outcome,
    }
}

fn judge(bytes: &[u8], path: &str, id: &str) -> Outcome {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let Some(response) = RawResponse::parse(bytes) else {
        return Outcome::Broken(format!("no complete head: {text:?}"));
    };
    if response.status != 200 {
        return Outcome::Broken(format!("status {}: {text:?}", response.status));
    }
    let length = response
        .header("content-length")
        .and_then(|v| v.parse().ok());
    if length != Some(response.body.len()) {
        return Outcome::Broken(format!("truncated body: {text:?}"));
    }
    let body: Value = match serde_json::from_slice(&response.body) {
        Ok(body) => body,
        Err(_) => return Outcome::Broken(format!("body is not JSON: {text:?}")),
    };
    let echoed_id = body["headers"].as_array().and_then(|headers| {
        headers
            .iter()
            .find(|h| {
                h[0].as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("x-request-id"))
            })
            .and_then(|h| h[1].as_str())
    });
    if body["target"] != path || echoed_id != Some(id) {
        return Outcome::Broken(format!("an answer to another request: {text:?}"));
    }
    Outcome::Answered
}

/// Every attempt that broke the promise "accepted means answered": an error
/// or a truncated answer, or a connection closed without an answer although
/// the upstream received its request or it was sent while tollgate was
/// still fully serving (before `serving_until`).
fn lost_requests(attempts: &[Attempt], echo: &EchoUpstream, serving_until: Instant) -> Vec<String> {
    let reached_upstream: std::collections::HashSet<String> = echo
        .requests()
        .iter()
        .filter_map(|r| r.header("x-request-id").map(str::to_string))
        .collect();
    attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Answered => None,
            Outcome::Broken(why) => Some(format!("{}: {why}", a.id)),
            Outcome::ClosedWithoutAnswer if reached_upstream.contains(&a.id) => Some(format!(
                "{}: closed without an answer after reaching the upstream",
                a.id
            )),
            Outcome::ClosedWithoutAnswer | Outcome::Refused if a.sent < serving_until => {
                Some(format!(
                    "{}: {:?} although sent while tollgate was serving",
                    a.id, a.outcome
                ))
            }
            Outcome::ClosedWithoutAnswer | Outcome::Refused => None,
        })
        .collect()
}

#[tokio::test]
async fn sigterm_answers_every_accepted_request_refuses_new_ones_and_exits_zero() {
    const GRACE_SECONDS: u64 = 3;
    let echo = EchoUpstream::start_delayed(Duration::from_millis(300));
    let (mut tollgate, token) = start_gateway(
        &echo,
        &format!("[server]\nshutdown_grace_seconds = {GRACE_SECONDS}"),
    )
    .await;
    let proxy = tollgate.proxy_addr();

    let load = Load::start(proxy, &token);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A connection made a few milliseconds before the signal may still sit
    // in the kernel's queue when the listener closes; give that race 50 ms.
    let serving_until = Instant::now() - Duration::from_millis(50);
    let signalled = Instant::now();
    tollgate.send_signal("TERM");

    eventually(
        Duration::from_secs(2),
        "new connections are refused",
        || async { tokio::net::TcpStream::connect(proxy).await.is_err() },
    )
    .await;
    let status = tollgate
        .wait_for_exit(Duration::from_secs(GRACE_SECONDS + 2))
        .await;
    let exited = signalled.elapsed();
    let attempts = load.finish().await;

    let logs = tollgate.logs();
    let status = status.unwrap_or_else(|| {
        panic!("tollgate did not exit within {GRACE_SECONDS} s + 2 s of SIGTERM\n{logs}")
    });
    assert!(status.success(), "exit status {status}\n{logs}");
    let lost = lost_requests(&attempts, &echo, serving_until);
    assert!(lost.is_empty(), "lost requests: {lost:#?}\n{logs}");
    let in_flight_at_signal = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Answered))
        .filter(|a| a.sent < signalled && a.done > signalled)
        .count();
    assert!(
        in_flight_at_signal > 0,
        "no request was in flight when SIGTERM came, so nothing was tested: {attempts:#?}"
    );
    assert!(
        exited < Duration::from_secs(GRACE_SECONDS + 2),
        "exit took {exited:?}"
    );
}

#[tokio::test]
async fn a_graceful_upgrade_hands_the_sockets_over_without_failing_a_request() {
    let echo = EchoUpstream::start_delayed(Duration::from_millis(100));
    // Relative to the config file's folder: a socket private to this test.
    let (mut old, token) = start_gateway(
        &echo,
        "[server]\nupgrade_sock = \"upgrade.sock\"\nshutdown_grace_seconds = 2",
    )
    .await;
    let proxy = old.proxy_addr();

    let load = Load::start(proxy, &token);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut new = old.spawn_successor();
    // The successor listens on the upgrade socket; the old process retries
    // connecting to it, so the order of these two is not critical.
    tokio::time::sleep(Duration::from_millis(300)).await;
    old.send_signal("QUIT");
    new.wait_until_serving().await;

    // pingora keeps accepting in the old process for 5 s, then drains it.
    let old_status = old.wait_for_exit(Duration::from_secs(12)).await;
    let old_exited = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = load.finish().await;

    let logs = format!("--- old ---\n{}\n--- new ---\n{}", old.logs(), new.logs());
    let old_status = old_status.unwrap_or_else(|| panic!("the old process did not exit\n{logs}"));
    assert!(old_status.success(), "old exit status {old_status}\n{logs}");
    assert!(new.is_running(), "the new process is gone\n{logs}");
    // Nothing may fail during an upgrade: not even a refused connection.
    let lost = lost_requests(&attempts, &echo, Instant::now());
    assert!(lost.is_empty(), "lost requests: {lost:#?}\n{logs}");
    let served_by_new = attempts
        .iter()
        .filter(|a| a.sent > old_exited && matches!(a.outcome, Outcome::Answered))
        .count();
    assert!(
        served_by_new > 0,
        "nothing answered after the old process exited\n{logs}"
    );
    let (status, _, _) = new
        .proxy_request(Method::GET, "/api/v1/tools/after", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// `tollgate serve --dev` on free ports, stopped (SIGTERM, then SIGKILL) on drop.
struct DevServer {
    child: Child,
    /// Holds `stderr.log`.
    dir: tempfile::TempDir,
    /// The lines of the banner, up to and including `admin_key: …`.
    banner: Vec<String>,
}

impl DevServer {
    fn start(proxy: SocketAddr, admin: SocketAddr, metrics: SocketAddr) -> DevServer {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-dev.")
            .tempdir()
            .expect("create a temp dir");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--dev"])
            .args(["--listen", &proxy.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .env_remove("TOLLGATE_ADMIN_KEY")
            .env_remove("TOLLGATE_REDIS_URL")
            .env("TOLLGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn tollgate serve --dev");
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the banner on a thread so a silent process cannot block the test.
        let (lines, banner) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let last = line.starts_with("admin_key:");
                if lines.send(line).is_err() || last {
                    break;
                }
            }
        });
        let mut server = DevServer {
            child,
            dir,
            banner: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.banner.iter().any(|l| l.starts_with("admin_key:")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match banner.recv_timeout(left) {
                Ok(line) => server.banner.push(line),
                Err(_) => panic!(
                    "no complete banner on stdout: {:?}\n{}",
                    server.banner,
                    server.stderr()
                ),
            }
        }
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Waits until the admin and proxy listeners accept; panics with stderr otherwise.
    async fn wait_until_serving(&mut self, admin: SocketAddr, proxy: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [admin, proxy] {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("tollgate --dev exited with {status}\n{}", self.stderr());
                }
                if Instant::now() > deadline {
                    panic!("{addr} does not accept\n{}", self.stderr());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// The value printed after `name: ` in the banner.
    fn printed(&self, name: &str) -> String {
        let prefix = format!("{name}: ");
        self.banner
            .iter()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {:#?}", self.banner))
            .trim()
            .to_string()
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header_of<'a>(echoed: &'a Value, name: &str) -> Option<&'a str> {
    echoed["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
}

fn scope_set(scopes: &str) -> std::collections::BTreeSet<&str> {
    scopes.split(' ').collect()
}

#[tokio::test]
async fn dev_mode_does_what_the_quick_start_prints() {
    let (proxy, admin, metrics) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    let mut dev = DevServer::start(proxy, admin, metrics);
    let client_id = dev.printed("client_id");
    let client_secret = dev.printed("client_secret");
    let environment = dev.printed("environment_id");
    let admin_key = dev.printed("admin_key");
    assert!(client_id.starts_with("sa_"), "{client_id}");
    assert!(client_secret.starts_with("tg_sk_"), "a client secret");
    assert!(!environment.is_empty() && !admin_key.is_empty());
    let banner = dev.banner.join("\n");

    let http = reqwest::Client::builder()
        .timeout(IO_TIMEOUT)
        .build()
        .expect("an HTTP client");
    let base = format!("http://{proxy}");
    dev.wait_until_serving(admin, proxy).await;

    // The console link comes first, and signs in with the printed key.
    let console = dev.printed("console");
    assert!(
        console.starts_with(&format!("http://{admin}/console")),
        "{banner}"
    );
    let first = dev.banner.iter().position(|l| l.starts_with("console: "));
    assert_eq!(first, Some(1), "{banner}");
    let form = http
        .get(format!("http://{admin}/console"))
        .send()
        .await
        .expect("the console");
    assert_eq!(form.status(), StatusCode::OK);
    let page = form.text().await.expect("the sign-in page");
    assert!(page.contains("name=\"key\""), "{page}");
    let swagger = http
        .get(dev.printed("swagger"))
        .send()
        .await
        .expect("swagger");
    assert_eq!(swagger.status(), StatusCode::OK);

    // curl -u 'ID:SECRET' -d grant_type=client_credentials -d 'scope=…' …/token
    let response = http
        .post(format!("{base}/api/auth/oauth2/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "workflows:write knowledge:read"),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK, "{banner}");
    let token_answer: Value = response.json().await.expect("token JSON");
    let token = token_answer["access_token"].as_str().expect("access_token");
    assert!(token.starts_with("tg_at_"));
    assert_eq!(
        scope_set(token_answer["scope"].as_str().expect("scope")),
        scope_set("workflows:write knowledge:read")
    );

    let whoami: Value = http
        .get(format!("{base}/api/v1/service-account/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("whoami JSON");
    assert_eq!(whoami["clientId"], client_id.as_str(), "{whoami}");
    assert!(whoami["organizationId"].as_str().is_some(), "{whoami}");

    let allowed = format!("{base}/api/v1/workflows?environmentId={environment}");
    let response = http
        .get(&allowed)
        .bearer_auth(token)
        .send()
        .await
        .expect("allowed request");
    assert_eq!(response.status(), StatusCode::OK);
    let echoed: Value = response.json().await.expect("echo JSON");
    assert_eq!(echoed["echo"], true, "{echoed}");
    assert_eq!(
        echoed["target"],
        format!("/api/v1/workflows?environmentId={environment}")
    );
    assert_eq!(
        header_of(&echoed, "x-tollgate-client-id"),
        Some(client_id.as_str())
    );
    assert_eq!(
        header_of(&echoed, "x-tollgate-organization-id"),
        whoami["organizationId"].as_str()
    );
    assert_eq!(
        header_of(&echoed, "x-tollgate-environment-id"),
        Some(environment.as_str())
    );
    assert_eq!(
        header_of(&echoed, "x-tollgate-workspace-role"),
        Some("member")
    );
    assert!(header_of(&echoed, "x-tollgate-workspace-id").is_some());
    assert_eq!(header_of(&echoed, "authorization"), None, "{echoed}");

    let response = http
        .get(&allowed)
        .send()
        .await
        .expect("request without token");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("401 JSON");
    assert_eq!(body["error"], "missing_token");

    let response = http
        .get(format!("{base}/api/v1/logs?environmentId={environment}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("logs request");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.expect("403 JSON");
    assert_eq!(body["error"], "insufficient_scope");

    let org = whoami["organizationId"].as_str().expect("organizationId");
    let (status, list) = Admin::new(format!("http://{admin}"), Some(admin_key))
        .get(&format!("/v1/organizations/{org}/service-accounts"))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let accounts = list["data"].as_array().expect("data");
    assert_eq!(accounts.len(), 1, "{list}");

    // Every curl line the banner prints points at the listeners asked for.
    for line in dev.banner.iter().filter(|l| l.starts_with("curl ")) {
        assert!(
            line.contains(&proxy.to_string()) || line.contains(&admin.to_string()),
            "{line}"
        );
    }
}

/// On SIGTERM, keep-alive connections idle between requests close at once
/// on every HTTP/1 listener, not at the end of the grace period: a client
/// (a Prometheus scraper, an admin tool) then opens its next connection to
/// the process that goes on rather than asking the one that is leaving.
#[tokio::test]
async fn idle_keep_alive_connections_close_when_the_process_begins_to_shut_down() {
    let echo = EchoUpstream::start();
    let (tollgate, token) = start_gateway(&echo, "[server]\nshutdown_grace_seconds = 30").await;
    let listeners = [
        (
            "proxy",
            tollgate.proxy_addr(),
            format!(
                "GET /api/v1/tools/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n"
            ),
        ),
        (
            "admin",
            tollgate.admin_addr(),
            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        ),
        (
            "metrics",
            tollgate.metrics_addr(),
            "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        ),
    ];
    let mut open = Vec::new();
    for (name, addr, request) in &listeners {
        let mut c = RawConnection::open(addr).await;
        let answer = c.exchange(request).await;
        let answer = answer.unwrap_or_else(|| panic!("{name}: no answer"));
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{name}: {}",
            String::from_utf8_lossy(&answer)
        );
        open.push((name, c));
    }
    let signalled = Instant::now();
    tollgate.send_signal("TERM");
    for (name, mut c) in open {
        let (rest, closed) = c.read_to_close(Duration::from_secs(10)).await;
        assert!(closed, "{name}: the idle connection stayed open");
        assert!(
            rest.is_empty(),
            "{name}: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
}
