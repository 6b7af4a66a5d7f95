use super::*;
use proptest::prelude::*;

use PathError::*;

fn norm(raw: &str) -> Result<String, PathError> {
    normalize_target(raw, false).map(|t| t.path_and_query())
}

#[test]
fn table_of_targets_normalises_or_rejects_as_documented() {
    let long_ok = format!("/{}", "a".repeat(MAX_TARGET_LEN - 1));
    let long_bad = format!("/{}", "a".repeat(MAX_TARGET_LEN));
    let cases: Vec<(&str, Result<&str, PathError>)> = vec![
        ("/", Ok("/")),
        ("/api/v1/workflows", Ok("/api/v1/workflows")),
        ("/api/v1/workflows/", Ok("/api/v1/workflows/")),
        ("/a/./b", Ok("/a/b")),
        ("/a/b/..", Ok("/a/")),
        ("/a/b/.", Ok("/a/b/")),
        ("/a/b/../c", Ok("/a/c")),
        ("/a/../..", Err(AboveRoot)),
        ("/..", Err(AboveRoot)),
        ("/../a", Err(AboveRoot)),
        ("/.", Ok("/")),
        ("/a/%2e%2e/b", Ok("/b")),
        ("/a/%2E%2E", Ok("/")),
        ("/a/.%2e/b", Ok("/b")),
        ("/%2e%2e/etc/passwd", Err(AboveRoot)),
        ("/a/..%2f..%2fetc", Err(EncodedSlash)),
        ("/a/%252e%252e/b", Ok("/a/%252e%252e/b")),
        ("/a/%252E", Ok("/a/%252E")),
        ("/a%2Fb", Err(EncodedSlash)),
        ("/a%2fb", Err(EncodedSlash)),
        ("/a\\b", Err(Backslash)),
        ("/a%5Cb", Err(Backslash)),
        ("/a%5cb", Err(Backslash)),
        ("/a%00b", Err(ControlCharacter)),
        ("/a%1fb", Err(ControlCharacter)),
        ("/a%7Fb", Err(ControlCharacter)),
        ("/a\tb", Err(ControlCharacter)),
        ("/a\u{7f}", Err(ControlCharacter)),
        ("//a", Err(EmptySegment)),
        ("/a//b", Err(EmptySegment)),
        ("/a/b//", Err(EmptySegment)),
        ("/a;x=1", Err(Semicolon)),
        ("/a/b;jsessionid=1/c", Err(Semicolon)),
        ("/a%3Bx=1", Ok("/a%3Bx=1")),
        ("/caf\u{e9}", Err(NonAscii)),
        ("/caf%c3%a9", Ok("/caf%C3%A9")),
        ("/%7euser/%41%62", Ok("/~user/Ab")),
        ("/a%2db%5fc%2e", Ok("/a-b_c.")),
        ("/a%zz", Err(InvalidEscape)),
        ("/a%4", Err(InvalidEscape)),
        ("/a%", Err(InvalidEscape)),
        ("/a%%41", Err(InvalidEscape)),
        ("/a%20b", Ok("/a%20b")),
        ("/a b", Err(InvalidCharacter)),
        ("/a{b}|c", Ok("/a%7Bb%7D%7Cc")),
        ("/a:b@c!$&'()*+,=", Ok("/a:b@c!$&'()*+,=")),
        ("/a#frag", Err(Fragment)),
        ("/a?x=1#frag", Err(Fragment)),
        ("/a?x=%2F&y=..%2f;z", Ok("/a?x=%2F&y=..%2f;z")),
        ("/a/../b?environmentId=e1", Ok("/b?environmentId=e1")),
        ("/a?", Ok("/a?")),
        ("/a?x=\u{e9}", Err(NonAscii)),
        ("/a?x=\n", Err(ControlCharacter)),
        ("http://example.com/a", Err(AbsoluteForm)),
        ("HTTPS://example.com", Err(AbsoluteForm)),
        ("example.com:443", Err(AuthorityForm)),
        ("*", Err(AsteriskForm)),
        ("a/b", Err(NotOriginForm)),
        ("", Err(Empty)),
        (&long_ok, Ok(&long_ok)),
        (&long_bad, Err(TooLong)),
    ];
    assert!(cases.len() >= 40);
    for (raw, expected) in cases {
        let got = norm(raw);
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "target {raw:?}");
    }
}

#[test]
fn semicolons_pass_only_when_allowed_and_never_after_a_dot_segment() {
    let ok = normalize_target("/a;x=1/b", true).map(|t| t.path().to_string());
    assert_eq!(ok.as_deref(), Ok("/a;x=1/b"));
    assert_eq!(
        normalize_target("/a/..;x/b", true),
        Err(ParameterOnDotSegment)
    );
    assert_eq!(
        normalize_target("/a/.;/b", true),
        Err(ParameterOnDotSegment)
    );
    assert_eq!(
        normalize_target("/a/;x/b", true),
        Err(ParameterOnDotSegment)
    );
    assert_eq!(
        normalize_target("/a/%2e%2e;x", true),
        Err(ParameterOnDotSegment)
    );
}

