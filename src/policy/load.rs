//! Policy files: every `*.toml` of a directory, read in file-name order,
//! parsed into serde file structs that reject unknown keys, then validated
//! into `Route`s. Errors name the file, the route and the field.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::binding;
use super::{
    Auth, Binding, Method, MethodSet, Mode, PathPattern, PatternSegment, PolicySet, Route,
};
use crate::limits::RateLimit;
use crate::scope::{Role, Scope};

/// A policy load failure: `policies/x.toml: route "workflows-write": field scope: …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    /// The route's name, or `#N` (its position in the file) when it has none.
    pub route: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl PolicyError {
    fn file(file: &str, message: impl Into<String>) -> PolicyError {
        PolicyError {
            file: file.to_string(),
            route: None,
            field: None,
            message: message.into(),
        }
    }

    pub(super) fn route(
        file: &str,
        route: &str,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError {
            file: file.to_string(),
            route: Some(route.to_string()),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        match &self.route {
            Some(r) if r.starts_with('#') => write!(f, ": route {r}")?,
            Some(r) => write!(f, ": route {r:?}")?,
            None => {}
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

/// One `[[route]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    name: String,
    methods: Option<Vec<String>>,
    path: String,
    upstream: String,
    scope: Option<String>,
    workspace_role: Option<String>,
    auth: Option<String>,
    mode: Option<String>,
    strip_prefix: Option<String>,
    rate_limit: Option<toml::Value>,
    organization_param: Option<String>,
    environment_param: Option<String>,
}

const ROUTE_KEYS: [&str; 12] = [
    "name",
    "methods",
    "path",
    "upstream",
    "scope",
    "workspace_role",
    "auth",
    "mode",
    "strip_prefix",
    "rate_limit",
    "organization_param",
    "environment_param",
];
const REQUIRED_KEYS: [&str; 3] = ["name", "path", "upstream"];

/// Loads every `*.toml` file of `dir` (sorted by name; names starting with
/// `.` and non-files are skipped; symlinks are followed). A directory with no
/// route at all is an error: it would answer 404 to everything.
pub fn load_dir(
    dir: &Path,
    resources: &[String],
    upstream_exists: impl Fn(&str) -> bool,
) -> Result<PolicySet, PolicyError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PolicyError::file(&shown, format!("cannot read the policy directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            PolicyError::file(&shown, format!("cannot read the policy directory: {e}"))
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !name.ends_with(".toml") || !path.is_file() {
            continue;
        }
        paths.push(path);
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PolicyError::file(&label, format!("cannot read: {e}")))?;
        files.push((label, text));
    }
    let set = load_files(
        files.iter().map(|(l, t)| (l.as_str(), t.as_str())),
        resources,
        upstream_exists,
    )?;
    if set.is_empty() {
        return Err(PolicyError::file(
            &shown,
            "no [[route]] found in any *.toml file",
        ));
    }
    Ok(set)
}

/// Loads one file's text; `label` names it in errors.
pub fn load_str(
    label: &str,
    text: &str,
    resources: &[String],
    upstream_exists: impl Fn(&str) -> bool,
) -> Result<PolicySet, PolicyError> {
    load_files([(label, text)], resources, upstream_exists)
}

/// Loads several files, given as `(label, text)` in the order to read them.
pub fn load_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
    resources: &[String],
    upstream_exists: impl Fn(&str) -> bool,
) -> Result<PolicySet, PolicyError> {
    let mut routes = Vec::new();
    for (label, text) in files {
        parse_file(label, text, resources, &upstream_exists, &mut routes)?;
    }
    PolicySet::new(routes)
}

fn parse_file(
    label: &str,
    text: &str,
    resources: &[String],
    upstream_exists: &impl Fn(&str) -> bool,
    routes: &mut Vec<Route>,
) -> Result<(), PolicyError> {
    let mut doc: toml::Table = toml::from_str(text)
        .map_err(|e| PolicyError::file(label, e.to_string().trim_end().to_string()))?;
    if let Some(key) = doc.keys().find(|k| *k != "route") {
        return Err(PolicyError {
            field: Some(key.clone()),
            ..PolicyError::file(
                label,
                "unknown key (a policy file holds only [[route]] tables)",
            )
        });
    }
    let Some(list) = doc.remove("route") else {
        return Ok(());
    };
    let toml::Value::Array(list) = list else {
        return Err(PolicyError::file(
            label,
            "route must be written as [[route]] tables",
        ));
    };
    for (i, value) in list.into_iter().enumerate() {
        let toml::Value::Table(table) = value else {
            return Err(PolicyError::file(
                label,
                "route must be written as [[route]] tables",
            ));
        };
        let id = match table.get("name") {
            Some(toml::Value::String(name)) if !name.is_empty() => name.clone(),
            _ => format!("#{}", i + 1),
        };
        if let Some((field, message)) = diagnose(&table) {
            return Err(PolicyError::route(label, &id, Some(&field), message));
        }
        let file: RouteFile = toml::Value::Table(table)
            .try_into()
            .map_err(|e| PolicyError::route(label, &id, None, e.message().to_string()))?;
        let route = validate(label, file, resources, upstream_exists)
            .map_err(|(field, message)| PolicyError::route(label, &id, Some(field), message))?;
        routes.push(route);
    }
    Ok(())
}

/// Finds unknown keys, missing keys and wrong types before serde does, so
/// that the error can name the field: `(field, message)`.
fn diagnose(table: &toml::Table) -> Option<(String, String)> {
    if let Some(key) = table.keys().find(|k| !ROUTE_KEYS.contains(&k.as_str())) {
        return Some((
            printable(key),
            format!("unknown key (allowed: {})", ROUTE_KEYS.join(", ")),
        ));
    }
    if let Some(key) = REQUIRED_KEYS.iter().find(|k| !table.contains_key(**k)) {
        return Some((key.to_string(), "missing".into()));
    }
    for key in ROUTE_KEYS {
        let ok = match (key, table.get(key)) {
            (_, None) => true,
            ("methods", Some(toml::Value::Array(items))) => items.iter().all(toml::Value::is_str),
            ("methods", Some(_)) => false,
            // A table, checked with its keys by `RateLimit::parse`.
            ("rate_limit", Some(_)) => true,
            (_, Some(value)) => value.is_str(),
        };
        if !ok {
            let expected = if key == "methods" {
                "expected a list of strings"
            } else {
                "expected a string"
            };
            return Some((key.to_string(), expected.into()));
        }
    }
    None
}

type FieldError = (&'static str, String);

fn validate(
    label: &str,
    file: RouteFile,
    resources: &[String],
    upstream_exists: &impl Fn(&str) -> bool,
) -> Result<Route, FieldError> {
    check_name(&file.name).map_err(|m| ("name", m))?;
    let methods = parse_methods(file.methods.as_deref()).map_err(|m| ("methods", m))?;
    let path = PathPattern::parse(&file.path).map_err(|m| ("path", m))?;
    if file.upstream.is_empty() {
        return Err(("upstream", "must not be empty".into()));
    }
    if !upstream_exists(&file.upstream) {
        return Err((
            "upstream",
            format!(
                "unknown upstream {:?} (not a key of [upstreams])",
                file.upstream
            ),
        ));
    }
    let workspace_role = match file.workspace_role.as_deref() {
        None | Some("none") => None,
        Some(s) => Some(Role::parse(s).ok_or_else(|| {
            (
                "workspace_role",
                format!("{:?} is not one of none, member, admin", printable(s)),
            )
        })?),
    };
    let auth = match file.auth.as_deref() {
        None | Some("token") => {
            let scope = file.scope.as_deref().ok_or((
                "scope",
                "missing (required unless auth = \"none\")".to_string(),
            ))?;
            let scope = Scope::parse(scope, resources).map_err(|e| ("scope", e.to_string()))?;
            Auth::Token {
                scope,
                workspace_role,
            }
        }
        Some("none") => {
            if file.scope.is_some() {
                return Err(("scope", "not allowed with auth = \"none\"".into()));
            }
            if workspace_role.is_some() {
                return Err((
                    "workspace_role",
                    "must be \"none\" with auth = \"none\"".into(),
                ));
            }
            Auth::Public
        }
        Some(s) => {
            return Err((
                "auth",
                format!("{:?} is not one of token, none", printable(s)),
            ));
        }
    };
    let mode = match file.mode.as_deref() {
        None | Some("enforce") => Mode::Enforce,
        Some("report") => Mode::Report,
        Some(s) => {
            return Err((
                "mode",
                format!("{:?} is not one of enforce, report", printable(s)),
            ))
        }
    };
    let strip_prefix = match file.strip_prefix.as_deref() {
        None | Some("") => None,
        Some(prefix) => Some(check_strip_prefix(prefix, &path).map_err(|m| ("strip_prefix", m))?),
    };
    let rate_limit = file
        .rate_limit
        .as_ref()
        .map(|v| RateLimit::parse(v, mode, auth == Auth::Public))
        .transpose()
        .map_err(|m| ("rate_limit", m))?;
    let binding = bind(&file, &path, &auth)?;
    Ok(Route {
        name: file.name,
        source: label.to_string(),
        methods,
        path,
        upstream: file.upstream,
        auth,
        mode,
        strip_prefix,
        counters: Default::default(),
        rate_limit,
        binding,
    })
}

/// `organization_param` and `environment_param` (`super::binding`).
fn bind(file: &RouteFile, path: &PathPattern, auth: &Auth) -> Result<Binding, FieldError> {
    let organization = match file.organization_param.as_deref() {
        None => None,
        Some(_) if *auth == Auth::Public => {
            return Err((
                "organization_param",
                "not allowed with auth = \"none\" (there is no token to compare with)".into(),
            ))
        }
        Some(name) => {
            Some(binding::organization(path, name).map_err(|m| ("organization_param", m))?)
        }
    };
    let environment = match file.environment_param.as_deref() {
        None => None,
        Some(_) if !matches!(auth, Auth::Token { workspace_role: Some(_), .. }) => {
            return Err((
                "environment_param",
                "needs workspace_role = \"member\" or \"admin\" (only a workspace check reads the environment)".into(),
            ))
        }
        Some(name) => Some(binding::environment(path, name).map_err(|m| ("environment_param", m))?),
    };
    if let (Some(o), Some(e)) = (&organization, &environment) {
        if o.name() == e.name() {
            return Err((
                "environment_param",
                "must not name the same parameter as organization_param".into(),
            ));
        }
    }
    Ok(Binding {
        organization,
        environment,
    })
}

/// Route names are metric labels: short, plain, and never `-` (the label of
/// requests that match no route).
fn check_name(name: &str) -> Result<(), String> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > 128 || !plain {
        return Err("must be 1-128 characters of [A-Za-z0-9._-]".into());
    }
    if name == "-" {
        return Err("\"-\" is reserved for requests that match no route".into());
    }
    Ok(())
}

/// Omitted = every method of the standard set; a list must not be empty.
fn parse_methods(methods: Option<&[String]>) -> Result<MethodSet, String> {
    let Some(methods) = methods else {
        return Ok(MethodSet::ALL);
    };
    if methods.is_empty() {
        return Err("must not be empty (omit the key to allow every method)".into());
    }
    let mut seen = BTreeSet::new();
    for m in methods {
        let method = Method::parse(m).ok_or_else(|| {
            format!(
                "{:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (upper case)",
                printable(m)
            )
        })?;
        if !seen.insert(method) {
            return Err(format!("{m} is listed twice"));
        }
    }
    Ok(seen.into_iter().collect())
}

fn check_strip_prefix(prefix: &str, path: &PathPattern) -> Result<String, String> {
    let not_a_prefix = || {
        format!(
            "must be a literal prefix of path {:?} ending on a segment boundary, without a trailing /",
            path.as_str()
        )
    };
    if !prefix.starts_with('/') || prefix.ends_with('/') {
        return Err(not_a_prefix());
    }
    let wanted = crate::pathnorm::segments(prefix);
    let mut have = path.segments().iter();
    for w in wanted {
        match have.next() {
            Some(PatternSegment::Literal(l)) if l == w => {}
            _ => return Err(not_a_prefix()),
        }
    }
    Ok(prefix.to_string())
}

/// Operator input echoed in a message: cut and escaped.
fn printable(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    cut.escape_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::default_resources;

    const BASE: &str = "name = \"r\"\npath = \"/a/**\"\nupstream = \"backend\"\n";

    fn load(text: &str) -> Result<PolicySet, PolicyError> {
        load_str("policies/x.toml", text, &default_resources(), |u| {
            u == "backend"
        })
    }

    /// Loads one route made of `BASE` plus `extra` lines and returns the error.
    fn error_of(extra: &str) -> PolicyError {
        let text = format!("[[route]]\n{BASE}{extra}\n");
        load(&text).expect_err("should be rejected")
    }

    fn field_of(extra: &str) -> Option<String> {
        error_of(extra).field
    }

    #[test]
    fn shipped_example_policy_loads() {
        let text = include_str!("../../policies/example.toml");
        let set = load_str("policies/example.toml", text, &default_resources(), |u| {
            u == "backend"
        })
        .expect("the shipped example is valid");
        assert_eq!(set.len(), 1 + 7 * 3);
        assert_eq!(set.upstreams().iter().collect::<Vec<_>>(), ["backend"]);
        let name = |m: &str, p: &str| set.lookup(m, p).map(|r| r.name.clone());
        assert_eq!(
            name("GET", "/api/v1/workflows").as_deref(),
            Some("workflows-read")
        );
        assert_eq!(
            name("POST", "/api/v1/knowledge/x").as_deref(),
            Some("knowledge-write")
        );
        assert_eq!(
            name("GET", "/api/v1/logs/admin/x").as_deref(),
            Some("logs-admin")
        );
        assert_eq!(name("HEAD", "/api/v1/status").as_deref(), Some("status"));
        assert_eq!(
            set.route("status").map(|r| r.auth.clone()),
            Some(Auth::Public)
        );
        let admin = set.route("tools-admin").expect("route");
        assert_eq!(admin.workspace_role(), Some(Role::Admin));
        assert_eq!(
            admin.required_scope().map(|s| s.to_string()).as_deref(),
            Some("tools:write")
        );
        assert_eq!(name("GET", "/api/v2/workflows"), None);
    }

    #[test]
    fn shipped_example_admin_paths_need_the_admin_route_for_every_method() {
        let text = include_str!("../../policies/example.toml");
        let set = load_str("policies/example.toml", text, &default_resources(), |u| {
            u == "backend"
        })
        .expect("the shipped example is valid");
        for resource in default_resources().iter() {
            let admin = format!("{resource}-admin");
            for path in ["admin", "admin/", "admin/x", "admin/x/y"] {
                let path = format!("/api/v1/{resource}/{path}");
                for method in crate::policy::Method::ALL {
                    let route = set.lookup(method.as_str(), &path).map(|r| r.name.as_str());
                    assert_eq!(route, Some(admin.as_str()), "{method:?} {path}");
                }
            }
        }
    }

    #[test]
    fn a_minimal_route_gets_the_documented_defaults() {
        let set = load(&format!("[[route]]\n{BASE}scope = \"logs:read\"\n")).expect("valid");
        let r = &set.routes()[0];
        assert_eq!(r.methods, MethodSet::ALL);
        assert_eq!(r.mode, Mode::Enforce);
        assert_eq!(r.workspace_role(), None);
        assert_eq!(r.strip_prefix, None);
        assert_eq!(r.source, "policies/x.toml");
    }

    #[test]
    fn errors_name_file_route_and_field() {
        let e = error_of("scope = \"payroll:read\"");
        assert_eq!(e.route.as_deref(), Some("r"));
        assert_eq!(e.field.as_deref(), Some("scope"));
        let text = e.to_string();
        assert!(
            text.starts_with("policies/x.toml: route \"r\": field scope: "),
            "{text}"
        );
    }

    #[test]
    fn every_invalid_field_is_a_load_error_naming_the_field() {
        let cases = [
            ("scope = \"logs:read\"\ncolour = \"red\"", "colour"),
            ("scope = \"logs\"", "scope"),
            ("scope = \"logs:delete\"", "scope"),
            ("scope = \"payroll:read\"", "scope"),
            ("scope = 3", "scope"),
            ("", "scope"),
            ("auth = \"none\"\nscope = \"logs:read\"", "scope"),
            (
                "scope = \"logs:read\"\nworkspace_role = \"owner\"",
                "workspace_role",
            ),
            (
                "auth = \"none\"\nworkspace_role = \"member\"",
                "workspace_role",
            ),
            ("scope = \"logs:read\"\nmethods = [\"get\"]", "methods"),
            ("scope = \"logs:read\"\nmethods = [\"TRACE\"]", "methods"),
            ("scope = \"logs:read\"\nmethods = []", "methods"),
            (
                "scope = \"logs:read\"\nmethods = [\"GET\", \"GET\"]",
                "methods",
            ),
            ("scope = \"logs:read\"\nmethods = \"GET\"", "methods"),
            ("scope = \"logs:read\"\nauth = \"basic\"", "auth"),
            ("scope = \"logs:read\"\nmode = \"audit\"", "mode"),
            (
                "scope = \"logs:read\"\nstrip_prefix = \"/b\"",
                "strip_prefix",
            ),
            (
                "scope = \"logs:read\"\nstrip_prefix = \"/a/\"",
                "strip_prefix",
            ),
            (
                "scope = \"logs:read\"\nstrip_prefix = \"a\"",
                "strip_prefix",
            ),
            (
                "scope = \"logs:read\"\nrate_limit = \"100/m\"",
                "rate_limit",
            ),
            (
                "scope = \"logs:read\"\nrate_limit = { requests = 0, per = \"1s\", by = \"client\" }",
                "rate_limit",
            ),
            (
                "auth = \"none\"\nrate_limit = { requests = 5, per = \"1s\", by = \"client\" }",
                "rate_limit",
            ),
        ];
        for (extra, field) in cases {
            assert_eq!(field_of(extra).as_deref(), Some(field), "{extra}");
        }
    }

    #[test]
    fn a_rate_limit_loads_and_its_errors_name_the_key_inside() {
        let set = load(&format!(
            "[[route]]\n{BASE}scope = \"logs:read\"\nmode = \"report\"\nrate_limit = {{ requests = 10, per = \"1m\", by = \"service_account\" }}\n"
        ))
        .expect("valid");
        let rl = set.routes()[0].rate_limit.clone().expect("a limit");
        assert_eq!(rl.describe(), "10 per 1m by service_account, mode report");
        let e = error_of(
            "scope = \"logs:read\"\nrate_limit = { requests = 10, per = \"5m\", by = \"client\" }",
        );
        assert_eq!(
            e.to_string(),
            "policies/x.toml: route \"r\": field rate_limit: per: \"5m\" is not one of 1s, 1m, 1h"
        );
        assert_eq!(
            load(&format!("[[route]]\n{BASE}scope = \"logs:read\"\n"))
                .expect("valid")
                .routes()[0]
                .rate_limit,
            None
        );
    }

    #[test]
    fn bad_names_paths_and_upstreams_are_rejected() {
        let route = |name: &str, path: &str, upstream: &str| {
            format!("[[route]]\nname = {name:?}\npath = {path:?}\nupstream = {upstream:?}\nscope = \"logs:read\"\n")
        };
        let field = |text: String| load(&text).expect_err("rejected").field;
        for path in [
            "a/b",
            "/a//b",
            "/a/**/b",
            "/a/*",
            "/a/b*",
            "/a/{x",
            "/a/v{x}",
            "/a/{x-y}",
            "/a/{}",
            "/a/{x}/{x}",
            "/a/./b",
            "/a/%7e",
            "/a/%2F",
            "/a/%2f",
        ] {
            assert_eq!(
                field(route("r", path, "backend")).as_deref(),
                Some("path"),
                "{path}"
            );
        }
        assert_eq!(
            field(route("r", "/a", "other")).as_deref(),
            Some("upstream")
        );
        assert_eq!(field(route("-", "/a", "backend")).as_deref(), Some("name"));
        assert_eq!(
            field(route("a b", "/a", "backend")).as_deref(),
            Some("name")
        );
        assert_eq!(field(route("", "/a", "backend")).as_deref(), Some("name"));
        let missing = load("[[route]]\nname = \"r\"\npath = \"/a\"\n").expect_err("rejected");
        assert_eq!(missing.field.as_deref(), Some("upstream"));
        let unnamed =
            load("[[route]]\npath = \"/a\"\nupstream = \"backend\"\n").expect_err("rejected");
        assert_eq!(
            unnamed.to_string(),
            "policies/x.toml: route #1: field name: missing"
        );
    }

    #[test]
    fn good_patterns_and_prefixes_load() {
        for (path, prefix) in [
            ("/", ""),
            ("/**", ""),
            ("/a/", ""),
            ("/a/{id}/b/**", "/a"),
            ("/api/v1/x", "/api/v1/x"),
            ("/a:b/@c/~d/%C3%A9", "/a:b"),
        ] {
            let text = format!(
                "[[route]]\nname = \"r\"\npath = {path:?}\nupstream = \"backend\"\nscope = \"logs:read\"\nstrip_prefix = {prefix:?}\n"
            );
            assert!(load(&text).is_ok(), "{path} {prefix}: {:?}", load(&text));
        }
    }

    #[test]
    fn unknown_top_level_keys_and_bad_toml_are_rejected() {
        let e = load("[server]\nlisten = \"x\"\n").expect_err("rejected");
        assert_eq!(e.field.as_deref(), Some("server"));
        let e = load("route = 1\n").expect_err("rejected");
        assert!(e.message.contains("[[route]]"));
        let e = load("[[route]\n").expect_err("rejected");
        assert_eq!(e.file, "policies/x.toml");
        assert!(load("").expect("an empty file is valid").is_empty());
    }

    #[test]
    fn duplicate_route_names_are_rejected_across_files() {
        let a = format!("[[route]]\n{BASE}scope = \"logs:read\"\nmethods = [\"GET\"]\n");
        let b = format!("[[route]]\n{BASE}scope = \"logs:write\"\nmethods = [\"POST\"]\n");
        let e = load_files(
            [("a.toml", a.as_str()), ("b.toml", b.as_str())],
            &default_resources(),
            |_| true,
        )
        .expect_err("rejected");
        assert_eq!(
            (e.file.as_str(), e.field.as_deref()),
            ("b.toml", Some("name"))
        );
        assert!(e.message.contains("a.toml"), "{e}");
    }

    #[test]
    fn routes_that_could_match_the_same_request_with_equal_specificity_are_rejected() {
        let two = |p1: &str, m1: &str, p2: &str, m2: &str| {
            format!(
                "[[route]]\nname = \"one\"\npath = {p1:?}\nmethods = {m1}\nupstream = \"backend\"\nscope = \"logs:read\"\n\
                 [[route]]\nname = \"two\"\npath = {p2:?}\nmethods = {m2}\nupstream = \"backend\"\nscope = \"logs:read\"\n"
            )
        };
        let get = "[\"GET\"]";
        let get_post = "[\"GET\", \"POST\"]";
        let post = "[\"POST\"]";
        let e = load(&two("/a/{x}", get, "/a/{y}", get_post)).expect_err("same shape, GET in both");
        assert_eq!(
            (e.route.as_deref(), e.field.as_deref()),
            (Some("two"), Some("path"))
        );
        assert!(
            e.message.contains("\"one\"") && e.message.contains("GET /a/x"),
            "{e}"
        );
        assert!(load(&two("/a/**", get, "/a/**", get)).is_err());
        assert!(load(&two("/a", get, "/a", get)).is_err());
        assert!(load(&two("/a/{x}", get, "/a/{y}", post)).is_ok());
        assert!(load(&two("/a/{x}", get, "/a/b", get)).is_ok());
        assert!(load(&two("/a", get, "/a/**", get)).is_ok());
        assert!(load(&two("/a/", get, "/a", get)).is_ok());
        assert!(load(&two("/{x}/b", get, "/a/{y}", get)).is_ok());
    }

    #[test]
    fn a_directory_is_read_in_name_order_skipping_hidden_and_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write =
            |name: &str, body: &str| std::fs::write(dir.path().join(name), body).expect("write");
        write(
            "b.toml",
            &format!("[[route]]\n{BASE}scope = \"logs:read\"\nmethods = [\"GET\"]\n"),
        );
        write(
            "a.toml",
            "[[route]]\nname = \"first\"\npath = \"/z\"\nupstream = \"backend\"\nauth = \"none\"\n",
        );
        write(".#b.toml", "not toml at all [");
        write("notes.txt", "not toml at all [");
        std::fs::create_dir(dir.path().join("sub.toml")).expect("mkdir");
        let set = load_dir(dir.path(), &default_resources(), |u| u == "backend").expect("valid");
        let names: Vec<&str> = set.routes().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["first", "r"]);

        write(
            "c.toml",
            "[[route]]\nname = \"bad\"\npath = \"/y\"\nupstream = \"nowhere\"\nauth = \"none\"\n",
        );
        let e =
            load_dir(dir.path(), &default_resources(), |u| u == "backend").expect_err("rejected");
        assert!(e.to_string().ends_with("c.toml: route \"bad\": field upstream: unknown upstream \"nowhere\" (not a key of [upstreams])"), "{e}");
    }

    #[test]
    fn a_directory_without_routes_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load_dir(dir.path(), &default_resources(), |_| true).is_err());
        assert!(load_dir(&dir.path().join("missing"), &default_resources(), |_| true).is_err());
    }
}
