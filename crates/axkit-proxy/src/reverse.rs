//! `ProxyPassReverse`: the upstream's own URLs in the `Location`,
//! `Content-Location` and `URI` headers of its answers (a redirect to
//! `http://127.0.0.1:9001/base/login`) rewritten to the prefix the client
//! used (`/app/login`), as Apache's `ProxyPassReverse` and nginx's
//! `proxy_redirect` do.
//!
//! Directive (Server or Location, repeatable):
//! - `ProxyPassReverse URL` in a `<Location>`: a header value that starts
//!   with `URL` gets the Location's prefix instead (what nginx's
//!   `proxy_redirect default` does for the `proxy_pass` of a location);
//! - `ProxyPassReverse /PREFIX URL`: that prefix instead.
//!
//! `URL` is `http://` or `https://` with a path, or `upstream://NAME/PATH`
//! for every server of the group (its `http://` or `https://` origin).
//! It matches whole path segments (`/v1` takes `/v1` and `/v1/x`, not
//! `/v10`), the longest first; the value
//! becomes the prefix followed by the rest (path, query, fragment), a
//! path without scheme and host, which the client resolves against the
//! URL it asked for.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use axkit::config::{Args, Config, List, LocationConfig, Scopes};
use axkit::plugin::TrustedMap;
use axkit::Context;

use crate::upstream::Group;

/// One `ProxyPassReverse` line.
#[derive(Clone, Debug)]
pub(crate) struct Reverse {
    /// `None`: the Location's own prefix.
    prefix: Option<String>,
    to: Upstream,
}

/// The upstream a `ProxyPassReverse` line names.
#[derive(Clone, Debug)]
enum Upstream {
    /// `http://host:port/path` or `https://…`, as written.
    Url(String),
    /// `upstream://NAME/path`: every server of the group, with that path.
    Group { name: String, path: String },
}

pub(crate) static REVERSE: List<Reverse> = List::parsed("ProxyPassReverse", parse_reverse)
    .args(Args::Range(1, 2))
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("ProxyPassReverse URL (in a Location: to its prefix) or ProxyPassReverse /PREFIX URL: rewrite Location, Content-Location and URI headers that start with the upstream URL to the client's prefix");

fn parse_reverse(args: &[&str]) -> Result<Reverse, String> {
    let (prefix, url) = crate::prefix_and_url(args, "ProxyPassReverse")?;
    // Checked as ProxyPass checks its URL.
    let to = match crate::split_url(url)? {
        (crate::To::Group(name), path) => Upstream::Group {
            name: name.to_string(),
            path,
        },
        _ => Upstream::Url(url.to_string()),
    };
    Ok(Reverse { prefix, to })
}

/// Every Location's `ProxyPassReverse` lines as a request compares them:
/// each URL (each server's, for a group) with the prefix it maps to, the
/// longest URL first. Worked out when the plugin is made, so that a
/// response only compares; keyed by the address of the Location's frozen
/// config, which the configuration gives, not a request (a trusted map).
pub(crate) struct Reversed(TrustedMap<usize, Box<[(String, String)]>>);

/// The `ProxyPassReverse` lines of every Location, resolved; an error
/// for an `upstream://NAME` that names no group of the config.
pub(crate) fn resolve(
    config: &Config,
    groups: &HashMap<String, Rc<Group>>,
) -> Result<Reversed, String> {
    let mut out = TrustedMap::default();
    for server in &config.servers {
        for location in &server.locations {
            let lines = location.config.list(&REVERSE);
            if lines.is_empty() {
                continue;
            }
            let mut pairs = Vec::new();
            for (line, setting) in lines.iter().zip(location.config.settings(REVERSE.name())) {
                let prefix = line.prefix.as_deref().unwrap_or(&location.prefix);
                match &line.to {
                    Upstream::Url(url) => pairs.push((url.clone(), prefix.to_string())),
                    Upstream::Group { name, path } => {
                        let Some(group) = groups.get(name) else {
                            return Err(format!(
                                "{}:{}: ProxyPassReverse: no <Upstream {name}> in the config",
                                setting.file, setting.line
                            ));
                        };
                        for server in &group.servers {
                            pairs.push((format!("{}{path}", server.origin), prefix.to_string()));
                        }
                    }
                }
            }
            pairs.sort_by_key(|(url, _)| std::cmp::Reverse(url.len()));
            out.insert(Arc::as_ptr(&location.config) as usize, pairs.into());
        }
    }
    Ok(Reversed(out))
}

