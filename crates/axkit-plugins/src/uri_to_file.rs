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
//!   that exists is served. It is served under its own URI's `<Location>`
//!   (`/dir/` + `index.html`): when that is another Location than the
//!   request's, the request goes on as that URI (method, body and query
//!   kept), so that its access rules apply, as nginx's index module
//!   does; in the same Location it is served at once.
//! - `FollowSymlinks on|off` (default off): off refuses files whose path
//!   leads outside DocumentRoot through a symlink (links inside it are
//!   fine). The rule holds for every file opened for the request, not only
//!   the one the URL names: the root and rule are put in
//!   `ctx.doc_root`, and the other file plugins (precompressed siblings,
//!   typeless names, listings, error documents) open beneath it the same
//!   way (see `plugin/doc_root.rs`).
//! - `OpenFileCache SIZE TTL | Off` (default `1000 1s`, as lighttpd's
//!   stat cache): keep up to SIZE open files per worker (with their
//!   metadata, validators, and the contents of files up to
//!   `SmallFileSize`), and misses too, each trusted for TTL (`1s`,
//!   `500ms`): a hot file or a flood of 404s costs no syscall per
//!   request, and a changed file is seen at most TTL late (nginx's
//!   `open_file_cache` + `open_file_cache_valid`). Whatever is not in the
//!   cache is looked up on the event loop only if the kernel can answer
//!   from its own caches (`openat2` `RESOLVE_CACHED`, `preadv2`
//!   `RWF_NOWAIT`), else on the blocking pool: a disk is never waited for
//!   on the event loop. `Off` caches nothing: changes are seen at once, at
//!   the price of open/fstat (and a small file's read) per request, and a
//!   thread hop when the kernel's caches are cold. See
//!   `open_file_cache.rs`.
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
//! A directory without its trailing slash answers 301 to the slash form,
//! after the access phases and `fixup` (`Context::answer_after_fixup`), as
//! Apache's mod_dir answers it in fixups: a client the Location refuses
//! learns nothing of its directories, and a plugin that answers in
//! `fixup` (the cache's `PURGE` of `/dir`, a hit) answers instead.
//! Anything but a regular file or a directory (a FIFO, a device, a
//! socket) answers 404, logged at info, and is closed as soon as it is
//! seen (`open_file_cache::open_servable`). Whatever follows an existing
//! file becomes PATH_INFO (`/cgi/app.pl/x/y`
//! maps to `app.pl` with path info `/x/y`; such lookups end in ENOTDIR,
//! which the kernel's caches do not answer, so they take the blocking
//! pool). Opening goes through `openat2(RESOLVE_BENEATH)` relative to the
//! root ([`DocRoot`]), so escaping the root through a symlink is refused by
//! the kernel in the same syscall that opens the file.

use axkit_http::encode_path;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use crate::file_http::KnownMissing;
use crate::open_file_cache::{self, Entry, Io, Kind, Policy, WouldBlock, OPEN_FILE_CACHE};
use crate::per_location::PerLocation;
use axkit::config::{Args, Config, Directive, Key, LocationConfig};
use axkit::plugin::{
    hook, is_escape, Context, DocRoot, HookFuture, Level, OpenFile, Outcome, Plugin, PluginInit,
    PluginSpec, Rule, TrustedMap, Worker, DOCUMENT_ROOT, FOLLOW_SYMLINKS, READ_FLAGS,
};

/// `DirectoryIndex NAME…`: plain file names, checked when the config
/// loads. Shared: an open-file cache entry of a directory keeps the names
/// its index was picked among.
static DIRECTORY_INDEX: Key<Arc<[String]>> = Key::parsed("DirectoryIndex", index_names)
    .args(Args::Many)
    .unset(|| Arc::from(Vec::new()))
    .doc("Files to serve for a directory URL; the first that exists wins, under its own URI's Location");

