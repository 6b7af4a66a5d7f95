//! The web console at `/console` on the admin listener (docs/console.md):
//! server-rendered HTML over the admin API. Every change goes through
//! [`Admin::call_as`] under the signed-in caller, so the API's scope checks,
//! validation and audit apply unchanged.
//!
//! - [`session`]: sign-in with an admin key exchanged for an HttpOnly,
//!   SameSite=Strict cookie (Secure over TLS) with idle and absolute
//!   expiry; a CSRF token per session checked on every POST;
//! - [`pages`]: one function per screen, built from [`markup`]'s tables,
//!   controls and forms;
//! - [`overview`]: the authorization overview from the process's counters.
//!
//! No secret is ever put in a URL: keys are posted, secrets are shown only
//! in the answer to the POST that made them.

mod markup;
mod overview;
mod pages;
mod session;
mod settings;

use std::collections::HashMap;
use std::sync::Mutex;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::admin::{html_page, route, Admin, AdminReply, Principal, Request, FAVICON};
pub(crate) use session::Console;
use session::SessionView;

/// The console's answer to one request.
pub(crate) async fn handle(admin: &Admin, req: Request) -> AdminReply {
    let console = admin.console();
    if let Some(m) = &req.query {
        if m.len() > 4096 {
            return pages::message(StatusCode::BAD_REQUEST, "The query is too long.");
        }
    }
    let rest = req.path.trim_start_matches("/console");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    console.sample_counters();
    let session = console.session(req.cookie.as_deref());
    let session = match session {
        Some(s) if admin.still_valid(&s.principal).await => Some(s),
        Some(s) => {
            console.end(&s);
            None
        }
        None => None,
    };
    match (&req.method, segments.as_slice(), session) {
        (&Method::GET | &Method::HEAD, ["favicon.svg"], _) => AdminReply {
            content_type: "image/svg+xml",
            ..AdminReply::raw_json(StatusCode::OK, FAVICON.as_bytes().to_vec())
        },
        (&Method::GET, [], None) => session::sign_in_page(req.tls, None),
        (&Method::POST, ["sign-in"], None) | (&Method::POST, ["sign-in"], Some(_)) => {
            session::sign_in(admin, &req).await
        }
        (&Method::GET | &Method::HEAD, _, None) => pages::see_other("/console"),
        (_, _, None) => pages::message(
            StatusCode::FORBIDDEN,
            "Your session has ended. Sign in again.",
        ),
        (method, segs, Some(s)) => {
            let form = if method == Method::POST {
                match Form::read(&req, &s) {
                    Ok(form) => Some(form),
                    Err(reply) => return reply,
                }
            } else {
                None
            };
            let ctx = Ctx {
                admin,
                session: &s,
                query: query_map(req.query.as_deref()),
                tls: req.tls,
            };
            pages::route(&ctx, method, segs, form).await
        }
    }
}

/// What a page handler gets.
pub(crate) struct Ctx<'a> {
    admin: &'a Admin,
    session: &'a SessionView,
    query: HashMap<String, String>,
    tls: bool,
}

impl Ctx<'_> {
    fn principal(&self) -> &Principal {
        &self.session.principal
    }

    fn q(&self, name: &str) -> &str {
        self.query.get(name).map(String::as_str).unwrap_or("")
    }

    /// One admin API call as the signed-in caller: status and JSON.
    async fn api(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        let reply = self
            .admin
            .call_as(self.principal(), route(&method, path), query, &bytes)
            .await;
        let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status, value)
    }
}

/// A posted form whose CSRF token matched the session's.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    fn read(req: &Request, session: &SessionView) -> Result<Form, AdminReply> {
        let form_type = req
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return Err(pages::message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Changes are sent as forms.",
            ));
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&req.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let form = Form(pairs);
        if !session.csrf_matches(form.get("csrf")) {
            return Err(pages::message(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from the console. Reload the page and try again.",
            ));
        }
        Ok(form)
    }

    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Used by the pages: a full page with the console's security headers.
fn html(status: StatusCode, title: &str, body: &str, script: Option<&str>) -> AdminReply {
    html_page(status, title, body, script)
}

/// Sessions and samples are kept behind mutexes; a poisoned one is treated
/// as empty rather than panicking.
fn lock<T>(m: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    m.lock().ok()
}
