//! The console's screens, one function each, over the admin API. A change
//! is a POSTed form answered by a 303 to the screen it changed (with a
//! fixed notice code in the query, never a value), except creation and
//! rotation, whose answer is the page that shows the secret once.

use http::header::LOCATION;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::overview::WINDOW;
use super::session::{sign_out, SessionView};
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

fn csrf_input(s: &SessionView) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

/// A one-button form that posts to `action`.
fn button_form(
    s: &SessionView,
    action: &str,
    label: &str,
    fields: &[(&str, &str)],
    danger: bool,
) -> String {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}{hidden}<button type=\"submit\"{}>{}</button></form>",
        esc(action),
        csrf_input(s),
        if danger { " class=\"danger\"" } else { "" },
        esc(label)
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

fn time_or_never(v: &Value, k: &str) -> String {
    match v[k].as_str() {
        Some(t) => format!("<time datetime=\"{0}\">{0}</time>", esc(t)),
        None => "never".to_string(),
    }
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

/// The one row a table of `columns` shows when `rows` has none.
fn empty_row(rows: &mut String, columns: usize, text: &str) {
    if rows.is_empty() {
        rows.push_str(&format!("<tr><td colspan=\"{columns}\">{text}</td></tr>"));
    }
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
    let body = format!(
        "{error}<p>tollgate keeps no list of organizations: an organization exists as soon as \
         something uses its id. Open one by id.</p>\
         <form method=\"get\" action=\"/console/orgs\"><label for=\"org\">Organization id</label> \
         <input type=\"text\" id=\"org\" name=\"org\" required pattern=\"[A-Za-z0-9_\\-]{{1,64}}\"> \
         <button type=\"submit\">Open</button></form>"
    );
    layout(ctx, StatusCode::OK, "Organizations", None, &body, None)
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
        let scopes: Vec<&str> = sa["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        rows.push_str(&format!(
            "<tr><td><a href=\"/console/o/{o}/sa/{id}\">{name}</a></td><td>{status}</td><td><code>{scopes}</code></td><td>{created}</td></tr>",
            id = s(sa, "id"),
            name = s(sa, "name"),
            status = s(sa, "status"),
            scopes = esc(&scopes.join(" ")),
            created = s(sa, "created_at"),
        ));
    }
    empty_row(&mut rows, 4, "No service accounts.");
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
    let body = format!(
        "<p><a href=\"/console/o/{o}/sa/new\">Create a service account</a></p>\
         <form method=\"get\" action=\"/console/o/{o}\" role=\"search\">\
         <label for=\"q\">Name contains</label> <input type=\"search\" id=\"q\" name=\"q\" value=\"{}\"> \
         <label for=\"status\">Status</label> <select id=\"status\" name=\"status\">\
         <option value=\"\"{}>any</option><option value=\"active\"{}>active</option><option value=\"disabled\"{}>disabled</option></select> \
         <button type=\"submit\">Search</button></form>\
         <table><caption>Service accounts of {o}</caption><tr><th scope=\"col\">name</th><th scope=\"col\">status</th><th scope=\"col\">scopes</th><th scope=\"col\">created</th></tr>{rows}</table>{more}",
        esc(q),
        selected(""),
        selected("active"),
        selected("disabled"),
    );
    layout(
        ctx,
        StatusCode::OK,
        "Service accounts",
        Some(org),
        &body,
        None,
    )
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
        "<fieldset><legend>Scopes (write covers read; grant the least the integration needs)</legend>\
         <table><tr><th scope=\"col\">resource</th><th scope=\"col\">read</th><th scope=\"col\">write</th></tr>{rows}</table></fieldset>"
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
    layout(
        ctx,
        StatusCode::OK,
        "Create a service account",
        Some(org),
        &body,
        None,
    )
}

