//! The original request as each ingress convention describes it to the
//! decision listener: its method and request target. A convention is read
//! only as configured; a check request that does not carry what its
//! convention promises is refused (400), never decided on other headers.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

use super::config::Convention;

/// What the ingress's client asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Original<'a> {
    pub method: &'a str,
    /// The request target as the client sent it (path and query).
    pub target: Cow<'a, [u8]>,
}

/// Why a check request does not describe an original request: the
/// description of the 400 answered.
pub(crate) type Malformed = &'static str;

// The convention's header names, parsed once rather than per check request.
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The header fields of a check request, however they were read: pingora's
/// map (HTTP/2) or the fields parsed in place (HTTP/1, [`super::http1`]).
/// Values borrow the bytes read (`'v`), not the list of fields.
pub(crate) trait CheckHeaders<'v>: Copy {
    /// The first two values of `name` and how many there are (0, 1 or 2:
    /// two means repeated).
    fn first_two(self, name: &HeaderName) -> ([&'v [u8]; 2], usize);
    /// Calls `f` with the name of each field, once per name, lowercase.
    fn each_name(self, f: &mut dyn FnMut(&str));
}

impl<'v> CheckHeaders<'v> for &'v HeaderMap {
    fn first_two(self, name: &HeaderName) -> ([&'v [u8]; 2], usize) {
        crate::proxy::first_two(self.get_all(name))
    }

    fn each_name(self, f: &mut dyn FnMut(&str)) {
        self.keys().for_each(|n| f(n.as_str()));
    }
}

impl<'v> CheckHeaders<'v> for &[httparse::Header<'v>] {
    fn first_two(self, name: &HeaderName) -> ([&'v [u8]; 2], usize) {
        let mut found = self
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name.as_str()))
            .map(|h| h.value);
        match (found.next(), found.next()) {
            (None, _) => ([b"", b""], 0),
            (Some(a), None) => ([a, b""], 1),
            (Some(a), Some(b)) => ([a, b], 2),
        }
    }

    fn each_name(self, f: &mut dyn FnMut(&str)) {
        for (i, h) in self.iter().enumerate() {
            let seen = self[..i]
                .iter()
                .any(|e| e.name.eq_ignore_ascii_case(h.name));
            if !seen {
                f(&h.name.to_ascii_lowercase());
            }
        }
    }
}

/// The one value of a header the convention needs: missing, repeated,
/// empty or not text refuses the check request.
fn one<'v>(
    headers: impl CheckHeaders<'v>,
    name: &HeaderName,
    why: Malformed,
) -> Result<&'v str, Malformed> {
    match headers.first_two(name) {
        ([v, _], 1) if is_text(v) => match std::str::from_utf8(v) {
            Ok(s) if !s.trim().is_empty() => Ok(s.trim()),
            _ => Err(why),
        },
        _ => Err(why),
    }
}

/// Visible ASCII, space and tab: what `HeaderValue::to_str` accepts.
fn is_text(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// An RFC 9110 method: a token.
pub(crate) fn method(m: &str, why: Malformed) -> Result<&str, Malformed> {
    let token = !m.is_empty()
        && m.len() <= 32
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        Ok(m)
    } else {
        Err(why)
    }
}

