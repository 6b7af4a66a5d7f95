//! Routes and policy sets (docs/contract.md §5.1) as plain, validated data.
//! `load` turns policy files into a `PolicySet`; `matcher` finds the most
//! specific route for a method and a normalised path.

mod binding;
mod load;
mod matcher;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::limits::RateLimit;
use crate::metrics::{RouteCounters, RouteLabel};
use crate::model::Derived;
use crate::pathnorm;
use crate::scope::{Role, Scope};

pub use binding::{Binding, ParamSource};
pub use load::{load_dir, load_files, load_str, PolicyError};
use matcher::Matcher;

/// The methods a route may list. Requests with any other method match no
/// route (404): unusual methods such as TRACE or CONNECT are never forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
    ];

    /// Exact, case-sensitive (RFC 9110 §9.1).
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of methods; a route without `methods` gets `MethodSet::ALL`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodSet(u8);

impl MethodSet {
    pub const ALL: MethodSet = MethodSet(0x7f);
    pub const EMPTY: MethodSet = MethodSet(0);

    pub fn contains(self, method: Method) -> bool {
        self.0 & method.bit() != 0
    }

    pub fn with(self, method: Method) -> MethodSet {
        MethodSet(self.0 | method.bit())
    }

    pub fn intersection(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.contains(*m))
    }
}

impl FromIterator<Method> for MethodSet {
    fn from_iter<I: IntoIterator<Item = Method>>(iter: I) -> Self {
        iter.into_iter().fold(MethodSet::EMPTY, MethodSet::with)
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Method::as_str))
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PatternSegment {
    /// Matches exactly this (normalised) segment; `""` is a trailing slash.
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Param(String),
    /// `**`: zero or more remaining segments; only ever last.
    Rest,
}

/// A validated path pattern such as `/api/v1/workflows/{id}/**`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<PatternSegment>,
}

impl PathPattern {
    /// Parses a pattern. The error says what is wrong, for the loader to
    /// prefix with file, route and field.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        if !text.starts_with('/') {
            return Err("must start with /".into());
        }
        let raw: Vec<&str> = pathnorm::segments(text).collect();
        let last = raw.len() - 1;
        let mut segments = Vec::with_capacity(raw.len());
        let mut params = BTreeSet::new();
        for (i, s) in raw.iter().enumerate() {
            let segment = if *s == "**" {
                if i != last {
                    return Err("** is only allowed as the last segment".into());
                }
                PatternSegment::Rest
            } else if let Some(name) = s.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!(
                        "parameter {s:?} must be {{name}} with a name of [A-Za-z0-9_]+"
                    ));
                }
                if !params.insert(name) {
                    return Err(format!("parameter {s:?} appears twice"));
                }
                PatternSegment::Param(name.to_string())
            } else {
                if s.is_empty() && i != last {
                    return Err("must not contain an empty segment (//)".into());
                }
                if s.contains('*') {
                    return Err(format!(
                        "segment {s:?}: * is only allowed as a whole last segment ** (use {{name}} for one segment)"
                    ));
                }
                if s.contains('{') || s.contains('}') {
                    return Err(format!(
                        "segment {s:?}: a parameter must be a whole segment {{name}}"
                    ));
                }
                if *s == "." || *s == ".." {
                    return Err("must not contain a dot segment".into());
                }
                let normal = pathnorm::normalize_segment(s.as_bytes(), true)
                    .map_err(|e| format!("segment {s:?}: {e}"))?;
                if normal != *s {
                    return Err(format!(
                        "segment {s:?} is not in normal form and would never match; write {normal:?}"
                    ));
                }
                PatternSegment::Literal(s.to_string())
            };
            segments.push(segment);
        }
        Ok(PathPattern {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> &[PatternSegment] {
        &self.segments
    }

    /// Whether the pattern matches a normalised path's segments, ignoring
    /// any other route (the matcher picks among all routes).
    pub fn matches<'a>(&self, path: impl IntoIterator<Item = &'a str>) -> bool {
        let mut path = path.into_iter();
        for pattern in &self.segments {
            match pattern {
                PatternSegment::Rest => return true,
                PatternSegment::Literal(l) => {
                    if path.next() != Some(l.as_str()) {
                        return false;
                    }
                }
                PatternSegment::Param(_) => {
                    if path.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
            }
        }
        path.next().is_none()
    }

    /// A path this pattern matches, for messages about overlapping routes.
    pub(crate) fn example_path(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                PatternSegment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                PatternSegment::Param(_) => out.push_str("/x"),
                PatternSegment::Rest => {}
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a route demands of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `auth = "none"`: forwarded without any check.
    Public,
    /// `auth = "token"`: a valid token covering `scope`, and when
    /// `workspace_role` is set, that role in the environment's workspace.
    Token {
        scope: Scope,
        workspace_role: Option<Role>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Decide and record, but forward a would-be denial anyway.
    Report,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Unique in the set; a metric label.
    pub name: String,
    /// The file the route came from, for messages.
    pub source: String,
    pub methods: MethodSet,
    pub path: PathPattern,
    pub upstream: String,
    pub auth: Auth,
    pub mode: Mode,
    /// A literal prefix of `path` ending on a segment boundary, no trailing `/`.
    pub strip_prefix: Option<String>,
    /// This route's most frequent metric series, resolved on first use.
    pub counters: Derived<RouteCounters>,
    /// `rate_limit = { … }`: none costs the request nothing.
    pub rate_limit: Option<RateLimit>,
    /// `organization_param` and `environment_param`; empty by default.
    pub binding: Binding,
}

impl Route {
    /// The route's name and metric series, resolved on its first request.
    pub fn metric_label(&self) -> RouteLabel<'_> {
        RouteLabel {
            name: &self.name,
            counters: self.counters.get_or_init(|| RouteCounters::new(&self.name)),
        }
    }

    pub fn required_scope(&self) -> Option<&Scope> {
        match &self.auth {
            Auth::Public => None,
            Auth::Token { scope, .. } => Some(scope),
        }
    }

    pub fn workspace_role(&self) -> Option<Role> {
        match &self.auth {
            Auth::Public => None,
            Auth::Token { workspace_role, .. } => *workspace_role,
        }
    }

    /// The path sent upstream: the normalised path minus `strip_prefix`
    /// (`/` when nothing is left).
    pub fn forward_path<'a>(&self, normalized: &'a str) -> &'a str {
        let Some(prefix) = &self.strip_prefix else {
            return normalized;
        };
        match normalized.strip_prefix(prefix.as_str()) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => normalized,
        }
    }
}

