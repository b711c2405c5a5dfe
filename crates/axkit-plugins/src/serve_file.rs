//! `serve_file`: answers GET and HEAD with the file `uri_translation`
//! mapped the request to (hook `response`), with everything a caching
//! proxy, a download manager and a browser rely on: validators, conditional
//! requests, byte ranges, caching headers and precompressed siblings.
//!
//! Directives (all Server or Location):
//! - `FileETag on|off` (default on): send an `ETag` made of inode, size and
//!   modification time.
//! - `CacheControl VALUE`: the `Cache-Control` header for files served here
//!   (e.g. `"public, max-age=3600"`); a value with control characters is a
//!   config error.
//! - `Expires access+DURATION | modification+DURATION | off`: an `Expires`
//!   date that long after the request (or the file's mtime), as Apache's
//!   mod_expires `A`/`M` forms.
//! - `MaxRanges N` (default 100): a `Range` with more ranges than this is
//!   ignored (the whole file is sent), as are overlapping ranges.
//! - `SmallFileSize SIZE` (default 32K): files up to this size are read
//!   whole when they are opened (never waiting for a disk on the event
//!   loop, see `open_file_cache.rs`; kept by the open-file cache) and sent
//!   from memory with the head in one write;
//!   larger ones go out with sendfile. Which way a file goes is decided
//!   when it is opened.
//! - `Precompressed gzip|br…`: send `FILE.gz` / `FILE.br` instead of
//!   `FILE` when it exists and `Accept-Encoding` allows it (first listed
//!   coding that fits wins), with `Content-Encoding` and
//!   `Vary: Accept-Encoding`; ranges and validators apply to the encoded
//!   file. Siblings go through the open-file cache (`OpenFileCache`) like
//!   the file itself: found or missing, they are remembered, and a disk is
//!   never waited for on the event loop.
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
//! Where files are opened: the file usually comes open from `uri_to_file`.
//! The siblings, and a file that another translating plugin named without
//! opening it (a Lua `r:set_filename`), are opened beneath a root, never
//! by full path (`DocRoot::for_file`): the request's root when the file
//! lies beneath it (the one `uri_to_file` resolved the request under, with
//! its `FollowSymlinks` rule, or the LuaFileRoot `r:set_filename` checked
//! the file against, as the Lua `file` API opens files), else the
//! Location's DocumentRoot with its rule when it lies beneath that, else
//! `/` with no symlink anywhere in the path (`FollowSymlinks on`
//! follows them). A file refused that way answers 403 and is logged.
//!
//! Nothing here waits for a disk on the event loop: the file comes open
//! (with its validators, and small files' contents) from `uri_to_file`;
//! the others are opened the way `open_file_cache.rs` describes (from the
//! kernel's caches, else on the blocking pool); bodies go out with
//! sendfile, several ranges too.
//!
//! Status codes: 200, 206 (one range, or `multipart/byteranges` for
//! several), 304 / 412 (RFC 9110 §13 preconditions; an
//! `If-Modified-Since` later than the request is ignored, §13.1.3), 416
//! with `Content-Range: bytes */LEN`, 403 for directories without an
//! index and files it may not read, 404 for a FIFO, device or socket it
//! was asked to open, 405 with `Allow` for other methods. What it cannot
//! serve it declines, as AxKit2's serve_file did: a file that does not
//! exist, one followed by path info, anything that is neither a file nor
//! a directory. A later plugin may answer those, and the core answers 404
//! when none does. So the plugin may be listed anywhere; an
//! application in a `<Location>` comes first for its requests anyway (see
//! docs/architecture.md, "Which plugin answers").

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::file_http::{self, Fields, Precondition, Ranges};
use crate::open_file_cache::{self, Io};
use crate::per_location::PerLocation;
use axkit::config::{parse, Args, Directive, Key, LocationConfig, Scopes};
use axkit::plugin::{
    hook, Body, Context, DocRoot, HeaderValue, HookFuture, Level, OpenFile, Outcome, Plugin,
    PluginInit, PluginSpec, Worker,
};

