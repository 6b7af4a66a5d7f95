//! tollgate in front of a real upstream framework: PHP's built-in server
//! (`php -S`), which reads query names its own way (drops leading spaces,
//! cuts at NUL, turns `name[...]` into `name`). Whatever tollgate forwards,
//! PHP must read the `environmentId` tollgate checked (docs/contract.md §5).
//!
//! `scripts/ensure-deps.sh test` installs `php-cli`; without `php` on the
//! PATH these tests print why and pass without running.

use crate::common::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

const POLICY: &str = r#"
[[route]]
name = "php"
path = "/**"
upstream = "php"
scope = "workflows:read"
workspace_role = "member"

[[route]]
name = "php-tenant"
path = "/tenant/**"
upstream = "php"
scope = "workflows:read"
organization_param = "tenantId"
"#;

/// What `router.php` answers: the `environmentId` and `tenantId` PHP's
/// `$_GET` holds (a string, an array, or null), as JSON.
const ROUTER: &str = r#"<?php
header('Content-Type: application/json');
echo json_encode(['environmentId' => $_GET['environmentId'] ?? null,
    'tenantId' => $_GET['tenantId'] ?? null],
    JSON_INVALID_UTF8_SUBSTITUTE);
"#;

/// `php -S` on a free loopback port, killed on drop.
struct PhpServer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl PhpServer {
    /// None (after saying why) when PHP is not installed.
    async fn start() -> Option<PhpServer> {
        if Command::new("php").arg("--version").output().is_err() {
            eprintln!(
                "skipped: `php` is not installed (scripts/ensure-deps.sh test installs php-cli)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let router = dir.path().join("router.php");
        std::fs::write(&router, ROUTER).expect("write router.php");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new("php")
            .arg("-S")
            .arg(addr.to_string())
            .arg(&router)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn php -S");
        let server = PhpServer {
            child,
            addr,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "php -S did not listen on {addr}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Some(server)
    }

    /// What PHP reads as `environmentId` for `query`, asked directly.
    async fn reads(&self, query: &str) -> Value {
        let response = raw_get(self.addr, &format!("/?{query}"), None).await;
        assert_eq!(response.status, 200, "php answered {}", response.status);
        environment_id_of(&response)
    }
}

impl Drop for PhpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn raw_get(addr: SocketAddr, target: &str, bearer: Option<&str>) -> RawResponse {
    let authorization = bearer
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: upstream.test\r\n{authorization}Connection: close\r\n\r\n"
    );
    let bytes = raw_http(addr, request.as_bytes()).await;
    RawResponse::parse(&bytes)
        .unwrap_or_else(|| panic!("no response: {}", String::from_utf8_lossy(&bytes)))
}

fn environment_id_of(response: &RawResponse) -> Value {
    read_of(response, "environmentId")
}

/// What PHP read as the query parameter `name`.
fn read_of(response: &RawResponse, name: &str) -> Value {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "php's answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&response.body)
        )
    });
    body[name].clone()
}

/// tollgate with [`POLICY`] in front of `php`.
async fn php_gateway(php: &PhpServer) -> Tollgate {
    Tollgate::start(
        TollgateOptions::new()
            .policy("routes.toml", POLICY)
            .upstream("php", &[php.addr.to_string()])
            .toml("[store]\ntimeout_ms = 2000"),
    )
    .await
}

/// tollgate in front of `php`, an environment, and a member's token.
async fn tollgate_before(php: &PhpServer) -> (Tollgate, String, String) {
    let tollgate = php_gateway(php).await;
    let admin = tollgate.admin();
    let (org, workspace, env) = (unique_id("org"), unique_id("ws"), unique_id("env"));
    admin.put_workspace(&org, &workspace).await;
    admin.put_environment(&org, &workspace, &env).await;
    let (sa_id, token) = tollgate.account_with_token(&org, &["workflows:read"]).await;
    admin.put_member(&org, &workspace, &sa_id, "member").await;
    (tollgate, env, token)
}

#[tokio::test]
async fn every_spelling_php_reads_as_environment_id_is_refused() {
    let Some(php) = PhpServer::start().await else {
        return;
    };
    let (tollgate, env, token) = tollgate_before(&php).await;
    // The spellings the attack used; PHP reads each as another environment.
    for alias in [
        "+environmentId",
        "%20environmentId",
        "environmentId%00x",
        "environmentId[]",
        "environmentId%5Bx%5D",
    ] {
        let query = format!("environmentId={env}&{alias}=other");
        assert_ne!(
            php.reads(&query).await,
            Value::from(env.as_str()),
            "php should read {alias} as environmentId"
        );
        let response = raw_get(tollgate.proxy_addr(), &format!("/x?{query}"), Some(&token)).await;
        assert_eq!(response.status, 400, "{query}");
    }
    let plain = raw_get(
        tollgate.proxy_addr(),
        &format!("/x?environmentId={env}"),
        Some(&token),
    )
    .await;
    assert_eq!(plain.status, 200);
    assert_eq!(environment_id_of(&plain), Value::from(env.as_str()));
}

