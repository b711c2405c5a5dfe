//! `serve_dir` (AxKit2's name): an HTML listing of a directory that has no
//! `DirectoryIndex` file (hook `response`). Off unless this plugin is
//! loaded; list it before `serve_file` in the same scope, which answers
//! 403 for directories. It declines whatever is not a directory URL.
//!
//! Directives:
//! - `DirListHidden on|off` (default off): also list names starting with
//!   a dot.
//! - `DirListMax N` (default 10000): list at most N entries, the first N
//!   by name; the page then says how many there are in all.
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
//!
//! What a listing costs is bounded by `DirListMax`, not by the directory:
//! every name is read, but only the first N by name are kept and looked
//! at (a directory of a million files must not cost a worker hundreds of
//! megabytes per request, nor a million `fstatat`s), and the page is
//! streamed as it is written, a few dozen KiB at a time, chunked. A HEAD
//! request only opens the directory (for the status a GET would get) and
//! reads none of it.
//!
//! The directory is opened beneath the root `uri_to_file` resolved the
//! request under, under its `FollowSymlinks` rule (`DocRoot::for_file`),
//! and read through that descriptor, never by its full path: swapping a
//! directory for a symlink cannot list another one. Entries are looked at
//! relative to that descriptor without following links; a symlink is
//! shown as what it would serve (opened beneath the root under the same
//! rule), or without size and date when that is refused or dangling.

use std::collections::BinaryHeap;
use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use axkit::config::{Directive, Key, Scopes};
use axkit::plugin::html_escape;
use axkit::plugin::{
    hook, Context, DocRoot, HookFuture, Io, Level, Outcome, Plugin, PluginInit, PluginSpec,
};

static DIR_LIST_HIDDEN: Key<bool> = Key::new("DirListHidden")
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .default("off")
    .doc("List names starting with a dot in directory listings");

static DIR_LIST_MAX: Key<usize> = Key::new("DirListMax")
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .default("10000")
    .doc(
        "Most entries a directory listing shows (the first by name); the page says how many \
         there are in all",
    );

/// The page goes out in pieces of about this size.
const PIECE: usize = 32 * 1024;

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "serve_dir",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![DIR_LIST_HIDDEN.declare(), DIR_LIST_MAX.declare()]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(ServeDir))
}

struct ServeDir;

#[axkit::plugin]
impl Plugin for ServeDir {
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
            let method = ctx.request.method();
            ctx.log_reason(
                405,
                format_args!(
                    "method {method:?} not allowed for the listing of {dir:?}; allowed: GET, HEAD"
                ),
            );
            ctx.response.headers.set("Allow", "GET, HEAD");
            return Outcome::Status(405).into();
        }
        let hidden = *ctx.config().get(&DIR_LIST_HIDDEN);
        // A HEAD's answer has no body: the directory is opened, not read.
        let max = match ctx.request.method() {
            "HEAD" => None,
            _ => Some(*ctx.config().get(&DIR_LIST_MAX)),
        };
        let root = DocRoot::for_file(ctx, &dir);
        hook(async move {
            let listed =
                tokio::task::spawn_blocking(move || read_entries(&root, &dir, hidden, max));
            let listing = match listed.await {
                Ok(Ok(listing)) => listing,
                Ok(Err(e))
                    if e.kind() == io::ErrorKind::PermissionDenied
                        || axkit::plugin::is_escape(&e) =>
                {
                    let dir = ctx.filename.as_deref().unwrap_or(Path::new(""));
                    ctx.log_reason(403, format_args!("listing {dir:?} failed: {e}"));
                    return Outcome::Status(403);
                }
                Ok(Err(e)) => {
                    ctx.log(Level::Error, &format!("listing: {e}"));
                    return Outcome::Status(500);
                }
                Err(e) => return Outcome::Error(format!("listing task failed: {e}")),
            };
            ctx.response
                .headers
                .set("Content-Type", "text/html; charset=utf-8");
            ctx.response.status = 200;
            // Written as it is rendered: the page is never whole in memory.
            let mut out = page_head(ctx.request.decoded_path());
            for entry in &listing.entries {
                row(entry, &mut out);
                if out.len() >= PIECE && ctx.write(std::mem::take(&mut out)).await.is_err() {
                    return Outcome::Done;
                }
            }
            page_end(&listing, &mut out);
            let _ = ctx.write(out).await;
            Outcome::Done
        })
    }
}