const HERE: Scopes = Scopes::SERVER.or(Scopes::LOCATION);

static FILE_ETAG: Key<bool> = Key::new("FileETag")
    .scopes(HERE)
    .default("on")
    .doc("Send an ETag made of the file's inode, size and modification time");

/// Checked once as a header value when the config loads, and shared by
/// every response.
static CACHE_CONTROL: Key<Option<HeaderValue>> = Key::parsed("CacheControl", parse_header_value)
    .optional()
    .scopes(HERE)
    .doc("Cache-Control header for files served here, e.g. \"public, max-age=3600\"");

static EXPIRES: Key<Option<(ExpiresBase, Duration)>> = Key::parsed("Expires", parse_expires)
    .optional()
    .scopes(HERE)
    .doc("Expires header: access+DURATION, modification+DURATION or off");

static MAX_RANGES: Key<usize> = Key::new("MaxRanges")
    .scopes(HERE)
    .default("100")
    .doc("Most ranges honoured in one Range header; more (or overlapping) sends the file");

/// Also read by the open-file cache, which loads small files as it opens
/// them.
pub(crate) static SMALL_FILE_SIZE: Key<u64> = Key::new("SmallFileSize")
    .scopes(HERE)
    .default("32K")
    .doc("Files up to this size are sent from memory with the head in one write");

static PRECOMPRESSED: Key<Vec<Coding>> = Key::parsed("Precompressed", parse_codings)
    .args(Args::Many)
    .unset(Vec::new)
    .scopes(HERE)
    .doc("Send FILE.gz / FILE.br when Accept-Encoding allows (gzip, br), first listed wins");

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "serve_file",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![
        FILE_ETAG.declare(),
        CACHE_CONTROL.declare(),
        EXPIRES.declare(),
        MAX_RANGES.declare(),
        SMALL_FILE_SIZE.declare(),
        PRECOMPRESSED.declare(),
    ]
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    open_file_cache::fit_descriptors(init);
    Ok(Rc::new(ServeFile {
        settings: PerLocation::default(),
    }))
}

/// A precompressed sibling's coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Gzip,
    Br,
}

impl Coding {
    /// The `Content-Encoding` token and the sibling's suffix.
    fn token_and_suffix(self) -> (&'static str, &'static str) {
        match self {
            Coding::Gzip => ("gzip", ".gz"),
            Coding::Br => ("br", ".br"),
        }
    }
}

fn parse_header_value(args: &[&str]) -> Result<Option<HeaderValue>, String> {
    let [value] = args else {
        return Err("expected one argument".into());
    };
    HeaderValue::checked(*value).map(Some)
}

fn parse_codings(args: &[&str]) -> Result<Vec<Coding>, String> {
    args.iter()
        .map(|word| match word.to_ascii_lowercase().as_str() {
            "gzip" => Ok(Coding::Gzip),
            "br" => Ok(Coding::Br),
            _ => Err(format!("expected one of gzip|br, got {word:?}")),
        })
        .collect()
}

/// When an `Expires` date is counted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExpiresBase {
    Access,
    Modification,
}

/// `access+1h` → (Access, 1h); `off` → None.
fn parse_expires(args: &[&str]) -> Result<Option<(ExpiresBase, Duration)>, String> {
    let [text] = args else {
        return Err("expected one argument".into());
    };
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
    Ok(Some((base, parse::duration(duration.trim())?)))
}

struct ServeFile {
    settings: PerLocation<Rc<Settings>>,
}

/// What this plugin's directives say for one Location, read once.
struct Settings {
    file_etag: bool,
    cache_control: Option<HeaderValue>,
    expires: Option<(ExpiresBase, Duration)>,
    max_ranges: usize,
    precompressed: Vec<Coding>,
}

impl Settings {
    fn read(config: &LocationConfig) -> Rc<Settings> {
        Rc::new(Settings {
            file_etag: *config.get(&FILE_ETAG),
            cache_control: config.get(&CACHE_CONTROL).clone(),
            expires: *config.get(&EXPIRES),
            max_ranges: *config.get(&MAX_RANGES),
            precompressed: config.get(&PRECOMPRESSED).clone(),
        })
    }
}

