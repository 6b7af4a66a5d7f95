//! The rows of an account's detail page that show its token settings and
//! IP allowlist (read only; the admin API changes them).

use serde_json::Value;

use crate::admin::esc;

/// `<tr>` rows for the account object `v` of the admin API.
pub(super) fn account_settings_rows(v: &Value) -> String {
    let or_default = |key: &str, default: &str| match &v[key] {
        Value::Null => default.to_string(),
        Value::Number(n) => n.to_string(),
        other => esc(&other.to_string()),
    };
    let issue = match &v["token_issue_limit"] {
        Value::Object(l) => format!(
            "{} per {}",
            l.get("requests").map(Value::to_string).unwrap_or_default(),
            esc(l.get("per").and_then(Value::as_str).unwrap_or(""))
        ),
        _ => "no limit".to_string(),
    };
    let nets: Vec<String> = v["ip_allowlist"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(esc)
        .collect();
    let allowlist = match (nets.is_empty(), v["ip_allowlist_on_requests"].as_bool()) {
        (true, _) => "any address".to_string(),
        (false, Some(true)) => format!(
            "<code>{}</code> (token requests and every request)",
            nets.join(" ")
        ),
        (false, _) => format!("<code>{}</code> (token requests)", nets.join(" ")),
    };
    format!(
        "<tr><th scope=\"row\">token lifetime (s)</th><td>{ttl}</td></tr>\
         <tr><th scope=\"row\">live tokens at most</th><td>{cap}</td></tr>\
         <tr><th scope=\"row\">token issuance</th><td>{issue}</td></tr>\
         <tr><th scope=\"row\">IP allowlist</th><td>{allowlist}</td></tr>",
        ttl = or_default("token_ttl_seconds", "default"),
        cap = or_default("max_live_tokens", "no cap"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_show_defaults_and_values_escaped() {
        let rows = account_settings_rows(&json!({}));
        assert!(
            rows.contains("<td>default</td>") && rows.contains("any address"),
            "{rows}"
        );
        let rows = account_settings_rows(&json!({
            "token_ttl_seconds": 60,
            "max_live_tokens": 3,
            "token_issue_limit": {"requests": 5, "per": "1m"},
            "ip_allowlist": ["10.0.0.0/8", "<x>"],
            "ip_allowlist_on_requests": true,
        }));
        assert!(
            rows.contains("<td>60</td>") && rows.contains("<td>3</td>"),
            "{rows}"
        );
        assert!(rows.contains("5 per 1m"), "{rows}");
        assert!(
            rows.contains("10.0.0.0/8 &lt;x&gt;") && rows.contains("every request"),
            "{rows}"
        );
    }
}
