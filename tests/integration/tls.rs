//! TLS on the proxy listener against real clients: rustls (reqwest), curl
//! (HTTP/1.1 and HTTP/2 by ALPN), `openssl s_client` (versions, ALPN, SNI,
//! client certificates); certificate reload on file change and SIGHUP, a
//! bad pair refused and the old one kept.

use std::time::Duration;

use crate::common::*;

/// A public route and a `tools:read` one (also the HTTP/2 suite's).
pub(crate) fn edge_policy() -> String {
    [PUBLIC_ROUTE, TOOLS_ROUTE].concat()
}

pub(crate) struct TlsWorld {
    pub pki: Pki,
    pub server: PemPair,
    pub tollgate: Tollgate,
    pub echo: EchoUpstream,
}

impl TlsWorld {
    /// tollgate with `[server.tls]` (a CA-signed pair for localhost and
    /// 127.0.0.1) plus `tls_extra` lines in that table, and `extra` TOML.
    pub async fn start(tls_extra: &str, extra: &str) -> TlsWorld {
        let pki = Pki::new();
        let server = pki.server("server", &["localhost", "127.0.0.1"]);
        Self::start_with(pki, server, tls_extra, extra).await
    }

    pub async fn start_with(pki: Pki, server: PemPair, tls_extra: &str, extra: &str) -> TlsWorld {
        let echo = EchoUpstream::start();
        let tollgate = Tollgate::start(
            TollgateOptions::new()
                .memory()
                .policy("routes.toml", edge_policy())
                .upstream("backend", &[echo.addr_string()])
                .toml(format!(
                    "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n{tls_extra}\n{extra}",
                    server.cert.display().to_string(),
                    server.key.display().to_string(),
                )),
        )
        .await;
        TlsWorld {
            pki,
            server,
            tollgate,
            echo,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "https://localhost:{}{path}",
            self.tollgate.proxy_addr().port()
        )
    }

    /// `--cacert CA --resolve localhost:PORT:127.0.0.1`: curl's arguments
    /// to reach the listener by name, trusting the test CA.
    pub fn curl_trust(&self) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.pki.ca_file().display().to_string(),
            "--resolve".into(),
            format!("localhost:{}:127.0.0.1", self.tollgate.proxy_addr().port()),
        ]
    }

    /// A token for a new account with `tools:read`, issued over TLS.
    pub async fn token(&self) -> String {
        let (_, client_id, secret) = self
            .tollgate
            .admin()
            .create_service_account(&unique_id("org"), &unique_id("sa"), &["tools:read"])
            .await;
        let answer = self
            .pki
            .https_client()
            .post(self.url("/api/auth/oauth2/token"))
            .basic_auth(&client_id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request");
        assert_eq!(answer.status(), StatusCode::OK);
        let body: Value = answer.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_string()
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn tls_serves_http1_and_h2_by_alpn_and_forwards_https() {
    let w = TlsWorld::start("", "").await;
    // rustls client (reqwest): HTTP/1.1, and what the upstream is told.
    let answer = w
        .pki
        .https_client()
        .get(w.url("/public/a"))
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .expect("https request");
    assert_eq!(answer.status(), StatusCode::OK);
    let seen = w.echo.last().expect("forwarded");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header_all("x-forwarded-proto").len(), 1);

    // curl: HTTP/2 by ALPN and HTTP/1.1, with a token and without.
    let token = w.token().await;
    let bearer = format!("Authorization: Bearer {token}");
    let trust = w.curl_trust();
    for (flag, version) in [("--http2", "HTTP/2 200"), ("--http1.1", "HTTP/1.1 200")] {
        let url = w.url("/api/v1/tools/x");
        let mut a = args(&trust);
        a.extend([flag, "-i", "-H", &bearer, &url]);
        let (code, out, err) = curl(&a);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with(version), "{flag}: {out}");
        let mut a = args(&trust);
        a.extend([flag, "-i", &url]);
        let (_, out, _) = curl(&a);
        assert!(out.contains(" 401"), "{flag} without a token: {out}");
        assert!(out.contains("\"error\""), "a JSON denial: {out}");
    }
    let h2_seen = w.echo.last().expect("forwarded");
    assert_eq!(h2_seen.header("x-forwarded-proto"), Some("https"));

    // openssl s_client: both TLS versions, each ALPN protocol, no TLS 1.1.
    let addr = w.tollgate.proxy_addr();
    let ca = w.pki.ca_file().display().to_string();
    for (version, shown) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(addr, &[version, "-CAfile", &ca, "-servername", "localhost"]);
        assert!(
            out.contains(&format!("Protocol  : {shown}")) || out.contains(&format!("New, {shown}")),
            "{version}: {out}"
        );
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{version}: {out}"
        );
    }
    for alpn in ["h2", "http/1.1"] {
        let out = s_client(addr, &["-alpn", alpn, "-CAfile", &ca]);
        assert!(
            out.contains(&format!("ALPN protocol: {alpn}")),
            "{alpn}: {out}"
        );
    }
    let out = s_client(addr, &["-tls1_1", "-CAfile", &ca]);
    assert!(
        out.contains("no peer certificate available") && out.contains("Cipher is (NONE)"),
        "TLS 1.1 refused: {out}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let bytes = raw_http(addr, "GET /public/a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        !bytes.starts_with(b"HTTP/1.1 200"),
        "plain HTTP on the TLS port"
    );
}

