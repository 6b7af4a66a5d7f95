//! Request-target safety and RFC 3986 §6 normalisation (docs/contract.md §5.2 step 1).
//! Only origin-form targets pass; the normalised path is the one that is
//! matched against routes and forwarded, so an upstream can never be made to
//! see a path that differs from the one the policy was checked against.

use std::fmt;

/// Longest request-target (path and query, as received) that is accepted.
/// Longer targets are rejected rather than truncated.
pub(crate) const MAX_TARGET_LEN: usize = 8192;

/// An origin-form request-target that passed the safety checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    path: String,
    query: Option<String>,
}

impl Target {
    /// The normalised path: starts with `/`, no dot segments, no empty
    /// segment except a final one (a trailing slash), no encoded `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query after `?`, unchanged (`Some("")` for a bare `?`).
    pub(crate) fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The path's segments: `/` gives `[""]`, `/a/` gives `["a", ""]`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        segments(&self.path)
    }

    /// What is forwarded: the normalised path and the raw query.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// The segments of an absolute path (the part after each `/`).
pub fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// Why a request-target was refused. Descriptions never repeat the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathError {
    Empty,
    TooLong,
    AbsoluteForm,
    AuthorityForm,
    AsteriskForm,
    NotOriginForm,
    Fragment,
    InvalidEscape,
    EncodedSlash,
    Backslash,
    ControlCharacter,
    NonAscii,
    InvalidCharacter,
    EmptySegment,
    Semicolon,
    /// With `;` allowed: a parameter on an empty or dot segment (`/..;x/`),
    /// which some servers treat as the bare dot segment.
    ParameterOnDotSegment,
    AboveRoot,
}

impl PathError {
    pub(crate) fn description(self) -> &'static str {
        match self {
            PathError::Empty => "the request target is empty",
            PathError::TooLong => {
                "the request target is longer than 8192 bytes, as received or normalised"
            }
            PathError::AbsoluteForm => "absolute-form request targets are not accepted",
            PathError::AuthorityForm => "authority-form request targets are not accepted",
            PathError::AsteriskForm => "the asterisk request target is not accepted",
            PathError::NotOriginForm => "the request target must start with /",
            PathError::Fragment => "the request target must not contain a fragment (#)",
            PathError::InvalidEscape => "the request target contains an invalid percent-escape",
            PathError::EncodedSlash => "the request path contains an encoded slash (%2F)",
            PathError::Backslash => "the request path contains a backslash",
            PathError::ControlCharacter => "the request target contains a control character",
            PathError::NonAscii => "the request target contains a raw non-ASCII byte",
            PathError::InvalidCharacter => {
                "the request target contains a character that is not allowed"
            }
            PathError::EmptySegment => "the request path contains an empty segment (//)",
            PathError::Semicolon => "the request path contains a semicolon",
            PathError::ParameterOnDotSegment => {
                "the request path has a parameter on an empty or dot segment"
            }
            PathError::AboveRoot => "the request path climbs above the root",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for PathError {}

/// Checks and normalises a request-target as it appeared on the request line.
///
/// The path is percent-decoded for unreserved characters only (never twice:
/// `%252e` stays `%252e`), remaining escapes are upper-cased, the printable
/// ASCII characters RFC 3986 does not allow in a path (`"<>[]^`{|}`) are
/// percent-encoded, and dot segments are removed (also `%2e` ones). The query
/// is returned unchanged; it is only checked for bytes that cannot appear in
/// a request line (controls, space, non-ASCII, `#`).
pub fn normalize_target(raw: impl AsRef<[u8]>, allow_semicolon: bool) -> Result<Target, PathError> {
    let raw = raw.as_ref();
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_TARGET_LEN {
        return Err(PathError::TooLong);
    }
    if raw[0] != b'/' {
        return Err(classify_non_origin(raw));
    }
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let query = query.map(check_query).transpose()?;
    let path = normalize_path(path, allow_semicolon)?;
    // Encoding `"<>[]^`{|}` triples their length: the limit also holds for
    // what is forwarded, so a normalised target is itself accepted.
    if path.len() + query.as_ref().map_or(0, |q| q.len() + 1) > MAX_TARGET_LEN {
        return Err(PathError::TooLong);
    }
    Ok(Target { path, query })
}

/// Normalises an absolute path (no query) with the same rules.
pub(crate) fn normalize_path(path: &[u8], allow_semicolon: bool) -> Result<String, PathError> {
    let rest = match path.split_first() {
        Some((b'/', rest)) => rest,
        _ => return Err(PathError::NotOriginForm),
    };
    if is_already_normal(rest) {
        // Every byte is kept as it is: the path is its own normal form.
        return Ok(String::from_utf8_lossy(path).into_owned());
    }
    normalize_segments(path, rest, allow_semicolon)
}

/// The general case of `normalize_path`: `rest` is `path` after its `/`.
fn normalize_segments(
    path: &[u8],
    rest: &[u8],
    allow_semicolon: bool,
) -> Result<String, PathError> {
    let raw_segments: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let last = raw_segments.len() - 1;
    let mut out: Vec<String> = Vec::with_capacity(raw_segments.len());
    for (i, raw_segment) in raw_segments.into_iter().enumerate() {
        let is_last = i == last;
        if raw_segment.is_empty() && !is_last {
            return Err(PathError::EmptySegment);
        }
        let segment = normalize_segment(raw_segment, allow_semicolon)?;
        match segment.as_str() {
            "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => {
                out.push(segment);
                continue;
            }
        }
        // A dot segment at the end leaves a trailing slash (RFC 3986 §5.2.4).
        if is_last {
            out.push(String::new());
        }
    }
    let mut path = String::with_capacity(path.len());
    for segment in &out {
        path.push('/');
        path.push_str(segment);
    }
    Ok(path)
}

/// Whether a path (after its leading `/`) is already normalised, so that the
/// segment-by-segment work below would return it unchanged: only characters
/// kept as they are (unreserved, sub-delimiters but `;`, `:`, `@`), no
/// escape, no empty segment but a last one, no dot segment. Most requests
/// take this way.
fn is_already_normal(rest: &[u8]) -> bool {
    let allowed =
        |b: u8| b != b';' && (is_unreserved(b) || is_sub_delim(b) || b == b':' || b == b'@');
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        if (segment.is_empty() && !is_last)
            || segment == b"."
            || segment == b".."
            || !segment.iter().all(|&b| allowed(b))
        {
            return false;
        }
    }
    true
}