/// Found by the `pathnorm` fuzz target: a target under the limit whose
/// normal form (with `<` encoded as `%3C`) is over it was accepted, and
/// normalising that normal form again failed.
#[test]
fn a_target_whose_normal_form_exceeds_the_limit_is_too_long() {
    // The most `<` whose normal form `/%3C%3C…` still fits.
    let most = (MAX_TARGET_LEN - 1) / 3;
    let fits = format!("/{}", "<".repeat(most));
    let t = normalize_target(&fits, false).expect("normal form fits");
    assert!(t.path().len() <= MAX_TARGET_LEN);
    assert_eq!(normalize_target(t.path(), false), Ok(t));
    let grows = format!("/{}", "<".repeat(most + 1));
    assert!(grows.len() <= MAX_TARGET_LEN);
    assert_eq!(normalize_target(&grows, false), Err(TooLong));
    let with_query = format!("/{}?{}", "<".repeat(most), "q".repeat(4));
    assert_eq!(normalize_target(&with_query, false), Err(TooLong));
}

#[test]
fn raw_non_utf8_bytes_are_rejected() {
    assert_eq!(normalize_target(b"/a\xff", false), Err(NonAscii));
}

#[test]
fn segments_keep_a_trailing_empty_segment() {
    let t = normalize_target("/a/b/", false).expect("valid");
    assert_eq!(t.segments().collect::<Vec<_>>(), ["a", "b", ""]);
    let root = normalize_target("/?q", false).expect("valid");
    assert_eq!(root.segments().collect::<Vec<_>>(), [""]);
    assert_eq!(root.query(), Some("q"));
}

#[test]
fn descriptions_never_contain_the_input() {
    let err = normalize_target("/<script>%2F", false).expect_err("encoded slash");
    assert!(!err.description().contains("script"));
}

/// Mostly well-formed pieces (so that many targets pass and the
/// properties are exercised), with a few hostile ones mixed in.
fn target_strategy() -> impl Strategy<Value = String> {
    let benign = prop::sample::select(vec![
        "/a",
        "/b",
        "/",
        "/.",
        "/..",
        "/%2e",
        "/%2E%2e",
        "/.%2e",
        "a",
        "~",
        "%41",
        "%7e",
        "%25",
        "%252e",
        "%c3%a9",
        "%3b",
        "{",
        ":",
        "@",
        "-",
        "?",
        "?x=%2F&y=..",
    ]);
    let hostile = prop::sample::select(vec![
        "%2f", "%zz", "%5c", ";", "#", "\\", "%00", " ", "\u{e9}", "%",
    ]);
    let piece = prop_oneof![9 => benign, 1 => hostile];
    prop::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

#[test]
fn paths_already_normal_are_recognised_and_others_are_not() {
    for normal in [
        "",
        "a",
        "a/",
        "api/v1/x",
        "a/b.json",
        "a/.b",
        "a/..b",
        "x:y@z/!$&'()*+,=~",
    ] {
        assert!(is_already_normal(normal.as_bytes()), "{normal}");
    }
    for not in [
        "a//b", "./a", "a/..", "a/./b", "a%41", "a;b", "a b", "a\\b", "a\"b", "é",
    ] {
        assert!(!is_already_normal(not.as_bytes()), "{not}");
    }
}

proptest! {
    #[test]
    fn the_shortcut_for_normal_paths_agrees_with_the_general_case(
        rest in "[a-z.;:@%/~!$&'()*+,=\"<>\\-]{0,24}",
        allow_semicolon in any::<bool>(),
    ) {
        let path = format!("/{rest}");
        if is_already_normal(rest.as_bytes()) {
            prop_assert_eq!(
                normalize_segments(path.as_bytes(), rest.as_bytes(), allow_semicolon),
                Ok(path.clone())
            );
        }
    }
}

proptest! {
    #[test]
    fn normalisation_is_idempotent(raw in target_strategy(), semi in any::<bool>()) {
        if let Ok(t) = normalize_target(&raw, semi) {
            let again = normalize_target(t.path_and_query(), semi);
            prop_assert_eq!(again, Ok(t));
        }
    }

    #[test]
    fn normalised_paths_have_no_dot_empty_or_encoded_slash_segments(
        raw in target_strategy(),
        semi in any::<bool>(),
    ) {
        if let Ok(t) = normalize_target(&raw, semi) {
            let segs: Vec<&str> = t.segments().collect();
            let last = segs.len() - 1;
            for (i, s) in segs.iter().enumerate() {
                prop_assert!(*s != "." && *s != "..", "dot segment in {}", t.path());
                prop_assert!(!s.is_empty() || i == last, "empty segment in {}", t.path());
            }
            let upper = t.path().to_ascii_uppercase();
            prop_assert!(!upper.contains("%2F") && !upper.contains("%5C"));
            prop_assert!(!upper.contains("%2E"));
            prop_assert!(t.path().starts_with('/'));
        }
    }
}
