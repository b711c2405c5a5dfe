//! `serve_dir` (AxKit2's name): an HTML listing of a directory that has no
//! `DirectoryIndex` file (hook `response`). Off unless this plugin is
//! loaded; list it before `serve_file`, which answers 403 for directories.
//!
//! Directives:
//! - `DirListHidden on|off` (default off): also list names starting with
//!   a dot.
//!
//! ```text
//! Plugin uri_to_file
//! Plugin serve_dir
//! Plugin serve_file
//! ```
//!
//! The listing is sorted (directories first, then by name), shows each
//! entry's size and modification time, and escapes every name both in the
//! link (percent-encoded) and in the text (HTML-escaped), so a file called
//! `<img src=x onerror=alert(1)>` is shown, not run. Reading the directory
//! happens on the blocking pool: a huge or slow directory never stalls the
//! worker's other connections.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::SystemTime;

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::{Directive, Scopes, ValueType};
use crate::plugin::{
    hook, Body, Context, Hook, HookFuture, Hooks, Level, Outcome, Plugin, PluginInit, PluginSpec,
};
use crate::server::html_escape;

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "serve_dir",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![Directive::new("DirListHidden", ValueType::OnOff)
        .scopes(Scopes::SERVER | Scopes::LOCATION)
        .default("off")
        .doc("List names starting with a dot in directory listings")]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(ServeDir))
}

struct ServeDir;

impl Plugin for ServeDir {
    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::Response])
    }

    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let Some(dir) = ctx.filename.clone() else {
            return Outcome::Declined.into();
        };
        // uri_to_file leaves the directory itself as the filename (with its
        // metadata) when no index file exists, and redirects a directory
        // URL without its slash before we get here.
        let is_dir = ctx.metadata.as_ref().is_some_and(|m| m.is_dir());
        if !is_dir || !ctx.request.decoded_path().ends_with('/') {
            return Outcome::Declined.into();
        }
        if !matches!(ctx.request.method(), "GET" | "HEAD") {
            ctx.response.headers.set("Allow", "GET, HEAD");
            return Outcome::Status(405).into();
        }
        let hidden = ctx.config().flag("DirListHidden");
        hook(async move {
            let entries = match tokio::task::spawn_blocking(move || read_entries(dir, hidden)).await
            {
                Ok(Ok(entries)) => entries,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Outcome::Status(403)
                }
                Ok(Err(e)) => {
                    ctx.log(Level::Error, &format!("listing: {e}"));
                    return Outcome::Status(500);
                }
                Err(e) => return Outcome::Error(format!("listing task failed: {e}")),
            };
            let page = render(ctx.request.decoded_path(), &entries);
            ctx.response
                .headers
                .set("Content-Type", "text/html; charset=utf-8");
            ctx.response.status = 200;
            ctx.response.body = Body::Bytes(Bytes::from(page));
            Outcome::Ok
        })
    }
}

/// One directory entry as listed.
struct Entry {
    name: String,
    is_dir: bool,
    size: u64,
    modified: Option<SystemTime>,
}

/// The directory's entries, directories first, then by name. Names that
/// are not UTF-8 are shown lossily (their links would not resolve anyway:
/// the core only serves UTF-8 paths).
fn read_entries(dir: PathBuf, hidden: bool) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if !hidden && name.starts_with('.') {
            continue;
        }
        // Follows symlinks, as the file would be served; a dangling link
        // is listed without size or date.
        let md = std::fs::metadata(item.path()).ok();
        entries.push(Entry {
            name,
            is_dir: md.as_ref().is_some_and(|m| m.is_dir()),
            size: md.as_ref().map_or(0, |m| m.len()),
            modified: md.and_then(|m| m.modified().ok()),
        });
    }
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(entries)
}

/// Everything but unreserved characters is percent-encoded in a link.
const LINK: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn render(path: &str, entries: &[Entry]) -> String {
    let title = html_escape(path);
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n"
    );
    if path != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>\n");
    }
    for e in entries {
        let slash = if e.is_dir { "/" } else { "" };
        let size = if e.is_dir {
            "-".to_string()
        } else {
            e.size.to_string()
        };
        let date = e
            .modified
            .map(axkit_http::fmt_http_date)
            .unwrap_or_default();
        out.push_str(&format!(
            "<tr><td><a href=\"./{}{slash}\">{}{slash}</a></td><td>{size}</td><td>{date}</td></tr>\n",
            utf8_percent_encode(&e.name, LINK),
            html_escape(&e.name),
        ));
    }
    out.push_str("</table>\n</body></html>\n");
    out
}
