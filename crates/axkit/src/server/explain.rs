//! `axkit --explain -c FILE [--host H] URL`: what the server would do with
//! a request for URL, without serving it. It prints the `<Server>` and
//! `<Location>` chosen (with the file and line where each begins), every
//! directive written for that scope (in the Location, its Server, the
//! enclosing Locations or the global scope: what the merge kept), with
//! the file and line it came from and a secret's value left out, and the
//! plugins of each hook in the order the walk calls them.
//!
//! The plugins are built once, as `--check` builds them (which hooks a
//! plugin has is known only then), from the worker's own tables: the
//! chains printed are the ones a worker runs.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Value};
use crate::plugin::{Catalog, Hook};
use crate::server::runtime::{WorkerRt, CONTENT_HOOKS};

/// The text `--explain` prints for `url` (a path, or `http://HOST[:PORT]/PATH`),
/// `host` overriding the URL's; Err: what to print instead.
pub(crate) fn explain(
    config: Config,
    catalog: &Catalog,
    url: &str,
    host: Option<&str>,
) -> Result<String, Vec<String>> {
    let (url_host, port, target) = split_url(url)?;
    let host = host.or(url_host);
    let path = target.split('?').next().unwrap_or(target);
    let Some(path) = axkit_http::normalize_path(path) else {
        return Err(vec![format!(
            "{url:?}: the path cannot be normalised (a bad %-escape, a control character, or `..` above the root): the server answers 400"
        )]);
    };
    let config = Arc::new(config);
    let worker = WorkerRt::new(config.clone(), catalog, &[])?;
    let index = pick_server(&config, host, port);
    let server = &config.servers[index];
    let node = server.location_for(&path);
    let at = server
        .locations
        .iter()
        .position(|n| std::ptr::eq(n, node))
        .unwrap_or(0);
    let location = &worker.servers[index].locations[at];

    let mut out = String::new();
    let listen: Vec<String> = server.listen.iter().map(ToString::to_string).collect();
    let _ = write!(
        out,
        "Server: {}:{} (listen {}",
        server.file,
        server.line,
        listen.join(" ")
    );
    if !server.names.is_empty() {
        let _ = write!(out, "; names {}", server.names.join(" "));
    }
    out.push_str(")\n");
    if node.prefix == "/" && node.line == server.line {
        out.push_str("Location: none (the Server's own settings)\n");
    } else {
        let _ = writeln!(
            out,
            "Location: {} ({}:{})",
            node.prefix, node.file, node.line
        );
    }

    out.push_str("Directives:\n");
    let registry = &config.registry;
    let mut lines = Vec::new();
    for (id, directive, plugin) in registry.iter() {
        for setting in node.config.settings_by_id(id) {
            // A default was written nowhere (`axkit --directives` lists them).
            if setting.line == 0 {
                continue;
            }
            let value = if directive.secret {
                "(secret, not shown)".to_string()
            } else {
                show(&setting.args)
            };
            lines.push((
                setting.file.clone(),
                setting.line,
                format!(
                    "  {} {}    # {}:{} ({plugin})",
                    directive.name, value, setting.file, setting.line
                ),
            ));
        }
    }
    lines.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (.., line) in lines {
        out.push_str(line.trim_end_matches(' '));
        out.push('\n');
    }

    out.push_str("Plugins, per hook, in the order they are called:\n");
    for hook in Hook::ALL {
        // Connection hooks run before a request names its Server or
        // Location: in the root of the first Server on the address.
        let chain = match hook {
            Hook::Connect | Hook::PreRequest | Hook::Disconnect => {
                worker.servers[index].locations[0].chain(hook)
            }
            Hook::Logging if location.chain(hook).is_empty() => continue,
            _ => location.chain(hook),
        };
        if chain.is_empty() {
            continue;
        }
        let names: Vec<&str> = chain.iter().map(|(name, ..)| &**name).collect();
        let mode = if CONTENT_HOOKS.contains(&hook) {
            " (innermost scope first; the first that does not decline answers)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {}: {}{mode}", hook.name(), names.join(", "));
    }
    Ok(out)
}

/// What a URL on the command line names: its host and port, if it is a
/// full URL, and the path with its query.
type UrlParts<'a> = (Option<&'a str>, Option<u16>, &'a str);

/// `http://HOST[:PORT]/PATH` or `/PATH`.
fn split_url(url: &str) -> Result<UrlParts<'_>, Vec<String>> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else {
        if url.starts_with('/') {
            return Ok((None, None, url));
        }
        return Err(vec![format!(
            "{url:?}: expected a path (/PATH) or a URL (http://HOST/PATH)"
        )]);
    };
    let (authority, target) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => return Err(vec![format!("{url:?}: bad port {p:?}")]),
        },
        _ => (authority, None),
    };
    Ok(((!host.is_empty()).then_some(host), port, target))
}

/// The `<Server>` a request for `host` on `port` reaches, as a worker picks
/// it: among the Servers listening on that port (all of them when none
/// does, or no port is given), the first whose name matches, else the
/// first.
fn pick_server(config: &Config, host: Option<&str>, port: Option<u16>) -> usize {
    let on_port: Vec<usize> = (0..config.servers.len())
        .filter(|&i| port.is_some_and(|p| config.servers[i].listen.iter().any(|a| a.port() == p)))
        .collect();
    let candidates = if on_port.is_empty() {
        (0..config.servers.len()).collect()
    } else {
        on_port
    };
    host.and_then(|h| {
        candidates
            .iter()
            .copied()
            .find(|&i| config.servers[i].matches_name(h))
    })
    .unwrap_or(candidates[0])
}

/// A setting's arguments as they could be written again.
fn show(args: &[Value]) -> String {
    let words: Vec<String> = args
        .iter()
        .filter_map(|v| match v {
            Value::Str(s) => Some(word(s)),
            Value::Path(p) => Some(word(&p.display().to_string())),
            Value::Int(n) => Some(n.to_string()),
            Value::Size(n) => Some(size(*n)),
            Value::Duration(d) => Some(duration(*d)),
            Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_string()),
            Value::Regex(r) => Some(word(r.as_str())),
            Value::Flag => None,
            Value::Block(lines) => Some(format!("<block of {} line(s)>", lines.len())),
        })
        .collect();
    words.join(" ")
}

/// Quoted when it would not read back as one word.
fn word(s: &str) -> String {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || "\"'#\\".contains(c)) {
        format!("{s:?}")
    } else {
        s.to_string()
    }
}

fn size(n: u64) -> String {
    for (unit, suffix) in [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

fn duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.is_zero() {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}
