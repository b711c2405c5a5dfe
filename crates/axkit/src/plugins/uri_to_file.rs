//! `uri_to_file`: maps the request path to a file under `DocumentRoot`
//! (hook `uri_translation`), the way Apache does, and opens it.
//!
//! Directives:
//! - `DocumentRoot PATH` (Server, Location): the directory the URL space
//!   maps to. Set inside a `<Location /prefix>`, the part of the path after
//!   the prefix maps under it (like nginx `alias`), so
//!   `<Location /icons> DocumentRoot demo/icons` serves `/icons/a.png` from
//!   `demo/icons/a.png`.
//! - `DirectoryIndex NAME…`: for a directory URL, the first of these files
//!   that exists is served.
//! - `FollowSymlinks on|off` (default off): off refuses files whose path
//!   leads outside DocumentRoot through a symlink (links inside it are fine).
//! - `OpenFileCache N` (default 0 = off): keep up to N open files (with
//!   their metadata, and the contents of small ones) per worker, so a hot
//!   file costs no open/stat/read per request.
//! - `OpenFileCacheValid DURATION` (default 1s): how long a cached entry is
//!   trusted before the file is opened again; a changed file is seen at most
//!   this late (nginx's `open_file_cache_valid`).
//!
//! ```text
//! <Server>
//!     DocumentRoot   demo
//!     DirectoryIndex index.html index.htm
//!     Plugin uri_to_file
//! </Server>
//! ```
//!
//! The path it maps is the core's decoded, normalised path (no `..`, no
//! NUL, valid UTF-8); an encoded `/` (`%2F`) answers 404 as Apache does.
//! A directory without its trailing slash answers 301 to the slash form.
//! Whatever follows an existing file becomes PATH_INFO (`/cgi/app.pl/x/y`
//! maps to `app.pl` with path info `/x/y`). Opening goes through
//! `openat2(RESOLVE_BENEATH)` relative to the root, so escaping the root
//! through a symlink is refused by the kernel in the same syscall that opens
//! the file.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Args, Directive, Scopes, Setting, ValueType};
use crate::plugin::{
    Context, Hook, HookFuture, Hooks, Level, OpenFile, Outcome, Plugin, PluginInit, PluginSpec,
};

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "uri_to_file",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![
        Directive::new("DocumentRoot", ValueType::Path)
            .scopes(Scopes::SERVER | Scopes::LOCATION)
            .doc("Directory the URL space maps to (in a <Location>, the path after its prefix)"),
        Directive::new("DirectoryIndex", ValueType::String)
            .args(Args::Many)
            .doc("Files to serve for a directory URL; the first that exists wins"),
        Directive::new("FollowSymlinks", ValueType::OnOff)
            .default("off")
            .doc("Serve files reached through symlinks that lead outside DocumentRoot"),
        Directive::new("OpenFileCache", ValueType::Integer)
            .default("0")
            .doc("Open files (with metadata, and small files' contents) kept per worker; 0 = off"),
        Directive::new("OpenFileCacheValid", ValueType::Duration)
            .default("1s")
            .doc("How long a cached open file is trusted before it is opened again"),
    ]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(UriToFile {
        roots: RefCell::new(HashMap::new()),
        cache: RefCell::new(HashMap::new()),
    }))
}

struct UriToFile {
    /// An open descriptor per document root, to resolve paths beneath it.
    roots: RefCell<HashMap<PathBuf, Rc<OwnedFd>>>,
    /// The open-file cache: (path asked for, resolved beneath the root?) to
    /// what it resolved to.
    cache: RefCell<HashMap<(PathBuf, bool), Cached>>,
}

struct Cached {
    /// The file served: the path itself, or a directory's index file.
    filename: PathBuf,
    open: Rc<OpenFile>,
    opened: Instant,
}

impl Plugin for UriToFile {
    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::UriTranslation])
    }

    fn uri_translation<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.translate(ctx).into()
    }
}