/// The page that shows a secret once, with a copy button.
fn secret_page(ctx: &Ctx<'_>, org: &str, sa_id: &str, title: &str, cred: &Value) -> AdminReply {
    let o = esc(org);
    let body = format!(
        "<div class=\"secret\" role=\"alert\"><p><strong>Copy the client secret now.</strong> \
         It is shown only this once; tollgate keeps only its hash.</p>\
         <p><label for=\"client-id\">client_id</label><br><input type=\"text\" id=\"client-id\" readonly size=\"40\" value=\"{cid}\"> \
         <button type=\"button\" data-copy=\"client-id\" hidden>Copy</button></p>\
         <p><label for=\"client-secret\">client_secret</label><br><input type=\"text\" id=\"client-secret\" readonly size=\"60\" value=\"{secret}\"> \
         <button type=\"button\" data-copy=\"client-secret\" hidden>Copy</button></p></div>\
         <p>Use them at the token endpoint (<code>POST /api/auth/oauth2/token</code>, \
         <code>grant_type=client_credentials</code>); cache the token until shortly before \
         <code>expires_in</code>.</p><p><a href=\"/console/o/{o}/sa/{sa}\">Go to the service account</a></p>",
        cid = s(cred, "client_id"),
        secret = s(cred, "client_secret"),
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
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s(c, "client_id"),
            s(c, "name"),
            s(c, "created_at"),
            time_or_never(c, "last_used_at"),
            match c["previous_secret_expires_at"].as_str() {
                Some(t) => format!("old secret valid until {}", esc(t)),
                None => "-".to_string(),
            }
        ));
    }
    let scopes: Vec<&str> = v["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let active = v["status"].as_str() == Some("active");
    let rotate = if list.len() == 1 {
        format!(
            "<form method=\"post\" action=\"{}/rotate\">{}<label for=\"grace\">Keep the old secret working for (seconds, 0 to 86400)</label> \
             <input type=\"number\" id=\"grace\" name=\"grace_seconds\" min=\"0\" max=\"86400\" value=\"0\"> \
             <button type=\"submit\">Rotate the secret</button></form>",
            esc(&here),
            csrf_input(cs)
        )
    } else {
        "<p>Rotation here needs exactly one credential.</p>".to_string()
    };
    let body = format!(
        "<table><tr><th scope=\"row\">id</th><td><code>{id}</code></td></tr>\
         <tr><th scope=\"row\">description</th><td>{desc}</td></tr>\
         <tr><th scope=\"row\">status</th><td>{status}</td></tr>\
         <tr><th scope=\"row\">scopes</th><td><code>{scopes}</code></td></tr>\
         <tr><th scope=\"row\">created</th><td>{created}</td></tr>\
         <tr><th scope=\"row\">updated</th><td>{updated}</td></tr>{settings}</table>\
         <h2>Credentials</h2><table><tr><th scope=\"col\">client_id</th><th scope=\"col\">name</th><th scope=\"col\">created</th><th scope=\"col\">last used</th><th scope=\"col\">rotation</th></tr>{rows}</table>\
         <h2>Actions</h2>{rotate}<p>{toggle} {revoke} <a href=\"{here}/delete\">Delete…</a></p>",
        id = s(&v, "id"),
        desc = s(&v, "description"),
        status = s(&v, "status"),
        scopes = esc(&scopes.join(" ")),
        created = s(&v, "created_at"),
        updated = s(&v, "updated_at"),
        settings = super::settings::account_settings_rows(&v),
        toggle = button_form(
            cs,
            &format!("{here}/status"),
            if active { "Disable" } else { "Enable" },
            &[("status", if active { "disabled" } else { "active" })],
            false
        ),
        revoke = button_form(cs, &format!("{here}/revoke-tokens"), "Revoke all tokens", &[], false),
        here = esc(&here),
    );
    layout(
        ctx,
        StatusCode::OK,
        &format!("Service account {}", v["name"].as_str().unwrap_or("")),
        Some(org),
        &body,
        None,
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
    layout(
        ctx,
        StatusCode::OK,
        "Delete the service account?",
        Some(org),
        &body,
        None,
    )
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
        rows.push_str(&format!(
            "<tr><td><a href=\"/console/o/{o}/ws/{id}\">{name}</a></td><td><code>{id}</code></td><td>{}</td></tr>",
            s(ws, "created_at"),
            id = s(ws, "id"),
            name = s(ws, "name"),
        ));
    }
    empty_row(&mut rows, 3, "No workspaces.");
    let body = format!(
        "<table><tr><th scope=\"col\">name</th><th scope=\"col\">id</th><th scope=\"col\">created</th></tr>{rows}</table>\
         <h2>Add a workspace</h2><form method=\"post\" action=\"/console/o/{o}/ws\">{}\
         <label for=\"ws-id\">Id</label> <input type=\"text\" id=\"ws-id\" name=\"id\" required pattern=\"[A-Za-z0-9_\\-]{{1,64}}\"> \
         <label for=\"ws-name\">Name</label> <input type=\"text\" id=\"ws-name\" name=\"name\" required maxlength=\"128\"> \
         <button type=\"submit\">Save</button></form>",
        csrf_input(ctx.session)
    );
    layout(ctx, StatusCode::OK, "Workspaces", Some(org), &body, None)
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
        env_rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(id),
            s(e, "name"),
            button_form(cs, &format!("{here}/env/{id}/delete"), "Remove", &[], true)
        ));
    }
    empty_row(&mut env_rows, 3, "No environments.");
    let mut member_rows = String::new();
    for m in members["data"].as_array().into_iter().flatten() {
        let sa = m["service_account_id"].as_str().unwrap_or("");
        member_rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(sa),
            s(m, "role"),
            button_form(
                cs,
                &format!("{here}/members/{sa}/delete"),
                "Remove",
                &[],
                true
            )
        ));
    }
    empty_row(&mut member_rows, 3, "No members.");
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
    let body = format!(
        "<p>Workspace <code>{id}</code></p>\
         <h2>Environments</h2><table><tr><th scope=\"col\">id</th><th scope=\"col\">name</th><th scope=\"col\"></th></tr>{env_rows}</table>\
         <form method=\"post\" action=\"{h}/env\">{csrf}<label for=\"env-id\">Id</label> \
         <input type=\"text\" id=\"env-id\" name=\"id\" required pattern=\"[A-Za-z0-9_\\-]{{1,64}}\"> \
         <label for=\"env-name\">Name</label> <input type=\"text\" id=\"env-name\" name=\"name\" required maxlength=\"128\"> \
         <button type=\"submit\">Add environment</button></form>\
         <h2>Members</h2><table><tr><th scope=\"col\">service account</th><th scope=\"col\">role</th><th scope=\"col\"></th></tr>{member_rows}</table>\
         <h3>Add members</h3><form method=\"get\" action=\"{h}\" role=\"search\"><label for=\"pick\">Find a service account by name</label> \
         <input type=\"search\" id=\"pick\" name=\"q\" value=\"{q}\"> <button type=\"submit\">Find</button></form>{picks}",
        id = s(&w, "id"),
        h = esc(&here),
        csrf = csrf_input(cs),
        q = esc(q),
    );
    layout(
        ctx,
        StatusCode::OK,
        &format!("Workspace {}", w["name"].as_str().unwrap_or("")),
        Some(org),
        &body,
        None,
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
        rows.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            s(e, "time"),
            s(e, "actor"),
            s(e, "action"),
            s(e, "target"),
            s(e, "outcome"),
            esc(&e["details"].to_string())
        ));
    }
    empty_row(&mut rows, 6, "No events match.");
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
    let body = format!(
        "<form method=\"get\" action=\"/console/o/{o}/audit\" role=\"search\">\
         <label for=\"actor\">Actor</label> <input type=\"search\" id=\"actor\" name=\"actor\" value=\"{}\"> \
         <label for=\"sa\">Service account id</label> <input type=\"search\" id=\"sa\" name=\"sa\" value=\"{}\"> \
         <label for=\"action\">Action</label> <input type=\"search\" id=\"action\" name=\"action\" value=\"{}\" placeholder=\"token.issue\"> \
         <label for=\"from\">From (UTC)</label> <input type=\"datetime-local\" id=\"from\" name=\"from\" value=\"{}\"> \
         <label for=\"to\">To (UTC)</label> <input type=\"datetime-local\" id=\"to\" name=\"to\" value=\"{}\"> \
         <button type=\"submit\">Filter</button></form>\
         <table><tr><th scope=\"col\">time</th><th scope=\"col\">actor</th><th scope=\"col\">action</th><th scope=\"col\">target</th><th scope=\"col\">outcome</th><th scope=\"col\">details</th></tr>{rows}</table>{more}",
        esc(actor),
        esc(sa),
        esc(action),
        esc(ctx.q("from")),
        esc(ctx.q("to")),
    );
    layout(ctx, StatusCode::OK, "Audit events", Some(org), &body, None)
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
    let mut table = String::new();
    for ((route, decision, reason), recent, total) in &rows {
        table.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{recent}</td><td>{total}</td></tr>",
            esc(route),
            esc(decision),
            esc(reason)
        ));
    }
    empty_row(&mut table, 5, "No decisions yet.");
    let body = format!(
        "<p>Decisions of this process on the proxy listener, by route and reason. \
         \"Recent\" counts the last {} s (at most {} s: the console samples the counters while it is used).</p>\
         <table><tr><th scope=\"col\">route</th><th scope=\"col\">decision</th><th scope=\"col\">reason</th><th scope=\"col\">recent</th><th scope=\"col\">since start</th></tr>{table}</table>",
        span.as_secs(),
        WINDOW.as_secs()
    );
    layout(
        ctx,
        StatusCode::OK,
        "Authorization overview",
        None,
        &body,
        None,
    )
}

