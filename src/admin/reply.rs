//! What the admin API answers, before it becomes an HTTP response in
//! `serve`: a status, a JSON body (or none) and the few headers an answer
//! may add. Every answer gets `Cache-Control: no-store`.

use http::StatusCode;
use serde::Serialize;
use serde_json::json;

use crate::registry::Page;

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
    /// `Allow` (a 405).
    pub(crate) allow: Option<String>,
    /// `Retry-After` seconds (a throttled admin request).
    pub(crate) retry_after: Option<u64>,
    /// `Content-Type` of a non-empty body.
    pub(crate) content_type: &'static str,
    /// Further fields (the console's and the Swagger page's security
    /// headers, cookies, redirects).
    pub(crate) headers: Vec<(http::header::HeaderName, String)>,
}

impl Reply {
    /// A body that is JSON already.
    pub(crate) fn raw_json(status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            allow: None,
            retry_after: None,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    /// A page of HTML with the given security headers.
    pub(crate) fn html(status: StatusCode, body: String) -> Reply {
        Reply {
            content_type: "text/html; charset=utf-8",
            ..Reply::raw_json(status, body.into_bytes())
        }
    }

    pub(crate) fn with_header(
        mut self,
        name: http::header::HeaderName,
        value: impl Into<String>,
    ) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        Reply::raw_json(
            status,
            serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
        )
    }

    /// 200 with the value.
    pub(crate) fn ok(value: &impl Serialize) -> Reply {
        Reply::json(StatusCode::OK, value)
    }

    /// 201 for a new object, 200 for one that was replaced.
    pub(crate) fn put(created: bool, value: &impl Serialize) -> Reply {
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Reply::json(status, value)
    }

    /// 204.
    pub(crate) fn no_content() -> Reply {
        Reply::raw_json(StatusCode::NO_CONTENT, Vec::new())
    }

    /// One page of a list: `{"data":[…],"next_cursor":…}`.
    pub(crate) fn page<T: Serialize>(p: Page<T>) -> Reply {
        Reply::ok(&json!({"data": p.items, "next_cursor": p.next_cursor}))
    }

    /// The one shape of an error answer: `{"error","error_description"}`.
    pub(crate) fn error(status: StatusCode, code: &str, description: &str) -> Reply {
        Reply::raw_json(status, crate::errors::error_body(code, description))
    }
}
