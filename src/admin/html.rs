//! What every HTML page of the admin listener shares (the Swagger page and
//! the console): escaping, the security headers, and the page shell with
//! its one stylesheet inlined under a hash-pinned CSP. No script runs
//! unless a page says so, and then only the one the CSP pins.

use http::header::HeaderName;
use http::StatusCode;

use super::reply::Reply;

/// Escapes text for an HTML text node or a quoted attribute.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The one stylesheet: readable from a phone's width to a laptop's, visible
/// focus for keyboard use.
pub(crate) const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}\
header{background:#20324a;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}\
header a{color:#fff}\
header nav{display:flex;flex-wrap:wrap;gap:.25rem 1rem}\
main{max-width:72rem;margin:0 auto;padding:1rem}\
a{color:#0b57d0}\
a:focus,button:focus,input:focus,select:focus,summary:focus{outline:3px solid #f5a623;outline-offset:2px}\
table{border-collapse:collapse;width:100%;display:block;overflow-x:auto}\
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}\
code,pre{font-family:ui-monospace,monospace;font-size:.9em;overflow-wrap:anywhere}\
pre{background:#f0f0f0;padding:.6rem;overflow-x:auto}\
form.inline{display:inline}\
fieldset{border:1px solid #ccc;margin:.6rem 0}\
label{display:inline-block;margin:.2rem .6rem .2rem 0}\
input[type=text],input[type=password],input[type=search],input[type=number],input[type=datetime-local],select{padding:.35rem;font-size:1rem;max-width:100%}\
button{padding:.35rem .8rem;font-size:1rem;cursor:pointer}\
button.danger{background:#b3261e;color:#fff;border:0}\
.secret{background:#fff4ce;border:1px solid #e0b000;padding:.6rem}\
.flash{background:#e7f3e8;border:1px solid #3a7d44;padding:.6rem}\
.error{background:#fde7e7;border:1px solid #b3261e;padding:.6rem}\
.method{font-weight:bold;display:inline-block;min-width:4.5rem}\
nav.crumbs{margin:.5rem 0}\
@media (max-width:40rem){th,td{padding:.3rem}main{padding:.5rem}}";

/// The console's icon (browsers ask for one; without it every page would
/// log a failed request).
pub(crate) const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#20324a\"/><path d=\"M4 5h8M8 5v7\" stroke=\"#fff\" stroke-width=\"2\"/></svg>";

/// `sha256-…` of [`STYLE`] for the CSP.
pub(crate) fn style_hash() -> String {
    csp_hash(STYLE)
}

/// The CSP source of an inline element's text.
pub(crate) fn csp_hash(text: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// A strict CSP: nothing from elsewhere, the inline stylesheet by hash,
/// scripts only when pinned by hash, no framing, forms only to this origin.
pub(crate) fn csp(script_hash: Option<&str>) -> String {
    format!(
        "default-src 'none'; style-src {}; script-src {}; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        style_hash(),
        script_hash.unwrap_or("'none'")
    )
}

/// A full HTML page with the security headers every page carries.
pub(crate) fn page(status: StatusCode, title: &str, body: &str, script: Option<&str>) -> Reply {
    let script_tag = script
        .map(|s| format!("<script>{s}</script>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><link rel=\"icon\" href=\"/console/favicon.svg\"><style>{STYLE}</style></head><body>{body}{script_tag}</body></html>",
        esc(title)
    );
    let hash = script.map(csp_hash);
    Reply::html(status, html)
        .with_header(
            HeaderName::from_static("content-security-policy"),
            csp(hash.as_deref()),
        )
        .with_header(HeaderName::from_static("x-content-type-options"), "nosniff")
        .with_header(HeaderName::from_static("referrer-policy"), "no-referrer")
        .with_header(HeaderName::from_static("x-frame-options"), "DENY")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_csp_pins_the_stylesheet_and_allows_no_script_by_default() {
        let csp = csp(None);
        assert!(csp.contains(&style_hash()));
        assert!(csp.contains("script-src 'none'"));
        assert!(csp.contains("default-src 'none'"));
        assert!(!csp.contains("unsafe"));
    }
}
