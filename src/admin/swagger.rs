//! `GET /swagger`: the OpenAPI document (`/openapi.json`) rendered on the
//! server as one readable HTML page. Swagger UI is not served: it is a
//! JavaScript application whose assets would come from a CDN (no internet
//! is assumed, and the strict CSP forbids it) or be vendored (a large
//! bundle to keep patched). The page is made once, on first request.

use std::sync::OnceLock;

use http::StatusCode;
use serde_json::Value;

use super::html::{esc, page};
use super::reply::Reply;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

pub(crate) fn reply() -> Reply {
    static BODY: OnceLock<String> = OnceLock::new();
    let body = BODY.get_or_init(|| render(crate::openapi::DOCUMENT));
    page(StatusCode::OK, "tollgate API", body, None)
}

/// Follows a local `$ref` (`#/components/…`) once.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/")
            .map(|p| p.split('/').fold(doc, |node, key| &node[key]))
            .unwrap_or(v),
        None => v,
    }
}

/// The name a `$ref` points at, linked to its schema below.
fn schema_link(v: &Value) -> String {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or(r);
            format!("<a href=\"#schema-{0}\">{0}</a>", esc(name))
        }
        None => match v.get("type") {
            Some(t) => format!("<code>{}</code>", esc(&t.to_string())),
            None => "<code>object</code>".to_string(),
        },
    }
}

fn text(v: &Value) -> String {
    esc(v.as_str().unwrap_or(""))
}

fn render(document: &str) -> String {
    let Ok(doc) = serde_json::from_str::<Value>(document) else {
        return "<main><p>The API document could not be read.</p></main>".to_string();
    };
    let mut out = String::new();
    out.push_str(&format!(
        "<header><strong>{}</strong> <span>{}</span> <a href=\"/openapi.json\">openapi.json</a> \
         <a href=\"/console\">console</a></header><main>",
        text(&doc["info"]["title"]),
        text(&doc["info"]["version"]),
    ));
    out.push_str(&format!("<p>{}</p>", text(&doc["info"]["description"])));
    if let Some(servers) = doc["servers"].as_array() {
        out.push_str("<h2>Servers</h2><ul>");
        for s in servers {
            out.push_str(&format!(
                "<li><code>{}</code> {}</li>",
                text(&s["url"]),
                text(&s["description"])
            ));
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>Operations</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                out.push_str(&operation(&doc, path, method, item, op));
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            out.push_str(&format!(
                "<section id=\"schema-{0}\"><h3>{0}</h3><p>{1}</p>{2}</section>",
                esc(name),
                text(&schema["description"]),
                properties(schema)
            ));
        }
    }
    out.push_str("</main>");
    out
}

fn operation(doc: &Value, path: &str, method: &str, item: &Value, op: &Value) -> String {
    let id = op["operationId"].as_str().unwrap_or("");
    let mut out = format!(
        "<section id=\"op-{}\"><h3><span class=\"method\">{}</span> <code>{}</code></h3><p>{}</p>",
        esc(id),
        method.to_ascii_uppercase(),
        esc(path),
        text(&op["summary"]),
    );
    if op["description"].is_string() {
        out.push_str(&format!("<p>{}</p>", text(&op["description"])));
    }
    let params: Vec<&Value> = item["parameters"]
        .as_array()
        .into_iter()
        .chain(op["parameters"].as_array())
        .flatten()
        .map(|p| resolve(doc, p))
        .collect();
    if !params.is_empty() {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>description</th></tr>");
        for p in params {
            out.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                text(&p["name"]),
                text(&p["in"]),
                text(&p["description"])
            ));
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody").map(|b| resolve(doc, b)) {
        if let Some(content) = body["content"].as_object() {
            for (media, c) in content {
                out.push_str(&format!(
                    "<p>Body <code>{}</code>: {}</p>",
                    esc(media),
                    schema_link(&c["schema"])
                ));
            }
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        out.push_str("<table><tr><th>status</th><th>answer</th></tr>");
        for (status, r) in responses {
            let r = resolve(doc, r);
            let schema = r["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|c| schema_link(&c["schema"]))
                .unwrap_or_default();
            out.push_str(&format!(
                "<tr><td>{}</td><td>{} {}</td></tr>",
                esc(status),
                text(&r["description"]),
                schema
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
    out
}

fn properties(schema: &Value) -> String {
    let Some(props) = schema["properties"].as_object() else {
        return String::new();
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = String::from("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
    for (name, p) in props {
        let ty = if p.get("$ref").is_some() {
            schema_link(p)
        } else if let Some(items) = p.get("items") {
            format!("list of {}", schema_link(items))
        } else {
            schema_link(p)
        };
        out.push_str(&format!(
            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            if required.contains(&name.as_str()) {
                " (required)"
            } else {
                ""
            },
            ty,
            text(&p["description"])
        ));
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_operation_and_schema_is_on_the_page() {
        let page = render(crate::openapi::DOCUMENT);
        let doc: Value = serde_json::from_str(crate::openapi::DOCUMENT).expect("JSON");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    let id = op["operationId"].as_str().expect("operationId");
                    assert!(page.contains(&format!("id=\"op-{id}\"")), "{method} {path}");
                }
            }
        }
        for name in doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .keys()
        {
            assert!(page.contains(&format!("id=\"schema-{name}\"")), "{name}");
        }
        assert!(!page.contains("<script"));
    }
}