#[axkit::plugin]
impl Plugin for ServeFile {
    /// The open-file cache's sweep (see `open_file_cache`).
    fn worker_start(&self, worker: &Worker) {
        open_file_cache::start_sweep(worker);
    }

    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let settings = self.settings.get(ctx.config(), Settings::read);
        let (candidates, codings) = sibling_candidates(ctx, &settings);
        // A file named by a translating plugin that did not open it.
        let unopened = ctx.file.is_none()
            && ctx.state::<file_http::KnownMissing>().is_none()
            && !ctx.metadata.as_ref().is_some_and(|m| m.is_dir());
        let mut unopened = unopened.then(|| ctx.filename.clone()).flatten();
        if unopened.is_none() && candidates.is_empty() {
            // The usual case: the file came open from uri_to_file.
            return respond(ctx, settings, None);
        }
        // The file and its siblings, beneath the request's root.
        let root = match &ctx.filename {
            Some(filename) => DocRoot::for_file(ctx, filename),
            None => return respond(ctx, settings, None),
        };
        let policy = open_file_cache::policy(ctx.config());
        let small = open_file_cache::small_file_size(ctx.config());
        let now = ctx.request.start_time();
        // Open it now if the kernel's caches can answer, else on the pool.
        if let Some(path) = &unopened {
            match open_file(&root, path, small, Io::Cached) {
                Ok(open) => {
                    ctx.metadata = Some(open.metadata.clone());
                    ctx.file = Some(Rc::new(open));
                    unopened = None;
                }
                Err(e) if Io::Cached.would_block(&e) => {}
                Err(e) => return open_failed(ctx, path, &e).into(),
            }
        }
        if unopened.is_none() {
            if let Some(found) =
                open_file_cache::sibling_now(&root, &candidates, policy, small, now)
            {
                // Nothing had to wait: no thread hop, no boxed future.
                return respond(ctx, settings, found.map(|(i, open)| (open, codings[i])));
            }
        }
        hook(async move {
            if let Some(path) = unopened {
                let opened = {
                    let (root, path) = (root.clone(), path.clone());
                    tokio::task::spawn_blocking(move || {
                        open_file(&root, &path, small, Io::Blocking)
                    })
                };
                match opened.await {
                    Ok(Ok(open)) => {
                        ctx.metadata = Some(open.metadata.clone());
                        ctx.file = Some(Rc::new(open));
                    }
                    Ok(Err(e)) => return open_failed(ctx, &path, &e),
                    Err(e) => return Outcome::Error(format!("file open failed: {e}")),
                }
            }
            let found = match open_file_cache::sibling_now(&root, &candidates, policy, small, now) {
                Some(found) => found,
                None => open_file_cache::first_sibling(root, candidates, policy, small, now).await,
            };
            respond(ctx, settings, found.map(|(i, open)| (open, codings[i]))).await
        })
    }
}

/// Open a file that no plugin opened yet, beneath `root`. In
/// [`Io::Cached`] mode an EAGAIN error means "try again on the blocking
/// pool".
fn open_file(root: &DocRoot, path: &Path, small: u64, io: Io) -> std::io::Result<OpenFile> {
    let rel = root.relative(path).ok_or(std::io::ErrorKind::NotFound)?;
    let (file, md) = open_file_cache::open_servable(root, rel, io)?;
    open_file_cache::load(file, md, small, io)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EAGAIN))
}

/// 403 when the file may not be read or its path leaves its root, 404
/// when it is neither a file nor a directory (logged, as `uri_to_file`
/// does); otherwise it cannot be served: declined.
fn open_failed(ctx: &Context, path: &Path, e: &std::io::Error) -> Outcome {
    if open_file_cache::not_servable(e) {
        ctx.log_reason(404, format_args!("{path:?} is {e}"));
        return Outcome::Status(404);
    }
    if axkit::plugin::is_escape(e) {
        let message = format!("{}: refused: leads outside its root ({e})", path.display());
        ctx.log(Level::Warn, &message);
        return Outcome::Status(403);
    }
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        ctx.log_reason(403, format_args!("open({path:?}) failed: {e}"));
        Outcome::Status(403)
    } else {
        Outcome::Declined
    }
}

