//! `tollgate serve --dev`: the memory store, a demo organization, workspace,
//! environment and service account, a built-in echo upstream, the example
//! policy, and ready-to-paste curl lines.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::config::{Config, EnvOverrides};
use crate::registry::{NewServiceAccount, Registry};

pub const DEMO_ORG: &str = "demo-org";
pub const DEMO_WORKSPACE: &str = "demo-workspace";
pub const DEMO_ENVIRONMENT: &str = "demo-env";
pub const POLICY_LABEL: &str = "policies/example.toml (embedded)";
pub const POLICY: &str = include_str!("../policies/example.toml");

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The dev configuration: memory store, the `backend` upstream on the echo port.
pub fn config(echo_port: u16, env: &EnvOverrides) -> Result<Config, crate::config::ConfigError> {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:8080"
threads = 2
[store]
backend = "memory"
[upstreams.backend]
addrs = ["127.0.0.1:{echo_port}"]
"#
    );
    Config::from_toml(&text, "<dev>", Path::new("."), env)
}

pub struct Demo {
    pub client_id: String,
    pub client_secret: SecretString,
}

/// Creates the demo organization's objects in the (empty) store.
pub async fn seed(registry: &Registry) -> Result<Demo, crate::registry::RegistryError> {
    let actor = "admin:dev";
    let resources = [
        "chat",
        "workflows",
        "storage",
        "knowledge",
        "templates",
        "tools",
        "logs",
    ];
    let (sa, cred) = registry
        .create_service_account(
            DEMO_ORG,
            actor,
            NewServiceAccount {
                name: "demo".into(),
                description: Some("created by tollgate serve --dev".into()),
                scopes: resources.iter().map(|r| format!("{r}:write")).collect(),
                policy: Default::default(),
            },
        )
        .await?;
    registry
        .put_workspace(DEMO_ORG, DEMO_WORKSPACE, actor, "Demo workspace".into())
        .await?;
    registry
        .put_environment(
            DEMO_ORG,
            DEMO_WORKSPACE,
            DEMO_ENVIRONMENT,
            actor,
            "Demo environment".into(),
        )
        .await?;
    registry
        .put_membership(DEMO_ORG, DEMO_WORKSPACE, &sa.id, actor, "member")
        .await?;
    Ok(Demo {
        client_id: cred.credential.client_id,
        client_secret: cred.client_secret,
    })
}

/// The lines `serve --dev` prints on stdout.
pub fn banner(cfg: &Config, demo: &Demo, admin_key: &str) -> String {
    let (scheme, curl) = match &cfg.server.tls {
        Some(tls) => (
            "https",
            format!("curl --cacert {}", tls.cert_file.display()),
        ),
        None => ("http", "curl".to_string()),
    };
    let proxy = format!("{scheme}://{}", cfg.server.listen);
    let admin = format!("http://{}", cfg.server.admin_listen);
    let secret = demo.client_secret.expose_secret();
    format!(
        r#"tollgate dev server (memory store; nothing persists)
console: {admin}/console (sign in with the admin_key below)
swagger: {admin}/swagger
client_id: {client}
client_secret: {secret}
environment_id: {env}
admin_key: {admin_key}

# get a token (client_secret_basic)
TOKEN=$({curl} -s -u '{client}:{secret}' -d grant_type=client_credentials -d 'scope=workflows:write knowledge:read' {proxy}/api/auth/oauth2/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
# who am I
{curl} -s {proxy}/api/v1/service-account/whoami -H "Authorization: Bearer $TOKEN"
# a request the policy allows: forwarded to the echo upstream with identity headers
{curl} -s '{proxy}/api/v1/workflows?environmentId={env}' -H "Authorization: Bearer $TOKEN"
# denied: no token (401), scope not in the token (403)
{curl} -si '{proxy}/api/v1/workflows?environmentId={env}'
{curl} -si '{proxy}/api/v1/logs?environmentId={env}' -H "Authorization: Bearer $TOKEN"
# the admin API
curl -s {admin}/v1/organizations/{org}/service-accounts -H 'Authorization: Bearer {admin_key}'
"#,
        client = demo.client_id,
        env = DEMO_ENVIRONMENT,
        org = DEMO_ORG,
    )
}

/// `serve --dev --tls`: a throwaway self-signed pair for the proxy
/// listener, in a folder of its own under the temporary directory.
pub fn tls(cfg: &mut Config) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("tollgate-dev-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert_file, key_file) = crate::tls::dev_pair(&dir)?;
    cfg.server.tls = Some(crate::config::TlsConfig {
        cert_file,
        key_file,
        sni: Vec::new(),
        client_ca_file: None,
        client_auth: crate::config::ClientAuth::Off,
    });
    Ok(())
}

/// The built-in echo upstream: answers with what it received, as JSON.
pub struct EchoApp;

#[async_trait]
impl ServeHttp for EchoApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
            if body_len > 1 << 20 {
                break;
            }
        }
        let req = session.req_header();
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = serde_json::to_vec_pretty(&json!({
            "echo": true,
            "method": req.method.as_str(),
            "target": String::from_utf8_lossy(req.raw_path()),
            "headers": headers,
            "body_bytes": body_len,
        }))
        .unwrap_or_default();
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

pub fn echo_service(port: u16) -> Service<HttpServer<EchoApp>> {
    let mut s = Service::new(
        "dev echo upstream".to_string(),
        HttpServer::new_app(EchoApp),
    );
    s.add_tcp(&format!("127.0.0.1:{port}"));
    s
}