/// An immutable, validated set of routes with its matcher. Cheap to clone;
/// swapped whole on reload.
#[derive(Clone)]
pub struct PolicySet {
    routes: Arc<[Arc<Route>]>,
    matcher: Arc<Matcher>,
    upstreams: Arc<BTreeSet<String>>,
}

impl PolicySet {
    /// Builds the set. Duplicate names and routes that could match the same
    /// method and path with equal specificity are errors.
    pub fn new(routes: Vec<Route>) -> Result<PolicySet, PolicyError> {
        let mut names: HashMap<&str, &Route> = HashMap::new();
        for route in &routes {
            if let Some(first) = names.insert(&route.name, route) {
                return Err(PolicyError::route(
                    &route.source,
                    &route.name,
                    Some("name"),
                    format!("duplicate route name (also defined in {})", first.source),
                ));
            }
        }
        let matcher = Matcher::build(&routes).map_err(|(a, b)| {
            let (first, second) = (&routes[a], &routes[b]);
            let method = first.methods.intersection(second.methods).iter().next();
            PolicyError::route(
                &second.source,
                &second.name,
                Some("path"),
                format!(
                    "{} {} matches the same requests as route {:?} ({}: {}) with equal specificity (e.g. {} {})",
                    second.path,
                    fmt_methods(second.methods),
                    first.name,
                    first.source,
                    first.path,
                    method.map_or("", Method::as_str),
                    second.path.example_path(),
                ),
            )
        })?;
        let upstreams = routes.iter().map(|r| r.upstream.clone()).collect();
        Ok(PolicySet {
            routes: routes.into_iter().map(Arc::new).collect(),
            matcher: Arc::new(matcher),
            upstreams: Arc::new(upstreams),
        })
    }

