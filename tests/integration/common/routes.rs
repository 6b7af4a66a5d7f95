//! Routes several suites run with, as policy text that concatenates
//! (each starts with a blank line and `[[route]]`). A suite whose policy
//! really differs keeps it beside its tests.

/// `public`: `/public/**` to `backend`, any method, no token.
pub const PUBLIC_ROUTE: &str = r#"
[[route]]
name = "public"
path = "/public/**"
upstream = "backend"
auth = "none"
"#;

/// `tools`: `/api/v1/tools/**` to `backend`, any method, `tools:read`
/// and no workspace.
pub const TOOLS_ROUTE: &str = r#"
[[route]]
name = "tools"
path = "/api/v1/tools/**"
upstream = "backend"
scope = "tools:read"
"#;

/// `tools-read`: `GET /api/v1/tools/**` to `backend` with `tools:read`.
pub const TOOLS_READ_ROUTE: &str = r#"
[[route]]
name = "tools-read"
methods = ["GET"]
path = "/api/v1/tools/**"
upstream = "backend"
scope = "tools:read"
"#;

/// The first routes of the enforcement and decision suites, all to
/// `backend`: `public` (GET, HEAD and POST under `/public/`, no token),
/// and for a workspace member `workflows-read` (GET and HEAD with
/// `workflows:read`) and `workflows-write` (POST, PUT, PATCH and DELETE
/// with `workflows:write`) under `/api/v1/workflows/`.
pub const WORKFLOW_ROUTES: &str = r#"
[[route]]
name = "public"
methods = ["GET", "HEAD", "POST"]
path = "/public/**"
upstream = "backend"
auth = "none"

[[route]]
name = "workflows-read"
methods = ["GET", "HEAD"]
path = "/api/v1/workflows/**"
upstream = "backend"
scope = "workflows:read"
workspace_role = "member"

[[route]]
name = "workflows-write"
methods = ["POST", "PUT", "PATCH", "DELETE"]
path = "/api/v1/workflows/**"
upstream = "backend"
scope = "workflows:write"
workspace_role = "member"
"#;

/// `tools-read`: `GET /api/v1/tools/**` to `app` with `tools:read` (the
/// logs and metrics suites).
pub const APP_TOOLS_READ_ROUTE: &str = r#"
[[route]]
name = "tools-read"
methods = ["GET"]
path = "/api/v1/tools/**"
upstream = "app"
scope = "tools:read"
"#;

/// `status-public`: `GET /api/v1/status` to `app`, no token.
pub const APP_STATUS_ROUTE: &str = r#"
[[route]]
name = "status-public"
methods = ["GET"]
path = "/api/v1/status"
upstream = "app"
auth = "none"
"#;

/// [`TOOLS_READ_ROUTE`], needing the workspace role `role` when given: the
/// policy of the admin and console suites, whose tests seldom call it
/// (tollgate refuses to start without routes).
pub fn tools_read_policy(role: Option<&str>) -> String {
    match role {
        Some(role) => format!("{TOOLS_READ_ROUTE}workspace_role = \"{role}\"\n"),
        None => TOOLS_READ_ROUTE.to_string(),
    }
}