/// Normalises one path segment (no `/` inside). Dot segments are returned
/// as `.` / `..` for the caller to resolve.
pub(crate) fn normalize_segment(raw: &[u8], allow_semicolon: bool) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex_value);
                let lo = raw.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::InvalidEscape);
                };
                let decoded = hi << 4 | lo;
                match decoded {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    _ if is_unreserved(decoded) => out.push(decoded as char),
                    _ => push_escape(&mut out, decoded),
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            0x80..=0xff => return Err(PathError::NonAscii),
            b' ' => return Err(PathError::InvalidCharacter),
            b'#' => return Err(PathError::Fragment),
            b';' if !allow_semicolon => return Err(PathError::Semicolon),
            _ if is_unreserved(b) || is_sub_delim(b) || b == b':' || b == b'@' => {
                out.push(b as char)
            }
            // `"<>[]^`{|}`: not allowed raw in a path; encode so that the raw
            // and the encoded spelling normalise to the same path.
            _ => push_escape(&mut out, b),
        }
        i += 1;
    }
    if allow_semicolon {
        if let Some((before, _)) = out.split_once(';') {
            if before.is_empty() || before == "." || before == ".." {
                return Err(PathError::ParameterOnDotSegment);
            }
        }
    }
    Ok(out)
}

fn check_query(query: &[u8]) -> Result<String, PathError> {
    for &b in query {
        match b {
            0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            0x80..=0xff => return Err(PathError::NonAscii),
            b' ' => return Err(PathError::InvalidCharacter),
            b'#' => return Err(PathError::Fragment),
            _ => {}
        }
    }
    // Every byte is printable ASCII, so this cannot fail.
    String::from_utf8(query.to_vec()).map_err(|_| PathError::NonAscii)
}

fn classify_non_origin(raw: &[u8]) -> PathError {
    if raw == b"*" {
        return PathError::AsteriskForm;
    }
    if raw.contains(&b'#') {
        return PathError::Fragment;
    }
    let scheme_len = raw
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        .count();
    match raw.get(scheme_len) {
        Some(b':') if scheme_len > 0 && raw[scheme_len + 1..].starts_with(b"//") => {
            PathError::AbsoluteForm
        }
        Some(b':') if scheme_len > 0 => PathError::AuthorityForm,
        _ => PathError::NotOriginForm,
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests;
