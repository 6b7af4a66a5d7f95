//! The console's screens, one function each, over the admin API. A change
//! is a POSTed form answered by a 303 to the screen it changed (with a
//! fixed notice code in the query, never a value), except creation and
//! rotation, whose answer is the page that shows the secret once.

use http::header::LOCATION;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::markup::{
    button_form, captioned_table, code, copyable, csrf_input, field_row, form, input, row, select,
    table, value, Submit, ID_ATTRS, NAME_ATTRS,
};
use super::overview::WINDOW;
use super::session::sign_out;
use super::{html, Ctx, Form};
use crate::admin::{esc, AdminReply, Reach};
use crate::ids::{is_valid_generated_id, is_valid_name_id};

/// The copy button's script: the only script of the console, pinned by
/// hash in the CSP. Without JavaScript the button stays hidden and the
/// secret can be selected by hand.
const COPY_SCRIPT: &str = "document.querySelectorAll('button[data-copy]').forEach(function(b){\
b.hidden=false;b.addEventListener('click',function(){\
var t=document.getElementById(b.getAttribute('data-copy'));\
navigator.clipboard.writeText(t.value).then(function(){b.textContent='Copied';},\
function(){t.select();});});});";

pub(super) fn see_other(to: &str) -> AdminReply {
    AdminReply::html(StatusCode::SEE_OTHER, String::new()).with_header(LOCATION, to.to_string())
}

/// A page with one sentence (errors before or outside a session).
pub(super) fn message(status: StatusCode, text: &str) -> AdminReply {
    html(
        status,
        "tollgate console",
        &format!(
            "<header><strong>tollgate console</strong></header><main><p class=\"error\" role=\"alert\">{}</p>\
             <p><a href=\"/console\">Back to the console</a></p></main>",
            esc(text)
        ),
        None,
    )
}

/// The notices a redirect may carry.
fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "status" => "The status was changed.",
        "revoked" => "Every live token of the account was revoked.",
        "deleted" => "Deleted.",
        "saved" => "Saved.",
        "member" => "The member was saved.",
        "removed" => "Removed.",
        _ => return None,
    })
}

fn layout(
    ctx: &Ctx<'_>,
    status: StatusCode,
    title: &str,
    org: Option<&str>,
    body: &str,
    script: Option<&str>,
) -> AdminReply {
    let s = ctx.session;
    let mut nav = String::from("<a href=\"/console/home\">tollgate console</a>");
    if matches!(s.principal.reach, Reach::Operator) {
        nav.push_str("<a href=\"/console/orgs\">Organizations</a><a href=\"/console/authz\">Authorization</a>");
    }
    if let Some(org) = org {
        let o = esc(org);
        match &s.principal.reach {
            Reach::Workspace { ws, .. } => nav.push_str(&format!(
                "<a href=\"/console/o/{o}/ws/{}\">Workspace {}</a>",
                esc(ws),
                esc(ws)
            )),
            _ => nav.push_str(&format!(
                "<a href=\"/console/o/{o}\">Service accounts</a>\
                 <a href=\"/console/o/{o}/ws\">Workspaces</a>\
                 <a href=\"/console/o/{o}/audit\">Audit</a>\
                 <a href=\"/console/o/{o}/keys\">Admin keys</a>"
            )),
        }
    }
    let flash = notice(ctx.q("done"))
        .map(|n| format!("<p class=\"flash\" role=\"status\">{n}</p>"))
        .unwrap_or_default();
    let page = format!(
        "<header><nav aria-label=\"main\">{nav}</nav><span>Signed in as <code>{}</code></span>{}</header>\
         <main><h1>{}</h1>{flash}{body}</main>",
        esc(&s.principal.actor),
        button_form(s, "/console/sign-out", "Sign out", &[], false),
        esc(title)
    );
    html(status, &format!("{title} · tollgate"), &page, script)
}

/// An API refusal as a notice: its status and its own description (which
/// never echoes input).
fn api_error(status: StatusCode, v: &Value) -> String {
    format!(
        "<p class=\"error\" role=\"alert\">{} ({})</p>",
        esc(v["error_description"]
            .as_str()
            .unwrap_or("The request failed.")),
        status.as_u16()
    )
}

fn failed(ctx: &Ctx<'_>, org: Option<&str>, status: StatusCode, v: &Value) -> AdminReply {
    let shown = if status.is_success() {
        StatusCode::BAD_GATEWAY
    } else {
        status
    };
    layout(ctx, shown, "Not done", org, &api_error(status, v), None)
}

fn s(v: &Value, k: &str) -> String {
    esc(v[k].as_str().unwrap_or(""))
}

