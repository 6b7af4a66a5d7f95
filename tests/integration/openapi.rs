//! The admin API's OpenAPI document (`GET /openapi.json`) against docs/contract.md §4
//! and against the running admin API: every endpoint is documented, every
//! documented operation exists with exactly the documented methods, and
//! what the API answers matches the documented schemas.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;

const BASE: &str = "/v1/organizations/{org}";

/// docs/contract.md §4, one line per method and path, plus the unauthenticated endpoints.
const CONTRACT_ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/service-accounts"),
    ("GET", "/service-accounts"),
    ("GET", "/service-accounts/{sa}"),
    ("PATCH", "/service-accounts/{sa}"),
    ("DELETE", "/service-accounts/{sa}"),
    ("POST", "/service-accounts/{sa}/rotate-secret"),
    ("POST", "/service-accounts/{sa}/revoke-tokens"),
    ("POST", "/service-accounts/{sa}/credentials"),
    ("GET", "/service-accounts/{sa}/credentials"),
    ("GET", "/service-accounts/{sa}/credentials/{cred}"),
    ("PATCH", "/service-accounts/{sa}/credentials/{cred}"),
    ("DELETE", "/service-accounts/{sa}/credentials/{cred}"),
    (
        "POST",
        "/service-accounts/{sa}/credentials/{cred}/rotate-secret",
    ),
    ("POST", "/revoke-tokens"),
    ("PUT", "/workspaces/{ws}"),
    ("GET", "/workspaces"),
    ("GET", "/workspaces/{ws}"),
    ("DELETE", "/workspaces/{ws}"),
    ("PUT", "/workspaces/{ws}/environments/{env}"),
    ("GET", "/workspaces/{ws}/environments"),
    ("DELETE", "/workspaces/{ws}/environments/{env}"),
    ("PUT", "/workspaces/{ws}/members/{sa}"),
    ("GET", "/workspaces/{ws}/members"),
    ("DELETE", "/workspaces/{ws}/members/{sa}"),
    ("GET", "/audit-events"),
    ("POST", "/admin-keys"),
    ("GET", "/admin-keys"),
    ("GET", "/admin-keys/{key}"),
    ("DELETE", "/admin-keys/{key}"),
    ("GET", "/service-accounts/{sa}/limits"),
    ("PUT", "/service-accounts/{sa}/limits"),
    ("DELETE", "/service-accounts/{sa}/limits"),
    ("GET", "!/healthz"),
    ("GET", "!/readyz"),
    ("GET", "!/openapi.json"),
    ("GET", "!/swagger"),
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// `(METHOD, full path template)` of CONTRACT_ENDPOINTS; `!` marks a path
/// outside the organization base.
fn spec_operations() -> BTreeSet<(String, String)> {
    CONTRACT_ENDPOINTS
        .iter()
        .map(|(m, p)| {
            let full = match p.strip_prefix('!') {
                Some(root) => root.to_string(),
                None => format!("{BASE}{p}"),
            };
            (m.to_string(), full)
        })
        .collect()
}

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        // The proxy listener's endpoints (token, revoke, metadata, whoami)
        // name their own server; `proxy_endpoints_are_documented` checks them.
        if item.get("servers").is_some() {
            continue;
        }
        for method in METHODS {
            if item.get(method.to_ascii_lowercase()).is_some() {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

/// A tollgate with one public route (a policy set is required to start).
async fn start(store: StoreKind) -> Tollgate {
    let mut options = TollgateOptions::new()
        .upstream("app", &[dead_addr()])
        .policy(
            "routes.toml",
            "[[route]]\nname = \"status\"\nmethods = [\"GET\"]\npath = \"/status\"\nupstream = \"app\"\nauth = \"none\"\n",
        );
    if store == StoreKind::Memory {
        options = options.memory();
    }
    Tollgate::start(options).await
}

async fn fetch_document(tg: &Tollgate) -> Value {
    let response = tg
        .http()
        .get(tg.admin_url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = response.text().await.expect("read the document");
    serde_json::from_str(&text).expect("the document is JSON")
}

/// A path template with every parameter replaced by a well-formed id.
fn concrete(template: &str, ids: &BTreeMap<&str, String>) -> String {
    let mut path = template.to_string();
    for (name, value) in ids {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    assert!(!path.contains('{'), "unfilled parameter in {path}");
    path
}

fn probe_ids() -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("org", unique_id("org")),
        ("sa", "A".repeat(26)),
        ("cred", "B".repeat(26)),
        ("ws", unique_id("ws")),
        ("env", unique_id("env")),
        ("key", "K".repeat(26)),
    ])
}

#[tokio::test]
async fn the_document_is_served_without_a_key_as_openapi_3_1_with_a_bearer_scheme() {
    let tg = start(StoreKind::Memory).await;
    let doc = fetch_document(&tg).await;

    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "openapi = {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    let (bearer, _) = schemes
        .iter()
        .find(|(_, s)| s["type"] == "http" && s["scheme"] == "bearer")
        .expect("an HTTP bearer security scheme");
    assert_eq!(
        doc["security"],
        json!([{ bearer.as_str(): [] }]),
        "admin calls need the key"
    );
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(
            doc["paths"][open]["get"]["security"],
            json!([]),
            "{open} needs no key"
        );
    }
    for schema in [
        "ServiceAccount",
        "Credential",
        "CredentialWithSecret",
        "Workspace",
        "Environment",
        "Membership",
        "AuditEvent",
        "Error",
        "ServiceAccountList",
        "CredentialList",
        "WorkspaceList",
        "EnvironmentList",
        "MembershipList",
        "AuditEventList",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}

#[tokio::test]
async fn every_admin_endpoint_of_the_spec_is_documented_and_nothing_else() {
    let tg = start(StoreKind::Memory).await;
    let doc = fetch_document(&tg).await;
    let spec = spec_operations();
    assert_eq!(
        spec.len(),
        CONTRACT_ENDPOINTS.len(),
        "CONTRACT_ENDPOINTS has a repeat"
    );
    let documented = documented_operations(&doc);

    let missing: Vec<_> = spec.difference(&documented).collect();
    assert!(missing.is_empty(), "not documented: {missing:?}");
    let extra: Vec<_> = documented.difference(&spec).collect();
    assert!(
        extra.is_empty(),
        "documented but not in docs/contract.md §4: {extra:?}"
    );

    for (method, path) in &documented {
        let op = &doc["paths"][path.as_str()][method.to_ascii_lowercase()];
        let name = format!("{method} {path}");
        assert!(op["operationId"].is_string(), "{name}: operationId");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{name}: no success response"
        );
        if !path.starts_with(BASE) {
            continue;
        }
        assert!(responses.contains_key("401"), "{name}: 401 not documented");
        for param in ["org", "sa", "cred", "ws", "env"] {
            if path.contains(&format!("{{{param}}}")) {
                let declared = doc["paths"][path.as_str()]["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(op["parameters"].as_array().into_iter().flatten())
                    .any(|p| resolve(&doc, p)["name"] == param);
                assert!(declared, "{name}: path parameter {param} not declared");
            }
        }
        let writes = matches!(method.as_str(), "POST" | "PUT" | "PATCH");
        let takes_body = !path.ends_with("revoke-tokens");
        assert_eq!(
            op["requestBody"].is_object(),
            writes && takes_body,
            "{name}: request body documented?"
        );
    }
    // Every $ref in the document resolves.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap_or_default();
        assert!(
            !resolve(&doc, &json!({ "$ref": target })).is_null(),
            "dangling $ref {target}"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_exists_with_exactly_the_documented_methods() {
    let tg = start(StoreKind::Memory).await;
    let doc = fetch_document(&tg).await;
    let ids = probe_ids();
    let admin = tg.admin();

    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (method, path) in documented_operations(&doc) {
        by_path.entry(path).or_default().insert(method);
    }
    for (template, methods) in &by_path {
        let path = concrete(template, &ids);
        for method in METHODS {
            let verb = Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = tg
                .http()
                .request(verb, admin.url(&path))
                .bearer_auth(tg.admin_key());
            if matches!(method, "POST" | "PUT" | "PATCH") {
                request = request.json(&json!({}));
            }
            let response = request.send().await.expect("admin request");
            let status = response.status();
            let allow = response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            let what = format!("{method} {template}: {status} {answer}");
            if methods.contains(method) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{what}");
                assert!(
                    !(status == StatusCode::NOT_FOUND
                        && answer["error_description"] == "no such admin endpoint"),
                    "documented but not routed: {what}"
                );
            } else if template.starts_with(BASE) {
                // The router answers 405 and names exactly the documented methods.
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "undocumented {what}"
                );
                let allowed: BTreeSet<String> = allow
                    .unwrap_or_default()
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect();
                assert_eq!(&allowed, methods, "Allow of {template}");
            }
        }
    }
}

/// Follows a `$ref` (`#/components/...`); anything else is returned as is.
fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local $ref");
            resolve(doc, doc.pointer(pointer).unwrap_or(&Value::Null))
        }
        None => node,
    }
}

