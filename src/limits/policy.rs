//! A route's `rate_limit` as written in a policy file and as checked:
//! `rate_limit = { requests = N, per = "1s"|"1m"|"1h", by = …, mode = … }`.

use std::time::Duration;

use crate::policy::Mode;

/// The length of a rate-limit window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    pub fn parse(s: &str) -> Option<Per> {
        Some(match s {
            "1s" => Per::Second,
            "1m" => Per::Minute,
            "1h" => Per::Hour,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Per::Second => "1s",
            Per::Minute => "1m",
            Per::Hour => "1h",
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        }
    }

    pub fn window(self) -> Duration {
        Duration::from_secs(self.seconds())
    }
}

/// What one counter is kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum By {
    /// The token's service account (all its credentials together).
    ServiceAccount,
    /// The token's client id (one credential).
    Client,
    /// The token's organization (all its accounts together).
    Organization,
    /// The source address (as `proxy.trusted_proxies` resolves it; IPv6 by /64).
    Source,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        Some(match s {
            "service_account" => By::ServiceAccount,
            "client" => By::Client,
            "organization" => By::Organization,
            "source" => By::Source,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            By::ServiceAccount => "service_account",
            By::Client => "client",
            By::Organization => "organization",
            By::Source => "source",
        }
    }

    /// Whether the counter belongs to one service account, so that the
    /// account's override (admin API) replaces the route's limit.
    pub fn per_account(self) -> bool {
        matches!(self, By::ServiceAccount | By::Client)
    }

    /// Whether the counter needs a token (not on `auth = "none"` routes).
    pub fn needs_token(self) -> bool {
        self != By::Source
    }
}

/// The largest `requests` a limit may name.
pub const MAX_REQUESTS: u64 = 1_000_000_000;

/// A route's rate limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u64,
    pub per: Per,
    pub by: By,
    /// `report`: counted and recorded, never refused.
    pub mode: Mode,
}

const KEYS: [&str; 4] = ["requests", "per", "by", "mode"];

impl RateLimit {
    /// Checks the table of a route's `rate_limit`; `route_mode` is the
    /// default of its `mode`, `public` whether the route has `auth = "none"`.
    /// The error names the key inside the table.
    pub fn parse(value: &toml::Value, route_mode: Mode, public: bool) -> Result<RateLimit, String> {
        let toml::Value::Table(table) = value else {
            return Err(
                "expected a table like { requests = 100, per = \"1m\", by = \"service_account\" }"
                    .into(),
            );
        };
        if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!(
                "{}: unknown key (allowed: {})",
                key.escape_default(),
                KEYS.join(", ")
            ));
        }
        let requests = match table.get("requests") {
            None => return Err("requests: missing".into()),
            Some(toml::Value::Integer(n)) if (1..=MAX_REQUESTS as i64).contains(n) => *n as u64,
            Some(_) => {
                return Err(format!(
                    "requests: expected an integer from 1 to {MAX_REQUESTS}"
                ))
            }
        };
        let text = |key: &str| -> Result<Option<&str>, String> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(format!("{key}: expected a string")),
            }
        };
        let per = match text("per")? {
            None => return Err("per: missing (one of 1s, 1m, 1h)".into()),
            Some(s) => Per::parse(s)
                .ok_or_else(|| format!("per: {:?} is not one of 1s, 1m, 1h", printable(s)))?,
        };
        let by = match text("by")? {
            None => {
                return Err(
                    "by: missing (one of service_account, client, organization, source)".into(),
                )
            }
            Some(s) => By::parse(s).ok_or_else(|| {
                format!(
                    "by: {:?} is not one of service_account, client, organization, source",
                    printable(s)
                )
            })?,
        };
        if public && by.needs_token() {
            return Err(format!(
                "by: {:?} needs a token; a route with auth = \"none\" may only limit by \"source\"",
                by.as_str()
            ));
        }
        let mode = match text("mode")? {
            None => route_mode,
            Some("enforce") => Mode::Enforce,
            Some("report") => Mode::Report,
            Some(s) => {
                return Err(format!(
                    "mode: {:?} is not one of enforce, report",
                    printable(s)
                ))
            }
        };
        Ok(RateLimit {
            requests,
            per,
            by,
            mode,
        })
    }

    /// `100 per 1m by service_account, mode enforce`
    pub fn describe(&self) -> String {
        format!(
            "{} per {} by {}, mode {}",
            self.requests,
            self.per.as_str(),
            self.by.as_str(),
            self.mode.as_str()
        )
    }
}

fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .collect::<String>()
        .escape_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, public: bool) -> Result<RateLimit, String> {
        let doc: toml::Table = toml::from_str(&format!("x = {text}")).expect("toml");
        RateLimit::parse(&doc["x"], Mode::Enforce, public)
    }

    #[test]
    fn a_full_limit_parses_and_mode_defaults_to_the_route_mode() {
        let r = parse(r#"{ requests = 5, per = "1m", by = "client" }"#, false).expect("valid");
        assert_eq!(
            r,
            RateLimit {
                requests: 5,
                per: Per::Minute,
                by: By::Client,
                mode: Mode::Enforce
            }
        );
        let r = parse(
            r#"{ requests = 5, per = "1h", by = "source", mode = "report" }"#,
            true,
        )
        .expect("valid");
        assert_eq!((r.per, r.by, r.mode), (Per::Hour, By::Source, Mode::Report));
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let cases = [
            (r#""100/m""#, "expected a table"),
            (r#"{ per = "1s", by = "client" }"#, "requests: missing"),
            (
                r#"{ requests = 0, per = "1s", by = "client" }"#,
                "requests:",
            ),
            (
                r#"{ requests = -3, per = "1s", by = "client" }"#,
                "requests:",
            ),
            (
                r#"{ requests = "3", per = "1s", by = "client" }"#,
                "requests:",
            ),
            (r#"{ requests = 3, per = "2s", by = "client" }"#, "per:"),
            (r#"{ requests = 3, by = "client" }"#, "per: missing"),
            (r#"{ requests = 3, per = "1s" }"#, "by: missing"),
            (r#"{ requests = 3, per = "1s", by = "user" }"#, "by:"),
            (
                r#"{ requests = 3, per = "1s", by = "client", mode = "audit" }"#,
                "mode:",
            ),
            (
                r#"{ requests = 3, per = "1s", by = "client", burst = 2 }"#,
                "burst: unknown key",
            ),
            (
                r#"{ requests = 3, per = 1, by = "client" }"#,
                "per: expected a string",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(text, false).expect_err(text);
            assert!(e.starts_with(expected), "{text}: {e}");
        }
    }

    #[test]
    fn a_public_route_may_only_limit_by_source() {
        for by in ["service_account", "client", "organization"] {
            let e = parse(
                &format!("{{ requests = 3, per = \"1s\", by = {by:?} }}"),
                true,
            )
            .expect_err(by);
            assert!(
                e.contains("auth = \\\"none\\\"") || e.contains("auth = \"none\""),
                "{e}"
            );
        }
        assert!(parse(r#"{ requests = 3, per = "1s", by = "source" }"#, true).is_ok());
    }
}