/// The scopes of the account `v`, space-separated and escaped.
fn scopes(v: &Value) -> String {
    let scopes: Vec<&str> = v["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    esc(&scopes.join(" "))
}

fn time_or_never(v: &Value, k: &str) -> String {
    match v[k].as_str() {
        Some(t) => format!("<time datetime=\"{0}\">{0}</time>", esc(t)),
        None => "never".to_string(),
    }
}

/// A page of the console that answers 200 without a script.
fn page(ctx: &Ctx<'_>, title: &str, org: Option<&str>, body: &str) -> AdminReply {
    layout(ctx, StatusCode::OK, title, org, body, None)
}

pub(super) async fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
    form: Option<Form>,
) -> AdminReply {
    let f = form.as_ref();
    match (method.as_str(), segs, f) {
        ("GET" | "HEAD", [] | ["home"], _) => home(ctx),
        ("POST", ["sign-out"], Some(_)) => sign_out(ctx.admin, ctx.session, ctx.tls),
        ("GET" | "HEAD", ["orgs"], _) => orgs(ctx),
        ("GET" | "HEAD", ["authz"], _) => authz(ctx),
        ("GET" | "HEAD", ["o", org], _) => sa_list(ctx, org).await,
        ("GET" | "HEAD", ["o", org, "sa", "new"], _) => sa_new(ctx, org),
        ("POST", ["o", org, "sa"], Some(f)) => sa_create(ctx, org, f).await,
        ("GET" | "HEAD", ["o", org, "sa", sa], _) => sa_detail(ctx, org, sa).await,
        ("POST", ["o", org, "sa", sa, "rotate"], Some(f)) => sa_rotate(ctx, org, sa, f).await,
        ("POST", ["o", org, "sa", sa, "status"], Some(f)) => sa_status(ctx, org, sa, f).await,
        ("POST", ["o", org, "sa", sa, "revoke-tokens"], Some(_)) => sa_revoke(ctx, org, sa).await,
        ("GET" | "HEAD", ["o", org, "sa", sa, "delete"], _) => {
            sa_confirm_delete(ctx, org, sa).await
        }
        ("POST", ["o", org, "sa", sa, "delete"], Some(_)) => sa_delete(ctx, org, sa).await,
        ("GET" | "HEAD", ["o", org, "ws"], _) => ws_list(ctx, org).await,
        ("POST", ["o", org, "ws"], Some(f)) => ws_create(ctx, org, f).await,
        ("GET" | "HEAD", ["o", org, "ws", ws], _) => ws_detail(ctx, org, ws).await,
        ("POST", ["o", org, "ws", ws, "env"], Some(f)) => env_put(ctx, org, ws, f).await,
        ("POST", ["o", org, "ws", ws, "env", env, "delete"], Some(_)) => {
            let path = format!("/v1/organizations/{org}/workspaces/{ws}/environments/{env}");
            remove(
                ctx,
                org,
                &path,
                &format!("/console/o/{org}/ws/{ws}?done=removed"),
            )
            .await
        }
        ("POST", ["o", org, "ws", ws, "members"], Some(f)) => {
            // The id goes into an API path: only an id's characters.
            if !is_valid_generated_id(f.get("sa")) {
                let v = json!({"error_description": "service_account_id: must be 26 characters from [A-Za-z0-9_-]"});
                return failed(ctx, Some(org), StatusCode::BAD_REQUEST, &v);
            }
            let path = format!(
                "/v1/organizations/{org}/workspaces/{ws}/members/{}",
                f.get("sa")
            );
            let body = json!({"role": f.get("role")});
            change(
                ctx,
                org,
                Method::PUT,
                &path,
                Some(body),
                &format!("/console/o/{org}/ws/{ws}?done=member"),
            )
            .await
        }
        ("POST", ["o", org, "ws", ws, "members", sa, "delete"], Some(_)) => {
            let path = format!("/v1/organizations/{org}/workspaces/{ws}/members/{sa}");
            remove(
                ctx,
                org,
                &path,
                &format!("/console/o/{org}/ws/{ws}?done=removed"),
            )
            .await
        }
        ("GET" | "HEAD", ["o", org, "audit"], _) => audit(ctx, org).await,
        ("GET" | "HEAD", ["o", org, "keys"], _) => keys(ctx, org).await,
        ("POST", ["o", org, "keys"], Some(f)) => key_create(ctx, org, f).await,
        ("POST", ["o", org, "keys", id, "delete"], Some(_)) => {
            let path = format!("/v1/organizations/{org}/admin-keys/{id}");
            remove(
                ctx,
                org,
                &path,
                &format!("/console/o/{org}/keys?done=removed"),
            )
            .await
        }
        _ => layout(
            ctx,
            StatusCode::NOT_FOUND,
            "Not found",
            None,
            "<p>There is no such page.</p>",
            None,
        ),
    }
}