impl Convention {
    /// The original request of a check request with this method, target
    /// and headers.
    pub(crate) fn original<'a>(
        self,
        check_method: &'a str,
        check_target: &'a [u8],
        headers: impl CheckHeaders<'a>,
        path_prefix: &str,
    ) -> Result<Original<'a>, Malformed> {
        match self {
            Convention::Nginx => Ok(Original {
                method: method(
                    one(
                        headers,
                        &X_ORIGINAL_METHOD,
                        "the nginx convention needs exactly one X-Original-Method header",
                    )?,
                    "X-Original-Method is not an HTTP method",
                )?,
                target: Cow::Borrowed(
                    one(
                        headers,
                        &X_ORIGINAL_URI,
                        "the nginx convention needs exactly one X-Original-URI header",
                    )?
                    .as_bytes(),
                ),
            }),
            Convention::Traefik => Ok(Original {
                method: method(
                    one(
                        headers,
                        &X_FORWARDED_METHOD,
                        "the traefik convention needs exactly one X-Forwarded-Method header",
                    )?,
                    "X-Forwarded-Method is not an HTTP method",
                )?,
                target: Cow::Borrowed(
                    one(
                        headers,
                        &X_FORWARDED_URI,
                        "the traefik convention needs exactly one X-Forwarded-Uri header",
                    )?
                    .as_bytes(),
                ),
            }),
            Convention::Envoy => {
                let rest = check_target
                    .strip_prefix(path_prefix.as_bytes())
                    .filter(|rest| rest.first() == Some(&b'/'))
                    .ok_or(
                        "the envoy convention needs the original path after decisions.path_prefix",
                    )?;
                Ok(Original {
                    method: method(check_method, "the check request's method is not valid")?,
                    target: Cow::Borrowed(rest),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn nginx_reads_the_original_method_and_uri() {
        let h = headers(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/api/v1/x?environmentId=e"),
        ]);
        let o = Convention::Nginx.original("GET", b"/auth", &h, "").unwrap();
        assert_eq!(o.method, "POST");
        assert_eq!(&*o.target, b"/api/v1/x?environmentId=e");
    }

    #[test]
    fn a_missing_repeated_or_empty_header_is_refused_never_guessed() {
        // Traefik's headers do not stand in for nginx's, nor the check
        // request's own target.
        let traefik_shaped = headers(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a")]);
        assert!(Convention::Nginx
            .original("GET", b"/a", &traefik_shaped, "")
            .is_err());
        let nginx_shaped = headers(&[("x-original-method", "GET"), ("x-original-uri", "/a")]);
        assert!(Convention::Traefik
            .original("GET", b"/a", &nginx_shaped, "")
            .is_err());
        let repeated = headers(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/a"),
            ("x-original-uri", "/b"),
        ]);
        assert!(Convention::Nginx
            .original("GET", b"/", &repeated, "")
            .is_err());
        let empty = headers(&[("x-original-method", "GET"), ("x-original-uri", " ")]);
        assert!(Convention::Nginx.original("GET", b"/", &empty, "").is_err());
        let no_method = headers(&[("x-original-uri", "/a")]);
        assert!(Convention::Nginx
            .original("GET", b"/", &no_method, "")
            .is_err());
        let bad_method = headers(&[("x-original-method", "GE T"), ("x-original-uri", "/a")]);
        assert!(Convention::Nginx
            .original("GET", b"/", &bad_method, "")
            .is_err());
    }

    #[test]
    fn traefik_reads_the_forwarded_method_and_uri() {
        let h = headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/api/v1/x"),
            ("x-forwarded-host", "api.example"),
        ]);
        let o = Convention::Traefik.original("GET", b"/", &h, "").unwrap();
        assert_eq!((o.method, &*o.target), ("DELETE", b"/api/v1/x".as_slice()));
    }

    #[test]
    fn envoy_takes_the_path_after_the_prefix() {
        let h = HeaderMap::new();
        let o = Convention::Envoy
            .original("PUT", b"/authz/api/v1/x?q=1", &h, "/authz")
            .unwrap();
        assert_eq!((o.method, &*o.target), ("PUT", b"/api/v1/x?q=1".as_slice()));
        let o = Convention::Envoy.original("GET", b"/api", &h, "").unwrap();
        assert_eq!(&*o.target, b"/api");
        // Not under the prefix, or the prefix alone, or a longer segment.
        for target in [&b"/other/api"[..], b"/authz", b"/authzx/api", b"/authz?x"] {
            assert!(
                Convention::Envoy
                    .original("GET", target, &h, "/authz")
                    .is_err(),
                "{target:?}"
            );
        }
    }
}
