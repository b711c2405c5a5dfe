//! HTML for the pages plugins make themselves (listings, error pages):
//! escaping, and the server's built-in error page.

use super::Failure;

/// Escape text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The built-in error page for `status`: small, valid HTML, nothing
/// internal unless asked for (`failure`, shown with `StackTrace On`).
pub fn default_error_page(status: u16, failure: Option<&Failure>) -> String {
    let reason = axkit_http::reason_phrase(status);
    let detail = match failure {
        Some(f) => format!(
            "<pre>plugin {}, hook {}: {}</pre>\n",
            html_escape(&f.plugin),
            f.hook,
            html_escape(&f.message)
        ),
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n<body><h1>{status} {reason}</h1>\n{detail}</body></html>\n"
    )
}