fn index_names(args: &[&str]) -> Result<Arc<[String]>, String> {
    args.iter()
        .map(|name| match *name {
            "" | "." | ".." => Err(format!("expected a file name, got {name:?}")),
            n if n.contains('/') => Err(format!("expected a file name without `/`, got {n:?}")),
            n => Ok(n.to_string()),
        })
        .collect()
}

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "uri_to_file",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![
        DOCUMENT_ROOT.declare(),
        DIRECTORY_INDEX.declare(),
        FOLLOW_SYMLINKS.declare(),
        OPEN_FILE_CACHE.declare(),
    ]
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    open_file_cache::check_descriptors(init);
    Ok(Rc::new(UriToFile {
        alias_prefix: alias_prefixes(init.config),
        settings: PerLocation::default(),
    }))
}

/// For every `<Location>` (keyed by the address of its frozen config),
/// the prefix to strip from request paths before mapping under its
/// DocumentRoot: that of the outermost scope that set the DocumentRoot in
/// effect there. Scopes that use the Server's root map the full path and
/// have no entry. Worked out once here, not per request.
fn alias_prefixes(config: &Config) -> TrustedMap<usize, String> {
    let mut out = TrustedMap::default();
    for server in &config.servers {
        for node in &server.locations {
            let Some(mine) = node.config.settings_of(&DOCUMENT_ROOT).last() else {
                continue;
            };
            let defining = server
                .locations
                .iter()
                .filter(|n| prefix_matches(&n.prefix, &node.prefix))
                .filter(|n| {
                    n.config
                        .settings_of(&DOCUMENT_ROOT)
                        .last()
                        .is_some_and(|t| Arc::ptr_eq(t, mine))
                })
                .min_by_key(|n| n.prefix.len());
            if let Some(d) = defining.filter(|d| d.prefix != "/") {
                out.insert(Arc::as_ptr(&node.config) as usize, d.prefix.clone());
            }
        }
    }
    out
}

struct UriToFile {
    /// See [`alias_prefixes`]: keyed by addresses of the config, a
    /// trusted map.
    alias_prefix: TrustedMap<usize, String>,
    settings: PerLocation<Rc<Settings>>,
}

/// What a Location's directives say, read once: its root (DocumentRoot
/// under FollowSymlinks' rule; None: no DocumentRoot), the prefix to
/// strip, and the open-file cache's policy.
struct Settings {
    root: Option<DocRoot>,
    alias_prefix: Option<String>,
    policy: Option<Policy>,
}

/// Everything a lookup needs, owned, so that it can run on the blocking
/// pool.
struct Lookup {
    /// DocumentRoot, under the rule FollowSymlinks sets.
    root: DocRoot,
    rel_path: PathBuf,
    full: PathBuf,
    segments: Vec<String>,
    trailing_slash: bool,
    index_names: Arc<[String]>,
    /// Files up to this size are read as they are opened.
    small: u64,
    policy: Option<Policy>,
}

/// What a lookup found.
enum Found {
    /// A regular file; `cacheable` unless it was found by splitting off
    /// PATH_INFO.
    File {
        filename: PathBuf,
        open: OpenFile,
        path_info: String,
        cacheable: bool,
    },
    /// A directory asked for without its trailing slash.
    DirWithoutSlash,
    /// A directory without an index file.
    Dir {
        dir: PathBuf,
        md: std::fs::Metadata,
    },
    /// Nothing there.
    Missing {
        filename: PathBuf,
    },
    /// Something that is neither a file nor a directory (a FIFO, a
    /// device, a socket): served as nothing there, never read.
    NotServable(io::Error),
    /// The path leads outside the root through a symlink.
    Escape(io::Error),
    /// The path (or the file's metadata) may not be read.
    Denied(io::Error),
    Failed(io::Error),
    /// The DocumentRoot itself cannot be opened.
    NoRoot(io::Error),
}

#[axkit::plugin]
impl Plugin for UriToFile {
    /// The open-file cache's sweep (see `open_file_cache`).
    fn worker_start(&self, worker: &Worker) {
        open_file_cache::start_sweep(worker);
    }

