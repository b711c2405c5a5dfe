//! `serve_file`: answers GET and HEAD with the file `uri_translation`
//! mapped the request to (hook `response`), with everything a caching
//! proxy, a download manager and a browser rely on: validators, conditional
//! requests, byte ranges, caching headers and precompressed siblings.
//!
//! Directives (all Server or Location):
//! - `FileETag on|off` (default on): send an `ETag` made of inode, size and
//!   modification time.
//! - `CacheControl VALUE`: the `Cache-Control` header for files served here
//!   (e.g. `"public, max-age=3600"`).
//! - `Expires access+DURATION | modification+DURATION | off`: an `Expires`
//!   date that long after the request (or the file's mtime), as Apache's
//!   mod_expires `A`/`M` forms.
//! - `MaxRanges N` (default 100): a `Range` with more ranges than this is
//!   ignored (the whole file is sent), as are overlapping ranges.
//! - `SmallFileSize SIZE` (default 32K): files up to this size are read
//!   once (and kept by the open-file cache) and sent with the head in one
//!   write; larger ones go out with sendfile.
//! - `Precompressed gzip|br…`: send `FILE.gz` / `FILE.br` instead of
//!   `FILE` when it exists and `Accept-Encoding` allows it (first listed
//!   coding that fits wins), with `Content-Encoding` and
//!   `Vary: Accept-Encoding`; ranges and validators apply to the encoded
//!   file. With `OpenFileCache` on, siblings are looked for on the
//!   blocking pool, never on the event loop.
//!
//! ```text
//! Plugin uri_to_file
//! Plugin fast_mime_map
//! Plugin serve_file
//! <Location /assets>
//!     CacheControl  "public, max-age=86400"
//!     Expires       access+1d
//!     Precompressed br gzip
//! </Location>
//! ```
//!
//! Status codes: 200, 206 (one range, or `multipart/byteranges` for
//! several), 304 / 412 (RFC 9110 §13 preconditions), 416 with
//! `Content-Range: bytes */LEN`, 404 when the file does not exist, 403 for
//! directories without an index and anything that is not a regular file,
//! 405 with `Allow` for other methods.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::config::{Args, Directive, Scopes, ValueType};
use crate::plugin::{
    hook, Body, Context, Hook, HookFuture, Hooks, Level, OpenFile, Outcome, Plugin, PluginInit,
    PluginSpec,
};
use crate::plugins::file_http::{self, Precondition, Ranges};

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "serve_file",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    let here = Scopes::SERVER | Scopes::LOCATION;
    vec![
        Directive::new("FileETag", ValueType::OnOff)
            .scopes(here)
            .default("on")
            .doc("Send an ETag made of the file's inode, size and modification time"),
        Directive::new("CacheControl", ValueType::String)
            .scopes(here)
            .doc("Cache-Control header for files served here, e.g. \"public, max-age=3600\""),
        Directive::new("Expires", ValueType::String)
            .scopes(here)
            .doc("Expires header: access+DURATION, modification+DURATION or off"),
        Directive::new("MaxRanges", ValueType::Integer)
            .scopes(here)
            .default("100")
            .doc("Most ranges honoured in one Range header; more (or overlapping) sends the file"),
        Directive::new("SmallFileSize", ValueType::Size)
            .scopes(here)
            .default("32K")
            .doc("Files up to this size are sent from memory with the head in one write"),
        Directive::new(
            "Precompressed",
            ValueType::Enum(vec!["gzip".into(), "br".into()]),
        )
        .args(Args::Many)
        .scopes(here)
        .doc("Send FILE.gz / FILE.br when Accept-Encoding allows, first listed wins"),
    ]
}

/// `Expires` is checked when the server starts, so a typo stops it with
/// file and line instead of surfacing on a request.
fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let scopes = init
        .config
        .servers
        .iter()
        .flat_map(|s| s.locations.iter().map(|l| &l.config));
    for config in scopes {
        for setting in config.settings("Expires") {
            if let Some(text) = setting.args.first().and_then(|v| v.as_str()) {
                parse_expires(text)
                    .map_err(|e| format!("{}:{}: Expires: {e}", setting.file, setting.line))?;
            }
        }
    }
    Ok(Rc::new(ServeFile))
}

