//! The policy loader never panics on any file text, and a set it accepts
//! answers look-ups without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::policy::load_str;
use tollgate::scope::default_resources;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let resources = default_resources();
    if let Ok(set) = load_str("fuzz.toml", text, &resources, |u| u == "backend") {
        for method in ["GET", "POST", "DELETE"] {
            let _ = set.lookup(method, "/api/v1/workflows/a/b");
            let _ = set.lookup(method, "/");
        }
    }
});
