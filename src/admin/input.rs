//! Reading a request's JSON body and list query so that every error names
//! the field it is about (serde's own messages name a position, not a
//! field). The bodies of each operation are read in its resource's file.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::AdminError;

pub(crate) const A_STRING: &str = "a string";
pub(crate) const A_STRING_OR_NULL: &str = "a string or null";

/// A JSON object body read field by field.
pub(crate) struct Fields(serde_json::Map<String, Value>);

impl Fields {
    /// Parses an object whose fields are all in `allowed`.
    pub(crate) fn parse(body: &[u8], allowed: &[&str]) -> Result<Fields, AdminError> {
        let map = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(AdminError::invalid("body", "must be a JSON object")),
            Err(e) => {
                return Err(AdminError::invalid(
                    "body",
                    format!(
                        "is not valid JSON ({:?} error at line {} column {})",
                        e.classify(),
                        e.line(),
                        e.column()
                    ),
                ))
            }
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(AdminError::invalid(unknown, "unknown field"));
        }
        Ok(Fields(map))
    }

    /// Like `parse`, but an empty body is an empty object.
    pub(crate) fn parse_optional(body: &[u8], allowed: &[&str]) -> Result<Fields, AdminError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            Ok(Fields(serde_json::Map::new()))
        } else {
            Fields::parse(body, allowed)
        }
    }

    fn convert<T: DeserializeOwned>(
        name: &str,
        value: Value,
        expected: &str,
    ) -> Result<T, AdminError> {
        serde_json::from_value(value)
            .map_err(|_| AdminError::invalid(name, format!("must be {expected}")))
    }

    /// A field that must be present and not null.
    pub(crate) fn required<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<T, AdminError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Err(AdminError::invalid(
                name,
                format!("is required ({expected})"),
            )),
            Some(v) => Self::convert(name, v, expected),
        }
    }

    /// Absent is `None`; `null` is an error.
    pub(crate) fn optional<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, AdminError> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(Value::Null) => Err(AdminError::invalid(
                name,
                format!("must be {expected}, not null"),
            )),
            Some(v) => Self::convert(name, v, expected).map(Some),
        }
    }

    /// Absent is `None`, `null` is `Some(None)` (clear the value).
    pub(crate) fn nullable<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<Option<Option<T>>, AdminError> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(v) => Self::convert(name, v, expected).map(|t| Some(Some(t))),
        }
    }
}

/// `grace_seconds` of a rotation (of an account's one credential or of a
/// credential by id); an empty body means 0.
pub(crate) fn rotate_body(body: &[u8]) -> Result<u64, AdminError> {
    let mut f = Fields::parse_optional(body, &["grace_seconds"])?;
    Ok(f.optional("grace_seconds", "an integer from 0 to 86400")?
        .unwrap_or(0))
}

/// `?limit=&after=` of every list, and `q` of the service-account list.
pub(crate) struct ListParams {
    pub(crate) limit: usize,
    pub(crate) after: Option<String>,
    pub(crate) q: Option<String>,
}

impl ListParams {
    pub(crate) fn parse(query: Option<&str>) -> Result<ListParams, AdminError> {
        let mut p = ListParams {
            limit: 50,
            after: None,
            q: None,
        };
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "limit" => {
                    p.limit = match v.parse::<usize>() {
                        Ok(n) if (1..=200).contains(&n) => n,
                        _ => {
                            return Err(AdminError::invalid(
                                "limit",
                                "must be an integer from 1 to 200",
                            ))
                        }
                    }
                }
                "after" => {
                    if v.len() > 128 {
                        return Err(AdminError::invalid("after", "is not a cursor"));
                    }
                    p.after = Some(v.into_owned()).filter(|s| !s.is_empty());
                }
                "q" => {
                    if v.chars().count() > 128 {
                        return Err(AdminError::invalid("q", "must be at most 128 characters"));
                    }
                    p.q = Some(v.into_owned());
                }
                _ => {}
            }
        }
        Ok(p)
    }

    pub(crate) fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }
}
