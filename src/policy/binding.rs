//! Tenant binding of a route: `organization_param` names the path or query
//! parameter that must equal the token's organization, `environment_param`
//! the path parameter that carries the environment id (for backends that
//! put it in the path rather than in `?environmentId=`). Resolved once at
//! load time into where the value sits, so a request only indexes.

use super::{PathPattern, PatternSegment};

/// Where a route reads a bound value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamSource {
    /// `{name}` of the route's path: the `segment`th segment (0-based) of the
    /// normalised path.
    Path { name: String, segment: usize },
    /// `?name=` of the query.
    Query { name: String },
}

impl ParamSource {
    pub fn name(&self) -> &str {
        match self {
            ParamSource::Path { name, .. } | ParamSource::Query { name } => name,
        }
    }

    /// `path parameter {tenantId}` / `query parameter tenantId`, for
    /// `explain` and messages.
    pub fn describe(&self) -> String {
        match self {
            ParamSource::Path { name, .. } => format!("path parameter {{{name}}}"),
            ParamSource::Query { name } => format!("query parameter {name}"),
        }
    }
}

/// What a route binds to the token. The default binds nothing and costs a
/// request nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// Must equal the token's organization (403 `organization_mismatch`).
    pub organization: Option<ParamSource>,
    /// The environment id comes from this path parameter instead of the
    /// `environmentId` query parameter (always `ParamSource::Path`).
    pub environment: Option<ParamSource>,
}

impl Binding {
    pub fn is_empty(&self) -> bool {
        self.organization.is_none() && self.environment.is_none()
    }
}

/// The segment of `{name}` in the pattern, if it has one.
fn path_segment(path: &PathPattern, name: &str) -> Option<usize> {
    path.segments()
        .iter()
        .position(|s| matches!(s, PatternSegment::Param(p) if p == name))
}

/// A parameter name as a policy may give it: `[A-Za-z0-9_-]{1,64}`.
fn check_param_name(name: &str) -> Result<(), String> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if name.is_empty() || name.len() > 64 || !plain {
        return Err("must be 1-64 characters of [A-Za-z0-9_-]".into());
    }
    Ok(())
}

/// `organization_param`: a `{param}` of the path when the path has one of
/// that name, else a query parameter.
pub(super) fn organization(path: &PathPattern, name: &str) -> Result<ParamSource, String> {
    check_param_name(name)?;
    if name == "environmentId" || name == "access_token" {
        return Err(format!("{name:?} cannot name the organization"));
    }
    Ok(match path_segment(path, name) {
        Some(segment) => ParamSource::Path {
            name: name.to_string(),
            segment,
        },
        None => ParamSource::Query {
            name: name.to_string(),
        },
    })
}

/// `environment_param`: must be a `{param}` of the path.
pub(super) fn environment(path: &PathPattern, name: &str) -> Result<ParamSource, String> {
    check_param_name(name)?;
    match path_segment(path, name) {
        Some(segment) => Ok(ParamSource::Path {
            name: name.to_string(),
            segment,
        }),
        None => Err(format!(
            "{name:?} is not a {{param}} of path {:?} (the query's environmentId needs no setting)",
            path.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{load_str, ParamSource, PolicyError};
    use crate::scope::default_resources;

    fn load(extra: &str) -> Result<crate::policy::PolicySet, PolicyError> {
        let text = format!(
            "[[route]]\nname = \"r\"\npath = \"/t/{{tenantId}}/e/{{env}}/**\"\nupstream = \"u\"\n{extra}\n"
        );
        load_str("p.toml", &text, &default_resources(), |_| true)
    }

    fn field_of(extra: &str) -> Option<String> {
        load(extra).expect_err("rejected").field
    }

    #[test]
    fn a_parameter_of_the_path_is_read_from_the_path_and_others_from_the_query() {
        let set = load(
            "scope = \"logs:read\"\nworkspace_role = \"member\"\norganization_param = \"tenantId\"\nenvironment_param = \"env\"",
        )
        .expect("valid");
        let b = &set.routes()[0].binding;
        assert_eq!(
            b.organization,
            Some(ParamSource::Path {
                name: "tenantId".into(),
                segment: 1
            })
        );
        assert_eq!(
            b.environment,
            Some(ParamSource::Path {
                name: "env".into(),
                segment: 3
            })
        );
        let set = load("scope = \"logs:read\"\norganization_param = \"org-id\"").expect("valid");
        assert_eq!(
            set.routes()[0].binding.organization,
            Some(ParamSource::Query {
                name: "org-id".into()
            })
        );
    }

    #[test]
    fn bindings_that_cannot_work_are_load_errors_naming_the_field() {
        let cases = [
            ("auth = \"none\"\norganization_param = \"tenantId\"", "organization_param"),
            ("scope = \"logs:read\"\norganization_param = \"\"", "organization_param"),
            ("scope = \"logs:read\"\norganization_param = \"a b\"", "organization_param"),
            ("scope = \"logs:read\"\norganization_param = \"environmentId\"", "organization_param"),
            ("scope = \"logs:read\"\norganization_param = 3", "organization_param"),
            ("scope = \"logs:read\"\nenvironment_param = \"env\"", "environment_param"),
            (
                "scope = \"logs:read\"\nworkspace_role = \"member\"\nenvironment_param = \"environmentId\"",
                "environment_param",
            ),
            (
                "scope = \"logs:read\"\nworkspace_role = \"member\"\norganization_param = \"env\"\nenvironment_param = \"env\"",
                "environment_param",
            ),
        ];
        for (extra, field) in cases {
            assert_eq!(field_of(extra).as_deref(), Some(field), "{extra}");
        }
    }
}