/// [`prepare`], then a multipart body streamed if that is what it made.
fn respond<'a>(
    ctx: &'a mut Context,
    settings: Rc<Settings>,
    sibling: Option<(Rc<OpenFile>, &'static str)>,
) -> HookFuture<'a> {
    match prepare(ctx, &settings, sibling) {
        Prepared::Done(outcome) => outcome.into(),
        Prepared::Multipart(parts) => hook(send_multipart(ctx, parts)),
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
    boundary: String,
    content_type: String,
    ranges: Vec<(u64, u64)>,
    len: u64,
}

/// Everything but the body transfer; `sibling` is the precompressed file
/// to send instead (and its coding), if one fits.
fn prepare(
    ctx: &mut Context,
    settings: &Settings,
    sibling: Option<(Rc<OpenFile>, &'static str)>,
) -> Prepared {
    let outcome = Prepared::Done;
    // What cannot be served here is declined, for a later plugin or the
    // core's 404: no file (or a missing one), a file followed by path
    // info (not a static resource), anything that is neither a file nor a
    // directory. What exists but is refused is answered here.
    if ctx.filename.is_none() || !ctx.path_info.is_empty() {
        return outcome(Outcome::Declined);
    }
    let Some(metadata) = ctx.metadata.as_ref() else {
        return outcome(Outcome::Declined);
    };
    if metadata.is_dir() {
        return outcome(directory_forbidden(ctx));
    }
    if !metadata.is_file() {
        return outcome(Outcome::Declined);
    }
    let get = ctx.request.method_is("GET");
    if !get && !ctx.request.method_is("HEAD") {
        return outcome(method_not_allowed(ctx));
    }
    let Some(mut open) = ctx.file.take() else {
        return outcome(Outcome::Declined);
    };
    ctx.metadata = None;
    // The answer depends on Accept-Encoding whether or not a sibling is
    // sent this time.
    if !settings.precompressed.is_empty() {
        ctx.response.headers.set("Vary", "Accept-Encoding");
    }
    if ctx.response.headers.get("Content-Type").is_none() {
        ctx.response
            .headers
            .set("Content-Type", "application/octet-stream");
    }
    if let Some((sibling, coding)) = sibling {
        ctx.response.headers.set("Content-Encoding", coding);
        open = sibling;
    }
    let len = open.metadata.len();

    // An error document (ErrorDocument's internal redirect) is sent whole
    // and without validators or caching headers: they describe the page,
    // not the missing resource, and a 404 must not turn into a 304 or 206.
    let error_page = ctx.imposed_status().is_some();
    let modified = open.last_modified().map(|(time, _)| time);
    let send_etag = !error_page && settings.file_etag;
    let etag = send_etag.then(|| &**open.etag());
    // Which of the fields the answer depends on the request carries,
    // found in one pass over its fields.
    let fields = Fields::of(&ctx.request);
    let precondition = if error_page {
        Precondition::Proceed
    } else {
        // Validators and caching headers go on the answers below that
        // describe the file (200, 206, 304) so that a cache can update
        // what it keeps; the core drops them from a 412 or 416, whose
        // page is not the file.
        let headers = &mut ctx.response.headers;
        // Formatted and checked once per open file, not per request.
        if let Some(date) = open.last_modified_header() {
            headers.set("Last-Modified", date);
        }
        if send_etag {
            headers.set("ETag", open.etag_header());
        }
        headers.set("Accept-Ranges", "bytes");
        caching_headers(ctx, settings, modified);
        file_http::evaluate_fields(&ctx.request, fields, etag, modified)
    };
    match precondition {
        Precondition::Proceed => {}
        Precondition::NotModified => return outcome(not_modified(ctx)),
        Precondition::Failed => return outcome(Outcome::Status(412)),
    }

    // Ranges are defined for GET only (RFC 9110 §14.2).
    let one_range = if fields.has(Fields::RANGE) && get && !error_page {
        match ranged(ctx, settings, fields, etag, modified, &open, len) {
            Ok(range) => range,
            Err(prepared) => return prepared,
        }
    } else {
        None
    };
    let (status, (start, end)) = match one_range {
        Some(range) => (206, range),
        None => (200, (0, len)),
    };
    // Small files were read when opened (SmallFileSize): from memory, with
    // the head in one write; others with sendfile.
    let body = match open.contents() {
        Some(bytes) => Body::Bytes(bytes.slice(start as usize..end as usize)),
        None => match open.file.try_clone() {
            Ok(file) => Body::File {
                file,
                offset: start,
                len: end - start,
            },
            Err(e) => return outcome(clone_failed(ctx, &e)),
        },
    };
    ctx.response.status = status;
    ctx.response.body = body;
    outcome(Outcome::Ok)
}

// The answers below are [`prepare`]'s rare ones, each a function of its
// own never inlined and marked cold: the compiler then lays the usual
// answer's code out without them in between.

/// 403 for a directory that no index file answered for.
#[cold]
#[inline(never)]
fn directory_forbidden(ctx: &Context) -> Outcome {
    if let Some(dir) = &ctx.filename {
        ctx.log_reason(
            403,
            format_args!("directory index of {dir:?} is forbidden (no DirectoryIndex file in it)"),
        );
    }
    Outcome::Status(403)
}

/// 405 with `Allow` for a method other than GET and HEAD.
#[cold]
#[inline(never)]
fn method_not_allowed(ctx: &mut Context) -> Outcome {
    let method = ctx.request.method();
    if let Some(file) = &ctx.filename {
        ctx.log_reason(
            405,
            format_args!("method {method:?} not allowed for {file:?}; allowed: GET, HEAD"),
        );
    }
    ctx.response.headers.set("Allow", "GET, HEAD");
    Outcome::Status(405)
}

/// 304: RFC 9110 §15.4.5, validators and caching fields, no
/// representation metadata beyond them.
#[cold]
#[inline(never)]
fn not_modified(ctx: &mut Context) -> Outcome {
    ctx.response.headers.remove("Content-Type");
    ctx.response.headers.remove("Content-Encoding");
    ctx.response.status = 304;
    ctx.response.body = Body::Empty;
    Outcome::Ok
}

/// The one range of `open` (`len` bytes) a GET with a `Range` asks for,
/// its `Content-Range` set; None for the whole file, when the range is
/// ignored (an `If-Range` no longer current, or too many or overlapping
/// ranges). Err: the answer, a 416 or a multipart body.
#[cold]
#[inline(never)]
fn ranged(
    ctx: &mut Context,
    settings: &Settings,
    fields: Fields,
    etag: Option<&str>,
    modified: Option<SystemTime>,
    open: &Rc<OpenFile>,
    len: u64,
) -> Result<Option<(u64, u64)>, Prepared> {
    let Some(range) = ctx.request.header("Range") else {
        return Ok(None);
    };
    let current = !fields.has(Fields::IF_RANGE)
        || ctx
            .request
            .header("If-Range")
            .is_none_or(|v| file_http::if_range_matches(v, etag, modified));
    if !current {
        return Ok(None);
    }
    match file_http::parse_ranges(range, len, settings.max_ranges) {
        Ranges::Whole => Ok(None),
        Ranges::Unsatisfiable => {
            ctx.response
                .headers
                .set("Content-Range", format!("bytes */{len}"));
            Err(Prepared::Done(Outcome::Status(416)))
        }
        Ranges::Some(list) if list.len() == 1 => {
            let (start, end) = list[0];
            ctx.response
                .headers
                .set("Content-Range", file_http::content_range(start, end, len));
            Ok(Some((start, end)))
        }
        Ranges::Some(list) => {
            let content_type = ctx
                .response
                .headers
                .get("Content-Type")
                .unwrap_or("application/octet-stream")
                .to_string();
            Err(Prepared::Multipart(Multipart {
                open: open.clone(),
                boundary: file_http::boundary(),
                content_type,
                ranges: list,
                len,
            }))
        }
    }
}

/// 500 when a large file's descriptor cannot be duplicated for sendfile.
#[cold]
#[inline(never)]
fn clone_failed(ctx: &Context, e: &std::io::Error) -> Outcome {
    let name = ctx.filename.as_deref().unwrap_or(std::path::Path::new(""));
    ctx.log(Level::Error, &format!("{}: {e}", name.display()));
    Outcome::Status(500)
}

/// With `Precompressed`, the `.gz`/`.br` siblings the client accepts and
/// their codings, in the configured order.
fn sibling_candidates(ctx: &Context, settings: &Settings) -> (Vec<PathBuf>, Vec<&'static str>) {
    let (mut paths, mut codings) = (Vec::new(), Vec::new());
    let Some(filename) = &ctx.filename else {
        return (paths, codings);
    };
    let listed = &settings.precompressed;
    if listed.is_empty() {
        return (paths, codings);
    }
    let accept = ctx.request.header("Accept-Encoding");
    for (coding, suffix) in listed.iter().map(|c| c.token_and_suffix()) {
        if accept.is_some_and(|a| axkit_http::coding_quality(a, coding).is_some_and(|q| q > 0)) {
            let mut path = filename.as_os_str().to_owned();
            path.push(suffix);
            paths.push(PathBuf::from(path));
            codings.push(coding);
        }
    }
    (paths, codings)
}

/// `Cache-Control` and `Expires` from the Location's directives.
fn caching_headers(ctx: &mut Context, settings: &Settings, modified: Option<SystemTime>) {
    if let Some(value) = &settings.cache_control {
        ctx.response.headers.set("Cache-Control", value.clone());
    }
    if let Some((base, after)) = settings.expires {
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

/// Stream a multipart/byteranges body with a Content-Length: part heads
/// from memory, part bytes from the small file's contents or with
/// sendfile, so memory stays bounded however large the ranges are, no file
/// is read on the event loop, and a slow client only suspends this
/// request.
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
    for (head, &(start, stop)) in heads.into_iter().zip(&m.ranges) {
        if ctx.write(head).await.is_err() {
            return Outcome::Done;
        }
        // A file that shrank makes write_file fail: the core sees fewer
        // bytes than announced and closes the connection.
        let sent = match m.open.contents() {
            Some(bytes) => ctx.write(bytes.slice(start as usize..stop as usize)).await,
            None => ctx.write_file(&m.open.file, start, stop - start).await,
        };
        if sent.is_err() {
            return Outcome::Done;
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
            parse_expires(&["access+1h"]).unwrap(),
            Some((ExpiresBase::Access, Duration::from_secs(3600)))
        );
        assert_eq!(
            parse_expires(&["modification+2d"]).unwrap(),
            Some((ExpiresBase::Modification, Duration::from_secs(172_800)))
        );
        assert_eq!(parse_expires(&["off"]).unwrap(), None);
        assert!(parse_expires(&["later+1h"]).is_err());
        assert!(parse_expires(&["access+soon"]).is_err());
        assert!(parse_expires(&["1h"]).is_err());
    }

    /// `CacheControl` is checked as a header value once, when the config
    /// loads: a value a response would refuse is a config error.
    #[test]
    fn cache_control_values() {
        let value = parse_header_value(&["public, max-age=60"])
            .unwrap()
            .unwrap();
        assert_eq!(&*value, "public, max-age=60");
        assert!(matches!(value, HeaderValue::Checked(_)));
        for bad in ["a\r\nSet-Cookie: x=1", "a\nb", "a\0b", "a\x01b"] {
            assert!(parse_header_value(&[bad]).is_err(), "{bad:?}");
        }
        assert!(parse_header_value(&["a\tb"]).is_ok());
    }
}
