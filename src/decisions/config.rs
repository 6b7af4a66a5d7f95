//! `server.decisions_listen` and the `[decisions]` table: which ingress
//! convention the decision listener reads the original request from. The
//! convention is always named; tollgate never guesses it from the headers
//! a request happens to carry.

use serde::Deserialize;

/// `[decisions]` as written.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionsFile {
    /// `nginx`, `traefik` or `envoy`; required when the listener is on.
    pub convention: String,
    /// Envoy's HTTP ext_authz `path_prefix`: removed from the check
    /// request's path to give the original one.
    pub path_prefix: String,
}

/// How the ingress tells the decision listener what its client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI`.
    Nginx,
    /// Traefik ForwardAuth: `X-Forwarded-Method`, `X-Forwarded-Uri` and
    /// `X-Forwarded-Host`.
    Traefik,
    /// Envoy's HTTP ext_authz: the original method, and the original path
    /// after `path_prefix`.
    Envoy,
}

impl Convention {
    pub fn as_str(self) -> &'static str {
        match self {
            Convention::Nginx => "nginx",
            Convention::Traefik => "traefik",
            Convention::Envoy => "envoy",
        }
    }
}

/// The validated `[decisions]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionsConfig {
    /// `None` when the decision listener is off (and the table unused).
    pub convention: Option<Convention>,
    pub path_prefix: String,
}

impl DecisionsConfig {
    /// Validates the table; `listening`: whether `server.decisions_listen`
    /// is set. Errors are `(key, problem)`.
    pub fn validate(
        file: &DecisionsFile,
        listening: bool,
    ) -> Result<DecisionsConfig, (&'static str, String)> {
        let convention = match file.convention.as_str() {
            "" if listening => {
                return Err((
                    "decisions.convention",
                    "server.decisions_listen is set: name the ingress convention, \"nginx\", \"traefik\" or \"envoy\"".into(),
                ))
            }
            "" => None,
            "nginx" => Some(Convention::Nginx),
            "traefik" => Some(Convention::Traefik),
            "envoy" => Some(Convention::Envoy),
            other => {
                return Err((
                    "decisions.convention",
                    format!("{other:?} is not one of \"nginx\", \"traefik\", \"envoy\""),
                ))
            }
        };
        let prefix = &file.path_prefix;
        if !prefix.is_empty() {
            if convention != Some(Convention::Envoy) {
                return Err((
                    "decisions.path_prefix",
                    "only the envoy convention appends the path to a prefix".into(),
                ));
            }
            let valid = prefix.starts_with('/')
                && !prefix.ends_with('/')
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
            if !valid {
                return Err((
                    "decisions.path_prefix",
                    format!("{prefix:?} must start with '/', not end with '/', and hold only letters, digits and -._~/"),
                ));
            }
        }
        Ok(DecisionsConfig {
            convention,
            path_prefix: prefix.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenAddr;

    fn file(convention: &str, path_prefix: &str) -> DecisionsFile {
        DecisionsFile {
            convention: convention.into(),
            path_prefix: path_prefix.into(),
        }
    }

    #[test]
    fn a_listener_needs_a_named_convention() {
        let e = DecisionsConfig::validate(&file("", ""), true).unwrap_err();
        assert_eq!(e.0, "decisions.convention");
        assert_eq!(
            DecisionsConfig::validate(&file("", ""), false)
                .map(|c| c.convention)
                .ok(),
            Some(None)
        );
        let e = DecisionsConfig::validate(&file("haproxy", ""), true).unwrap_err();
        assert!(e.1.contains("haproxy"), "{}", e.1);
        for (name, c) in [
            ("nginx", Convention::Nginx),
            ("traefik", Convention::Traefik),
            ("envoy", Convention::Envoy),
        ] {
            let got = DecisionsConfig::validate(&file(name, ""), true).ok();
            assert_eq!(got.and_then(|g| g.convention), Some(c));
        }
    }

    fn parse(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::Config::from_toml(
            text,
            "t.toml",
            std::path::Path::new("."),
            &crate::config::EnvOverrides::default(),
        )
    }

    #[test]
    fn the_listener_may_be_a_unix_socket_with_its_mode() {
        let nginx = "[decisions]\nconvention = \"nginx\"\n";
        let on = parse(&format!(
            "[server]\ndecisions_listen = \"unix:/run/tollgate/decisions.sock\"\n{nginx}"
        ))
        .unwrap();
        assert_eq!(
            on.server.decisions_listen,
            Some(ListenAddr::Unix {
                path: "/run/tollgate/decisions.sock".into(),
                mode: 0o660
            })
        );
        let open = parse(&format!(
            "[server]\ndecisions_listen = \"unix:/run/d.sock\"\ndecisions_socket_mode = \"0666\"\n{nginx}"
        ))
        .unwrap();
        assert!(matches!(
            open.server.decisions_listen,
            Some(ListenAddr::Unix { mode: 0o666, .. })
        ));
        let e = parse(&format!(
            "[server]\ndecisions_listen = \"unix:run/d.sock\"\n{nginx}"
        ))
        .unwrap_err();
        assert_eq!(e.key, "server.decisions_listen");
        for bad in ["0999", "rw", "01777"] {
            let e = parse(&format!(
                "[server]\ndecisions_listen = \"unix:/run/d.sock\"\ndecisions_socket_mode = \"{bad}\"\n{nginx}"
            ))
            .unwrap_err();
            assert_eq!(e.key, "server.decisions_socket_mode", "{bad}");
        }
    }

    #[test]
    fn the_listener_is_off_by_default_and_on_with_its_convention() {
        let off = parse("").unwrap();
        assert_eq!(off.server.decisions_listen, None);
        assert_eq!(off.decisions.convention, None);
        let on = parse(
            "[server]\ndecisions_listen = \"127.0.0.1:9100\"\n[decisions]\nconvention = \"envoy\"\npath_prefix = \"/authz\"\n",
        )
        .unwrap();
        assert_eq!(
            on.server.decisions_listen,
            Some(ListenAddr::Tcp("127.0.0.1:9100".parse().unwrap()))
        );
        assert_eq!(on.decisions.convention, Some(Convention::Envoy));
        assert_eq!(on.decisions.path_prefix, "/authz");
        let e = parse("[server]\ndecisions_listen = \"127.0.0.1:9100\"\n").unwrap_err();
        assert_eq!(e.key, "decisions.convention");
        let e = parse(
            "[server]\ndecisions_listen = \"nowhere\"\n[decisions]\nconvention = \"nginx\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "server.decisions_listen");
        assert!(
            parse("[decisions]\nguess = true\n").is_err(),
            "an unknown key"
        );
    }

    #[test]
    fn a_path_prefix_is_envoys_and_well_formed() {
        assert!(DecisionsConfig::validate(&file("nginx", "/authz"), true).is_err());
        assert!(DecisionsConfig::validate(&file("envoy", "/authz"), true).is_ok());
        for bad in ["authz", "/authz/", "/a z", "/a?b", "/%2e"] {
            let e = DecisionsConfig::validate(&file("envoy", bad), true).unwrap_err();
            assert_eq!(e.0, "decisions.path_prefix", "{bad}");
        }
    }
}
