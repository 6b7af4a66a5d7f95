//! One tollgate in front of one echo upstream, an organization with a
//! workspace and one environment, and an account with the given scopes that
//! is a member of that workspace, holding a token. Test modules add their
//! own helpers in `impl World` blocks; all are one type in one crate, so a
//! helper's name must be unique across the suite (constructors that differ
//! by module are module functions, such as `world()`).

use super::*;

pub struct World {
    pub tollgate: Tollgate,
    pub echo: EchoUpstream,
    pub org: String,
    pub workspace: String,
    pub env: String,
    pub sa_id: String,
    pub client_id: String,
    pub token: String,
}

impl World {
    /// `policy` is written as `routes.toml` with upstream `backend`.
    pub async fn start_with_policy(opts: TollgateOptions, policy: &str, scopes: &[&str]) -> World {
        let echo = EchoUpstream::start();
        // A generous store timeout unless the test sets one: on a loaded
        // machine set-up calls can miss the default 250 ms.
        let opts = if opts.extra_toml.contains("[store]") {
            opts
        } else {
            opts.toml("[store]\ntimeout_ms = 2000")
        };
        let tollgate = Tollgate::start(
            opts.policy("routes.toml", policy)
                .upstream("backend", &[echo.addr_string()]),
        )
        .await;
        let admin = tollgate.admin();
        let (org, workspace, env) = (unique_id("org"), unique_id("ws"), unique_id("env"));
        admin.put_workspace(&org, &workspace).await;
        admin.put_environment(&org, &workspace, &env).await;
        let (sa, client_id, secret) = admin
            .create_service_account(&org, &unique_id("sa"), scopes)
            .await;
        let sa_id = sa["id"].as_str().expect("sa id").to_string();
        admin.put_member(&org, &workspace, &sa_id, "member").await;
        let (status, body) = tollgate.issue_token(&client_id, &secret, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().expect("token").to_string();
        World {
            tollgate,
            echo,
            org,
            workspace,
            env,
            sa_id,
            client_id,
            token,
        }
    }

    /// An `Authorization` header line with this world's token.
    pub fn bearer(&self) -> String {
        format!("Authorization: Bearer {}", self.token)
    }
}