/// A page of up to 200 objects from the API's list endpoint at `path`.
async fn list(ctx: &Ctx<'_>, path: &str) -> (StatusCode, Value) {
    ctx.api(Method::GET, path, Some("limit=200"), None).await
}

/// Deletes the object at `path`, then back to `to` (or the refusal).
async fn remove(ctx: &Ctx<'_>, org: &str, path: &str, to: &str) -> AdminReply {
    change(ctx, org, Method::DELETE, path, None, to).await
}

/// One change through the API, then back to `to` (or the refusal).
async fn change(
    ctx: &Ctx<'_>,
    org: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    to: &str,
) -> AdminReply {
    let (status, v) = ctx.api(method, path, None, body).await;
    if status.is_success() {
        see_other(to)
    } else {
        failed(ctx, Some(org), status, &v)
    }
}

fn home(ctx: &Ctx<'_>) -> AdminReply {
    match &ctx.session.principal.reach {
        Reach::Operator => see_other("/console/orgs"),
        Reach::Organization(org) => see_other(&format!("/console/o/{org}")),
        Reach::Workspace { org, ws } => see_other(&format!("/console/o/{org}/ws/{ws}")),
    }
}

/// Operators: tollgate keeps no list of organizations, so one is opened by id.
fn orgs(ctx: &Ctx<'_>) -> AdminReply {
    let wanted = ctx.q("org");
    if !wanted.is_empty()
        && is_valid_name_id(wanted)
        && matches!(ctx.session.principal.reach, Reach::Operator)
    {
        return see_other(&format!("/console/o/{wanted}"));
    }
    let error = if wanted.is_empty() {
        String::new()
    } else {
        "<p class=\"error\" role=\"alert\">An organization id is 1 to 64 of A-Z a-z 0-9 _ -.</p>"
            .to_string()
    };
    let open = form(
        Submit::Get { search: false },
        "/console/orgs",
        &[input("Organization id", "text", "org", "org", ID_ATTRS)],
        "Open",
    );
    let body = format!(
        "{error}<p>tollgate keeps no list of organizations: an organization exists as soon as \
         something uses its id. Open one by id.</p>{open}"
    );
    page(ctx, "Organizations", None, &body)
}

async fn sa_list(ctx: &Ctx<'_>, org: &str) -> AdminReply {
    let q = ctx.q("q");
    let status_filter = ctx.q("status");
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", "200");
        if !q.is_empty() {
            query.append_pair("q", q);
        }
        if !ctx.q("after").is_empty() {
            query.append_pair("after", ctx.q("after"));
        }
        query.finish()
    };
    let (status, v) = ctx
        .api(
            Method::GET,
            &format!("/v1/organizations/{org}/service-accounts"),
            Some(&query),
            None,
        )
        .await;
    if !status.is_success() {
        return failed(ctx, Some(org), status, &v);
    }
    let o = esc(org);
    let mut rows = String::new();
    for sa in v["data"].as_array().into_iter().flatten() {
        if !status_filter.is_empty() && sa["status"].as_str() != Some(status_filter) {
            continue;
        }
        rows.push_str(&row(&[
            format!(
                "<a href=\"/console/o/{o}/sa/{}\">{}</a>",
                s(sa, "id"),
                s(sa, "name")
            ),
            s(sa, "status"),
            code(&scopes(sa)),
            s(sa, "created_at"),
        ]));
    }
    let selected = |v: &str| if status_filter == v { " selected" } else { "" };
    let more = v["next_cursor"]
        .as_str()
        .map(|c| {
            let next = form_urlencoded::Serializer::new(String::new())
                .append_pair("q", q)
                .append_pair("status", status_filter)
                .append_pair("after", c)
                .finish();
            format!("<p><a href=\"/console/o/{o}?{}\">More</a></p>", esc(&next))
        })
        .unwrap_or_default();
    let statuses = format!(
        "<option value=\"\"{}>any</option><option value=\"active\"{}>active</option>\
         <option value=\"disabled\"{}>disabled</option>",
        selected(""),
        selected("active"),
        selected("disabled"),
    );
    let search = form(
        Submit::Get { search: true },
        &format!("/console/o/{org}"),
        &[
            input("Name contains", "search", "q", "q", &value(q)),
            select("Status", "status", "status", &statuses),
        ],
        "Search",
    );
    let accounts = captioned_table(
        &format!("Service accounts of {o}"),
        &["name", "status", "scopes", "created"],
        &rows,
        Some("No service accounts."),
    );
    let body = format!(
        "<p><a href=\"/console/o/{o}/sa/new\">Create a service account</a></p>{search}{accounts}{more}"
    );
    page(ctx, "Service accounts", Some(org), &body)
}