    fn uri_translation<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let lookup = match self.prepare(ctx) {
            Ok(lookup) => lookup,
            Err(outcome) => return outcome.into(),
        };
        // Not in the open-file cache (or no cache): look now if the
        // kernel's caches can answer, else on the blocking pool, so
        // open/stat/read on a cold disk (or NFS) never stall the worker's
        // other connections.
        if let Ok(found) = resolve(&lookup, Io::Cached) {
            return self.apply(ctx, lookup, found).into();
        }
        hook(async move {
            let (lookup, found) = match tokio::task::spawn_blocking(move || {
                let found = resolve(&lookup, Io::Blocking)
                    .unwrap_or_else(|_| Found::Failed(io::ErrorKind::WouldBlock.into()));
                (lookup, found)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => return Outcome::Error(format!("file lookup failed: {e}")),
            };
            self.apply(ctx, lookup, found)
        })
    }
}

impl UriToFile {
    /// The part that needs no filesystem access (or only the cache): a
    /// cache hit, or what the lookup on the blocking pool needs. `Err` is
    /// the outcome.
    fn prepare(&self, ctx: &mut Context) -> Result<Lookup, Outcome> {
        let settings = self.settings.get(ctx.config(), |config| {
            let key = config as *const LocationConfig as usize;
            Rc::new(Settings {
                root: (config.get(&DOCUMENT_ROOT).as_deref())
                    .map(|root| DocRoot::new(root, Rule::of(config))),
                alias_prefix: self.alias_prefix.get(&key).cloned(),
                policy: open_file_cache::policy(config),
            })
        });
        let Some(root) = &settings.root else {
            return Err(Outcome::Declined);
        };
        let path = ctx.request.decoded_path();
        if path == "*" {
            return Err(Outcome::Declined);
        }
        // A `%` is rare in a decoded path: looked for first by one byte.
        if path.as_bytes().contains(&b'%') && path.contains("%2F") {
            ctx.log_reason(404, format_args!("an encoded slash (%2F) in the path"));
            return Err(Outcome::Status(404));
        }
        let trailing_slash = path.ends_with('/');
        let rel = match &settings.alias_prefix {
            Some(prefix) => &path[prefix.len()..],
            None => path,
        };
        // The path is normalised (no `.`, `..` or `//`), so its segments
        // joined are the path without its outer slashes.
        let rel = rel.trim_matches('/');
        // Whatever the outcome, the request's other files are opened
        // beneath this root under this rule.
        ctx.doc_root = Some(root.clone());
        let policy = settings.policy;
        let now = ctx.request.start_time();
        let hit = policy.and_then(|p| {
            let config = ctx.config();
            cached(root, Path::new(rel), trailing_slash, p, now, config)
        });
        if let Some(hit) = hit {
            return Err(use_cached(ctx, hit.0, hit.1));
        }
        let full = root.path().join(rel);
        let segments: Vec<String> = rel
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let rel_path: PathBuf = segments.iter().collect();
        let index_names = ctx.config().get(&DIRECTORY_INDEX).clone();
        Ok(Lookup {
            root: root.clone(),
            rel_path,
            full,
            segments,
            trailing_slash,
            index_names,
            small: open_file_cache::small_file_size(ctx.config()),
            policy,
        })
    }