impl UriToFile {
    fn translate(&self, ctx: &mut Context) -> Outcome {
        let Some(setting) = ctx.config().settings("DocumentRoot").last().cloned() else {
            return Outcome::Declined;
        };
        let Some(crate::config::Value::Path(root)) = setting.args.first() else {
            return Outcome::Declined;
        };
        let path = ctx.request.decoded_path().to_string();
        if path == "*" {
            return Outcome::Declined;
        }
        if path.contains("%2F") {
            return Outcome::Status(404);
        }
        let rel = strip_root_prefix(ctx, &setting, &path);
        let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        let root_fd = match self.root_fd(root) {
            Ok(fd) => fd,
            Err(e) => {
                ctx.log(
                    Level::Error,
                    &format!("DocumentRoot {}: {e}", root.display()),
                );
                return Outcome::Status(500);
            }
        };
        let beneath = !ctx.config().flag("FollowSymlinks");
        let rel_path: PathBuf = segments.iter().collect();
        let full = root.join(&rel_path);
        let cache_size = ctx.config().int("OpenFileCache").unwrap_or(0).max(0) as usize;
        if cache_size > 0 && self.cached(ctx, &full, beneath, path.ends_with('/')) {
            return Outcome::Ok;
        }
        match open_beneath(&root_fd, &rel_path, beneath) {
            Ok(file) => {
                let md = match file.metadata() {
                    Ok(md) => md,
                    Err(_) => return Outcome::Status(403),
                };
                if md.is_dir() {
                    if !path.ends_with('/') {
                        return redirect_to_slash(ctx);
                    }
                    let outcome =
                        self.directory_index(ctx, &root_fd, &rel_path, full.clone(), beneath);
                    self.remember(ctx, full, beneath, cache_size);
                    return outcome;
                }
                ctx.filename = Some(full.clone());
                ctx.metadata = Some(md.clone());
                ctx.file = Some(Rc::new(OpenFile::new(file, md)));
                // `/a.html/`: the slash is path info, as in `/a.html/x`.
                if path.ends_with('/') {
                    ctx.path_info = "/".to_string();
                }
                self.remember(ctx, full, beneath, cache_size);
                Outcome::Ok
            }
            Err(e) if is_missing(&e) => {
                split_path_info(ctx, &root_fd, root, &segments, path.ends_with('/'), beneath);
                Outcome::Ok
            }
            Err(e) if is_escape(&e) => {
                ctx.log(
                    Level::Warn,
                    &format!(
                        "{}: refused: leads outside DocumentRoot ({e})",
                        full.display()
                    ),
                );
                Outcome::Status(403)
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Outcome::Status(403),
            Err(e) => {
                ctx.log(Level::Error, &format!("{}: {e}", full.display()));
                Outcome::Status(500)
            }
        }
    }

    fn directory_index(
        &self,
        ctx: &mut Context,
        root_fd: &OwnedFd,
        rel: &Path,
        dir: PathBuf,
        beneath: bool,
    ) -> Outcome {
        let names: Vec<String> = ctx
            .config()
            .values("DirectoryIndex")
            .iter()
            .filter_map(|v| match v {
                crate::config::Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        for name in names {
            if name.contains('/') || name == ".." || name == "." {
                continue;
            }
            if let Ok(file) = open_beneath(root_fd, &rel.join(&name), beneath) {
                if let Ok(md) = file.metadata() {
                    if md.is_file() {
                        ctx.filename = Some(dir.join(&name));
                        ctx.metadata = Some(md.clone());
                        ctx.file = Some(Rc::new(OpenFile::new(file, md)));
                        return Outcome::Ok;
                    }
                }
            }
        }
        ctx.metadata = std::fs::metadata(&dir).ok();
        ctx.filename = Some(dir);
        Outcome::Ok
    }

    /// Answer from the open-file cache if a fresh entry exists.
    fn cached(&self, ctx: &mut Context, full: &Path, beneath: bool, trailing_slash: bool) -> bool {
        let ttl = ctx
            .config()
            .duration("OpenFileCacheValid")
            .unwrap_or(Duration::from_secs(1));
        let key = (full.to_path_buf(), beneath);
        let cache = self.cache.borrow();
        let Some(entry) = cache.get(&key) else {
            return false;
        };
        // A directory's entry names its index; without the slash the
        // request must be redirected instead.
        if entry.opened.elapsed() > ttl || (entry.filename != full && !trailing_slash) {
            return false;
        }
        ctx.filename = Some(entry.filename.clone());
        ctx.metadata = Some(entry.open.metadata.clone());
        ctx.file = Some(entry.open.clone());
        if entry.filename == full && trailing_slash {
            ctx.path_info = "/".to_string();
        }
        true
    }

    /// Keep what `full` resolved to (a regular file only).
    fn remember(&self, ctx: &Context, full: PathBuf, beneath: bool, cache_size: usize) {
        let (Some(open), Some(filename)) = (&ctx.file, &ctx.filename) else {
            return;
        };
        if cache_size == 0 || !open.metadata.is_file() {
            return;
        }
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= cache_size {
            // Bounded without bookkeeping per hit: start over when full.
            cache.clear();
        }
        cache.insert(
            (full, beneath),
            Cached {
                filename: filename.clone(),
                open: open.clone(),
                opened: Instant::now(),
            },
        );
    }

    fn root_fd(&self, root: &Path) -> io::Result<Rc<OwnedFd>> {
        if let Some(fd) = self.roots.borrow().get(root) {
            return Ok(fd.clone());
        }
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("NUL in path"))?;
        // SAFETY: open(2) with a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let fd = Rc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        self.roots
            .borrow_mut()
            .insert(root.to_path_buf(), fd.clone());
        Ok(fd)
    }
}

/// A location that set its own DocumentRoot maps the path after its
/// prefix; find the outermost scope whose setting is the one in effect.
fn strip_root_prefix<'p>(ctx: &Context, setting: &Arc<Setting>, path: &'p str) -> &'p str {
    let mut best: Option<&str> = None;
    for node in &ctx.server().locations {
        let theirs = node.config.settings("DocumentRoot").last();
        if !theirs.is_some_and(|t| Arc::ptr_eq(t, setting)) || !prefix_matches(&node.prefix, path) {
            continue;
        }
        if best.is_none_or(|b| node.prefix.len() < b.len()) {
            best = Some(&node.prefix);
        }
    }
    match best {
        Some(prefix) if prefix != "/" => path[prefix.len()..].trim_start_matches('/'),
        _ => path,
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

/// Answer 301 to the same URL with a trailing slash, query kept. The
/// Location is the normalised path, re-encoded (as Apache's mod_dir does),
/// never the path as sent: `//host/dir` would send a browser to `host`.
fn redirect_to_slash(ctx: &mut Context) -> Outcome {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const PATH: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    let path = utf8_percent_encode(ctx.request.decoded_path(), PATH);
    let mut location = format!("{path}/");
    if let Some(q) = ctx.request.query() {
        location.push('?');
        location.push_str(q);
    }
    ctx.response.headers.set("Location", location);
    Outcome::Status(301)
}

/// The full path does not exist: find the longest existing prefix that is
/// a file; the rest is PATH_INFO. Otherwise leave a missing filename for the
/// response plugin to 404.
fn split_path_info(
    ctx: &mut Context,
    root_fd: &OwnedFd,
    root: &Path,
    segments: &[&str],
    trailing: bool,
    beneath: bool,
) {
    let mut rel = PathBuf::new();
    for (i, segment) in segments.iter().enumerate() {
        rel.push(segment);
        let Ok(file) = open_beneath(root_fd, &rel, beneath) else {
            break;
        };
        let Ok(md) = file.metadata() else { break };
        if md.is_file() {
            let mut info = String::new();
            for s in &segments[i + 1..] {
                info.push('/');
                info.push_str(s);
            }
            if trailing {
                info.push('/');
            }
            ctx.filename = Some(root.join(&rel));
            ctx.metadata = Some(md.clone());
            ctx.file = Some(Rc::new(OpenFile::new(file, md)));
            ctx.path_info = info;
            return;
        }
        if !md.is_dir() {
            break;
        }
    }
    ctx.filename = Some(root.join(segments.iter().collect::<PathBuf>()));
    ctx.metadata = None;
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG)
    )
}

fn is_escape(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::ELOOP))
}

/// `struct open_how` of openat2(2); libc's is non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Open `rel` (made of normal components only) beneath `root`. With
/// `beneath`, the kernel refuses any resolution that leaves the root,
/// symlinks included. O_NONBLOCK so that a FIFO in the tree cannot hang
/// the worker.
fn open_beneath(root: &OwnedFd, rel: &Path, beneath: bool) -> io::Result<File> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c =
        CString::new(rel.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in path"))?;
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: if beneath { 0x08 | 0x02 } else { 0x02 }, // RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
    };
    // SAFETY: openat2 with a valid dirfd, C string and open_how of the
    // size we pass; the result is checked.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}
