//! Starts the real `tollgate` binary with a generated config on free ports,
//! waits until it answers, and stops it on drop.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use super::admin::{body_value, Admin};
use super::{cluster_urls, free_port, redis_url, unique_prefix, IO_TIMEOUT};

/// Cheap argon2 parameters so tests that create accounts stay fast.
/// Set to `false` if the config has no `[hashing]` section.
const CHEAP_HASHING: bool = true;

/// How long tollgate gets to come up (healthz, and readyz unless disabled).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long tollgate gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Redis,
    Memory,
}

/// What to start. `TollgateOptions::new()` is a Redis-backed instance with a
/// private key prefix, no policies and no upstreams.
#[derive(Clone, Debug)]
pub struct TollgateOptions {
    pub store: StoreKind,
    /// Share a prefix between instances (multi-instance tests); None = a fresh one.
    pub key_prefix: Option<String>,
    /// Overrides the Redis URL (e.g. an unreachable one for fail-closed tests).
    pub redis_url: Option<String>,
    /// A Redis Cluster's node URLs (`store.cluster = true`). Without this or
    /// `redis_url`, the suite's cluster is used when it runs against one.
    pub cluster_urls: Option<Vec<String>>,
    /// `(file name, TOML)` written into the policy directory.
    pub policies: Vec<(String, String)>,
    /// `(name, addrs)` written as `[upstreams.NAME] addrs = [...]`.
    pub upstreams: Vec<(String, Vec<String>)>,
    /// TOML merged over the generated config, table by table (may override anything).
    pub extra_toml: String,
    pub cheap_hashing: bool,
    /// Extra environment variables for the process.
    pub env: Vec<(String, String)>,
    /// `TOLLGATE_LOG`; debug for tollgate so leak tests see every line.
    pub log_filter: String,
    /// Also wait for `/readyz` = 200 before returning.
    pub wait_ready: bool,
}

impl Default for TollgateOptions {
    fn default() -> Self {
        TollgateOptions {
            store: StoreKind::Redis,
            key_prefix: None,
            redis_url: None,
            cluster_urls: None,
            policies: Vec::new(),
            upstreams: Vec::new(),
            extra_toml: String::new(),
            cheap_hashing: CHEAP_HASHING,
            env: Vec::new(),
            log_filter: "info,tollgate=debug".to_string(),
            wait_ready: true,
        }
    }
}

impl TollgateOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn memory(mut self) -> Self {
        self.store = StoreKind::Memory;
        self
    }

    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Some(prefix.into());
        self
    }

    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    pub fn cluster(mut self, urls: Vec<String>) -> Self {
        self.cluster_urls = Some(urls);
        self
    }

    pub fn policy(mut self, file_name: impl Into<String>, toml: impl Into<String>) -> Self {
        self.policies.push((file_name.into(), toml.into()));
        self
    }

    pub fn upstream(mut self, name: impl Into<String>, addrs: &[impl ToString]) -> Self {
        let addrs = addrs.iter().map(ToString::to_string).collect();
        self.upstreams.push((name.into(), addrs));
        self
    }

    /// argon2 at the default cost (19 MiB, two iterations, one lane)
    /// instead of the harness's cheap parameters, for tests that time or
    /// count hashing; `hashing` adds lines to `[hashing]` (may be empty).
    pub fn argon2_at_default_cost(mut self, hashing: &str) -> Self {
        self.cheap_hashing = false;
        self.toml(format!(
            "[hashing]\nmemory_kib = 19456\niterations = 2\nparallelism = 1\n{hashing}"
        ))
    }

    /// Appends TOML that is merged over the generated config.
    pub fn toml(mut self, extra: impl AsRef<str>) -> Self {
        self.extra_toml.push_str(extra.as_ref());
        self.extra_toml.push('\n');
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn log_filter(mut self, filter: impl Into<String>) -> Self {
        self.log_filter = filter.into();
        self
    }

    pub fn no_wait_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// The config this would write, with placeholder ports and paths
    /// (to check the harness, or to print while debugging a test).
    pub fn preview_config(&self) -> toml::Table {
        let port = |p: u16| loopback(p);
        let text = render_config(
            self,
            port(18080),
            port(19080),
            port(19091),
            Path::new("/policies"),
            Some("tgtest:preview"),
        );
        text.parse().expect("the rendered config is TOML")
    }
}