#[tokio::test]
async fn whatever_tollgate_forwards_php_reads_the_environment_it_checked() {
    let Some(php) = PhpServer::start().await else {
        return;
    };
    let (tollgate, env, token) = tollgate_before(&php).await;
    // Second parameter names built from pieces frameworks strip, cut or
    // fold, around spellings close to environmentId.
    let cores = [
        "environmentId",
        "EnvironmentId",
        "environmentid",
        "environment_Id",
        "environment.Id",
        "environment%20Id",
        "environmentIds",
        "xenvironmentId",
    ];
    let prefixes = [
        "",
        "+",
        "%20",
        "%09",
        "%0A",
        "%00",
        "%5B",
        "%5D",
        "[",
        "%EF%BB%BF",
        ".",
        "_",
    ];
    let suffixes = [
        "", "+", "%20", "%00", "%00x", ".", "..", "[]", "[0]", "%5B", "%5D", "]", "_", "%3B",
    ];
    let (mut forwarded, mut refused) = (0, 0);
    for core in cores {
        for prefix in prefixes {
            for suffix in suffixes {
                let query = format!("environmentId={env}&{prefix}{core}{suffix}=other");
                let response =
                    raw_get(tollgate.proxy_addr(), &format!("/x?{query}"), Some(&token)).await;
                match response.status {
                    200 => {
                        forwarded += 1;
                        assert_eq!(
                            environment_id_of(&response),
                            Value::from(env.as_str()),
                            "tollgate forwarded {query:?} but php read another environment"
                        );
                    }
                    400 => refused += 1,
                    other => panic!("{query}: unexpected status {other}"),
                }
            }
        }
    }
    // Neither side of the check may be empty, or it proves nothing.
    assert!(forwarded > 0 && refused > 0, "{forwarded} / {refused}");
}

/// A route bound to its organization by the query parameter `tenantId`
/// (`organization_param`): whatever tollgate forwards, PHP reads the
/// organization tollgate compared with the token's; every spelling PHP
/// folds into `tenantId` next to the real one is refused or harmless.
#[tokio::test]
async fn whatever_tollgate_forwards_php_reads_the_organization_it_bound() {
    let Some(php) = PhpServer::start().await else {
        return;
    };
    let tollgate = php_gateway(&php).await;
    let org = unique_id("org");
    let (_, token) = tollgate.account_with_token(&org, &["workflows:read"]).await;
    let own = raw_get(
        tollgate.proxy_addr(),
        &format!("/tenant/x?tenantId={org}"),
        Some(&token),
    )
    .await;
    assert_eq!(own.status, 200);
    assert_eq!(read_of(&own, "tenantId"), Value::from(org.as_str()));
    let other = raw_get(
        tollgate.proxy_addr(),
        "/tenant/x?tenantId=org-of-someone-else",
        Some(&token),
    )
    .await;
    assert_eq!(other.status, 403);
    // The spellings PHP reads as tenantId: checked against PHP itself.
    for alias in [
        "+tenantId",
        "%20tenantId",
        "tenantId%00x",
        "tenantId[]",
        "tenantId%5Bx%5D",
    ] {
        let query = format!("tenantId={org}&{alias}=org-of-someone-else");
        let direct = raw_get(php.addr, &format!("/?{query}"), None).await;
        assert_ne!(
            read_of(&direct, "tenantId"),
            Value::from(org.as_str()),
            "php should read {alias} as tenantId"
        );
    }
    let cores = [
        "tenantId",
        "TenantId",
        "tenantid",
        "tenant_Id",
        "tenant.Id",
        "tenantIds",
    ];
    let prefixes = ["", "+", "%20", "%09", "%00", "%5B", "[", ".", "_"];
    let suffixes = [
        "", "+", "%20", "%00", "%00x", ".", "[]", "[0]", "%5B", "]", "%3B",
    ];
    let (mut forwarded, mut refused) = (0, 0);
    for core in cores {
        for prefix in prefixes {
            for suffix in suffixes {
                let query = format!("tenantId={org}&{prefix}{core}{suffix}=org-of-someone-else");
                let response = raw_get(
                    tollgate.proxy_addr(),
                    &format!("/tenant/x?{query}"),
                    Some(&token),
                )
                .await;
                match response.status {
                    200 => {
                        forwarded += 1;
                        assert_eq!(
                            read_of(&response, "tenantId"),
                            Value::from(org.as_str()),
                            "tollgate forwarded {query:?} but php read another organization"
                        );
                    }
                    400 | 403 => refused += 1,
                    other => panic!("{query}: unexpected status {other}"),
                }
            }
        }
    }
    assert!(forwarded > 0 && refused > 0, "{forwarded} / {refused}");
}
