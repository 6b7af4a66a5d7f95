//! A route's bound parameters read from a request (the policy side is
//! `policy::binding`): the organization that must equal the token's, and an
//! environment id taken from the path. Values come from the normalised path
//! the route matched, and the query is read the way an upstream framework
//! would: a repeat, a spelling some framework reads as the same name, a path
//! and a query that disagree, or a raw `;` in the query make the value
//! ambiguous, and an ambiguous value is refused rather than guessed.

use std::borrow::Cow;

use super::facts::{canonically_named, EnvironmentParam, RequestFacts};
use super::outcome::{DenyReason, RequestProblem};
use super::pathnorm::{self, Target};
use crate::ids;
use crate::model::TokenRecord;
use crate::policy::{ParamSource, Route};

/// A query parameter as an upstream could read it.
#[derive(Debug, PartialEq, Eq)]
enum QueryParam {
    Missing,
    One(String),
    /// Repeated, present under an alias spelling, or next to a raw `;`.
    Ambiguous,
}

/// Finds `name` in the raw query (form-urlencoded, as upstreams decode it).
fn query_param(query: Option<&str>, name: &str) -> QueryParam {
    let Some(query) = query else {
        return QueryParam::Missing;
    };
    // Rack 2 and old Go split pairs on `;` too: `x=1;tenantId=b` holds a
    // second value for them only.
    if memchr::memchr(b';', query.as_bytes()).is_some() {
        return QueryParam::Ambiguous;
    }
    let mut found = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == name {
            if found.is_some() {
                return QueryParam::Ambiguous;
            }
            found = Some(value.into_owned());
        } else if canonically_named(&key, name) {
            return QueryParam::Ambiguous;
        }
    }
    found.map_or(QueryParam::Missing, QueryParam::One)
}

/// The `segment`th segment of the normalised path (the route matched it, so
/// it is there; an absent one reads as empty and matches nothing).
fn path_param(target: &Target, segment: usize) -> &str {
    pathnorm::segments(target.path())
        .nth(segment)
        .unwrap_or_default()
}

/// The organization a request names for a route bound by `source`.
fn organization_value<'a>(
    source: &ParamSource,
    target: &'a Target,
) -> Result<Cow<'a, str>, RequestProblem> {
    match source {
        ParamSource::Path { name, segment } => {
            let value = path_param(target, *segment);
            // Some frameworks merge query and path parameters (and Laravel's
            // `$request->name` prefers the query): a query value must agree.
            match query_param(target.query(), name) {
                QueryParam::Missing => Ok(Cow::Borrowed(value)),
                QueryParam::One(q) if q == value => Ok(Cow::Borrowed(value)),
                _ => Err(RequestProblem::OrganizationParamAmbiguous),
            }
        }
        ParamSource::Query { name } => match query_param(target.query(), name) {
            QueryParam::Missing => Err(RequestProblem::OrganizationParamMissing),
            QueryParam::One(v) => Ok(Cow::Owned(v)),
            QueryParam::Ambiguous => Err(RequestProblem::OrganizationParamAmbiguous),
        },
    }
}

/// The organization check (after scope, before workspace): the route's
/// `organization_param` must equal the token's organization. Routes without
/// one pass at no cost.
pub(crate) fn check_organization(
    route: &Route,
    facts: &RequestFacts,
    record: &TokenRecord,
) -> Result<(), DenyReason> {
    let Some(source) = &route.binding.organization else {
        return Ok(());
    };
    let target = facts
        .target
        .as_ref()
        .map_err(|e| DenyReason::InvalidRequest(RequestProblem::Target(*e)))?;
    let value = organization_value(source, target).map_err(DenyReason::InvalidRequest)?;
    if value == record.organization_id.as_str() {
        Ok(())
    } else {
        Err(DenyReason::OrganizationMismatch)
    }
}

/// The environment the workspace check reads: the query's `environmentId`,
/// or for a route with `environment_param` the path parameter, which any
/// query value an upstream could read instead must agree with.
pub(crate) fn environment_param<'a>(
    route: &Route,
    facts: &'a RequestFacts,
) -> Cow<'a, EnvironmentParam> {
    let (Some(ParamSource::Path { name, segment }), Ok(target)) =
        (&route.binding.environment, &facts.target)
    else {
        return Cow::Borrowed(&facts.query.environment_id);
    };
    let value = path_param(target, *segment);
    if !ids::is_valid_name_id(value) {
        return Cow::Owned(EnvironmentParam::Invalid);
    }
    if facts.query.environment_id == EnvironmentParam::Semicolon {
        return Cow::Owned(EnvironmentParam::Semicolon);
    }
    let agrees = |name: &str| match query_param(target.query(), name) {
        QueryParam::Missing => true,
        QueryParam::One(q) => q == value,
        QueryParam::Ambiguous => false,
    };
    let (query_agrees, named_agrees) = (
        agrees("environmentId"),
        name == "environmentId" || agrees(name),
    );
    Cow::Owned(if query_agrees && named_agrees {
        EnvironmentParam::One(value.to_string())
    } else {
        EnvironmentParam::Conflict
    })
}

#[cfg(test)]
mod tests;
