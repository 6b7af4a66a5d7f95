//! The request-target normaliser never panics, and what it accepts is in
//! normal form: idempotent, no dot or empty segment, no encoded slash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::pathnorm::normalize_target;

fuzz_target!(|data: &[u8]| {
    for allow_semicolon in [false, true] {
        if let Ok(t) = normalize_target(data, allow_semicolon) {
            let path = t.path();
            assert!(path.starts_with('/'));
            let again =
                normalize_target(path, allow_semicolon).expect("a normalised path is accepted");
            assert_eq!(again.path(), path, "normalisation is idempotent");
            let segments: Vec<&str> = path[1..].split('/').collect();
            for (i, s) in segments.iter().enumerate() {
                assert!(*s != "." && *s != "..", "dot segment in {path:?}");
                assert!(
                    !s.is_empty() || i + 1 == segments.len(),
                    "empty segment in {path:?}"
                );
            }
            let upper = path.to_ascii_uppercase();
            assert!(!upper.contains("%2F") && !upper.contains("%5C") && !path.contains('\\'));
        }
    }
});
