//! The admin API's OpenAPI 3.1 document, served at `GET /openapi.json` on
//! the admin listener without a key (and as HTML at `/swagger`). It covers
//! the proxy listener's token, revocation, metadata and whoami endpoints
//! too, each under its own `servers`. `admin::routes` checks it against the
//! route table; `tests/integration/openapi.rs` against docs/contract.md §4 and against
//! what the running admin API answers.

pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::DOCUMENT;

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")));
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }

    /// Against the official OpenAPI 3.1 schema (2022-10-07), vendored in
    /// `tests/data` so the check needs no network.
    #[test]
    fn the_document_validates_against_the_official_openapi_3_1_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/openapi-3.1-schema.json"))
                .expect("the vendored schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        // The check can fail: a response without a description, a document
        // without info.
        let mut broken = doc.clone();
        broken["paths"]["/healthz"]["get"]["responses"]["200"] = serde_json::json!({});
        assert!(!validator.is_valid(&broken));
        let mut broken = doc;
        broken.as_object_mut().expect("an object").remove("info");
        assert!(!validator.is_valid(&broken));
    }
}