/// The resource × read/write grid of scope checkboxes.
fn scope_grid(ctx: &Ctx<'_>, checked: &[&str]) -> String {
    let mut rows = String::new();
    for r in ctx.admin.registry().resources() {
        let r = esc(r);
        let cell = |action: &str| {
            let scope = format!("{r}:{action}");
            format!(
                "<td><input type=\"checkbox\" name=\"scope\" value=\"{scope}\" id=\"scope-{r}-{action}\" aria-label=\"{scope}\"{}></td>",
                if checked.contains(&scope.as_str()) { " checked" } else { "" }
            )
        };
        rows.push_str(&format!(
            "<tr><th scope=\"row\">{r}</th>{}{}</tr>",
            cell("read"),
            cell("write")
        ));
    }
    format!(
        "<fieldset><legend>Scopes (write covers read; grant the least the integration needs)</legend>{}</fieldset>",
        table(&["resource", "read", "write"], &rows, None)
    )
}

fn sa_new(ctx: &Ctx<'_>, org: &str) -> AdminReply {
    let o = esc(org);
    let body = format!(
        "<form method=\"post\" action=\"/console/o/{o}/sa\">{}\
         <p><label for=\"name\">Name</label><br><input type=\"text\" id=\"name\" name=\"name\" required maxlength=\"128\"></p>\
         <p><label for=\"description\">Description</label><br><input type=\"text\" id=\"description\" name=\"description\" maxlength=\"1024\" size=\"60\"></p>\
         {}<p><button type=\"submit\">Create</button></p></form>",
        csrf_input(ctx.session),
        scope_grid(ctx, &[])
    );
    page(ctx, "Create a service account", Some(org), &body)
}

/// The page that shows a secret once, with a copy button.
fn secret_page(ctx: &Ctx<'_>, org: &str, sa_id: &str, title: &str, cred: &Value) -> AdminReply {
    let o = esc(org);
    let body = format!(
        "<div class=\"secret\" role=\"alert\"><p><strong>Copy the client secret now.</strong> \
         It is shown only this once; tollgate keeps only its hash.</p>{cid}{secret}</div>\
         <p>Use them at the token endpoint (<code>POST /api/auth/oauth2/token</code>, \
         <code>grant_type=client_credentials</code>); cache the token until shortly before \
         <code>expires_in</code>.</p><p><a href=\"/console/o/{o}/sa/{sa}\">Go to the service account</a></p>",
        cid = copyable("client_id", "client-id", 40, &s(cred, "client_id")),
        secret = copyable("client_secret", "client-secret", 60, &s(cred, "client_secret")),
        sa = esc(sa_id),
    );
    layout(
        ctx,
        StatusCode::OK,
        title,
        Some(org),
        &body,
        Some(COPY_SCRIPT),
    )
}

async fn sa_create(ctx: &Ctx<'_>, org: &str, f: &Form) -> AdminReply {
    let mut body = json!({"name": f.get("name"), "scopes": f.all("scope")});
    if !f.get("description").is_empty() {
        body["description"] = json!(f.get("description"));
    }
    let (status, v) = ctx
        .api(
            Method::POST,
            &format!("/v1/organizations/{org}/service-accounts"),
            None,
            Some(body),
        )
        .await;
    if status != StatusCode::CREATED {
        return failed(ctx, Some(org), status, &v);
    }
    let sa_id = v["service_account"]["id"].as_str().unwrap_or("");
    secret_page(ctx, org, sa_id, "Service account created", &v["credential"])
}

