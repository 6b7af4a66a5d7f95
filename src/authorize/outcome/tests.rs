use crate::authorize::tests::{req, WF};
use crate::authorize::Lookup;

#[test]
fn every_denial_is_json_with_error_and_description_and_not_cached() {
    let d = req("GET", WF).with_token().run(Lookup::NotFound, None);
    let denial = d.denial().expect("denial");
    let body: serde_json::Value = serde_json::from_slice(&denial.body()).expect("json");
    assert_eq!(body["error"], "invalid_token");
    assert!(body["error_description"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let headers = denial.headers();
    assert!(headers.contains(&("cache-control", "no-store".to_string())));
    assert!(headers.contains(&("content-type", "application/json".to_string())));
}

#[test]
fn denials_never_echo_request_input() {
    let targets = [
        "/api/v1/workflows/%3Cmarker%3E?environmentId=%3Cmarker%3E",
        "/api/v1/<marker>%2F",
        "/api/v1/workflows/<marker>?environmentId=<marker>",
        "/<marker>",
    ];
    for target in targets {
        for d in [
            req("GET", target).run(Lookup::NotFound, None),
            req("GET", target).with_token().run_as("logs:read", None),
            req("GET", target).with_token().run(Lookup::NotFound, None),
        ] {
            if let Some(denial) = d.denial() {
                let body = String::from_utf8_lossy(&denial.body()).to_lowercase();
                assert!(
                    !denial.description.to_lowercase().contains("marker"),
                    "{target}"
                );
                assert!(!body.contains("marker"), "{target}: {body}");
            }
        }
    }
}
