//! Console sessions: an admin key, posted once, is exchanged for a random
//! session id in an `HttpOnly; SameSite=Strict` cookie (`Secure` over TLS),
//! scoped to `/console`. The process keeps only the id's SHA-256, the
//! caller and a CSRF token. A session ends after 15 idle minutes, 8 hours
//! in all, on sign-out, or when its stored key is revoked. The sign-in form
//! itself carries a pre-session token (double submit) so that no other site
//! can sign a browser in.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::{HeaderName, LOCATION, SET_COOKIE};
use http::StatusCode;
use subtle::ConstantTimeEq;

use super::overview::Sample;
use super::{html, lock};
use crate::admin::{esc, Admin, AdminReply, Principal, Request};
use crate::secret::sha256;

pub(super) const COOKIE: &str = "tg_console";
const PRE_COOKIE: &str = "tg_console_pre";
pub(super) const IDLE: Duration = Duration::from_secs(15 * 60);
pub(super) const ABSOLUTE: Duration = Duration::from_secs(8 * 60 * 60);
/// Beyond this many live sessions the oldest is ended.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    principal: Principal,
    csrf: String,
    created: Instant,
    seen: Instant,
}

/// A live session as a page sees it.
#[derive(Clone)]
pub(crate) struct SessionView {
    pub(crate) principal: Principal,
    pub(crate) csrf: String,
    key: [u8; 32],
}

impl SessionView {
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

#[derive(Default)]
pub(crate) struct Console {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    pub(super) samples: Mutex<VecDeque<Sample>>,
}

fn random_token() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(id: &str) -> [u8; 32] {
    sha256(&[b"console session", id.as_bytes()])
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>, tls: bool) -> String {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict{age}{secure}")
}

impl Console {
    /// The live session of the request's cookie, touched.
    pub(crate) fn session(&self, cookie_header: Option<&str>) -> Option<SessionView> {
        let id = cookie(cookie_header, COOKIE)?;
        let key = digest(id);
        let now = Instant::now();
        let mut sessions = lock(&self.sessions)?;
        let live = sessions.get(&key).is_some_and(|s| {
            now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < ABSOLUTE
        });
        if !live {
            sessions.remove(&key);
            return None;
        }
        let s = sessions.get_mut(&key)?;
        s.seen = now;
        Some(SessionView {
            principal: s.principal.clone(),
            csrf: s.csrf.clone(),
            key,
        })
    }

    pub(crate) fn end(&self, view: &SessionView) {
        if let Some(mut sessions) = lock(&self.sessions) {
            sessions.remove(&view.key);
        }
    }

    /// A new session; the cookie value to set.
    fn start(&self, principal: Principal) -> Option<String> {
        let id = random_token();
        let now = Instant::now();
        let mut sessions = lock(&self.sessions)?;
        sessions.retain(|_, s| {
            now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < ABSOLUTE
        });
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                sessions.remove(&k);
            }
        }
        sessions.insert(
            digest(&id),
            Session {
                principal,
                csrf: random_token(),
                created: now,
                seen: now,
            },
        );
        Some(id)
    }
}

/// The sign-in form, with a fresh pre-session token in a cookie and the form.
pub(super) fn sign_in_page(tls: bool, error: Option<&str>) -> AdminReply {
    let pre = random_token();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<header><strong>tollgate console</strong></header><main><h1>Sign in</h1>{error}\
         <form method=\"post\" action=\"/console/sign-in\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{pre}\">\
         <p><label for=\"key\">Admin key</label><br>\
         <input type=\"password\" id=\"key\" name=\"key\" autocomplete=\"off\" required size=\"60\" autofocus></p>\
         <p><button type=\"submit\">Sign in</button></p></form>\
         <p>An operator key reaches every organization; an organization or workspace key \
         made through the admin API reaches only its own.</p></main>"
    );
    html(
        if error.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        },
        "Sign in · tollgate",
        &body,
        None,
    )
    .with_header(SET_COOKIE, set_cookie(PRE_COOKIE, &pre, Some(600), tls))
}