async fn sa_detail(ctx: &Ctx<'_>, org: &str, sa: &str) -> AdminReply {
    let base = format!("/v1/organizations/{org}/service-accounts/{sa}");
    let (status, v) = ctx.api(Method::GET, &base, None, None).await;
    if !status.is_success() {
        return failed(ctx, Some(org), status, &v);
    }
    let (cstatus, creds) = list(ctx, &format!("{base}/credentials")).await;
    if !cstatus.is_success() {
        return failed(ctx, Some(org), cstatus, &creds);
    }
    let here = format!("/console/o/{org}/sa/{sa}");
    let cs = ctx.session;
    let mut rows = String::new();
    let list = creds["data"].as_array().cloned().unwrap_or_default();
    for c in &list {
        rows.push_str(&row(&[
            code(&s(c, "client_id")),
            s(c, "name"),
            s(c, "created_at"),
            time_or_never(c, "last_used_at"),
            match c["previous_secret_expires_at"].as_str() {
                Some(t) => format!("old secret valid until {}", esc(t)),
                None => "-".to_string(),
            },
        ]));
    }
    let active = v["status"].as_str() == Some("active");
    let rotate = if list.len() == 1 {
        let grace = input(
            "Keep the old secret working for (seconds, 0 to 86400)",
            "number",
            "grace",
            "grace_seconds",
            " min=\"0\" max=\"86400\" value=\"0\"",
        );
        form(
            Submit::Post(cs),
            &format!("{here}/rotate"),
            &[grace],
            "Rotate the secret",
        )
    } else {
        "<p>Rotation here needs exactly one credential.</p>".to_string()
    };
    let fields = [
        field_row("id", &code(&s(&v, "id"))),
        field_row("description", &s(&v, "description")),
        field_row("status", &s(&v, "status")),
        field_row("scopes", &code(&scopes(&v))),
        field_row("created", &s(&v, "created_at")),
        field_row("updated", &s(&v, "updated_at")),
        super::settings::account_settings_rows(&v),
    ]
    .concat();
    let credentials = table(
        &["client_id", "name", "created", "last used", "rotation"],
        &rows,
        None,
    );
    let body = format!(
        "<table>{fields}</table><h2>Credentials</h2>{credentials}\
         <h2>Actions</h2>{rotate}<p>{toggle} {revoke} <a href=\"{here}/delete\">Delete…</a></p>",
        toggle = button_form(
            cs,
            &format!("{here}/status"),
            if active { "Disable" } else { "Enable" },
            &[("status", if active { "disabled" } else { "active" })],
            false
        ),
        revoke = button_form(
            cs,
            &format!("{here}/revoke-tokens"),
            "Revoke all tokens",
            &[],
            false
        ),
        here = esc(&here),
    );
    page(
        ctx,
        &format!("Service account {}", v["name"].as_str().unwrap_or("")),
        Some(org),
        &body,
    )
}

async fn sa_rotate(ctx: &Ctx<'_>, org: &str, sa: &str, f: &Form) -> AdminReply {
    let grace = f.get("grace_seconds");
    let body = match grace.parse::<u64>() {
        Ok(n) => json!({"grace_seconds": n}),
        Err(_) if grace.is_empty() => json!({}),
        Err(_) => json!({"grace_seconds": grace}),
    };
    let (status, v) = ctx
        .api(
            Method::POST,
            &format!("/v1/organizations/{org}/service-accounts/{sa}/rotate-secret"),
            None,
            Some(body),
        )
        .await;
    if !status.is_success() {
        return failed(ctx, Some(org), status, &v);
    }
    secret_page(ctx, org, sa, "Secret rotated", &v)
}

async fn sa_status(ctx: &Ctx<'_>, org: &str, sa: &str, f: &Form) -> AdminReply {
    let path = format!("/v1/organizations/{org}/service-accounts/{sa}");
    change(
        ctx,
        org,
        Method::PATCH,
        &path,
        Some(json!({"status": f.get("status")})),
        &format!("/console/o/{org}/sa/{sa}?done=status"),
    )
    .await
}

async fn sa_revoke(ctx: &Ctx<'_>, org: &str, sa: &str) -> AdminReply {
    let path = format!("/v1/organizations/{org}/service-accounts/{sa}/revoke-tokens");
    change(
        ctx,
        org,
        Method::POST,
        &path,
        None,
        &format!("/console/o/{org}/sa/{sa}?done=revoked"),
    )
    .await
}

async fn sa_confirm_delete(ctx: &Ctx<'_>, org: &str, sa: &str) -> AdminReply {
    let (status, v) = ctx
        .api(
            Method::GET,
            &format!("/v1/organizations/{org}/service-accounts/{sa}"),
            None,
            None,
        )
        .await;
    if !status.is_success() {
        return failed(ctx, Some(org), status, &v);
    }
    let here = format!("/console/o/{org}/sa/{sa}");
    let body = format!(
        "<p>Delete <strong>{}</strong> with its credentials and workspace memberships? \
         Tokens already issued live until they expire unless revoked first.</p><p>{} <a href=\"{}\">Cancel</a></p>",
        s(&v, "name"),
        button_form(ctx.session, &format!("{here}/delete"), "Delete for good", &[], true),
        esc(&here)
    );
    page(ctx, "Delete the service account?", Some(org), &body)
}

async fn sa_delete(ctx: &Ctx<'_>, org: &str, sa: &str) -> AdminReply {
    let path = format!("/v1/organizations/{org}/service-accounts/{sa}");
    remove(ctx, org, &path, &format!("/console/o/{org}?done=deleted")).await
}