/// A running tollgate process; SIGTERM then SIGKILL on drop.
pub struct Tollgate {
    child: Option<Child>,
    /// Holds this process's logs (and, unless it is a successor, its config).
    dir: TempDir,
    config_path: PathBuf,
    opts: TollgateOptions,
    proxy: SocketAddr,
    admin: SocketAddr,
    metrics: SocketAddr,
    admin_key: String,
    key_prefix: Option<String>,
    http: reqwest::Client,
}

impl Tollgate {
    /// Starts tollgate and waits until `/healthz` (and `/readyz` unless
    /// `no_wait_ready`) answers 200; panics with its logs if it does not.
    pub async fn start(opts: TollgateOptions) -> Tollgate {
        // A port picked by free_port() can be taken by a parallel test before
        // tollgate binds it; that case alone is retried with new ports.
        let mut attempt = 1;
        loop {
            let mut tollgate = Self::spawn(&opts);
            match tollgate.wait_until_up(opts.wait_ready).await {
                Ok(()) => return tollgate,
                Err(reason) => {
                    let logs = tollgate.logs();
                    if attempt < 3 && logs.contains("Address already in use") {
                        attempt += 1;
                        continue;
                    }
                    drop(tollgate);
                    panic!("tollgate did not start: {reason}\n--- tollgate logs ---\n{logs}");
                }
            }
        }
    }

    fn spawn(opts: &TollgateOptions) -> Tollgate {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-it.")
            .tempdir()
            .expect("create the tollgate temp dir");
        let policy_dir = dir.path().join("policies");
        fs::create_dir(&policy_dir).expect("create the policy dir");
        for (name, contents) in &opts.policies {
            fs::write(policy_dir.join(name), contents).expect("write a policy file");
        }
        let proxy = loopback(free_port());
        let admin = loopback(free_port());
        let metrics = loopback(free_port());
        let key_prefix = match opts.store {
            StoreKind::Redis => Some(opts.key_prefix.clone().unwrap_or_else(unique_prefix)),
            StoreKind::Memory => None,
        };
        let config = render_config(
            opts,
            proxy,
            admin,
            metrics,
            &policy_dir,
            key_prefix.as_deref(),
        );
        let config_path = dir.path().join("tollgate.toml");
        fs::write(&config_path, config).expect("write tollgate.toml");

        let admin_key = format!("tgtest-admin-{:032x}", rand::random::<u128>());
        let child = spawn_process(opts, dir.path(), &config_path, &admin_key, &[]);
        Tollgate {
            child: Some(child),
            dir,
            config_path,
            opts: opts.clone(),
            proxy,
            admin,
            metrics,
            admin_key,
            key_prefix,
            http: test_http_client(),
        }
    }

    /// Starts a second process on this one's config file and ports with
    /// `serve --upgrade` (pingora's graceful upgrade) and returns at once: it
    /// waits for the listening sockets, which this process hands over on
    /// SIGQUIT. Then call [`Tollgate::wait_until_serving`] on it.
    pub fn spawn_successor(&self) -> Tollgate {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-it-successor.")
            .tempdir()
            .expect("create the successor's temp dir");
        let child = spawn_process(
            &self.opts,
            dir.path(),
            &self.config_path,
            &self.admin_key,
            &["--upgrade"],
        );
        Tollgate {
            child: Some(child),
            dir,
            config_path: self.config_path.clone(),
            opts: self.opts.clone(),
            proxy: self.proxy,
            admin: self.admin,
            metrics: self.metrics,
            admin_key: self.admin_key.clone(),
            key_prefix: self.key_prefix.clone(),
            http: test_http_client(),
        }
    }

    /// Waits until `/healthz` (and `/readyz` unless `no_wait_ready`) answers
    /// 200 and every listener accepts; panics with the logs otherwise.
    pub async fn wait_until_serving(&mut self) {
        if let Err(reason) = self.wait_until_up(self.opts.wait_ready).await {
            panic!(
                "tollgate did not come up: {reason}\n--- tollgate logs ---\n{}",
                self.logs()
            );
        }
    }