/// Admin keys of the organization: operators and organization keys list
/// them, make workspace keys (operators organization keys too), revoke.
async fn keys(ctx: &Ctx<'_>, org: &str) -> AdminReply {
    let (status, v) = list(ctx, &format!("/v1/organizations/{org}/admin-keys")).await;
    if !status.is_success() {
        return failed(ctx, Some(org), status, &v);
    }
    let o = esc(org);
    let cs = ctx.session;
    let mut rows = String::new();
    for k in v["data"].as_array().into_iter().flatten() {
        let id = k["id"].as_str().unwrap_or("");
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s(k, "name"),
            match k["workspace_id"].as_str() {
                Some(ws) => format!("workspace <code>{}</code>", esc(ws)),
                None => "organization".to_string(),
            },
            s(k, "created_by"),
            s(k, "created_at"),
            time_or_never(k, "last_used_at"),
            button_form(cs, &format!("/console/o/{org}/keys/{id}/delete"), "Revoke", &[], true)
        ));
    }
    empty_row(&mut rows, 6, "No admin keys.");
    let org_option = if matches!(cs.principal.reach, Reach::Operator) {
        "<option value=\"\">the whole organization</option>"
    } else {
        ""
    };
    let body = format!(
        "<table><tr><th scope=\"col\">name</th><th scope=\"col\">reaches</th><th scope=\"col\">made by</th><th scope=\"col\">created</th><th scope=\"col\">last used</th><th scope=\"col\"></th></tr>{rows}</table>\
         <h2>Make a key</h2><form method=\"post\" action=\"/console/o/{o}/keys\">{}\
         <label for=\"key-name\">Name</label> <input type=\"text\" id=\"key-name\" name=\"name\" required maxlength=\"128\"> \
         <label for=\"key-ws\">Reaches</label> <select id=\"key-ws\" name=\"workspace\">{org_option}{}</select> \
         <button type=\"submit\">Make the key</button></form>",
        csrf_input(cs),
        workspace_options(ctx, org).await,
    );
    layout(ctx, StatusCode::OK, "Admin keys", Some(org), &body, None)
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
         <p><label for=\"admin-key\">admin key</label><br><input type=\"text\" id=\"admin-key\" readonly size=\"80\" value=\"{}\"> \
         <button type=\"button\" data-copy=\"admin-key\" hidden>Copy</button></p></div>\
         <p><a href=\"/console/o/{}/keys\">Back to the admin keys</a></p>",
        s(&v, "key"),
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