async fn ws_list(ctx: &Ctx<'_>, org: &str) -> AdminReply {
    let (status, v) = list(ctx, &format!("/v1/organizations/{org}/workspaces")).await;
    if !status.is_success() {
        return failed(ctx, Some(org), status, &v);
    }
    let o = esc(org);
    let mut rows = String::new();
    for ws in v["data"].as_array().into_iter().flatten() {
        let id = s(ws, "id");
        rows.push_str(&row(&[
            format!("<a href=\"/console/o/{o}/ws/{id}\">{}</a>", s(ws, "name")),
            code(&id),
            s(ws, "created_at"),
        ]));
    }
    let workspaces = table(&["name", "id", "created"], &rows, Some("No workspaces."));
    let add = form(
        Submit::Post(ctx.session),
        &format!("/console/o/{org}/ws"),
        &[
            input("Id", "text", "ws-id", "id", ID_ATTRS),
            input("Name", "text", "ws-name", "name", NAME_ATTRS),
        ],
        "Save",
    );
    let body = format!("{workspaces}<h2>Add a workspace</h2>{add}");
    page(ctx, "Workspaces", Some(org), &body)
}

async fn ws_create(ctx: &Ctx<'_>, org: &str, f: &Form) -> AdminReply {
    let id = f.get("id");
    let path = format!("/v1/organizations/{org}/workspaces/{id}");
    let to = format!("/console/o/{org}/ws/{id}?done=saved");
    put_named(ctx, org, "workspace_id", f, &path, &to).await
}

async fn env_put(ctx: &Ctx<'_>, org: &str, ws: &str, f: &Form) -> AdminReply {
    let id = f.get("id");
    let path = format!("/v1/organizations/{org}/workspaces/{ws}/environments/{id}");
    let to = format!("/console/o/{org}/ws/{ws}?done=saved");
    put_named(ctx, org, "environment_id", f, &path, &to).await
}

/// Creates or renames the object at `path` from a form of `id` and `name`,
/// refusing an id the API would refuse before asking it.
async fn put_named(
    ctx: &Ctx<'_>,
    org: &str,
    field: &str,
    f: &Form,
    path: &str,
    to: &str,
) -> AdminReply {
    if !is_valid_name_id(f.get("id")) {
        let description = format!("{field}: must match [A-Za-z0-9_-]{{1,64}}");
        return failed(
            ctx,
            Some(org),
            StatusCode::BAD_REQUEST,
            &json!({ "error_description": description }),
        );
    }
    let body = json!({"name": f.get("name")});
    change(ctx, org, Method::PUT, path, Some(body), to).await
}

async fn ws_detail(ctx: &Ctx<'_>, org: &str, ws: &str) -> AdminReply {
    let base = format!("/v1/organizations/{org}/workspaces/{ws}");
    let (status, w) = ctx.api(Method::GET, &base, None, None).await;
    if !status.is_success() {
        return failed(ctx, Some(org), status, &w);
    }
    let (es, envs) = list(ctx, &format!("{base}/environments")).await;
    let (ms, members) = list(ctx, &format!("{base}/members")).await;
    for (st, v) in [(es, &envs), (ms, &members)] {
        if !st.is_success() {
            return failed(ctx, Some(org), st, v);
        }
    }
    let here = format!("/console/o/{org}/ws/{ws}");
    let cs = ctx.session;
    let mut env_rows = String::new();
    for e in envs["data"].as_array().into_iter().flatten() {
        let id = e["id"].as_str().unwrap_or("");
        env_rows.push_str(&row(&[
            code(&esc(id)),
            s(e, "name"),
            button_form(cs, &format!("{here}/env/{id}/delete"), "Remove", &[], true),
        ]));
    }
    let mut member_rows = String::new();
    for m in members["data"].as_array().into_iter().flatten() {
        let sa = m["service_account_id"].as_str().unwrap_or("");
        member_rows.push_str(&row(&[
            code(&esc(sa)),
            s(m, "role"),
            button_form(
                cs,
                &format!("{here}/members/{sa}/delete"),
                "Remove",
                &[],
                true,
            ),
        ]));
    }
    // The member picker: service accounts found by name, each with a role.
    let q = ctx.q("q");
    let mut picks = String::new();
    if !q.is_empty() {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", q)
            .append_pair("limit", "20")
            .finish();
        let (ps, found) = ctx
            .api(
                Method::GET,
                &format!("/v1/organizations/{org}/service-accounts"),
                Some(&query),
                None,
            )
            .await;
        if !ps.is_success() {
            return failed(ctx, Some(org), ps, &found);
        }
        for sa in found["data"].as_array().into_iter().flatten() {
            let id = sa["id"].as_str().unwrap_or("");
            picks.push_str(&format!(
                "<li><form class=\"inline\" method=\"post\" action=\"{}\">{}<input type=\"hidden\" name=\"sa\" value=\"{}\">\
                 {} <label>role <select name=\"role\"><option value=\"member\">member</option><option value=\"admin\">admin</option></select></label> \
                 <button type=\"submit\">Add</button></form></li>",
                esc(&format!("{here}/members")),
                csrf_input(cs),
                esc(id),
                s(sa, "name"),
            ));
        }
        if picks.is_empty() {
            picks.push_str("<li>No service account has that in its name.</li>");
        }
        picks = format!("<ul>{picks}</ul>");
    }
    let envs = table(&["id", "name", ""], &env_rows, Some("No environments."));
    let add_env = form(
        Submit::Post(cs),
        &format!("{here}/env"),
        &[
            input("Id", "text", "env-id", "id", ID_ATTRS),
            input("Name", "text", "env-name", "name", NAME_ATTRS),
        ],
        "Add environment",
    );
    let members = table(
        &["service account", "role", ""],
        &member_rows,
        Some("No members."),
    );
    let find = form(
        Submit::Get { search: true },
        &here,
        &[input(
            "Find a service account by name",
            "search",
            "pick",
            "q",
            &value(q),
        )],
        "Find",
    );
    let body = format!(
        "<p>Workspace <code>{}</code></p><h2>Environments</h2>{envs}{add_env}\
         <h2>Members</h2>{members}<h3>Add members</h3>{find}{picks}",
        s(&w, "id"),
    );
    page(
        ctx,
        &format!("Workspace {}", w["name"].as_str().unwrap_or("")),
        Some(org),
        &body,
    )
}

