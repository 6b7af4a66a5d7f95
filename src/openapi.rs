//! The admin API's OpenAPI 3.1 document, served at `GET /openapi.json` on
//! the admin listener without a key. `admin::routes` checks it against the
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
}
