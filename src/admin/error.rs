//! Every way an admin request fails, and the one mapping of a failure to its
//! answer (docs/contract.md §4). Handlers return [`AdminError`] and use `?`
//! on registry calls.

use std::borrow::Cow;

use http::StatusCode;

use super::reply::Reply;
use crate::hashing::HashError;
use crate::registry::RegistryError;
use crate::store::StoreError;

#[derive(Debug)]
pub(crate) enum AdminError {
    /// 400: a field (of the body, query or path) is wrong. Names the field,
    /// never its value.
    Invalid { field: String, problem: String },
    /// 404: the object does not exist in the organization.
    NotFound(&'static str),
    /// 409.
    Conflict(String),
    /// 503: the store did not answer.
    Store(StoreError),
    /// 500: a secret could not be hashed.
    Internal,
    /// 404: no route has this path.
    NoEndpoint,
    /// 405, with the `Allow` value.
    MethodNotAllowed(String),
    /// 401: no admin key, or not one of ours.
    Unauthorized,
    /// 429: too many failed key checks from this source.
    Throttled { retry_after: u64 },
    /// 503: the key could not be verified (the hashing queue is full).
    KeyUnverified(HashError),
    /// 413.
    BodyTooLarge,
    /// 400: the body could not be read off the connection.
    BodyUnreadable,
    /// 403: the caller is known but its scope does not allow this (a
    /// workspace key outside members and environments, a management token
    /// changing admin keys or its own account). Another organization's
    /// objects are never a 403: they are `NotFound`, like unknown ones.
    Forbidden(&'static str),
}

impl AdminError {
    pub(crate) fn invalid(field: &str, problem: impl Into<String>) -> AdminError {
        AdminError::Invalid {
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The `error` code of the answer.
    pub(crate) fn code(&self) -> &'static str {
        self.parts().1
    }

    /// Status, `error` and `error_description`.
    fn parts(&self) -> (StatusCode, &'static str, Cow<'_, str>) {
        use AdminError as E;
        match self {
            E::Invalid { field, problem } => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{field}: {problem}").into(),
            ),
            E::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found").into(),
            ),
            E::Conflict(why) => (StatusCode::CONFLICT, "conflict", why.as_str().into()),
            E::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the store is unavailable; try again".into(),
            ),
            E::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the request could not be completed".into(),
            ),
            E::NoEndpoint => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such admin endpoint".into(),
            ),
            E::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this path".into(),
            ),
            E::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin key is required (Authorization: Bearer <key>)".into(),
            ),
            E::Throttled { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many failed admin authentications from this address; retry later".into(),
            ),
            E::KeyUnverified(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the admin key could not be verified now; try again".into(),
            ),
            E::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "body: larger than 64 KiB".into(),
            ),
            E::BodyUnreadable => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "body: could not be read".into(),
            ),
            E::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", (*why).into()),
        }
    }

    /// The answer; a failure of ours (store, hashing) is logged and
    /// counted here, once.
    pub(crate) fn into_reply(self) -> Reply {
        match &self {
            AdminError::Store(e) => {
                crate::metrics::Metrics::get().store_error("admin");
                tracing::warn!(error = %e, "admin request failed on the store");
            }
            AdminError::KeyUnverified(e) => {
                tracing::warn!(error = %e, "admin key not verified");
            }
            _ => {}
        }
        let (status, code, description) = self.parts();
        let mut reply = Reply::error(status, code, &description);
        match self {
            AdminError::MethodNotAllowed(allow) => reply.allow = Some(allow),
            AdminError::Throttled { retry_after } => reply.retry_after = Some(retry_after),
            _ => {}
        }
        reply
    }
}

impl From<RegistryError> for AdminError {
    fn from(e: RegistryError) -> AdminError {
        match e {
            RegistryError::Invalid { field, problem } => AdminError::Invalid { field, problem },
            RegistryError::NotFound(what) => AdminError::NotFound(what),
            RegistryError::Conflict(why) => AdminError::Conflict(why),
            RegistryError::Store(e) => AdminError::Store(e),
            RegistryError::Internal => AdminError::Internal,
        }
    }
}

impl From<HashError> for AdminError {
    fn from(e: HashError) -> AdminError {
        AdminError::KeyUnverified(e)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn answer(e: AdminError) -> (u16, Value, Reply) {
        let reply = e.into_reply();
        let body = serde_json::from_slice(&reply.body).expect("a JSON body");
        (reply.status.as_u16(), body, reply)
    }

    #[test]
    fn every_error_answers_with_its_status_code_and_description() {
        let cases = [
            (
                RegistryError::Invalid {
                    field: "name".into(),
                    problem: "must not be blank".into(),
                }
                .into(),
                400,
                "invalid_request",
                "name: must not be blank",
            ),
            (
                RegistryError::NotFound("workspace").into(),
                404,
                "not_found",
                "workspace not found",
            ),
            (
                RegistryError::Conflict("taken".into()).into(),
                409,
                "conflict",
                "taken",
            ),
            (
                RegistryError::Store(StoreError::Timeout).into(),
                503,
                "temporarily_unavailable",
                "the store is unavailable; try again",
            ),
            (
                RegistryError::Internal.into(),
                500,
                "server_error",
                "the request could not be completed",
            ),
            (
                HashError::Busy.into(),
                503,
                "temporarily_unavailable",
                "the admin key could not be verified now; try again",
            ),
            (
                AdminError::NoEndpoint,
                404,
                "not_found",
                "no such admin endpoint",
            ),
            (
                AdminError::Unauthorized,
                401,
                "unauthorized",
                "a valid admin key is required (Authorization: Bearer <key>)",
            ),
            (
                AdminError::BodyTooLarge,
                413,
                "invalid_request",
                "body: larger than 64 KiB",
            ),
        ];
        for (error, status, code, description) in cases {
            assert_eq!(error.code(), code);
            let (got, body, reply) = answer(error);
            assert_eq!(got, status, "{body}");
            assert_eq!(
                body,
                json!({"error": code, "error_description": description})
            );
            assert_eq!((reply.allow, reply.retry_after), (None, None));
        }
    }

    #[test]
    fn a_405_names_the_allowed_methods_and_a_429_when_to_retry() {
        let (status, body, reply) = answer(AdminError::MethodNotAllowed("PUT, DELETE".into()));
        assert_eq!(
            (status, body["error"].as_str()),
            (405, Some("method_not_allowed"))
        );
        assert_eq!(reply.allow.as_deref(), Some("PUT, DELETE"));
        let (status, body, reply) = answer(AdminError::Throttled { retry_after: 7 });
        assert_eq!((status, body["error"].as_str()), (429, Some("slow_down")));
        assert_eq!(reply.retry_after, Some(7));
    }
}
