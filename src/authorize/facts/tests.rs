use secrecy::ExposeSecret;

use super::*;

proptest::proptest! {
    #[test]
    fn the_query_shortcut_reads_what_form_urlencoded_reads(
        query in "[a-zA-Z_=&%+0-9-]{0,40}",
        env in "[a-z0-9_-]{0,6}",
    ) {
        // Either an arbitrary query or one built around environmentId.
        for q in [query.clone(), format!("environmentId={env}&{query}"), format!("{query}&access_token")] {
            let slow = query_facts(form_urlencoded::parse(q.as_bytes()));
            proptest::prop_assert_eq!(parse_query(Some(&q)), slow);
        }
    }
}

/// How PHP 8 turns a decoded query name into a `$_GET` key: leading
/// spaces dropped, cut at NUL, `name[...]` is `name`, and ` ` / `.` in
/// the base become `_`.
fn php_key(name: &str) -> String {
    let name = name.trim_start_matches(' ');
    let name = name.split('\0').next().unwrap_or("");
    let base = match name.find('[') {
        Some(i) if name[i..].contains(']') => &name[..i],
        _ => name,
    };
    base.replace([' ', '.'], "_")
}

/// How Rack 2 reads a name: leading `[`/`]` dropped, then up to the
/// first `[` or `]`.
fn rack2_key(name: &str) -> &str {
    let name = name.trim_start_matches(['[', ']']);
    name.split(['[', ']']).next().unwrap_or("")
}

fn query_name() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = prop::sample::select(vec![
        " ", "\0", "[", "]", ".", "_", "\u{feff}", "\t", "x", "0", "\u{131}",
    ]);
    let core = prop::sample::select(vec![
        "environmentId",
        "EnvironmentID",
        "environment Id",
        "environment.Id",
        "environmentI",
        "nvironmentId",
    ]);
    (
        prop::collection::vec(piece.clone(), 0..3),
        core,
        prop::collection::vec(piece, 0..3),
    )
        .prop_map(|(pre, core, post)| format!("{}{core}{}", pre.concat(), post.concat()))
}

proptest::proptest! {
    #[test]
    fn a_name_php_rack_or_asp_net_reads_as_environment_id_is_a_repeat(
        name in query_name(),
    ) {
        let encoded: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let q = format!("environmentId=env1&{encoded}=env2");
        let read_as_environment_id = php_key(&name) == "environmentId"
            || rack2_key(&name) == "environmentId"
            || name.eq_ignore_ascii_case("environmentId");
        let facts = parse_query(Some(&q)).environment_id;
        if read_as_environment_id {
            proptest::prop_assert_eq!(facts, EnvironmentParam::Repeated, "{}", q);
        } else {
            proptest::prop_assert!(
                matches!(facts, EnvironmentParam::One(_) | EnvironmentParam::Repeated),
                "{}", q
            );
        }
    }
}

// Step 5: the spellings of environmentId.

/// Spellings of `environmentId` that some framework reads as it.
pub(crate) const ENVIRONMENT_ID_ALIASES: &[&str] = &[
    "+environmentId",
    "%20environmentId",
    "environmentId%00x",
    "%5BenvironmentId",
    "environmentId%5D",
    "environmentId.",
    "environmentId%20",
    "%EF%BB%BFenvironmentId",
    "EnvironmentID",
    "environmentId[]",
    "environmentId%5B0%5D",
    "%09environmentId",
    "environment%C4%B1d",
    "environmentId..",
];

#[test]
fn every_framework_alias_of_environment_id_is_a_repeat() {
    for alias in ENVIRONMENT_ID_ALIASES {
        let q = format!("environmentId=env1&{alias}=env2");
        assert_eq!(
            parse_query(Some(&q)).environment_id,
            EnvironmentParam::Repeated,
            "{q}"
        );
    }
    for other in [
        "environment",
        "environmentIds",
        "env_id",
        "environment_Id",
        "xenvironmentId",
        "environmentIdx",
        "a%3Bb=c",
    ] {
        let q = format!("environmentId=env1&{other}=v");
        assert_eq!(
            parse_query(Some(&q)).environment_id,
            EnvironmentParam::One("env1".into()),
            "{q}"
        );
    }
}

#[test]
fn a_raw_semicolon_anywhere_in_the_query_makes_the_environment_unknowable() {
    for q in [
        "environmentId=env1&x=1;environmentId=env2",
        "environmentId=env1&x=1;%20EnvironmentId=env2",
        "environmentId=env1;x=1",
        "environmentId=env1&a;b=c",
        "x=1;environmentId=env1",
        ";",
    ] {
        assert_eq!(
            parse_query(Some(q)).environment_id,
            EnvironmentParam::Semicolon,
            "{q}"
        );
    }
    assert_eq!(
        parse_query(Some("environmentId=env1&q=a%3Bb")).environment_id,
        EnvironmentParam::One("env1".into())
    );
}

#[test]
fn parse_bearer_distinguishes_missing_present_and_repeated() {
    assert!(matches!(parse_bearer(&[]), Bearer::Missing));
    assert!(matches!(parse_bearer(&[b""]), Bearer::Missing));
    assert!(matches!(parse_bearer(&[b"Basic abc"]), Bearer::Missing));
    assert!(matches!(parse_bearer(&[b"Bearerx abc"]), Bearer::Missing));
    assert!(matches!(
        parse_bearer(&[b"Bearer a", b"Bearer a"]),
        Bearer::Repeated
    ));
    let Bearer::Present(t) = parse_bearer(&[b"  BEARER \t tok "]) else {
        panic!("present");
    };
    assert_eq!(t.expose_secret(), "tok");
    assert!(!format!("{:?}", parse_bearer(&[b"Bearer secret-value"])).contains("secret-value"));
}