    /// Put what the lookup found into the context (and the cache).
    fn apply(&self, ctx: &mut Context, lookup: Lookup, found: Found) -> Outcome {
        match found {
            Found::File {
                filename,
                open,
                path_info,
                cacheable,
            } => {
                let open = Rc::new(open);
                let filename: Arc<Path> = filename.into();
                // `/dir/` found its index: with a trailing slash, only an
                // index comes without path info.
                let index = lookup.trailing_slash && path_info.is_empty();
                if let (true, Some(policy)) = (cacheable, lookup.policy) {
                    let (root, rel) = (&lookup.root, &lookup.rel_path);
                    open_file_cache::put(
                        Kind::Uri,
                        root,
                        rel,
                        filename.clone(),
                        Some(open.clone()),
                        Some(&lookup.index_names),
                        policy,
                        ctx.request.start_time(),
                    );
                }
                if index {
                    if let Some(elsewhere) = index_elsewhere(ctx, &filename) {
                        return elsewhere;
                    }
                }
                ctx.metadata = Some(open.metadata.clone());
                ctx.file = Some(open);
                ctx.path_info = path_info;
                ctx.filename = Some(filename);
                Outcome::Ok
            }
            Found::DirWithoutSlash => {
                // Not a hook of ours in fixup: that would be a call on
                // every request of the Location for this rare one.
                ctx.answer_after_fixup(redirect_to_slash);
                Outcome::Ok
            }
            Found::Dir { dir, md } => {
                ctx.metadata = Some(md);
                ctx.filename = Some(dir.into());
                Outcome::Ok
            }
            Found::Missing { filename } => {
                let filename: Arc<Path> = filename.into();
                if let Some(policy) = lookup.policy {
                    let (root, rel) = (&lookup.root, &lookup.rel_path);
                    let now = ctx.request.start_time();
                    let name = filename.clone();
                    open_file_cache::put(Kind::Uri, root, rel, name, None, None, policy, now);
                }
                ctx.filename = Some(filename);
                ctx.metadata = None;
                ctx.set_state(KnownMissing);
                Outcome::Ok
            }
            Found::NotServable(e) => {
                let path = &lookup.full;
                ctx.log_reason(404, format_args!("{path:?} is {e}"));
                Outcome::Status(404)
            }
            Found::Escape(e) => {
                ctx.log(
                    Level::Warn,
                    &format!(
                        "{}: refused: leads outside DocumentRoot ({e})",
                        lookup.full.display()
                    ),
                );
                Outcome::Status(403)
            }
            Found::Denied(e) => {
                let path = &lookup.full;
                ctx.log_reason(403, format_args!("open({path:?}) failed: {e}"));
                Outcome::Status(403)
            }
            Found::Failed(e) => {
                ctx.log(Level::Error, &format!("{}: {e}", lookup.full.display()));
                Outcome::Status(500)
            }
            Found::NoRoot(e) => {
                let root = lookup.root.path().display();
                ctx.log(Level::Error, &format!("DocumentRoot {root}: {e}"));
                Outcome::Status(500)
            }
        }
    }
}

/// The open-file cache's fresh entry for `rel` beneath `root`, if it
/// answers this request, made under `config` (no syscall, no
/// allocation), and whether the slash after the path is path info.
fn cached(
    root: &DocRoot,
    rel: &Path,
    trailing_slash: bool,
    policy: Policy,
    now: SystemTime,
    config: &LocationConfig,
) -> Option<(Entry, bool)> {
    let entry = open_file_cache::get(Kind::Uri, root, rel, policy, now)?;
    if !entry.is_path {
        // A directory's entry names its index; without the slash the
        // request must be redirected instead, and a Location with other
        // index names may pick another file in the same directory.
        let names = config.get(&DIRECTORY_INDEX);
        let same_names = entry
            .index_names
            .as_ref()
            .is_some_and(|n| Arc::ptr_eq(n, names) || n[..] == names[..]);
        if !trailing_slash || !same_names {
            return None;
        }
    }
    let slash_info = entry.is_path && trailing_slash;
    Some((entry, slash_info))
}

/// Answer from a cache entry that [`cached`] found.
fn use_cached(ctx: &mut Context, entry: Entry, slash_info: bool) -> Outcome {
    let Some(open) = entry.open else {
        // A cached miss.
        ctx.filename = Some(entry.filename);
        ctx.metadata = None;
        ctx.set_state(KnownMissing);
        return Outcome::Ok;
    };
    if !entry.is_path {
        if let Some(elsewhere) = index_elsewhere(ctx, &entry.filename) {
            return elsewhere;
        }
    }
    if slash_info {
        ctx.path_info = "/".to_string();
    }
    ctx.filename = Some(entry.filename);
    ctx.metadata = Some(open.metadata.clone());
    ctx.file = Some(open);
    Outcome::Ok
}