/// When an `Expires` date is counted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExpiresBase {
    Access,
    Modification,
}

/// `access+1h` → (Access, 1h); `off` → None.
fn parse_expires(text: &str) -> Result<Option<(ExpiresBase, Duration)>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || format!("expected access+DURATION, modification+DURATION or off, got {text:?}");
    let (base, duration) = text.split_once('+').ok_or_else(bad)?;
    let base = match base.trim().to_ascii_lowercase().as_str() {
        "access" | "a" | "now" => ExpiresBase::Access,
        "modification" | "m" => ExpiresBase::Modification,
        _ => return Err(bad()),
    };
    match crate::config::parse_value(&ValueType::Duration, duration.trim())? {
        crate::config::Value::Duration(d) => Ok(Some((base, d))),
        _ => Err(bad()),
    }
}

struct ServeFile;

impl Plugin for ServeFile {
    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::Response])
    }

    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let candidates = sibling_candidates(ctx);
        // With an open-file cache the server is set up not to touch a cold
        // disk on the event loop: look for siblings on the blocking pool.
        let pooled = !candidates.is_empty() && ctx.config().int("OpenFileCache").unwrap_or(0) > 0;
        if !pooled {
            let sibling = first_sibling(candidates);
            return match prepare(ctx, sibling) {
                Prepared::Done(outcome) => outcome.into(),
                Prepared::Multipart(parts) => hook(send_multipart(ctx, parts)),
            };
        }
        hook(async move {
            let sibling = tokio::task::spawn_blocking(move || first_sibling(candidates))
                .await
                .ok()
                .flatten();
            match prepare(ctx, sibling) {
                Prepared::Done(outcome) => outcome,
                Prepared::Multipart(parts) => send_multipart(ctx, parts).await,
            }
        })
    }
}

/// What `prepare` decided: an outcome now, or a multipart body to stream.
enum Prepared {
    Done(Outcome),
    Multipart(Multipart),
}

/// A multipart/byteranges response still to be written.
struct Multipart {
    open: Rc<OpenFile>,
    /// In memory when the file is small.
    contents: Option<Bytes>,
    boundary: String,
    content_type: String,
    ranges: Vec<(u64, u64)>,
    len: u64,
}

