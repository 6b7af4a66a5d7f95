//! The policy loader never panics on any file text, and a set it accepts
//! answers look-ups consistently: the route found matches the method and
//! path, no route is missed, and neither depends on the order of the files.
//!
//! Input: one file's text, or two separated by a NUL byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::pathnorm::segments;
use tollgate::policy::{load_files, PatternSegment, PolicySet};
use tollgate::scope::default_resources;

const METHODS: [&str; 4] = ["GET", "POST", "DELETE", "TRACE"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, second) = text.split_once('\0').unwrap_or((text, ""));
    let resources = default_resources();
    let load = |files: [(&'static str, &str); 2]| load_files(files, &resources, |u| u == "backend");
    let forward = load([("a.toml", first), ("b.toml", second)]);
    let backward = load([("b.toml", second), ("a.toml", first)]);
    let (forward, backward) = match (forward, backward) {
        (Ok(f), Ok(b)) => (f, b),
        (Err(_), Err(_)) => return,
        (f, b) => panic!("acceptance depends on file order: {f:?} / {b:?}"),
    };
    for path in probe_paths(&forward) {
        for method in METHODS {
            let found = forward.lookup(method, &path);
            let name = found.map(|r| r.name.as_str());
            assert_eq!(
                name,
                backward.lookup(method, &path).map(|r| r.name.as_str()),
                "{method} {path} depends on file order"
            );
            match found {
                Some(route) => {
                    assert!(route.methods.iter().any(|m| m.as_str() == method));
                    assert!(route.path.matches(segments(&path)), "{method} {path}");
                }
                None => assert!(
                    !any_route_matches(&forward, method, &path),
                    "{method} {path} matches a route but lookup found none"
                ),
            }
        }
    }
});

/// Fixed paths plus, for every route, paths its pattern matches.
fn probe_paths(set: &PolicySet) -> Vec<String> {
    let mut paths: Vec<String> = ["/", "/api/v1/workflows/a/b", "/a/", "/a"]
        .map(String::from)
        .to_vec();
    for route in set.routes().iter().take(32) {
        let mut base = String::new();
        let mut rest = false;
        for segment in route.path.segments() {
            match segment {
                PatternSegment::Literal(l) => {
                    base.push('/');
                    base.push_str(l);
                }
                PatternSegment::Param(_) => base.push_str("/x"),
                PatternSegment::Rest => rest = true,
            }
        }
        if rest {
            paths.push(format!("{base}/z/y"));
            paths.push(format!("{base}/"));
        }
        if base.is_empty() {
            base.push('/');
        }
        paths.push(base);
    }
    paths
}

fn any_route_matches(set: &PolicySet, method: &str, path: &str) -> bool {
    set.routes()
        .iter()
        .any(|r| r.methods.iter().any(|m| m.as_str() == method) && r.path.matches(segments(path)))
}
