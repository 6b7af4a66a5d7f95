//! The JSON error body every listener answers with (proxy denials, the
//! admin API, the token endpoint): `{"error":"…","error_description":"…"}`,
//! the field names of RFC 6749 §5.2. Built here only, so that the three
//! cannot drift apart; each caller adds its own status and headers.

use serde::Serialize;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// The body for `error` (a fixed code) and `description` (escaped as JSON).
pub fn error_body(error: &str, description: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        error,
        error_description: description,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_error_then_describes_it_escaped() {
        assert_eq!(
            error_body("invalid_request", "a \"quoted\" \\ value"),
            br#"{"error":"invalid_request","error_description":"a \"quoted\" \\ value"}"#
        );
    }
}