/// The response headers that may carry an upstream URL.
const HEADERS: [&str; 3] = ["Location", "Content-Location", "URI"];

/// Rewrite the response's `Location`, `Content-Location` and `URI` by the
/// `ProxyPassReverse` lines of the request's Location.
pub(crate) fn rewrite(ctx: &mut Context, reversed: &Reversed) {
    if !ctx.config().list(&REVERSE).is_empty() {
        rewrite_listed(ctx, reversed);
    }
}

/// [`rewrite`] with the `ProxyPassReverse` lines there are: out of line,
/// so that a proxy without any runs only the test above.
#[inline(never)]
fn rewrite_listed(ctx: &mut Context, reversed: &Reversed) {
    let location = ctx.config() as *const LocationConfig as usize;
    let Some(pairs) = reversed.0.get(&location) else {
        return;
    };
    for name in HEADERS {
        let Some(value) = ctx.response.headers.get(name) else {
            continue;
        };
        if let Some(new) = pairs
            .iter()
            .find_map(|(url, prefix)| mapped(value, url, prefix))
        {
            ctx.response.headers.set(name, new);
        }
    }
}

/// `value` with `url` at its start replaced by `prefix`, when `url`
/// matches whole segments; the scheme and host compare without case.
fn mapped(value: &str, url: &str, prefix: &str) -> Option<String> {
    let head = value.get(..url.len())?;
    let authority_end = url
        .find("://")
        .map(|i| i + 3 + url[i + 3..].find('/').unwrap_or(url.len() - i - 3))?;
    // Bytes: the URL's authority may end inside a character of `value`
    // (an upstream's `Location` with non-ASCII bytes in its host).
    let (head, url_bytes) = (head.as_bytes(), url.as_bytes());
    if !head[..authority_end].eq_ignore_ascii_case(&url_bytes[..authority_end])
        || head[authority_end..] != url_bytes[authority_end..]
    {
        return None;
    }
    // The URL's closing slash, if any, stays with the rest.
    let rest = &value[url.len() - usize::from(url.ends_with('/'))..];
    if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
        return None;
    }
    let rest = match (prefix.ends_with('/'), rest.strip_prefix('/')) {
        (true, Some(r)) => r,
        _ => rest,
    };
    let mut out = String::with_capacity(prefix.len() + rest.len());
    out.push_str(prefix);
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_back_by_whole_segments() {
        let m = |v, u, p| mapped(v, u, p);
        assert_eq!(
            m("http://b:81/base/x?y", "http://b:81/base/", "/app").as_deref(),
            Some("/app/x?y")
        );
        assert_eq!(
            m("http://b:81/base/x", "http://b:81/base/", "/app/").as_deref(),
            Some("/app/x")
        );
        assert_eq!(
            m("HTTP://B:81/v1/users", "http://b:81/v1", "/api").as_deref(),
            Some("/api/users")
        );
        assert_eq!(
            m("http://b:81/v1", "http://b:81/v1", "/api").as_deref(),
            Some("/api")
        );
        assert_eq!(m("http://b:81/v10", "http://b:81/v1", "/api"), None);
        assert_eq!(m("http://b:81/V1/x", "http://b:81/v1", "/api"), None);
        assert_eq!(m("http://b:810/v1", "http://b:81/v1", "/api"), None);
        assert_eq!(m("/v1/x", "http://b:81/v1", "/api"), None);
        assert_eq!(m("http://é", "http://b:81/", "/"), None);
    }
}
