//! Tenant binding against the real binary: a route's `organization_param`
//! (path or query) must equal the token's organization, else 403
//! `organization_mismatch` and nothing reaches the upstream;
//! `environment_param` takes the environment from the path. Values are read
//! from the normalised path, and ambiguous ones are refused.

use std::process::Command;

use crate::common::*;

const POLICY: &str = r#"
[[route]]
name = "tenant-items"
path = "/tenants/{tenantId}/**"
upstream = "backend"
scope = "tools:read"
organization_param = "tenantId"

[[route]]
name = "tenant-reports"
path = "/reports/**"
upstream = "backend"
scope = "tools:read"
organization_param = "org"

[[route]]
name = "tenant-envs"
path = "/orgs/{orgId}/envs/{environmentId}/**"
upstream = "backend"
scope = "tools:read"
workspace_role = "member"
organization_param = "orgId"
environment_param = "environmentId"

[[route]]
name = "unbound"
path = "/plain/{tenantId}/**"
upstream = "backend"
scope = "tools:read"
"#;

async fn tenancy_world() -> World {
    World::start_with_policy(TollgateOptions::new().memory(), POLICY, &["tools:read"]).await
}

impl World {
    /// `GET target` with this world's token, sent as raw bytes so that the
    /// target reaches tollgate exactly as written.
    async fn tenancy_get(&self, target: &str) -> RawResponse {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: tollgate.test\r\n{}\r\nConnection: close\r\n\r\n",
            self.bearer()
        );
        RawResponse::fetch(self.tollgate.proxy_addr(), request).await
    }

    /// Asserts that `target` is refused with `status` and `error` and that
    /// nothing reached the upstream.
    async fn assert_tenancy_refused(&self, target: &str, status: u16, error: &str) {
        self.echo.clear();
        let response = self.tenancy_get(target).await;
        assert_eq!(response.status, status, "{target}: {}", response.body_str());
        assert_eq!(response.json()["error"], error, "{target}");
        assert_eq!(
            response.header("cache-control"),
            Some("no-store"),
            "{target}"
        );
        assert_eq!(self.echo.count(), 0, "{target} reached the upstream");
    }

    async fn assert_tenancy_forwarded(&self, target: &str) -> RecordedRequest {
        self.echo.clear();
        let response = self.tenancy_get(target).await;
        assert_eq!(response.status, 200, "{target}: {}", response.body_str());
        self.echo.last().expect("forwarded")
    }
}

#[tokio::test]
async fn a_path_tenant_other_than_the_tokens_organization_is_refused() {
    let w = tenancy_world().await;
    let org = w.org.clone();
    let forwarded = w
        .assert_tenancy_forwarded(&format!("/tenants/{org}/items"))
        .await;
    assert_eq!(forwarded.path(), format!("/tenants/{org}/items"));

    let other = unique_id("org");
    let response = w.tenancy_get(&format!("/tenants/{other}/items")).await;
    assert_eq!(response.status, 403, "{}", response.body_str());
    assert_eq!(response.json()["error"], "organization_mismatch");
    assert_eq!(response.header("www-authenticate"), None);
    // The body names neither organization.
    assert!(!response.body_str().contains(&other));
    assert!(!response.body_str().contains(&org));
    w.assert_tenancy_refused(
        &format!("/tenants/{other}/items"),
        403,
        "organization_mismatch",
    )
    .await;

    // A route without the binding forwards whatever the path says.
    w.assert_tenancy_forwarded(&format!("/plain/{other}/items"))
        .await;

    let metrics = w.tollgate.metrics().await;
    let denied = metric_value(
        &metrics,
        "tollgate_authz_decisions_total",
        &[
            ("route", "tenant-items"),
            ("decision", "deny"),
            ("reason", "organization_mismatch"),
        ],
    );
    assert_eq!(denied, Some(2.0), "{metrics}");
}