#[tokio::test]
async fn sni_picks_the_pair_named_for_the_server_name() {
    let pki = Pki::new();
    let default = pki.server("default", &["localhost", "127.0.0.1"]);
    let other = pki.server("other", &["api.b.test"]);
    let sni = format!(
        "[[server.tls.sni]]\nnames = [\"*.b.test\"]\ncert_file = {:?}\nkey_file = {:?}\n",
        other.cert.display().to_string(),
        other.key.display().to_string()
    );
    let w = TlsWorld::start_with(pki, default, "", &sni).await;
    let port = w.tollgate.proxy_addr().port();
    let ca = w.pki.ca_file().display().to_string();
    for host in ["api.b.test", "localhost"] {
        let resolve = format!("{host}:{port}:127.0.0.1");
        let url = format!("https://{host}:{port}/public/x");
        let (code, out, err) = curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]);
        assert_eq!((code, out.as_str()), (0, "200"), "{host}: {err}");
    }
    // A name no pair has gets the default pair, which does not name it.
    let resolve = format!("nope.c.test:{port}:127.0.0.1");
    let url = format!("https://nope.c.test:{port}/public/x");
    let (code, _, _) = curl(&["--cacert", &ca, "--resolve", &resolve, &url]);
    assert_eq!(
        code, 60,
        "certificate does not match the name (curl exit 60)"
    );
}

/// Whether curl, trusting only `ca`, gets 200 from the listener.
fn trusted_by(w: &TlsWorld, ca: &std::path::Path) -> bool {
    let port = w.tollgate.proxy_addr().port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/public/x");
    let ca = ca.display().to_string();
    let (code, out, _) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    code == 0 && out == "200"
}

#[tokio::test]
async fn certificates_reload_on_change_and_sighup_and_a_bad_pair_is_kept_out() {
    let w = TlsWorld::start("", "").await;
    let old_ca = w.pki.ca_file();
    assert!(trusted_by(&w, &old_ca));

    // A pair from another CA written over the files: reloaded on change.
    let next = Pki::new();
    let fresh = next.server("fresh", &["localhost", "127.0.0.1"]);
    std::fs::copy(&fresh.cert, &w.server.cert).expect("copy cert");
    std::fs::copy(&fresh.key, &w.server.key).expect("copy key");
    eventually(Duration::from_secs(10), "the new pair served", || async {
        trusted_by(&w, &next.ca_file())
    })
    .await;
    let metrics = w.tollgate.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "tollgate_tls_reloads_total",
            &[("listener", "proxy"), ("result", "ok")]
        )
        .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );

    // A key that does not belong to the certificate: refused, old pair kept.
    let stray = next.server("stray", &["localhost"]);
    std::fs::copy(&stray.key, &w.server.key).expect("copy key");
    eventually(
        Duration::from_secs(10),
        "the bad pair refused and counted",
        || async {
            let m = w.tollgate.metrics().await;
            metric_value(
                &m,
                "tollgate_tls_reloads_total",
                &[("listener", "proxy"), ("result", "error")],
            )
            .is_some_and(|v| v >= 1.0)
        },
    )
    .await;
    assert!(trusted_by(&w, &next.ca_file()), "the pair in use is kept");
    assert!(w.tollgate.logs().contains("TLS certificates not reloaded"));

    // SIGHUP reloads too: a good pair back, then the signal at once.
    let back = w.pki.server("back", &["localhost", "127.0.0.1"]);
    std::fs::copy(&back.cert, &w.server.cert).expect("copy cert");
    std::fs::copy(&back.key, &w.server.key).expect("copy key");
    w.tollgate.send_signal("HUP");
    eventually(Duration::from_secs(10), "reloaded on SIGHUP", || async {
        trusted_by(&w, &old_ca)
            && w.tollgate
                .logs()
                .lines()
                .any(|l| l.contains("TLS certificates reloaded") && l.contains("SIGHUP"))
    })
    .await;
}