    async fn wait_until_up(&mut self, ready: bool) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut paths = vec!["/healthz"];
        if ready {
            paths.push("/readyz");
        }
        for path in paths {
            let url = self.admin_url(path);
            loop {
                if let Some(status) = self.try_exit_status() {
                    return Err(format!("process exited with {status}"));
                }
                let answer = self
                    .http
                    .get(&url)
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                // Only tollgate's own answer counts: if tollgate could not bind
                // its port because another test's server took it first, that
                // server may answer 200 too (an echo upstream does).
                let own = match answer {
                    Ok(response) if response.status() == StatusCode::OK => response
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|body| matches!(body["status"].as_str(), Some("ok" | "ready"))),
                    _ => false,
                };
                if own {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!("GET {path} not 200 within {START_TIMEOUT:?}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // pingora starts its services one by one: the admin listener answering
        // does not mean the proxy and metrics listeners are bound yet.
        for (name, addr) in [("proxy", self.proxy), ("metrics", self.metrics)] {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                if let Some(status) = self.try_exit_status() {
                    return Err(format!("process exited with {status}"));
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "the {name} listener is not up within {START_TIMEOUT:?}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// `http://127.0.0.1:PORT{path}` on the proxy listener.
    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        // `[server.admin_tls]` in the options: the admin listener is HTTPS.
        let scheme = if self.opts.extra_toml.contains("[server.admin_tls]") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.admin)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }

    /// The value of `TOLLGATE_ADMIN_KEY` this instance was started with.
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// The Redis key prefix (None for the memory store).
    pub fn key_prefix(&self) -> Option<&str> {
        self.key_prefix.as_deref()
    }

    /// An admin API client holding this instance's admin key.
    pub fn admin(&self) -> Admin {
        Admin::new(
            format!("http://{}", self.admin),
            Some(self.admin_key.clone()),
        )
    }

    /// A plain HTTP client (10 s timeout, no redirects) for proxy requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `POST /api/auth/oauth2/token` with client_secret_basic.
    pub async fn issue_token(
        &self,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let (status, _headers, body) = self
            .token_request(Some((client_id, client_secret)), &form)
            .await;
        (status, body)
    }

    /// `POST /api/auth/oauth2/token` with exactly these form pairs (repeats
    /// allowed, nothing added) and, when given, Basic client authentication.
    pub async fn token_request(
        &self,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .http
            .post(self.proxy_url("/api/auth/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((client_id, client_secret)) = basic {
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(encode(client_id), Some(encode(client_secret)));
        }
        let response = request.send().await.expect("token request failed");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read token response");
        (status, headers, body_value(&bytes))
    }

    /// A request on the proxy listener with an optional bearer token.
    pub async fn proxy_request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = self.http.request(method, self.proxy_url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("proxy request failed");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read proxy response");
        (status, headers, body_value(&bytes))
    }

    /// Creates an SA in `org` with `scopes` and issues a token carrying all of
    /// them; returns `(service_account_id, access_token)`.
    pub async fn account_with_token(&self, org: &str, scopes: &[&str]) -> (String, String) {
        let name = super::unique_id("sa");
        let (sa, client_id, secret) = self
            .admin()
            .create_service_account(org, &name, scopes)
            .await;
        let (status, body) = self.issue_token(&client_id, &secret, None).await;
        assert_eq!(status, StatusCode::OK, "issue token: {body}");
        let token = body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_string();
        let sa_id = sa["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {sa}"))
            .to_string();
        (sa_id, token)
    }

    /// The Prometheus text from the metrics listener.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(self.metrics_url())
            .send()
            .await
            .expect("GET /metrics failed");
        assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
        response.text().await.expect("read /metrics")
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }

    /// Only what the process wrote to stdout.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Sends a signal by name (`"HUP"`, `"TERM"`, …) with the `kill` command.
    pub fn send_signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_exit_status().is_none()
    }

    /// Waits up to `timeout` for the process to exit by itself (no signal
    /// sent); its exit status, or None if it is still running.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit status
    /// if the process exited on its own within `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .arg("-s")
            .arg("TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.config_path
            .parent()
            .expect("the config file is in a directory")
            .join("policies")
    }

    /// Writes (or replaces) a policy file; reload with `send_signal("HUP")` or by file watch.
    pub fn write_policy(&self, file_name: &str, toml: &str) {
        // Write then rename, so a watcher never sees half a file.
        let tmp = self.dir.path().join(format!(".{file_name}.tmp"));
        fs::write(&tmp, toml).expect("write policy");
        fs::rename(&tmp, self.policy_dir().join(file_name)).expect("move policy into place");
    }

    pub fn remove_policy(&self, file_name: &str) {
        fs::remove_file(self.policy_dir().join(file_name)).expect("remove policy");
    }
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        self.stop(STOP_TIMEOUT);
    }
}