/// `filename` is the index of the directory the request names: its own
/// URI is the request's path and its name. When that URI falls in another
/// `<Location>`, the rules of that Location (its access control and
/// authentication) are the file's, so the request goes on as that URI
/// (nginx's index module redirects so), and this is the hook's outcome;
/// `None` when it is the same Location, served here.
fn index_elsewhere(ctx: &mut Context, filename: &Path) -> Option<Outcome> {
    let name = filename.file_name()?.to_str()?;
    let uri = uri_elsewhere(ctx, ["", name])?;
    ctx.internal_redirect_same_request(&uri);
    Some(Outcome::Done)
}

/// The file served is named by the request's path followed by `tail` (a
/// directory's index, a typeless name's extension): when that URI falls
/// in another `<Location>` than the request's, the URI to go on as
/// (`Context::internal_redirect_same_request`), %-encoded, with the
/// request's query; `None`, without an allocation, when it is the same
/// Location.
pub(crate) fn uri_elsewhere(ctx: &Context, tail: [&str; 2]) -> Option<String> {
    let path = ctx.request.decoded_path();
    if ctx.in_same_location(&[path, tail[0], tail[1]]) {
        return None;
    }
    let mut uri = String::with_capacity(path.len() + tail[0].len() + tail[1].len() + 1);
    for part in [path, tail[0], tail[1]] {
        uri.extend(encode_path(part));
    }
    if let Some(query) = ctx.request.query() {
        uri.push('?');
        uri.push_str(query);
    }
    Some(uri)
}

/// The filesystem part of a lookup: open the path beneath the root, and
/// for a directory its index; for a missing path, split off PATH_INFO.
/// Touches nothing but the filesystem, so it can run on any thread.
fn resolve(l: &Lookup, io: Io) -> Result<Found, WouldBlock> {
    match l.root.fd(io) {
        Ok(_) => {}
        Err(e) if io.would_block(&e) => return Err(WouldBlock),
        Err(e) => return Ok(Found::NoRoot(e)),
    }
    let found = match open_file_cache::open_servable(&l.root, &l.rel_path, io) {
        Ok((file, md)) => {
            if !md.is_dir() {
                // `/a.html/`: the slash is path info, as in `/a.html/x`.
                let path_info = if l.trailing_slash { "/" } else { "" };
                return Ok(Found::File {
                    filename: l.full.clone(),
                    open: open_file_cache::load(file, md, l.small, io)?,
                    path_info: path_info.to_string(),
                    cacheable: true,
                });
            }
            if !l.trailing_slash {
                return Ok(Found::DirWithoutSlash);
            }
            for name in l.index_names.iter() {
                let index = match open(&l.root, &l.rel_path.join(name), io) {
                    Ok(index) => index,
                    Err(e) if io.would_block(&e) => return Err(WouldBlock),
                    Err(_) => continue,
                };
                if let Ok(index_md) = index.metadata() {
                    if index_md.is_file() {
                        return Ok(Found::File {
                            filename: l.full.join(name),
                            open: open_file_cache::load(index, index_md, l.small, io)?,
                            path_info: String::new(),
                            cacheable: true,
                        });
                    }
                }
            }
            Found::Dir {
                dir: l.full.clone(),
                md,
            }
        }
        Err(e) if io.would_block(&e) => return Err(WouldBlock),
        Err(e) if open_file_cache::not_servable(&e) => Found::NotServable(e),
        Err(e) if is_missing(&e) => split_path_info(l, io)?,
        Err(e) if is_escape(&e) => Found::Escape(e),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Found::Denied(e),
        Err(e) => Found::Failed(e),
    };
    Ok(found)
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
    let path = encode_path(ctx.request.decoded_path()).to_string();
    let mut location = format!("{path}/");
    if let Some(q) = ctx.request.query() {
        location.push('?');
        location.push_str(q);
    }
    ctx.response.headers.set("Location", location);
    Outcome::Status(301)
}