#[tokio::test]
async fn client_certificates_are_checked_against_the_ca_bundle() {
    let pki = Pki::new();
    let server = pki.server("server", &["localhost", "127.0.0.1"]);
    let ca = pki.ca_file().display().to_string();
    let required = format!("client_ca_file = {ca:?}\nclient_auth = \"required\"");
    let w = TlsWorld::start_with(pki, server, &required, "").await;
    let good = w.pki.client("good", "billing-client");
    let outsider = Pki::new().client("outsider", "intruder");
    let status = |pair: Option<&PemPair>| status_with_client_cert(&w, &ca, pair);
    assert_eq!(status(Some(&good)).as_deref(), Some("200"));
    assert_eq!(
        status(None),
        None,
        "required: no certificate, no connection"
    );
    assert_eq!(status(Some(&outsider)), None, "a certificate of another CA");
    let out = s_client(w.tollgate.proxy_addr(), &["-CAfile", &ca]);
    assert!(
        out.contains("Acceptable client certificate CA names"),
        "{out}"
    );
    drop(w);

    let pki = Pki::new();
    let server = pki.server("server", &["localhost", "127.0.0.1"]);
    let ca2 = pki.ca_file().display().to_string();
    let optional = format!("client_ca_file = {ca2:?}\nclient_auth = \"optional\"");
    let w = TlsWorld::start_with(pki, server, &optional, "").await;
    let good = w.pki.client("good", "billing-client");
    let outsider = Pki::new().client("outsider", "intruder");
    let run = |pair: Option<&PemPair>| status_with_client_cert(&w, &ca2, pair);
    assert_eq!(run(None).as_deref(), Some("200"), "optional: none is fine");
    assert_eq!(run(Some(&good)).as_deref(), Some("200"));
    assert_eq!(run(Some(&outsider)), None, "optional: a bad one is not");
}