    /// The most specific route for a method and a normalised path.
    pub fn lookup(&self, method: &str, path: &str) -> Option<&Arc<Route>> {
        let method = Method::parse(method)?;
        // The segments of a path of ordinary depth stay on the stack: this
        // runs on every request.
        let mut inline = [""; 16];
        let mut depth = 0;
        let mut segments = pathnorm::segments(path);
        for (slot, segment) in inline.iter_mut().zip(segments.by_ref()) {
            *slot = segment;
            depth += 1;
        }
        let found = match segments.next() {
            None => self.matcher.find(&inline[..depth], method),
            Some(next) => {
                let mut all = inline.to_vec();
                all.push(next);
                all.extend(segments);
                self.matcher.find(&all, method)
            }
        };
        found.and_then(|i| self.routes.get(i))
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The upstream names the routes use.
    pub fn upstreams(&self) -> &BTreeSet<String> {
        &self.upstreams
    }
}

impl PartialEq for PolicySet {
    fn eq(&self, other: &Self) -> bool {
        self.routes == other.routes
    }
}

impl Eq for PolicySet {}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySet")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

fn fmt_methods(methods: MethodSet) -> String {
    if methods == MethodSet::ALL {
        return "(all methods)".to_string();
    }
    let list: Vec<&str> = methods.iter().map(Method::as_str).collect();
    format!("[{}]", list.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::default_resources;
    use proptest::prelude::*;

    fn set(toml: &str) -> PolicySet {
        load_str("test.toml", toml, &default_resources(), |_| true).expect("valid policy")
    }

    fn route(name: &str, methods: &str, path: &str) -> String {
        let methods = if methods.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = methods.split(' ').map(|m| format!("{m:?}")).collect();
            format!("methods = [{}]\n", list.join(", "))
        };
        format!(
            "[[route]]\nname = {name:?}\n{methods}path = {path:?}\nupstream = \"u\"\nscope = \"logs:read\"\n\n"
        )
    }

    fn matched(set: &PolicySet, method: &str, path: &str) -> Option<String> {
        set.lookup(method, path).map(|r| r.name.clone())
    }

    #[test]
    fn literal_beats_param_beats_rest() {
        let set = set(&[
            route("rest", "", "/a/**"),
            route("param", "", "/a/{id}"),
            route("literal", "", "/a/b"),
        ]
        .concat());
        assert_eq!(matched(&set, "GET", "/a/b").as_deref(), Some("literal"));
        assert_eq!(matched(&set, "GET", "/a/c").as_deref(), Some("param"));
        assert_eq!(matched(&set, "GET", "/a/c/d").as_deref(), Some("rest"));
        assert_eq!(matched(&set, "GET", "/a").as_deref(), Some("rest"));
        assert_eq!(matched(&set, "GET", "/b"), None);
    }

    #[test]
    fn specificity_is_decided_from_the_left() {
        let set = set(&[
            route("literal-first", "", "/a/b/{x}"),
            route("param-first", "", "/a/{y}/c"),
        ]
        .concat());
        assert_eq!(
            matched(&set, "GET", "/a/b/c").as_deref(),
            Some("literal-first")
        );
        assert_eq!(
            matched(&set, "GET", "/a/z/c").as_deref(),
            Some("param-first")
        );
    }

    #[test]
    fn a_literal_branch_that_fails_deeper_falls_back_to_a_param() {
        let set = set(&[route("deep", "", "/a/b/c"), route("param", "", "/a/{x}/d")].concat());
        assert_eq!(matched(&set, "GET", "/a/b/d").as_deref(), Some("param"));
    }

    #[test]
    fn an_exact_pattern_beats_rest_matching_zero_segments() {
        let set = set(&[route("rest", "", "/a/**"), route("exact", "", "/a")].concat());
        assert_eq!(matched(&set, "GET", "/a").as_deref(), Some("exact"));
        assert_eq!(matched(&set, "GET", "/a/").as_deref(), Some("rest"));
    }

    #[test]
    fn paths_of_any_depth_match() {
        let path = |n: usize| (1..=n).map(|i| format!("/{i}")).collect::<String>();
        let set = set(&[
            route("rest", "", "/1/**"),
            route("sixteen", "", &path(16)),
            route("seventeen", "", &path(17)),
            route("param", "", &format!("{}/{{x}}", path(17))),
        ]
        .concat());
        assert_eq!(matched(&set, "GET", &path(16)).as_deref(), Some("sixteen"));
        assert_eq!(
            matched(&set, "GET", &path(17)).as_deref(),
            Some("seventeen")
        );
        assert_eq!(matched(&set, "GET", &path(18)).as_deref(), Some("param"));
        assert_eq!(matched(&set, "GET", &path(15)).as_deref(), Some("rest"));
        assert_eq!(matched(&set, "GET", &path(40)).as_deref(), Some("rest"));
        assert_eq!(
            matched(&set, "GET", &format!("{}/", path(17))).as_deref(),
            Some("rest")
        );
    }

    #[test]
    fn trailing_slash_is_significant() {
        let set = set(&[route("slash", "", "/a/"), route("param", "", "/b/{x}")].concat());
        assert_eq!(matched(&set, "GET", "/a/").as_deref(), Some("slash"));
        assert_eq!(matched(&set, "GET", "/a"), None);
        assert_eq!(matched(&set, "GET", "/b/"), None);
        assert_eq!(matched(&set, "GET", "/b/x").as_deref(), Some("param"));
    }

    #[test]
    fn rest_matches_a_trailing_empty_segment() {
        let set = set(&route("rest", "", "/a/**"));
        assert_eq!(matched(&set, "GET", "/a/").as_deref(), Some("rest"));
        assert_eq!(matched(&set, "GET", "/ab"), None);
    }

    #[test]
    fn root_pattern_matches_only_the_root() {
        let set = set(&route("root", "", "/"));
        assert_eq!(matched(&set, "GET", "/").as_deref(), Some("root"));
        assert_eq!(matched(&set, "GET", "/a"), None);
    }

    #[test]
    fn a_method_outside_the_most_specific_route_falls_back_to_a_less_specific_one() {
        let set = set(&[
            route("read", "GET HEAD", "/a/**"),
            route("admin", "POST", "/a/admin/**"),
        ]
        .concat());
        assert_eq!(
            matched(&set, "POST", "/a/admin/x").as_deref(),
            Some("admin")
        );
        assert_eq!(matched(&set, "GET", "/a/admin/x").as_deref(), Some("read"));
        assert_eq!(matched(&set, "DELETE", "/a/x"), None);
    }

    #[test]
    fn omitted_methods_mean_the_seven_standard_ones_and_nothing_else() {
        let set = set(&route("any", "", "/a"));
        for m in Method::ALL {
            assert_eq!(
                matched(&set, m.as_str(), "/a").as_deref(),
                Some("any"),
                "{m:?}"
            );
        }
        assert_eq!(matched(&set, "TRACE", "/a"), None);
        assert_eq!(matched(&set, "get", "/a"), None);
    }

    #[test]
    fn routes_with_disjoint_methods_may_share_a_pattern() {
        let set = set(&[route("r", "GET", "/a/{x}"), route("w", "POST", "/a/{y}")].concat());
        assert_eq!(matched(&set, "POST", "/a/1").as_deref(), Some("w"));
        assert_eq!(set.len(), 2);
        assert_eq!(set.upstreams().iter().collect::<Vec<_>>(), ["u"]);
    }

    #[test]
    fn strip_prefix_removes_whole_segments() {
        let mut r = set(&route("r", "", "/api/v1/**")).routes()[0]
            .as_ref()
            .clone();
        r.strip_prefix = Some("/api/v1".into());
        assert_eq!(r.forward_path("/api/v1/workflows"), "/workflows");
        assert_eq!(r.forward_path("/api/v1"), "/");
        assert_eq!(r.forward_path("/api/v1/"), "/");
        assert_eq!(r.forward_path("/api/v10"), "/api/v10");
    }

    #[test]
    fn pattern_matches_agrees_with_its_definition() {
        let p = PathPattern::parse("/a/{x}/**").expect("valid");
        assert!(p.matches(["a", "b"]));
        assert!(p.matches(["a", "b", "c", ""]));
        assert!(!p.matches(["a", ""]));
        assert!(!p.matches(["a"]));
    }

    #[test]
    fn lookup_over_a_thousand_routes_is_fast() {
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&route(
                &format!("r{i}"),
                "",
                &format!("/api/v{}/res{}/{{id}}/**", i % 10, i),
            ));
        }
        let set = set(&text);
        assert_eq!(set.len(), 1000);
        let start = std::time::Instant::now();
        for i in 0..10_000 {
            let path = format!("/api/v{}/res{}/x/y/z", i % 10, i % 1000);
            assert!(set.lookup("GET", &path).is_some());
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        let seg = prop::sample::select(vec!["a", "b", "{}", ""]);
        (prop::collection::vec(seg, 0..4), any::<bool>()).prop_map(|(segs, rest)| {
            let mut out: Vec<String> = segs
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.is_empty())
                .map(|(i, s)| {
                    if *s == "{}" {
                        format!("{{p{i}}}")
                    } else {
                        s.to_string()
                    }
                })
                .collect();
            if rest {
                out.push("**".into());
            }
            format!("/{}", out.join("/"))
        })
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let seg = prop::sample::select(vec!["a", "b", "c"]);
        (prop::collection::vec(seg, 0..5), any::<bool>()).prop_map(|(segs, slash)| {
            let tail = if slash && !segs.is_empty() { "/" } else { "" };
            format!("/{}{tail}", segs.join("/"))
        })
    }

    /// The reference definition: among the routes that match, the greatest
    /// rank sequence (literal > param > end of pattern > `**`) wins.
    fn most_specific_by_brute_force(set: &PolicySet, method: &str, path: &str) -> Option<String> {
        let method = Method::parse(method)?;
        let rank = |r: &Route| -> Vec<u8> {
            let mut ranks: Vec<u8> = r
                .path
                .segments()
                .iter()
                .map(|s| match s {
                    PatternSegment::Literal(_) => 4,
                    PatternSegment::Param(_) => 3,
                    PatternSegment::Rest => 1,
                })
                .collect();
            if ranks.last() != Some(&1) {
                ranks.push(2);
            }
            ranks
        };
        set.routes()
            .iter()
            .filter(|r| {
                r.methods.contains(method) && r.path.matches(crate::pathnorm::segments(path))
            })
            .max_by_key(|r| rank(r))
            .map(|r| r.name.clone())
    }

    proptest! {
        #[test]
        fn matching_does_not_depend_on_file_order(
            specs in prop::collection::vec(
                (pattern_strategy(), prop::sample::select(vec!["GET", "POST", "GET POST", ""])),
                1..12,
            ),
            paths in prop::collection::vec(path_strategy(), 1..10),
            seed in any::<u64>(),
        ) {
            // Keep each route that does not conflict with those kept before it.
            let mut routes: Vec<String> = Vec::new();
            for (i, (pattern, methods)) in specs.iter().enumerate() {
                let candidate = route(&format!("r{i}"), methods, pattern);
                let text = format!("{}{candidate}", routes.concat());
                if load_str("t.toml", &text, &default_resources(), |_| true).is_ok() {
                    routes.push(candidate);
                }
            }
            let forward = set(&routes.concat());
            let mut shuffled = routes.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let backward = set(&shuffled.concat());
            for path in &paths {
                for m in ["GET", "POST", "DELETE"] {
                    let a = matched(&forward, m, path);
                    prop_assert_eq!(&a, &matched(&backward, m, path), "{} {}", m, path);
                    prop_assert_eq!(&a, &most_specific_by_brute_force(&forward, m, path));
                }
            }
        }

        #[test]
        fn matching_does_not_depend_on_the_order_of_the_files(
            specs in prop::collection::vec(
                (
                    pattern_strategy(),
                    prop::sample::select(vec!["GET", "POST", "GET POST", ""]),
                    0..4usize,
                ),
                1..12,
            ),
            paths in prop::collection::vec(path_strategy(), 1..10),
            order in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let resources = default_resources();
            let load = |files: &[String], order: &[usize]| {
                let named: Vec<(String, &str)> =
                    order.iter().map(|&f| (format!("f{f}.toml"), files[f].as_str())).collect();
                load_files(
                    named.iter().map(|(label, text)| (label.as_str(), *text)),
                    &resources,
                    |_| true,
                )
            };
            let natural: Vec<usize> = (0..4).collect();
            // Every route, conflicting or not: whether the set loads must
            // not depend on the order either.
            let mut all = vec![String::new(); 4];
            // Only the routes that do not conflict with those kept before.
            let mut kept = vec![String::new(); 4];
            for (i, (pattern, methods, file)) in specs.iter().enumerate() {
                let candidate = route(&format!("r{i}"), methods, pattern);
                all[*file].push_str(&candidate);
                let mut trial = kept.clone();
                trial[*file].push_str(&candidate);
                if load(&trial, &natural).is_ok() {
                    kept = trial;
                }
            }
            prop_assert_eq!(load(&all, &natural).is_ok(), load(&all, &order).is_ok());
            let forward = load(&kept, &natural).expect("kept routes load");
            let shuffled = load(&kept, &order).expect("kept routes load in any order");
            for path in &paths {
                for m in ["GET", "POST", "DELETE"] {
                    let a = matched(&forward, m, path);
                    prop_assert_eq!(&a, &matched(&shuffled, m, path), "{} {}", m, path);
                    prop_assert_eq!(&a, &most_specific_by_brute_force(&forward, m, path));
                }
            }
        }
    }
}
