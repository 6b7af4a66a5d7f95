//! The bearer and query parsers never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::authorize::{parse_bearer, parse_query};

fuzz_target!(|data: &[u8]| {
    let _ = parse_bearer(&[data]);
    let _ = parse_bearer(&[data, data]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_query(Some(text));
    }
});