#[tokio::test]
async fn admin_and_metrics_listeners_serve_over_tls() {
    let pki = Pki::new();
    let server = pki.server("server", &["localhost", "127.0.0.1"]);
    let pair = format!(
        "cert_file = {:?}\nkey_file = {:?}\n",
        server.cert.display().to_string(),
        server.key.display().to_string()
    );
    let extra = format!("[server.admin_tls]\n{pair}[server.metrics_tls]\n{pair}");
    let w = TlsWorld::start_with(pki, server, "", &extra).await;
    let https = w.pki.https_client();
    let admin = format!("https://localhost:{}", w.tollgate.admin_addr().port());
    let metrics = format!(
        "https://localhost:{}/metrics",
        w.tollgate.metrics_addr().port()
    );

    // The admin API over TLS, with the admin key; HTTP/2 by ALPN too.
    let answer = https
        .post(format!(
            "{admin}/v1/organizations/{}/service-accounts",
            unique_id("org")
        ))
        .bearer_auth(w.tollgate.admin_key())
        .json(&json!({"name": unique_id("sa"), "scopes": ["tools:read"]}))
        .send()
        .await
        .expect("admin over TLS");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let ca = w.pki.ca_file().display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", w.tollgate.admin_addr().port());
    let (code, out, err) = curl(&[
        "--http2",
        "-i",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        &format!("{admin}/healthz"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");

    // Metrics over TLS, with the TLS series of every listener.
    let text = https
        .get(&metrics)
        .send()
        .await
        .expect("metrics over TLS")
        .text()
        .await
        .expect("text");
    for listener in ["proxy", "admin", "metrics"] {
        assert!(
            metric_value(
                &text,
                "tollgate_tls_reloads_total",
                &[("listener", listener), ("result", "error")]
            ) == Some(0.0),
            "{listener}: {text}"
        );
    }

    // Plain HTTP on either gets no answer.
    for addr in [w.tollgate.admin_addr(), w.tollgate.metrics_addr()] {
        let bytes = raw_http(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(!bytes.starts_with(b"HTTP/1.1 200"), "plain HTTP on {addr}");
    }
}

/// curl's status for `/public/x` trusting `ca`, with this client pair if
/// any; `None` when no TLS connection could be made.
fn status_with_client_cert(w: &TlsWorld, ca: &str, pair: Option<&PemPair>) -> Option<String> {
    let port = w.tollgate.proxy_addr().port();
    let mut a: Vec<String> = vec![
        "--cacert".into(),
        ca.to_string(),
        "--resolve".into(),
        format!("localhost:{port}:127.0.0.1"),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
    ];
    if let Some(p) = pair {
        a.extend([
            "--cert".into(),
            p.cert.display().to_string(),
            "--key".into(),
            p.key.display().to_string(),
        ]);
    }
    a.push(format!("https://localhost:{port}/public/x"));
    let (code, out, _) = curl(&args(&a));
    (code == 0).then_some(out)
}

/// `serve --dev --tls` prints curl lines that trust its throwaway pair and
/// work as printed: a token over TLS, then whoami with it.
#[tokio::test]
async fn dev_mode_with_tls_does_what_it_prints() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let port = |_| format!("127.0.0.1:{}", free_port());
    let (proxy, admin, metrics) = (port(0), port(1), port(2));
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--dev", "--tls", "--listen", &proxy])
            .args(["--admin-listen", &admin, "--metrics-listen", &metrics])
            .env_remove("TOLLGATE_ADMIN_KEY")
            .env_remove("TOLLGATE_REDIS_URL")
            .env("TOLLGATE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tollgate serve --dev --tls"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let last = line.contains("/v1/organizations/");
            lines.push(line);
            if last {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(20), lines)
        .await
        .expect("the banner within 20 s")
        .expect("read the banner");
    let token_line = lines
        .iter()
        .find(|l| l.starts_with("TOKEN=$(curl --cacert "))
        .unwrap_or_else(|| panic!("no TLS token line: {lines:?}"));
    assert!(
        token_line.contains(&format!("https://{proxy}/")),
        "{token_line}"
    );
    let whoami = lines
        .iter()
        .find(|l| l.contains("/whoami"))
        .expect("a whoami line");
    let cert = token_line
        .split_whitespace()
        .nth(2)
        .expect("the --cacert file")
        .to_string();
    eventually(
        Duration::from_secs(20),
        "the TLS proxy listener",
        || async { tokio::net::TcpStream::connect(&proxy).await.is_ok() },
    )
    .await;
    let out = Command::new("bash")
        .args(["-c", &format!("{token_line}\n{whoami}")])
        .output()
        .expect("run the printed lines");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("\"clientId\""), "{printed} {lines:?}");
    drop(child);
    if let Some(dir) = std::path::Path::new(&cert).parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Failed handshakes are counted, never logged above DEBUG: anyone can
/// make them (plain HTTP to the TLS port, garbage, a certificate from
/// another CA), so a flood of them must not flood the log.
#[tokio::test]
async fn failed_handshakes_are_counted_not_logged_as_errors() {
    let pki = Pki::new();
    let server = pki.server("server", &["localhost", "127.0.0.1"]);
    let ca = pki.ca_file().display().to_string();
    let required = format!("client_ca_file = {ca:?}\nclient_auth = \"required\"");
    let w = TlsWorld::start_with(pki, server, &required, "").await;
    let addr = w.tollgate.proxy_addr();
    let _ = raw_http(addr, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let _ = raw_http(addr, [0x16u8, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]).await;
    let outsider = Pki::new().client("outsider", "intruder");
    assert_eq!(status_with_client_cert(&w, &ca, Some(&outsider)), None);
    assert_eq!(status_with_client_cert(&w, &ca, None), None);
    eventually(
        Duration::from_secs(5),
        "four handshake failures counted",
        || async {
            let metrics = w.tollgate.metrics().await;
            metric_value(
                &metrics,
                "tollgate_tls_handshake_failures_total",
                &[("listener", "proxy")],
            )
            .is_some_and(|n| n >= 4.0)
        },
    )
    .await;
    let logs = w.tollgate.logs();
    for line in logs.lines() {
        assert!(
            !line.contains("ERROR") && !line.contains("\"level\":\"error\""),
            "a failed handshake logged as an error: {line}"
        );
    }
}