/// Audit events with filters over the API's pages (newest first): at most
/// 50 matches a page, looking through at most 2,000 events per request.
async fn audit(ctx: &Ctx<'_>, org: &str) -> AdminReply {
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;
    let (actor, sa, action) = (ctx.q("actor"), ctx.q("sa"), ctx.q("action"));
    let parse_local = |t: &str| {
        let t = if t.len() == 16 {
            format!("{t}:00Z")
        } else {
            format!("{t}Z")
        };
        OffsetDateTime::parse(&t, &Rfc3339).ok()
    };
    let from = parse_local(ctx.q("from"));
    let to = parse_local(ctx.q("to"));
    let mut after = ctx.q("after").to_string();
    let mut shown: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    'pages: for _ in 0..10 {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", "200");
            if !after.is_empty() {
                query.append_pair("after", &after);
            }
            query.finish()
        };
        let (status, v) = ctx
            .api(
                Method::GET,
                &format!("/v1/organizations/{org}/audit-events"),
                Some(&query),
                None,
            )
            .await;
        if !status.is_success() {
            return failed(ctx, Some(org), status, &v);
        }
        for e in v["data"].as_array().into_iter().flatten() {
            let id = e["id"].as_str().unwrap_or("").to_string();
            let time = e["time"]
                .as_str()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
            let keep = (actor.is_empty() || e["actor"].as_str().is_some_and(|a| a.contains(actor)))
                && (action.is_empty()
                    || e["action"].as_str().is_some_and(|a| a.starts_with(action)))
                && (sa.is_empty()
                    || e["target"].as_str() == Some(sa)
                    || e.to_string().contains(&format!("\"{sa}\"")))
                && from.is_none_or(|f| time.is_some_and(|t| t >= f))
                && to.is_none_or(|l| time.is_some_and(|t| t <= l));
            if keep {
                shown.push(e.clone());
                if shown.len() == 50 {
                    cursor = Some(id);
                    break 'pages;
                }
            }
        }
        match v["next_cursor"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
        cursor = Some(after.clone());
    }
    let mut rows = String::new();
    for e in &shown {
        rows.push_str(&row(&[
            s(e, "time"),
            code(&s(e, "actor")),
            s(e, "action"),
            code(&s(e, "target")),
            s(e, "outcome"),
            code(&esc(&e["details"].to_string())),
        ]));
    }
    let o = esc(org);
    let more = cursor
        .map(|c| {
            let next = form_urlencoded::Serializer::new(String::new())
                .append_pair("actor", actor)
                .append_pair("sa", sa)
                .append_pair("action", action)
                .append_pair("from", ctx.q("from"))
                .append_pair("to", ctx.q("to"))
                .append_pair("after", &c)
                .finish();
            format!(
                "<p><a href=\"/console/o/{o}/audit?{}\">Older events</a></p>",
                esc(&next)
            )
        })
        .unwrap_or_default();
    let filter = form(
        Submit::Get { search: true },
        &format!("/console/o/{org}/audit"),
        &[
            input("Actor", "search", "actor", "actor", &value(actor)),
            input("Service account id", "search", "sa", "sa", &value(sa)),
            input(
                "Action",
                "search",
                "action",
                "action",
                &format!("{} placeholder=\"token.issue\"", value(action)),
            ),
            input(
                "From (UTC)",
                "datetime-local",
                "from",
                "from",
                &value(ctx.q("from")),
            ),
            input(
                "To (UTC)",
                "datetime-local",
                "to",
                "to",
                &value(ctx.q("to")),
            ),
        ],
        "Filter",
    );
    let events = table(
        &["time", "actor", "action", "target", "outcome", "details"],
        &rows,
        Some("No events match."),
    );
    let body = format!("{filter}{events}{more}");
    page(ctx, "Audit events", Some(org), &body)
}