/// Runs `tollgate serve --config FILE ARGS…` with stdout and stderr in `log_dir`.
fn spawn_process(
    opts: &TollgateOptions,
    log_dir: &Path,
    config_path: &Path,
    admin_key: &str,
    args: &[&str],
) -> Child {
    let stdout = File::create(log_dir.join("stdout.log")).expect("create stdout.log");
    let stderr = File::create(log_dir.join("stderr.log")).expect("create stderr.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .arg("serve")
        .arg("--config")
        .arg(config_path)
        .args(args)
        .current_dir(log_dir)
        .env_remove("TOLLGATE_REDIS_URL")
        .env("TOLLGATE_ADMIN_KEY", admin_key)
        .env("TOLLGATE_LOG", &opts.log_filter)
        .env("TOLLGATE_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for (key, value) in &opts.env {
        command.env(key, value);
    }
    command.spawn().expect("spawn the tollgate binary")
}

fn test_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(IO_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        // The readiness check of an admin listener on TLS (the TLS tests
        // check certificates with their own clients).
        .danger_accept_invalid_certs(true)
        .build()
        .expect("build the test HTTP client")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn render_config(
    opts: &TollgateOptions,
    proxy: SocketAddr,
    admin: SocketAddr,
    metrics: SocketAddr,
    policy_dir: &Path,
    key_prefix: Option<&str>,
) -> String {
    let mut config = toml::Table::new();
    config.insert(
        "server".into(),
        table([
            ("listen", proxy.to_string().into()),
            ("admin_listen", admin.to_string().into()),
            ("metrics_listen", metrics.to_string().into()),
            ("public_url", format!("http://{proxy}").into()),
            ("threads", 1.into()),
            // Tests tear tollgate down with SIGTERM; with the default 10 s
            // grace every teardown would wait for it. Shutdown tests set their own.
            ("shutdown_grace_seconds", 0.into()),
        ]),
    );
    let cluster = match (&opts.cluster_urls, &opts.redis_url) {
        (Some(urls), _) => Some(urls.clone()),
        (None, None) => cluster_urls(),
        (None, Some(_)) => None,
    };
    let store = match (&opts.store, cluster) {
        (StoreKind::Memory, _) => table([("backend", "memory".into())]),
        (StoreKind::Redis, Some(urls)) => table([
            ("backend", "redis".into()),
            ("cluster", true.into()),
            (
                "urls",
                urls.into_iter()
                    .map(toml::Value::from)
                    .collect::<Vec<_>>()
                    .into(),
            ),
            ("key_prefix", key_prefix.unwrap_or("tollgate").into()),
        ]),
        (StoreKind::Redis, None) => table([
            ("backend", "redis".into()),
            (
                "url",
                opts.redis_url.clone().unwrap_or_else(redis_url).into(),
            ),
            ("key_prefix", key_prefix.unwrap_or("tollgate").into()),
        ]),
    };
    config.insert("store".into(), store);
    config.insert(
        "policies".into(),
        table([("dir", policy_dir.display().to_string().into())]),
    );
    if opts.cheap_hashing {
        config.insert(
            "hashing".into(),
            table([
                ("memory_kib", 8.into()),
                ("iterations", 1.into()),
                ("parallelism", 1.into()),
            ]),
        );
    }
    if !opts.upstreams.is_empty() {
        let mut upstreams = toml::Table::new();
        for (name, addrs) in &opts.upstreams {
            let addrs = addrs
                .iter()
                .cloned()
                .map(toml::Value::from)
                .collect::<Vec<_>>();
            upstreams.insert(name.clone(), table([("addrs", addrs.into())]));
        }
        config.insert("upstreams".into(), toml::Value::Table(upstreams));
    }
    let extra: toml::Table = opts
        .extra_toml
        .parse()
        .unwrap_or_else(|e| panic!("extra_toml is not valid TOML: {e}\n{}", opts.extra_toml));
    merge(&mut config, extra);
    toml::to_string(&config).expect("serialise the test config")
}

fn table<const N: usize>(entries: [(&str, toml::Value); N]) -> toml::Value {
    toml::Value::Table(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// Tables merge key by key; any other value replaces what was there.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => merge(base, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The value of one sample in Prometheus text: `name` with exactly these
/// labels (in any order). None if there is no such sample.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wanted.sort();
    metric_samples(text, name)
        .into_iter()
        .find_map(|(found, value)| (found == wanted).then_some(value))
}

/// Every sample of `name` in Prometheus text: its labels (sorted by name)
/// and value. Histogram series are separate names (`_bucket`, `_sum`, `_count`).
pub fn metric_samples(text: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let mut labels = parse_labels(series_labels)?;
            labels.sort();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

fn parse_labels(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim_start_matches(',').to_string(), value));
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    Some(labels)
}
