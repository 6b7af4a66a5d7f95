//! Two tollgate instances sharing one store and one echo upstream, with one
//! route that needs `workflows:read` and the `member` role, and an account
//! that may use it: the fixture of the several-instance tests, on a single
//! Redis or a cluster.

use super::*;

pub const WORKFLOWS_POLICY: &str = r#"
[[route]]
name = "workflows-read"
methods = ["GET"]
path = "/api/v1/workflows/**"
upstream = "backend"
scope = "workflows:read"
workspace_role = "member"
"#;

pub struct Pair {
    pub a: Tollgate,
    pub b: Tollgate,
    /// The upstream both forward to, alive as long as the pair.
    _echo: EchoUpstream,
}

impl Pair {
    /// Both instances share a fresh key prefix and `cache.ttl_ms`;
    /// `configure` adds to the options of each (a cluster, a timeout).
    pub async fn start(
        cache_ttl_ms: u64,
        configure: impl Fn(TollgateOptions) -> TollgateOptions,
    ) -> Pair {
        let echo = EchoUpstream::start();
        let prefix = unique_prefix();
        let opts = || {
            configure(
                TollgateOptions::new()
                    .key_prefix(prefix.clone())
                    .policy("p.toml", WORKFLOWS_POLICY)
                    .upstream("backend", &[echo.addr_string()])
                    .toml(format!("[cache]\nttl_ms = {cache_ttl_ms}\n")),
            )
        };
        let a = Tollgate::start(opts()).await;
        let b = Tollgate::start(opts()).await;
        Pair { a, b, _echo: echo }
    }
}

/// An account with workflows:read, a member of a new workspace with one
/// environment, made through `via`; returns (org, workspace, sa_id, env, token).
pub async fn workflow_member(via: &Tollgate) -> (String, String, String, String, String) {
    let org = unique_id("org");
    let ws = unique_id("ws");
    let env = unique_id("env");
    let (sa_id, token) = via.account_with_token(&org, &["workflows:read"]).await;
    let admin = via.admin();
    admin.put_workspace(&org, &ws).await;
    admin.put_environment(&org, &ws, &env).await;
    admin.put_member(&org, &ws, &sa_id, "member").await;
    (org, ws, sa_id, env, token)
}

/// The status of `GET /api/v1/workflows/x?environmentId=env` with `token`.
pub async fn workflow_status(t: &Tollgate, env: &str, token: &str) -> StatusCode {
    let (status, _, _) = t
        .proxy_request(
            Method::GET,
            &format!("/api/v1/workflows/x?environmentId={env}"),
            Some(token),
        )
        .await;
    status
}