/// Operators only: the routes are shared by every organization.
fn authz(ctx: &Ctx<'_>) -> AdminReply {
    if !matches!(ctx.session.principal.reach, Reach::Operator) {
        return layout(
            ctx,
            StatusCode::FORBIDDEN,
            "Authorization",
            None,
            "<p class=\"error\">Only operators see the traffic of every organization.</p>",
            None,
        );
    }
    let (rows, span) = ctx.admin.console().overview();
    let mut table_rows = String::new();
    for ((route, decision, reason), recent, total) in &rows {
        table_rows.push_str(&row(&[
            code(&esc(route)),
            esc(decision),
            esc(reason),
            recent.to_string(),
            total.to_string(),
        ]));
    }
    let decisions = table(
        &["route", "decision", "reason", "recent", "since start"],
        &table_rows,
        Some("No decisions yet."),
    );
    let body = format!(
        "<p>Decisions of this process on the proxy listener, by route and reason. \
         \"Recent\" counts the last {} s (at most {} s: the console samples the counters while it is used).</p>{decisions}",
        span.as_secs(),
        WINDOW.as_secs()
    );
    page(ctx, "Authorization overview", None, &body)
}

/// Admin keys of the organization: operators and organization keys list
/// them, make workspace keys (operators organization keys too), revoke.
async fn keys(ctx: &Ctx<'_>, org: &str) -> AdminReply {
    let (status, v) = list(ctx, &format!("/v1/organizations/{org}/admin-keys")).await;
    if !status.is_success() {
        return failed(ctx, Some(org), status, &v);
    }
    let cs = ctx.session;
    let mut rows = String::new();
    for k in v["data"].as_array().into_iter().flatten() {
        let id = k["id"].as_str().unwrap_or("");
        rows.push_str(&row(&[
            s(k, "name"),
            match k["workspace_id"].as_str() {
                Some(ws) => format!("workspace {}", code(&esc(ws))),
                None => "organization".to_string(),
            },
            code(&s(k, "created_by")),
            s(k, "created_at"),
            time_or_never(k, "last_used_at"),
            button_form(
                cs,
                &format!("/console/o/{org}/keys/{id}/delete"),
                "Revoke",
                &[],
                true,
            ),
        ]));
    }
    let org_option = if matches!(cs.principal.reach, Reach::Operator) {
        "<option value=\"\">the whole organization</option>"
    } else {
        ""
    };
    let keys = table(
        &["name", "reaches", "made by", "created", "last used", ""],
        &rows,
        Some("No admin keys."),
    );
    let reaches = format!("{org_option}{}", workspace_options(ctx, org).await);
    let make = form(
        Submit::Post(cs),
        &format!("/console/o/{org}/keys"),
        &[
            input("Name", "text", "key-name", "name", NAME_ATTRS),
            select("Reaches", "key-ws", "workspace", &reaches),
        ],
        "Make the key",
    );
    let body = format!("{keys}<h2>Make a key</h2>{make}");
    page(ctx, "Admin keys", Some(org), &body)
}

async fn workspace_options(ctx: &Ctx<'_>, org: &str) -> String {
    let (_, v) = list(ctx, &format!("/v1/organizations/{org}/workspaces")).await;
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| format!("<option value=\"{0}\">workspace {0}</option>", s(w, "id")))
        .collect()
}

async fn key_create(ctx: &Ctx<'_>, org: &str, f: &Form) -> AdminReply {
    let ws = f.get("workspace");
    let body = json!({"name": f.get("name"), "workspace_id": if ws.is_empty() { Value::Null } else { json!(ws) }});
    let (status, v) = ctx
        .api(
            Method::POST,
            &format!("/v1/organizations/{org}/admin-keys"),
            None,
            Some(body),
        )
        .await;
    if status != StatusCode::CREATED {
        return failed(ctx, Some(org), status, &v);
    }
    let body = format!(
        "<div class=\"secret\" role=\"alert\"><p><strong>Copy the key now.</strong> It is shown only this once.</p>\
         {}</div>\
         <p><a href=\"/console/o/{}/keys\">Back to the admin keys</a></p>",
        copyable("admin key", "admin-key", 80, &s(&v, "key")),
        esc(org)
    );
    layout(
        ctx,
        StatusCode::OK,
        "Admin key made",
        Some(org),
        &body,
        Some(COPY_SCRIPT),
    )
}