/// The full path does not exist: find the longest existing prefix that is
/// a file; the rest is PATH_INFO. Otherwise the path is missing, for the
/// response plugin to 404.
fn split_path_info(l: &Lookup, io: Io) -> Result<Found, WouldBlock> {
    let mut rel = PathBuf::new();
    for (i, segment) in l.segments.iter().enumerate() {
        rel.push(segment);
        let file = match open(&l.root, &rel, io) {
            Ok(file) => file,
            Err(e) if io.would_block(&e) => return Err(WouldBlock),
            Err(_) => break,
        };
        let Ok(md) = file.metadata() else { break };
        if md.is_file() {
            let mut info = String::new();
            for s in &l.segments[i + 1..] {
                info.push('/');
                info.push_str(s);
            }
            if l.trailing_slash {
                info.push('/');
            }
            // Not a static file (a script with path info): nothing to read.
            return Ok(Found::File {
                filename: l.root.path().join(&rel),
                open: OpenFile::new(file, md),
                path_info: info,
                cacheable: false,
            });
        }
        if !md.is_dir() {
            break;
        }
    }
    Ok(Found::Missing {
        filename: l.full.clone(),
    })
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG)
    )
}

/// Open `rel` beneath `root` under its rule: with FollowSymlinks off the
/// kernel refuses any resolution that leaves the root, symlinks included.
fn open(root: &DocRoot, rel: &Path, io: Io) -> io::Result<File> {
    root.open_rel(rel, READ_FLAGS, io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of looking (on the event loop from the kernel's caches,
    /// on the blocking pool from anywhere) find the same things; the
    /// cached way may only decline.
    #[test]
    fn lookups_agree_in_both_io_modes() {
        let root = std::env::temp_dir().join(format!("axkit-u2f-{}", std::process::id()));
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::write(root.join("small.txt"), "small").unwrap();
        std::fs::write(root.join("dir/index.html"), "index").unwrap();
        let lookup = |rel: &str, trailing_slash: bool| Lookup {
            root: DocRoot::new(&root, Rule::Beneath),
            rel_path: PathBuf::from(rel),
            full: root.join(rel),
            segments: rel
                .split('/')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            trailing_slash,
            index_names: Arc::from(vec!["index.html".to_string()]),
            small: 1024,
            policy: None,
        };
        let describe = |found: Found| match found {
            Found::File {
                filename,
                open,
                path_info,
                ..
            } => format!(
                "file {} {:?} {path_info}",
                filename.display(),
                open.contents().map(|b| b.to_vec())
            ),
            Found::DirWithoutSlash => "redirect".to_string(),
            Found::Missing { filename } => format!("missing {}", filename.display()),
            _ => "other".to_string(),
        };
        // Path info (`small.txt/extra` ends in ENOTDIR) may always need the
        // pool; the rest is answered from warm caches.
        for (rel, slash, warm) in [
            ("small.txt", false, true),
            ("dir", true, true),
            ("dir", false, true),
            ("nothing.txt", false, true),
            ("small.txt/extra", false, false),
        ] {
            let pooled = describe(resolve(&lookup(rel, slash), Io::Blocking).unwrap());
            if let Ok(found) = resolve(&lookup(rel, slash), Io::Cached) {
                assert_eq!(describe(found), pooled, "{rel}");
            }
            if warm {
                // Looked up just now: the kernel's caches answer.
                let again = resolve(&lookup(rel, slash), Io::Cached);
                assert_eq!(describe(again.expect("warm")), pooled, "{rel}");
            }
        }
        let small = describe(resolve(&lookup("small.txt", false), Io::Blocking).unwrap());
        assert!(small.contains("Some([115, 109, 97, 108, 108])"), "{small}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