/// Everything but the body transfer; `sibling` is the precompressed file
/// to send instead, if one fits.
fn prepare(ctx: &mut Context, sibling: Option<Sibling>) -> Prepared {
    let outcome = Prepared::Done;
    let Some(filename) = ctx.filename.clone() else {
        return outcome(Outcome::Declined);
    };
    let metadata = match ctx.metadata.take() {
        Some(md) => md,
        None if ctx.state::<file_http::KnownMissing>().is_some() => {
            return outcome(Outcome::Status(404))
        }
        None => match std::fs::metadata(&filename) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return outcome(Outcome::Status(403))
            }
            Err(_) => return outcome(Outcome::Status(404)),
        },
    };
    if !metadata.is_file() {
        return outcome(Outcome::Status(if metadata.is_dir() { 403 } else { 404 }));
    }
    let get = match ctx.request.method() {
        "GET" => true,
        "HEAD" => false,
        _ => {
            ctx.response.headers.set("Allow", "GET, HEAD");
            return outcome(Outcome::Status(405));
        }
    };
    // A file that is also followed by path info is not a static resource.
    if !ctx.path_info.is_empty() {
        return outcome(Outcome::Status(404));
    }
    let mut open = match ctx.file.take() {
        Some(open) => open,
        None => match std::fs::File::open(&filename) {
            Ok(f) => Rc::new(OpenFile::new(f, metadata)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return outcome(Outcome::Status(403))
            }
            Err(e) => {
                ctx.log(Level::Error, &format!("{}: {e}", filename.display()));
                return outcome(Outcome::Status(404));
            }
        },
    };
    if ctx.response.headers.get("Content-Type").is_none() {
        ctx.response
            .headers
            .set("Content-Type", "application/octet-stream");
    }
    if let Some((file, md, coding)) = sibling {
        ctx.response.headers.set("Content-Encoding", coding);
        open = Rc::new(OpenFile::new(file, md));
    }
    let md = &open.metadata;
    let len = md.len();

    // An error document (ErrorDocument's internal redirect) is sent whole
    // and without validators or caching headers: they describe the page,
    // not the missing resource, and a 404 must not turn into a 304 or 206.
    let error_page = ctx
        .notes
        .get("redirect.status")
        .and_then(|s| s.parse::<u16>().ok())
        .is_some_and(|s| s >= 400);
    let modified = file_http::last_modified(md);
    let etag = (!error_page && ctx.config().flag("FileETag")).then(|| file_http::etag(md));
    let precondition = if error_page {
        Precondition::Proceed
    } else {
        // Validators and caching headers go on every answer below (200,
        // 206, 304, 412, 416) so that a cache can update what it keeps.
        let headers = &mut ctx.response.headers;
        if let Some(m) = modified {
            headers.set("Last-Modified", axkit_http::fmt_http_date(m));
        }
        if let Some(tag) = &etag {
            headers.set("ETag", tag.clone());
        }
        headers.set("Accept-Ranges", "bytes");
        caching_headers(ctx, modified);
        file_http::evaluate(&ctx.request, etag.as_deref(), modified)
    };
    match precondition {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            // RFC 9110 §15.4.5: validators and caching fields, no
            // representation metadata beyond them.
            ctx.response.headers.remove("Content-Type");
            ctx.response.headers.remove("Content-Encoding");
            ctx.response.status = 304;
            ctx.response.body = Body::Empty;
            return outcome(Outcome::Ok);
        }
        Precondition::Failed => return outcome(Outcome::Status(412)),
    }

    let max_ranges = ctx.config().int("MaxRanges").unwrap_or(100).max(0) as usize;
    let ranges = match ctx.request.header("Range") {
        // Ranges are defined for GET only (RFC 9110 §14.2).
        Some(range) if get && !error_page => {
            let current = ctx
                .request
                .header("If-Range")
                .is_none_or(|v| file_http::if_range_matches(v, etag.as_deref(), modified));
            if current {
                file_http::parse_ranges(range, len, max_ranges)
            } else {
                Ranges::Whole
            }
        }
        _ => Ranges::Whole,
    };
    let small = len <= ctx.config().size("SmallFileSize").unwrap_or(32 * 1024);
    let contents = if small {
        match open.contents() {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                ctx.log(Level::Error, &format!("{}: {e}", filename.display()));
                return outcome(Outcome::Status(500));
            }
        }
    } else {
        None
    };
    let (status, (start, end)) = match ranges {
        Ranges::Whole => (200, (0, len)),
        Ranges::Unsatisfiable => {
            ctx.response
                .headers
                .set("Content-Range", format!("bytes */{len}"));
            return outcome(Outcome::Status(416));
        }
        Ranges::Some(list) if list.len() == 1 => (206, list[0]),
        Ranges::Some(list) => {
            let content_type = ctx
                .response
                .headers
                .get("Content-Type")
                .unwrap_or("application/octet-stream")
                .to_string();
            return Prepared::Multipart(Multipart {
                open,
                contents,
                boundary: file_http::boundary(),
                content_type,
                ranges: list,
                len,
            });
        }
    };
    if status == 206 {
        ctx.response
            .headers
            .set("Content-Range", file_http::content_range(start, end, len));
    }
    let body = match contents {
        Some(bytes) => Body::Bytes(bytes.slice(start as usize..end as usize)),
        None => match open.file.try_clone() {
            Ok(file) => Body::File {
                file,
                offset: start,
                len: end - start,
            },
            Err(e) => {
                ctx.log(Level::Error, &format!("{}: {e}", filename.display()));
                return outcome(Outcome::Status(500));
            }
        },
    };
    ctx.response.status = status;
    ctx.response.body = body;
    outcome(Outcome::Ok)
}