/// What a listing shows: some of the directory's entries, and how many
/// it holds in all.
#[derive(Default)]
struct Listing {
    entries: Vec<Entry>,
    total: usize,
}

/// One directory entry as listed.
struct Entry {
    name: String,
    is_dir: bool,
    size: u64,
    modified: Option<SystemTime>,
}

/// The first `max` entries of `dir` (a full path beneath `root`) by name,
/// shown directories first, then by name; with no `max`, the directory is
/// only opened. Names that are not UTF-8 are shown lossily (their links
/// would not resolve anyway: the core only serves UTF-8 paths).
fn read_entries(
    root: &DocRoot,
    dir: &Path,
    hidden: bool,
    max: Option<usize>,
) -> io::Result<Listing> {
    let rel = root.relative(dir).ok_or(io::ErrorKind::NotFound)?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let handle = root.open_rel(rel, flags, Io::Blocking)?;
    let Some(max) = max else {
        return Ok(Listing::default());
    };
    // The `max` smallest names so far; the largest of them on top, to be
    // pushed out by a smaller one.
    let mut kept = BinaryHeap::with_capacity(max.min(1024) + 1);
    let mut total = 0;
    for_each_name(&handle, |name| {
        if !hidden && name.as_bytes().starts_with(b".") {
            return;
        }
        total += 1;
        if kept.len() < max {
            kept.push(name.to_os_string());
        } else if kept
            .peek()
            .is_some_and(|top: &OsString| name < top.as_os_str())
        {
            kept.pop();
            kept.push(name.to_os_string());
        }
    })?;
    let mut entries = Vec::with_capacity(kept.len());
    for name in kept.into_vec() {
        let mut entry = Entry {
            name: name.to_string_lossy().into_owned(),
            is_dir: false,
            size: 0,
            modified: None,
        };
        match lstat_at(&handle, &name) {
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                // What the link would serve, by the root's rule.
                let link = root.open_rel(
                    &rel.join(&name),
                    libc::O_PATH | libc::O_CLOEXEC,
                    Io::Blocking,
                );
                if let Ok(md) = link.and_then(|f| f.metadata()) {
                    entry.is_dir = md.is_dir();
                    entry.size = md.len();
                    entry.modified = md.modified().ok();
                }
            }
            Some(st) => {
                entry.is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                entry.size = st.st_size as u64;
                let since = Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
                entry.modified = UNIX_EPOCH.checked_add(since);
            }
            // Gone since it was listed.
            None => continue,
        }
        entries.push(entry);
    }
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(Listing { entries, total })
}

/// Call `each` with every name in the open directory `dir` (but `.` and
/// `..`), read through its descriptor.
fn for_each_name(dir: &File, mut each: impl FnMut(&OsStr)) -> io::Result<()> {
    // fdopendir takes the descriptor over (closedir closes it): give it a
    // duplicate, so `dir` stays usable for fstatat.
    let fd = dir.try_clone()?.into_raw_fd();
    // SAFETY: fd is an open directory descriptor that nothing else owns.
    let stream = unsafe { libc::fdopendir(fd) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so fd is still ours to close.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    let result = loop {
        // readdir reports an error only through errno.
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a stream from fdopendir, not yet closed.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: readdir returned an entry whose d_name is NUL-terminated,
        // valid until the next readdir on this stream.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            each(OsStr::from_bytes(name));
        }
    };
    // SAFETY: the stream is open; this closes it and its descriptor.
    unsafe { libc::closedir(stream) };
    result
}

/// The entry `name` of the open directory `dir`, not following a symlink.
fn lstat_at(dir: &File, name: &OsStr) -> Option<libc::stat> {
    let name = std::ffi::CString::new(name.as_bytes()).ok()?;
    // SAFETY: zeroed is a valid stat (plain integers).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, a C string and a stat to fill.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (r == 0).then_some(st)
}

/// Everything but unreserved characters is percent-encoded in a link.
const LINK: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The page up to its first entry.
fn page_head(path: &str) -> String {
    let title = html_escape(path);
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n"
    );
    if path != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>\n");
    }
    out
}

/// One entry's row, added to `out`.
fn row(e: &Entry, out: &mut String) {
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

/// The end of the page, saying so when entries were left out.
fn page_end(listing: &Listing, out: &mut String) {
    out.push_str("</table>\n");
    let shown = listing.entries.len();
    if listing.total > shown {
        out.push_str(&format!(
            "<p>Listing cut: the first {shown} of {} entries by name are shown.</p>\n",
            listing.total
        ));
    }
    out.push_str("</body></html>\n");
}
