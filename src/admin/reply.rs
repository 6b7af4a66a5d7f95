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
}

impl Reply {
    /// A body that is JSON already.
    pub(crate) fn raw_json(status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            allow: None,
            retry_after: None,
        }
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
