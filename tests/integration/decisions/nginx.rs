//! A real nginx in front of an echo upstream, with tollgate's decision
//! listener as its `auth_request` authorizer, configured as
//! docs/decisions.md shows: an allowed request reaches the upstream with
//! tollgate's identity headers and no `Authorization`; every denial kind
//! is answered with its status (and `WWW-Authenticate`) and reaches no
//! upstream; client-sent identity headers never get through; a revocation
//! is seen within the propagation bound.
//!
//! `scripts/ensure-deps.sh test` installs nginx; without it these tests
//! print why and pass without running.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{denials, Decisions, IDENTITY};
use crate::common::*;

/// The `http {}` body docs/decisions.md recommends, with `{decisions}`,
/// `{backend}` and `{listen}` to fill in.
pub(crate) const SNIPPET: &str = include_str!("../../../examples/decisions/nginx.conf");

/// The snippet with its addresses filled in (`decisions`: an address, or
/// `unix:/path`).
pub(crate) fn snippet(
    decisions: impl std::fmt::Display,
    backend: &str,
    listen: SocketAddr,
) -> String {
    SNIPPET
        .replace("{decisions}", &decisions.to_string())
        .replace("{backend}", backend)
        .replace("{listen}", &listen.to_string())
}

/// nginx in the foreground on a free port, killed on drop.
pub(crate) struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// The nginx binary: on the PATH, or where Debian puts it.
fn nginx_binary() -> Option<&'static str> {
    ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|bin| Command::new(bin).arg("-v").output().is_ok())
}