/// Property names an object schema documents, through `$ref` and `allOf`.
fn property_names(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(property_names(doc, part));
    }
    names
}

fn property_schema<'a>(doc: &'a Value, schema: &'a Value, name: &str) -> Option<&'a Value> {
    let schema = resolve(doc, schema);
    schema["properties"].get(name).or_else(|| {
        schema["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|part| property_schema(doc, part, name))
    })
}

fn required_names(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    let mut names: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(required_names(doc, part));
    }
    names
}

fn json_type_matches(kind: &str, v: &Value) -> bool {
    match kind {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// A small JSON Schema check: `$ref`, `allOf`, `type`, `enum`, `const`,
/// `properties` (no undocumented ones), `required`, `items`, and
/// `format: date-time` as RFC 3339 UTC.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let mut part = resolve(doc, part).clone();
        // Each part alone would reject the other parts' properties.
        if let Some(o) = part.as_object_mut() {
            o.remove("properties");
            o.remove("required");
        }
        conforms(doc, &part, v, at)?;
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(k) => vec![k.as_str()],
        Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !kinds.is_empty() && !kinds.iter().any(|k| json_type_matches(k, v)) {
        return Err(format!("{at}: {v} is not {kinds:?}"));
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(v) {
            return Err(format!("{at}: {v} not in {options:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return Err(format!("{at}: {v} is not {c}"));
        }
    }
    if schema["format"] == "date-time" {
        if let Some(s) = v.as_str() {
            let utc = s.len() >= 20 && s.as_bytes()[10] == b'T' && s.ends_with('Z');
            if !utc {
                return Err(format!("{at}: {s:?} is not an RFC 3339 UTC time"));
            }
        }
    }
    if let Some(items) = schema.get("items") {
        for (i, item) in v.as_array().into_iter().flatten().enumerate() {
            conforms(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    let names = property_names(doc, schema);
    if let (Some(object), false) = (v.as_object(), names.is_empty()) {
        for key in object.keys() {
            if !names.contains(key) {
                return Err(format!("{at}: field {key:?} is not documented"));
            }
        }
        for key in required_names(doc, schema) {
            if !object.contains_key(&key) {
                return Err(format!("{at}: required field {key:?} missing in {v}"));
            }
        }
        for (key, value) in object {
            if let Some(s) = property_schema(doc, schema, key) {
                conforms(doc, s, value, &format!("{at}.{key}"))?;
            }
        }
    }
    Ok(())
}

#[test]
fn the_schema_check_rejects_undocumented_fields_wrong_types_and_missing_fields() {
    let doc = json!({"components": {"schemas": {
        "A": {"type": "object", "properties": {"x": {"type": "integer"}, "t": {"type": "string", "format": "date-time"}}, "required": ["x"]},
        "B": {"allOf": [{"$ref": "#/components/schemas/A"}, {"type": "object", "properties": {"y": {"type": ["string", "null"]}}, "required": ["y"]}]}
    }}});
    let b = json!({"$ref": "#/components/schemas/B"});
    assert!(conforms(&doc, &b, &json!({"x": 1, "y": null}), "b").is_ok());
    assert!(conforms(
        &doc,
        &b,
        &json!({"x": 1, "y": "s", "t": "2025-01-02T03:04:05Z"}),
        "b"
    )
    .is_ok());
    assert!(conforms(&doc, &b, &json!({"x": 1}), "b").is_err());
    assert!(conforms(&doc, &b, &json!({"x": "1", "y": null}), "b").is_err());
    assert!(conforms(&doc, &b, &json!({"x": 1, "y": null, "z": 0}), "b").is_err());
    assert!(conforms(
        &doc,
        &b,
        &json!({"x": 1, "y": null, "t": "2025-01-02 03:04"}),
        "b"
    )
    .is_err());
}

/// Calls the admin API and checks the answer against the document: the
/// status is documented for the operation and the body matches its schema.
struct Checked<'a> {
    tg: &'a Tollgate,
    doc: Value,
    ids: BTreeMap<&'static str, String>,
    seen: BTreeSet<(String, String, u16)>,
}

impl Checked<'_> {
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        body: Option<Value>,
        with_key: bool,
    ) -> (StatusCode, Value) {
        let (template, query) = template.split_once('?').unwrap_or((template, ""));
        let full = if matches!(template, "/healthz" | "/readyz" | "/openapi.json") {
            template.to_string()
        } else {
            format!("{BASE}{template}")
        };
        let mut path = concrete(&full, &self.ids);
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        let admin = if with_key {
            self.tg.admin()
        } else {
            self.tg.admin().without_key()
        };
        let verb = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, answer) = admin.request(verb, &path, body.as_ref()).await;
        let op = &self.doc["paths"][full.as_str()][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {full} is not documented");
        let documented = resolve(&self.doc, &op["responses"][status.as_str()]);
        assert!(
            documented.is_object(),
            "{method} {full} answered {status}, which is not documented: {answer}"
        );
        match documented["content"]["application/json"]["schema"].as_object() {
            Some(_) => {
                let schema = &documented["content"]["application/json"]["schema"];
                if let Err(e) = conforms(&self.doc, schema, &answer, "body") {
                    panic!("{method} {full} {status}: {e}\n{answer:#}");
                }
            }
            None => assert_eq!(answer, Value::Null, "{method} {full} {status}: a body"),
        }
        self.seen
            .insert((method.to_string(), full, status.as_u16()));
        (status, answer)
    }
}

#[tokio::test]
async fn what_the_admin_api_answers_matches_the_documented_status_codes_and_schemas() {
    let tg = start(StoreKind::Redis).await;
    let doc = fetch_document(&tg).await;
    let mut api = Checked {
        tg: &tg,
        doc,
        ids: probe_ids(),
        seen: BTreeSet::new(),
    };
    let field = |v: &Value, k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {v}"))
            .to_string()
    };

    let (status, created) = api
        .call(
            "POST",
            "/service-accounts",
            Some(
                json!({"name": "billing-sync", "description": "nightly", "scopes": ["tools:read"]}),
            ),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.ids
        .insert("sa", field(&created["service_account"], "id"));
    let (_, listed) = api.call("GET", "/service-accounts", None, true).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    api.call("GET", "/service-accounts?q=BILLING", None, true)
        .await;
    api.call("GET", "/service-accounts/{sa}", None, true).await;
    api.call(
        "PATCH",
        "/service-accounts/{sa}",
        Some(json!({"description": null, "status": "disabled"})),
        true,
    )
    .await;
    let (status, _) = api
        .call(
            "POST",
            "/service-accounts/{sa}/rotate-secret",
            Some(json!({"grace_seconds": 30})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, cred) = api
        .call(
            "POST",
            "/service-accounts/{sa}/credentials",
            Some(json!({"name": "second"})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.ids.insert("cred", field(&cred, "id"));
    let (status, _) = api
        .call("POST", "/service-accounts/{sa}/rotate-secret", None, true)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "two credentials");
    api.call("GET", "/service-accounts/{sa}/credentials", None, true)
        .await;
    api.call(
        "GET",
        "/service-accounts/{sa}/credentials/{cred}",
        None,
        true,
    )
    .await;
    api.call(
        "PATCH",
        "/service-accounts/{sa}/credentials/{cred}",
        Some(json!({"name": "renamed"})),
        true,
    )
    .await;
    let (_, rotated) = api
        .call(
            "POST",
            "/service-accounts/{sa}/credentials/{cred}/rotate-secret",
            Some(json!({"grace_seconds": 60})),
            true,
        )
        .await;
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    api.call("POST", "/service-accounts/{sa}/revoke-tokens", None, true)
        .await;
    api.call("POST", "/revoke-tokens", None, true).await;

    let (status, _) = api
        .call(
            "PUT",
            "/workspaces/{ws}",
            Some(json!({"name": "Payments"})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .call(
            "PUT",
            "/workspaces/{ws}",
            Some(json!({"name": "Payments 2"})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    api.call("GET", "/workspaces", None, true).await;
    api.call("GET", "/workspaces/{ws}", None, true).await;
    api.call(
        "PUT",
        "/workspaces/{ws}/environments/{env}",
        Some(json!({"name": "prod"})),
        true,
    )
    .await;
    api.call("GET", "/workspaces/{ws}/environments", None, true)
        .await;
    api.call(
        "PUT",
        "/workspaces/{ws}/members/{sa}",
        Some(json!({"role": "admin"})),
        true,
    )
    .await;
    api.call("GET", "/workspaces/{ws}/members", None, true)
        .await;
    let ws = api.ids["ws"].clone();
    let (status, key) = api
        .call(
            "POST",
            "/admin-keys",
            Some(json!({"name": "payments admins", "workspace_id": ws})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.ids.insert("key", field(&key, "id"));
    api.call("GET", "/admin-keys", None, true).await;
    api.call("GET", "/admin-keys/{key}", None, true).await;
    let (status, _) = api.call("DELETE", "/admin-keys/{key}", None, true).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, events) = api.call("GET", "/audit-events?limit=200", None, true).await;
    assert!(
        events["data"].as_array().is_some_and(|e| e.len() >= 8),
        "{events}"
    );

    // Errors: a bad body, no key (and, after the deletes, an unknown object).
    let (status, _) = api
        .call(
            "POST",
            "/service-accounts",
            Some(json!({"name": "x", "extra": 1})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.call("GET", "/workspaces", None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, limits) = api
        .call(
            "PUT",
            "/service-accounts/{sa}/limits",
            Some(json!({"rate_limit": {"requests": 5, "per": "1m"}, "daily_quota": 100})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{limits}");
    let (status, _) = api
        .call(
            "PUT",
            "/service-accounts/{sa}/limits",
            Some(json!({"daily_quota": "many"})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, limits) = api
        .call("GET", "/service-accounts/{sa}/limits", None, true)
        .await;
    assert_eq!(status, StatusCode::OK, "{limits}");
    let (status, _) = api
        .call("DELETE", "/service-accounts/{sa}/limits", None, true)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    for (method, template) in [
        ("DELETE", "/workspaces/{ws}/members/{sa}"),
        ("DELETE", "/workspaces/{ws}/environments/{env}"),
        ("DELETE", "/service-accounts/{sa}/credentials/{cred}"),
        ("DELETE", "/workspaces/{ws}"),
        ("DELETE", "/service-accounts/{sa}"),
    ] {
        let (status, _) = api.call(method, template, None, true).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{method} {template}");
    }
    let (status, _) = api.call("GET", "/service-accounts/{sa}", None, true).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted");
    api.call("GET", "/healthz", None, false).await;
    api.call("GET", "/readyz", None, false).await;

    // Every documented operation but the document itself was exercised.
    let exercised: BTreeSet<(String, String)> = api
        .seen
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let not_exercised: Vec<_> = documented_operations(&api.doc)
        .into_iter()
        .filter(|(_, p)| p != "/openapi.json" && p != "/swagger")
        .filter(|op| !exercised.contains(op))
        .collect();
    assert!(not_exercised.is_empty(), "not checked: {not_exercised:?}");
}

/// `/swagger` renders the document on the server: every operation, the
/// proxy listener's too, on an HTML page that runs no script.
#[tokio::test]
async fn swagger_renders_every_documented_operation_as_html_without_scripts() {
    let tg = start(StoreKind::Memory).await;
    let doc = fetch_document(&tg).await;
    let response = tg
        .http()
        .get(tg.admin_url("/swagger"))
        .send()
        .await
        .expect("GET /swagger");
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert!(header("content-type").starts_with("text/html"));
    let csp = header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'none'"),
        "{csp}"
    );
    let page = response.text().await.expect("body");
    assert!(!page.contains("<script"));
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                let id = op["operationId"].as_str().expect("operationId");
                assert!(page.contains(&format!("id=\"op-{id}\"")), "{method} {path}");
            }
        }
    }
    for proxy_path in [
        "/api/auth/oauth2/token",
        "/api/auth/oauth2/revoke",
        "/.well-known/oauth-authorization-server",
        "/api/v1/service-account/whoami",
    ] {
        assert!(
            doc["paths"][proxy_path]["servers"].is_array(),
            "{proxy_path}"
        );
        assert!(page.contains(proxy_path), "{proxy_path}");
    }
}