#[tokio::test]
async fn the_tenant_is_read_from_the_normalised_path_and_never_from_a_disguise() {
    let w = tenancy_world().await;
    let org = w.org.clone();
    let other = unique_id("org");
    // What is checked is what is forwarded: the normalised path.
    let forwarded = w
        .assert_tenancy_forwarded(&format!("/tenants/{other}/../{org}/items"))
        .await;
    assert_eq!(forwarded.path(), format!("/tenants/{org}/items"));
    for target in [
        format!("/tenants/{org}/../{other}/items"),
        format!("/tenants/{org}/%2e%2e/{other}/items"),
        format!("/x/../tenants/{other}/items"),
        format!("/tenants/{other}%20/items"),
        format!("/tenants/{}/items", org.to_uppercase()),
    ] {
        w.assert_tenancy_refused(&target, 403, "organization_mismatch")
            .await;
    }
    // A query spelling of the parameter must agree with the path: some
    // frameworks merge the two, and some prefer the query.
    for query in [
        format!("tenantId={other}"),
        format!("tenantId={org}&tenantId={org}"),
        format!("tenantid={other}"),
        format!("tenantId%5B%5D={other}"),
        format!("x=1;tenantId={other}"),
    ] {
        w.assert_tenancy_refused(
            &format!("/tenants/{org}/items?{query}"),
            400,
            "invalid_request",
        )
        .await;
    }
    w.assert_tenancy_forwarded(&format!("/tenants/{org}/items?tenantId={org}"))
        .await;
    // An encoded slash never splits the tenant segment.
    w.assert_tenancy_refused(
        &format!("/tenants/{org}%2F{other}/items"),
        400,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn a_query_tenant_must_be_given_once_and_be_the_tokens_organization() {
    let w = tenancy_world().await;
    let org = w.org.clone();
    let other = unique_id("org");
    w.assert_tenancy_forwarded(&format!("/reports/daily?org={org}"))
        .await;
    w.assert_tenancy_refused(
        &format!("/reports/daily?org={other}"),
        403,
        "organization_mismatch",
    )
    .await;
    w.assert_tenancy_refused("/reports/daily", 400, "invalid_request")
        .await;
    for query in [
        format!("org={org}&org={other}"),
        format!("org={org}&ORG={other}"),
        format!("org={org}&org[0]={other}"),
    ] {
        w.assert_tenancy_refused(&format!("/reports/daily?{query}"), 400, "invalid_request")
            .await;
    }
}

#[tokio::test]
async fn the_environment_may_come_from_the_path() {
    let w = tenancy_world().await;
    let (org, env) = (w.org.clone(), w.env.clone());
    let forwarded = w
        .assert_tenancy_forwarded(&format!("/orgs/{org}/envs/{env}/runs"))
        .await;
    assert_eq!(
        forwarded.header("x-tollgate-environment-id"),
        Some(env.as_str())
    );
    assert_eq!(
        forwarded.header("x-tollgate-workspace-id"),
        Some(w.workspace.as_str())
    );
    assert_eq!(
        forwarded.header("x-tollgate-workspace-role"),
        Some("member")
    );

    // An environment the account has no membership in.
    let (ws2, env2) = (unique_id("ws"), unique_id("env"));
    let admin = w.tollgate.admin();
    admin.put_workspace(&org, &ws2).await;
    admin.put_environment(&org, &ws2, &env2).await;
    w.assert_tenancy_refused(
        &format!("/orgs/{org}/envs/{env2}/runs"),
        403,
        "workspace_access_denied",
    )
    .await;
    // The query may not name another environment than the path.
    for query in [
        format!("environmentId={env2}"),
        format!("environmentid={env2}"),
        format!("environmentId={env}&environmentId={env}"),
    ] {
        w.assert_tenancy_refused(
            &format!("/orgs/{org}/envs/{env}/runs?{query}"),
            400,
            "invalid_request",
        )
        .await;
    }
    w.assert_tenancy_forwarded(&format!("/orgs/{org}/envs/{env}/runs?environmentId={env}"))
        .await;
    // Both bindings apply.
    let other = unique_id("org");
    w.assert_tenancy_refused(
        &format!("/orgs/{other}/envs/{env}/runs"),
        403,
        "organization_mismatch",
    )
    .await;
}

#[tokio::test]
async fn explain_shows_the_organization_check() {
    let w = tenancy_world().await;
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("explain")
            .arg("--config")
            .arg(w.tollgate.config_path())
            .args(["--method", "GET", "--scopes", "tools:read"])
            .args(args)
            .env_remove("TOLLGATE_REDIS_URL")
            .output()
            .expect("run tollgate explain");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["--path", "/tenants/acme/x", "--organization", "acme"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("check organization (path parameter {tenantId}): ok"),
        "{out}"
    );
    let (code, out) = run(&["--path", "/tenants/acme/x", "--organization", "globex"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("fail: organization_mismatch"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("decision: deny organization_mismatch"),
        "{out}"
    );
    let (code, out) = run(&[
        "--path",
        "/orgs/acme/envs/e1/x",
        "--organization",
        "acme",
        "--role",
        "member",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("environment from: path parameter {environmentId}"),
        "{out}"
    );
    assert!(out.contains("in environment e1"), "{out}");
    let (code, _) = run(&["--path", "/tenants/acme/x", "--organization", "a b"]);
    assert_eq!(code, 2);
}
