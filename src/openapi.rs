//! The admin API's OpenAPI 3.1 document, served at `GET /openapi.json`.

pub const DOCUMENT: &str = include_str!("openapi.json");