/// `POST /console/sign-in {key, csrf}`.
pub(super) async fn sign_in(admin: &Admin, req: &Request) -> AdminReply {
    let form: HashMap<String, String> = form_urlencoded::parse(&req.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let pre = cookie(req.cookie.as_deref(), PRE_COOKIE).unwrap_or("");
    let posted = form.get("csrf").map(String::as_str).unwrap_or("");
    if pre.is_empty() || !bool::from(pre.as_bytes().ct_eq(posted.as_bytes())) {
        return super::pages::message(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from the console. Reload the page and try again.",
        );
    }
    let key = form.get("key").map(String::as_str).unwrap_or("").trim();
    let principal = match admin.sign_in(key, req.source).await {
        Ok(p) => p,
        Err(reply) if reply.status == StatusCode::TOO_MANY_REQUESTS => {
            return sign_in_page(
                req.tls,
                Some("Too many failed sign-ins from this address; wait a minute."),
            )
        }
        Err(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE => {
            return sign_in_page(
                req.tls,
                Some("The key could not be checked now; try again."),
            )
        }
        Err(_) => return sign_in_page(req.tls, Some("That is not a valid admin key.")),
    };
    if !matches!(principal.via, crate::admin::Via::Key { .. }) {
        return sign_in_page(
            req.tls,
            Some("Sign in with an admin key; access tokens are for the API."),
        );
    }
    let Some(id) = admin.console().start(principal) else {
        return super::pages::message(StatusCode::SERVICE_UNAVAILABLE, "Try again.");
    };
    AdminReply::html(StatusCode::SEE_OTHER, String::new())
        .with_header(LOCATION, "/console/home")
        .with_header(
            SET_COOKIE,
            set_cookie(COOKIE, &id, Some(ABSOLUTE.as_secs()), req.tls),
        )
        .with_header(SET_COOKIE, set_cookie(PRE_COOKIE, "", Some(0), req.tls))
        .with_header(HeaderName::from_static("referrer-policy"), "no-referrer")
}

/// `POST /console/sign-out`: the session ends and its cookie is cleared.
pub(super) fn sign_out(admin: &Admin, view: &SessionView, tls: bool) -> AdminReply {
    admin.console().end(view);
    AdminReply::html(StatusCode::SEE_OTHER, String::new())
        .with_header(LOCATION, "/console")
        .with_header(SET_COOKIE, set_cookie(COOKIE, "", Some(0), tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator() -> Principal {
        Principal {
            actor: "admin:ops".into(),
            reach: crate::admin::Reach::Operator,
            via: crate::admin::Via::Key { stored: None },
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends_on_request() {
        let console = Console::default();
        let id = console.start(operator()).expect("started");
        let header = format!("other=1; {COOKIE}={id}");
        let view = console.session(Some(&header)).expect("live");
        assert_eq!(view.principal, operator());
        assert!(view.csrf_matches(&view.csrf.clone()));
        assert!(!view.csrf_matches(""));
        assert!(!view.csrf_matches("forged"));
        assert!(console.session(Some(&format!("{COOKIE}=forged"))).is_none());
        console.end(&view);
        assert!(console.session(Some(&header)).is_none());
    }

    #[test]
    fn an_idle_or_old_session_is_over() {
        let console = Console::default();
        let id = console.start(operator()).expect("started");
        let header = format!("{COOKIE}={id}");
        if let Some(mut s) = lock(&console.sessions) {
            for session in s.values_mut() {
                session.seen = Instant::now() - IDLE - Duration::from_secs(1);
            }
        }
        assert!(console.session(Some(&header)).is_none());
        let id = console.start(operator()).expect("started");
        let header = format!("{COOKIE}={id}");
        if let (Some(mut s), Some(old)) = (
            lock(&console.sessions),
            Instant::now().checked_sub(ABSOLUTE + Duration::from_secs(1)),
        ) {
            for session in s.values_mut() {
                session.created = old;
            }
        }
        assert!(console.session(Some(&header)).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = set_cookie(COOKIE, "v", Some(60), false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Path=/console") && !plain.contains("Secure"));
        assert!(set_cookie(COOKIE, "v", None, true).ends_with("; Secure"));
    }
}