impl Nginx {
    /// None (after saying why) when nginx is not installed.
    pub(crate) async fn start(http_body: impl Fn(SocketAddr) -> String) -> Option<Nginx> {
        let Some(bin) = nginx_binary() else {
            eprintln!("skipped: nginx is not installed (scripts/ensure-deps.sh test installs it)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{}\n}}\n",
            http_body(addr)
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .arg("-g")
            .arg("daemon off; master_process on;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log"))
            .spawn()
            .expect("spawn nginx");
        let nginx = Nginx { child, addr, dir };
        let up = async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), up)
            .await
            .is_err()
        {
            panic!("nginx did not start:\n{}", nginx.errors());
        }
        Some(nginx)
    }

    pub(crate) fn errors(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    /// `METHOD target` with these header lines, through nginx.
    async fn send(&self, method: &str, target: &str, lines: &[String]) -> RawResponse {
        let line = format!("{method} {target} HTTP/1.1");
        super::send(self.addr, &line, "api.example.com", lines).await
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too; then it is reaped.
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn setup() -> Option<(Decisions, Nginx)> {
    let d = Decisions::start("convention = \"nginx\"", "").await;
    let echo = d.world.echo.addr_string();
    let decisions = d.addr;
    let nginx = Nginx::start(|listen| snippet(decisions, &echo, listen)).await?;
    Some((d, nginx))
}

/// Allowed through nginx: the upstream sees tollgate's identity headers,
/// not the client's forged ones (in either form), and no `Authorization`.
#[tokio::test]
async fn nginx_forwards_an_allowed_request_with_tollgates_identity() {
    let Some((d, nginx)) = setup().await else {
        return;
    };
    let target = format!("/api/v1/workflows/run?environmentId={}", d.world.env);
    let mut lines = d.bearer();
    lines.push("X-Tollgate-Organization-Id: forged-org".into());
    lines.push("X_Tollgate_Client_Id: forged-client".into());
    let got = nginx.send("GET", &target, &lines).await;
    assert_eq!(got.status, 200, "{}\n{}", got.body_str(), nginx.errors());
    let seen = d.world.echo.last().expect("forwarded");
    assert_eq!(seen.path(), "/api/v1/workflows/run");
    assert_eq!(
        seen.header("x-tollgate-organization-id"),
        Some(d.world.org.as_str())
    );
    assert_eq!(seen.header_all("x-tollgate-organization-id").len(), 1);
    assert_eq!(
        seen.header("x-tollgate-client-id"),
        Some(d.world.client_id.as_str())
    );
    assert!(
        !seen.has_header("x_tollgate_client_id"),
        "the _ form got through"
    );
    for name in IDENTITY {
        assert!(seen.has_header(name), "{name} missing upstream");
    }
    assert!(
        !seen.has_header("authorization"),
        "the token reached the upstream"
    );

    // A public route: forwarded, the client's identity headers emptied away.
    d.world.echo.clear();
    let public = nginx
        .send(
            "POST",
            "/public/x",
            &[
                "X-Tollgate-Workspace-Role: admin".into(),
                "Content-Length: 0".into(),
            ],
        )
        .await;
    assert_eq!(public.status, 200);
    let seen = d.world.echo.last().expect("forwarded");
    for name in IDENTITY {
        assert!(
            !seen.has_header(name),
            "{name} reached the upstream of a public route"
        );
    }
}

/// Every denial kind through nginx: its status, `WWW-Authenticate` on 401
/// and on the scope 403, and nothing forwarded.
#[tokio::test]
async fn nginx_answers_every_denial_and_forwards_none() {
    let Some((d, nginx)) = setup().await else {
        return;
    };
    for (method, target, lines, error) in denials(&d) {
        let got = nginx.send(method, &target, &lines).await;
        let want = d.via_proxy(method, &target, &lines).await;
        assert_eq!(
            got.status,
            want.status,
            "{error} {target}\n{}",
            nginx.errors()
        );
        assert_eq!(got.json()["error"], error, "{target}");
        assert_eq!(got.header("cache-control"), Some("no-store"), "{target}");
        assert_eq!(
            got.header("www-authenticate"),
            want.header("www-authenticate"),
            "{error} {target}"
        );
    }
    let missing = nginx.send("GET", "/api/v1/tools/x", &[]).await;
    assert_eq!(missing.header("www-authenticate"), Some(REALM));
    // A repeated Authorization is refused, as on the proxy (400).
    let mut twice = d.bearer();
    twice.push("Authorization: Bearer tg_at_another".into());
    let got = nginx.send("GET", "/api/v1/tools/x", &twice).await;
    assert_eq!(got.status, 400, "{}", got.body_str());
    assert_eq!(d.world.echo.count(), 0, "a denied request was forwarded");
}

/// A revoked token is refused through nginx within the cache's TTL (the
/// propagation bound, docs/contract.md §8).
#[tokio::test]
async fn nginx_sees_a_revocation_within_the_bound() {
    let Some((d, nginx)) = setup().await else {
        return;
    };
    let target = "/api/v1/tools/x";
    assert_eq!(nginx.send("GET", target, &d.bearer()).await.status, 200);
    d.world
        .tollgate
        .admin()
        .revoke_account_tokens(&d.world.org, &d.world.sa_id)
        .await;
    let revoked = std::time::Instant::now();
    eventually(
        Duration::from_millis(1500),
        "the revocation through nginx",
        || async { nginx.send("GET", target, &d.bearer()).await.status == 401 },
    )
    .await;
    // The default cache TTL (500 ms) bounds it; the margin is for a loaded machine.
    assert!(revoked.elapsed() < Duration::from_millis(1500));
}

/// With tollgate unreachable, nginx answers 503 and forwards nothing.
#[tokio::test]
async fn nginx_fails_closed_without_tollgate() {
    let echo = EchoUpstream::start();
    let backend = echo.addr_string();
    let dead: SocketAddr = dead_addr().parse().expect("an address");
    let Some(nginx) = Nginx::start(|listen| snippet(dead, &backend, listen)).await else {
        return;
    };
    let got = nginx.send("GET", "/public/x", &[]).await;
    assert_eq!(got.status, 503, "{}", nginx.errors());
    assert_eq!(got.json()["error"], "temporarily_unavailable");
    assert_eq!(echo.count(), 0);
}

/// The decision listener on a Unix socket (`unix:/path`, with
/// `server.decisions_socket_mode`), asked by nginx over it: allowed with
/// the identity, denied without a token.
#[tokio::test]
async fn nginx_asks_over_a_unix_socket() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    // nginx's workers run as another user: they must reach the socket.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sock = dir.path().join("decisions.sock");
    let opts = TollgateOptions::new().toml(format!(
        "[server]\ndecisions_listen = \"unix:{}\"\ndecisions_socket_mode = \"0666\"\n[decisions]\nconvention = \"nginx\"",
        sock.display()
    ));
    let world = World::start_with_policy(opts, &super::policy(), super::SCOPES).await;
    let mode = std::fs::metadata(&sock)
        .expect("the socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666, "{mode:o}");
    let echo = world.echo.addr_string();
    let unix = format!("unix:{}", sock.display());
    let Some(nginx) = Nginx::start(|listen| snippet(&unix, &echo, listen)).await else {
        return;
    };
    let target = format!("/api/v1/workflows/run?environmentId={}", world.env);
    let got = nginx.send("GET", &target, &[world.bearer()]).await;
    assert_eq!(got.status, 200, "{}\n{}", got.body_str(), nginx.errors());
    let seen = world.echo.last().expect("forwarded");
    assert_eq!(
        seen.header("x-tollgate-organization-id"),
        Some(world.org.as_str())
    );
    world.echo.clear();
    let denied = nginx.send("GET", &target, &[]).await;
    assert_eq!(denied.status, 401);
    assert_eq!(world.echo.count(), 0, "a denial was forwarded");
}