/// A precompressed sibling: the open file and its coding.
type Sibling = (std::fs::File, std::fs::Metadata, &'static str);

/// With `Precompressed`, the `.gz`/`.br` siblings the client accepts, in
/// the configured order; sets `Vary` (the answer depends on
/// Accept-Encoding whether or not a sibling is sent this time).
fn sibling_candidates(ctx: &mut Context) -> Vec<(PathBuf, &'static str)> {
    let Some(filename) = &ctx.filename else {
        return Vec::new();
    };
    let mut candidates = Vec::new();
    let accept = ctx.request.header("Accept-Encoding");
    for value in ctx.config().values("Precompressed") {
        let (coding, suffix) = match value.as_str() {
            Some("gzip") => ("gzip", ".gz"),
            Some("br") => ("br", ".br"),
            _ => continue,
        };
        if accept.is_some_and(|a| file_http::accepts_encoding(a, coding)) {
            let mut path = filename.as_os_str().to_owned();
            path.push(suffix);
            candidates.push((PathBuf::from(path), coding));
        }
    }
    if ctx.config().is_set("Precompressed") {
        ctx.response.headers.set("Vary", "Accept-Encoding");
    }
    candidates
}

/// The first candidate that exists as a regular file (no symlink).
fn first_sibling(candidates: Vec<(PathBuf, &'static str)>) -> Option<Sibling> {
    candidates.into_iter().find_map(|(path, coding)| {
        file_http::open_sibling(&path)
            .ok()
            .map(|(file, md)| (file, md, coding))
    })
}

/// `Cache-Control` and `Expires` from the Location's directives.
fn caching_headers(ctx: &mut Context, modified: Option<SystemTime>) {
    if let Some(value) = ctx.config().str("CacheControl") {
        let value = value.to_string();
        ctx.response.headers.set("Cache-Control", value);
    }
    let expires = ctx
        .config()
        .str("Expires")
        .and_then(|t| parse_expires(t).ok().flatten());
    if let Some((base, after)) = expires {
        let from = match base {
            ExpiresBase::Access => Some(SystemTime::now()),
            ExpiresBase::Modification => modified,
        };
        if let Some(at) = from.and_then(|t| t.checked_add(after)) {
            ctx.response
                .headers
                .set("Expires", axkit_http::fmt_http_date(at));
        }
    }
}

/// Stream a multipart/byteranges body with a Content-Length, so memory
/// stays bounded (64 KiB) however large the ranges are, and a slow client
/// only suspends this request.
async fn send_multipart(ctx: &mut Context, m: Multipart) -> Outcome {
    let heads: Vec<String> = m
        .ranges
        .iter()
        .map(|&r| file_http::part_head(&m.boundary, &m.content_type, r, m.len))
        .collect();
    let end = file_http::multipart_end(&m.boundary);
    let total = heads.iter().map(|h| h.len() as u64).sum::<u64>()
        + m.ranges.iter().map(|(s, e)| e - s).sum::<u64>()
        + end.len() as u64;
    let headers = &mut ctx.response.headers;
    headers.set(
        "Content-Type",
        format!("multipart/byteranges; boundary={}", m.boundary),
    );
    headers.set("Content-Length", total.to_string());
    ctx.response.status = 206;
    let mut buf = Vec::new();
    for (head, &(start, stop)) in heads.into_iter().zip(&m.ranges) {
        if ctx.write(head).await.is_err() {
            return Outcome::Done;
        }
        if let Some(bytes) = &m.contents {
            if ctx
                .write(bytes.slice(start as usize..stop as usize))
                .await
                .is_err()
            {
                return Outcome::Done;
            }
            continue;
        }
        let mut pos = start;
        while pos < stop {
            buf.resize(((stop - pos) as usize).min(64 * 1024), 0);
            match m.open.file.read_at(&mut buf, pos) {
                // The file shrank: stop short; the core sees fewer bytes
                // than announced and closes the connection.
                Ok(0) | Err(_) => return Outcome::Done,
                Ok(n) => {
                    pos += n as u64;
                    if ctx.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return Outcome::Done;
                    }
                }
            }
        }
    }
    let _ = ctx.write(end).await;
    Outcome::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_values() {
        assert_eq!(
            parse_expires("access+1h").unwrap(),
            Some((ExpiresBase::Access, Duration::from_secs(3600)))
        );
        assert_eq!(
            parse_expires("modification+2d").unwrap(),
            Some((ExpiresBase::Modification, Duration::from_secs(172_800)))
        );
        assert_eq!(parse_expires("off").unwrap(), None);
        assert!(parse_expires("later+1h").is_err());
        assert!(parse_expires("access+soon").is_err());
        assert!(parse_expires("1h").is_err());
    }
}
