//! The pieces the console's pages are built from: tables, rows, labelled
//! controls and forms. Each takes text already escaped unless it says
//! otherwise, and renders the one way every page shows that piece.

use super::session::SessionView;
use crate::admin::esc;

/// The hidden input that carries the session's CSRF token in a POST.
pub(super) fn csrf_input(s: &SessionView) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

/// A one-button form that posts to `action`.
pub(super) fn button_form(
    s: &SessionView,
    action: &str,
    label: &str,
    fields: &[(&str, &str)],
    danger: bool,
) -> String {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}{hidden}<button type=\"submit\"{}>{}</button></form>",
        esc(action),
        csrf_input(s),
        if danger { " class=\"danger\"" } else { "" },
        esc(label)
    )
}

/// `<code>` around text already escaped.
pub(super) fn code(html: &str) -> String {
    format!("<code>{html}</code>")
}

/// One table row of cells already escaped.
pub(super) fn row(cells: &[String]) -> String {
    let cells: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
    format!("<tr>{cells}</tr>")
}

/// A row of a one-object table: the field's `name`, then its `value`
/// (already escaped).
pub(super) fn field_row(name: &str, value: &str) -> String {
    format!("<tr><th scope=\"row\">{name}</th><td>{value}</td></tr>")
}

/// A table of `rows` under a header row of `columns`; with no rows, one
/// row across every column that says `empty` when given.
pub(super) fn table(columns: &[&str], rows: &str, empty: Option<&str>) -> String {
    captioned_table("", columns, rows, empty)
}

/// [`table`] with a `<caption>` (already escaped) unless it is empty.
pub(super) fn captioned_table(
    caption: &str,
    columns: &[&str],
    rows: &str,
    empty: Option<&str>,
) -> String {
    let caption = if caption.is_empty() {
        String::new()
    } else {
        format!("<caption>{caption}</caption>")
    };
    let head: String = columns
        .iter()
        .map(|c| format!("<th scope=\"col\">{c}</th>"))
        .collect();
    let rows = match empty {
        Some(text) if rows.is_empty() => {
            format!("<tr><td colspan=\"{}\">{text}</td></tr>", columns.len())
        }
        _ => rows.to_string(),
    };
    format!("<table>{caption}<tr>{head}</tr>{rows}</table>")
}

/// A label and the `<input>` of `kind` it names, sent as `name`; `attrs`
/// (already escaped) follow as written, each after a space.
pub(super) fn input(label: &str, kind: &str, id: &str, name: &str, attrs: &str) -> String {
    format!(
        "<label for=\"{id}\">{label}</label> <input type=\"{kind}\" id=\"{id}\" name=\"{name}\"{attrs}>"
    )
}

/// A label and the `<select>` of `options` it names, sent as `name`.
pub(super) fn select(label: &str, id: &str, name: &str, options: &str) -> String {
    format!(
        "<label for=\"{id}\">{label}</label> <select id=\"{id}\" name=\"{name}\">{options}</select>"
    )
}

/// ` value="…"`: an input's current value, escaped.
pub(super) fn value(v: &str) -> String {
    format!(" value=\"{}\"", esc(v))
}

/// What an id input takes: the pattern of an organization, workspace or
/// environment id.
pub(super) const ID_ATTRS: &str = " required pattern=\"[A-Za-z0-9_\\-]{1,64}\"";
/// What a name input takes.
pub(super) const NAME_ATTRS: &str = " required maxlength=\"128\"";

/// How a form is sent: a GET (a search when `search`), or a POST
/// carrying the session's CSRF token.
pub(super) enum Submit<'a> {
    Get { search: bool },
    Post(&'a SessionView),
}

/// A form to `action` of `controls` side by side, then the submit button
/// `submit`.
pub(super) fn form(
    submit_by: Submit<'_>,
    action: &str,
    controls: &[String],
    submit: &str,
) -> String {
    let (method, role, csrf) = match submit_by {
        Submit::Get { search } => (
            "get",
            if search { " role=\"search\"" } else { "" },
            String::new(),
        ),
        Submit::Post(s) => ("post", "", csrf_input(s)),
    };
    format!(
        "<form method=\"{method}\" action=\"{}\"{role}>{csrf}{} <button type=\"submit\">{submit}</button></form>",
        esc(action),
        controls.join(" ")
    )
}

/// A read-only text input showing `value` (already escaped) under its
/// label, with a copy button.
pub(super) fn copyable(label: &str, id: &str, size: u16, value: &str) -> String {
    format!(
        "<p><label for=\"{id}\">{label}</label><br><input type=\"text\" id=\"{id}\" readonly size=\"{size}\" value=\"{value}\"> \
         <button type=\"button\" data-copy=\"{id}\" hidden>Copy</button></p>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_names_its_columns_and_says_when_it_is_empty() {
        let rows = row(&["a".into(), code("b")]);
        assert_eq!(
            table(&["one", ""], &rows, Some("None.")),
            "<table><tr><th scope=\"col\">one</th><th scope=\"col\"></th></tr>\
             <tr><td>a</td><td><code>b</code></td></tr></table>"
        );
        assert_eq!(
            captioned_table("Of x", &["one", "two"], "", Some("None.")),
            "<table><caption>Of x</caption><tr><th scope=\"col\">one</th><th scope=\"col\">two</th></tr>\
             <tr><td colspan=\"2\">None.</td></tr></table>"
        );
        assert_eq!(
            table(&["one"], "", None),
            "<table><tr><th scope=\"col\">one</th></tr></table>"
        );
    }

    #[test]
    fn a_search_form_puts_its_labelled_controls_before_the_button() {
        let html = form(
            Submit::Get { search: true },
            "/console/o/<x>",
            &[
                input("Name", "search", "q", "q", &value("a\"b")),
                select("Status", "st", "status", "<option>any</option>"),
            ],
            "Search",
        );
        assert_eq!(
            html,
            "<form method=\"get\" action=\"/console/o/&lt;x&gt;\" role=\"search\">\
             <label for=\"q\">Name</label> <input type=\"search\" id=\"q\" name=\"q\" value=\"a&quot;b\"> \
             <label for=\"st\">Status</label> <select id=\"st\" name=\"status\"><option>any</option></select> \
             <button type=\"submit\">Search</button></form>"
        );
        assert_eq!(
            form(
                Submit::Get { search: false },
                "/console/orgs",
                &[input("Id", "text", "org", "org", ID_ATTRS)],
                "Open"
            ),
            "<form method=\"get\" action=\"/console/orgs\"><label for=\"org\">Id</label> \
             <input type=\"text\" id=\"org\" name=\"org\" required pattern=\"[A-Za-z0-9_\\-]{1,64}\"> \
             <button type=\"submit\">Open</button></form>"
        );
    }
}
