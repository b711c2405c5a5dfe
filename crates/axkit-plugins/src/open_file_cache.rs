//! The per-worker open-file cache that the file plugins share
//! (`uri_to_file` for the paths it maps, `serve_file` for precompressed
//! siblings, `typeless_uri` for the names it tries), and how they open
//! files without ever making the event loop wait for a disk. Every open
//! goes through [`DocRoot`] (beneath the request's root, under its
//! `FollowSymlinks` rule: see `plugin/doc_root.rs`).
//!
//! `OpenFileCache SIZE TTL` (declared by `uri_to_file`, default
//! `1000 1s`; a TTL of 0, which no entry would outlive, is refused: `Off`
//! is no caching) keeps up to SIZE open files per worker, each with its
//! metadata, validators and (small files) contents, and also misses,
//! trusted for TTL, counted from the start of the request that made an
//! entry to the start of the one it answers (both read the clock anyway,
//! so a hit reads none). A hit costs no syscall at all. An entry is keyed by
//! the root it was resolved beneath and the rule it was resolved under as
//! well as by its path (see `Cache`), and a directory's entry holds the
//! `DirectoryIndex` names its index was picked among, so it is never
//! handed to a request that would have resolved the same path
//! differently. Only regular files and directories are opened to be kept
//! ([`open_servable`]).
//!
//! Everything else — a cold open, a miss, a revalidation after TTL, and
//! every open with `OpenFileCache Off` — is first tried on the event loop
//! in [`Io::Cached`] mode, where the kernel answers only from its own
//! caches: `openat2` with `RESOLVE_CACHED` fails with EAGAIN instead of
//! reading a directory from disk, `preadv2` with `RWF_NOWAIT` instead of
//! reading file pages (the test io_uring makes before it runs an open
//! inline). Only what would wait goes to the blocking pool ([`Io::Blocking`]),
//! so a warm server pays no thread hop and a cold disk never stalls the
//! worker's other connections. A kernel without `RESOLVE_CACHED` (before
//! 5.12) refuses the flag, and every such lookup then takes the pool.
//!
//! The fstat after an open is made on the event loop too: local
//! filesystems answer it from the inode the open just loaded; a network
//! filesystem may ask its server (it usually fails the `RESOLVE_CACHED`
//! open first when its attributes are stale).
//!
//! The worker is one thread, so the cache is a thread-local: no locks, and
//! every plugin instance of the worker sees the same entries. What it
//! costs: up to SIZE descriptors per worker, and the contents of the small
//! files among them (at most SIZE × `SmallFileSize`, 32 MiB with the
//! defaults if every entry is a 32 KiB file).
//!
//! Those descriptors are part of the worker's budget: every connection
//! takes one, and a worker whose cache had taken the rest would fail to
//! accept long before `MaxConnections`, where idle connections make room
//! (the cache's fill plus a crowd of idle clients locked new ones out).
//! So the cache keeps at most half of what `MaxConnections` leaves of the
//! open-file limit open (`PluginInit::descriptors`: 64 files with the
//! default `MaxConnections` and a limit of 1024), whatever SIZE says; the
//! misses, which hold none, still count against SIZE only. An explicit
//! `MaxConnections` that leaves less than SIZE is warned about (`--check`,
//! and the first worker's log). And an entry past its TTL is closed within
//! a second ([`SWEEP`]), used or not, as nginx's `open_file_cache`
//! closes what was not used for `inactive`: an expired entry is never
//! served again, and must not keep a file someone deleted on the disk.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::serve_file::SMALL_FILE_SIZE;
use axkit::config::{parse, Args, Key, LocationConfig};
pub(crate) use axkit::plugin::Io;
use axkit::plugin::{DocRoot, OpenFile, PluginInit, Rule, TrustedMap, Worker, READ_FLAGS};

/// How often the entries past their TTL are closed.
const SWEEP: Duration = Duration::from_secs(1);

/// What `OpenFileCache SIZE TTL` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Most entries (files and misses) per worker.
    pub size: usize,
    /// How long an entry is trusted before the path is looked up again.
    pub ttl: Duration,
}

/// `OpenFileCache SIZE TTL | Off` (declared by `uri_to_file`, whose
/// lookups it serves first): `None` is Off.
pub(crate) static OPEN_FILE_CACHE: Key<Option<Policy>> = Key::parsed("OpenFileCache", parse)
    .args(Args::Range(1, 2))
    .default("1000 1s")
    .doc(
        "SIZE TTL: open files and misses kept per worker, trusted for TTL (above 0) and closed after it; \
         or Off. Open files: at most half of the descriptors MaxConnections leaves",
    );

/// `SIZE TTL` or `Off`, when the config is loaded.
fn parse(args: &[&str]) -> Result<Option<Policy>, String> {
    let bad = || {
        format!(
            "expected OpenFileCache SIZE TTL (like 1000 1s) or Off, got {:?}",
            args.join(" ")
        )
    };
    match args {
        [off] if off.eq_ignore_ascii_case("off") => Ok(None),
        [size, ttl] => {
            let size = size.parse::<usize>().ok().filter(|&n| n > 0);
            let size = size.ok_or_else(|| format!("{}: SIZE must be a positive number", bad()))?;
            let ttl = parse::duration(ttl).map_err(|e| format!("{}: TTL: {e}", bad()))?;
            if ttl.is_zero() {
                // Each entry would be stale before any request could use
                // it: descriptors held for nothing.
                return Err(
                    "a TTL of 0 would never serve an entry: expected a TTL above 0 \
                            (for no caching: OpenFileCache Off)"
                        .into(),
                );
            }
            Ok(Some(Policy { size, ttl }))
        }
        _ => Err(bad()),
    }
}

/// The policy in effect for a request (None: Off).
pub(crate) fn policy(config: &LocationConfig) -> Option<Policy> {
    *config.get(&OPEN_FILE_CACHE)
}

/// Files up to this size are read when opened and served from memory
/// (`serve_file`'s `SmallFileSize`).
pub(crate) fn small_file_size(config: &LocationConfig) -> u64 {
    *config.get(&SMALL_FILE_SIZE)
}

/// An [`Io::Cached`] call would have waited: do it again on the blocking
/// pool.
#[derive(Debug)]
pub(crate) struct WouldBlock;

/// [`OpenFile::load`] in this mode (small files' contents read from the
/// page cache only in [`Io::Cached`] mode).
pub(crate) fn load(file: File, md: Metadata, small: u64, io: Io) -> Result<OpenFile, WouldBlock> {
    match io {
        Io::Cached => OpenFile::load_nowait(file, md, small).ok_or(WouldBlock),
        Io::Blocking => Ok(OpenFile::load(file, md, small)),
    }
}

/// Open `path` (a full path under `root`) under the root's rule, as a
/// regular file only.
fn open_sibling(root: &DocRoot, path: &Path, io: Io) -> io::Result<(File, Metadata)> {
    let rel = root.relative(path).ok_or(io::ErrorKind::NotFound)?;
    let (file, md) = open_servable(root, rel, io)?;
    if !md.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok((file, md))
}

/// Open `rel` beneath `root` to serve it, as a regular file or a
/// directory. The open cannot wait (`O_NONBLOCK`: a FIFO without a
/// writer does not hang it) and its type is looked at before anything
/// reads it: a FIFO (whose reader the worker would stay), a device (a
/// read may act) or a socket is closed at once and never cached, an
/// error that [`not_servable`] tells apart, as is the open the kernel
/// refuses for what the path is (ENXIO: a socket, a device without its
/// driver; ENODEV).
pub(crate) fn open_servable(root: &DocRoot, rel: &Path, io: Io) -> io::Result<(File, Metadata)> {
    let file = match root.open_rel(rel, READ_FLAGS, io) {
        Ok(file) => file,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) => {
            return Err(NotServable("a socket or a device without its driver").into());
        }
        Err(e) => return Err(e),
    };
    let md = file.metadata()?;
    let kind = md.file_type();
    if kind.is_file() || kind.is_dir() {
        return Ok((file, md));
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else {
        "a block device"
    };
    Err(NotServable(what).into())
}

/// What [`open_servable`] found instead of a file or a directory.
#[derive(Debug)]
struct NotServable(&'static str);

impl std::fmt::Display for NotServable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, not a regular file or a directory", self.0)
    }
}

impl std::error::Error for NotServable {}

impl From<NotServable> for io::Error {
    fn from(e: NotServable) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// Whether `e` is [`open_servable`] finding something that is neither a
/// file nor a directory: served as nothing there (404).
pub(crate) fn not_servable(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotServable>())
}

/// What a cached path was looked up for: the same path looked up for
/// another purpose is another entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// By `uri_to_file`, for a URL: a directory's entry names its index.
    Uri,
    /// Next to a file already found (precompressed siblings, typeless
    /// names): regular files only.
    Sibling,
}

/// One cached lookup.
#[derive(Clone)]
pub(crate) struct Entry {
    /// The file served: the path itself, or a directory's index file
    /// (shared with the requests it answers, as `ctx.filename`).
    pub filename: Arc<Path>,
    /// None: nothing there (a cached miss, as nginx's
    /// `open_file_cache_errors`), so a flood of 404s costs no syscalls.
    pub open: Option<Rc<OpenFile>>,
    /// Whether `filename` is the path looked up itself, not a directory's
    /// index file: worked out once here rather than on every hit.
    pub is_path: bool,
    /// A directory's entry: the `DirectoryIndex` names its index was
    /// picked among, which another Location's may not be (the same
    /// directory mapped twice with different names).
    pub index_names: Option<Arc<[String]>>,
    /// The start of the request that looked it up (see [`fresh`]).
    opened: SystemTime,
    /// The TTL it was made under, for the sweep.
    ttl: Duration,
}

/// Whether an entry made at `opened` may still answer a request that
/// started at `now`: at most `ttl` old, counted between the two requests'
/// starts, which every request has read the clock for anyway, so a hit
/// reads no clock. A clock that went back makes every entry stale, never
/// fresh for longer.
fn fresh(opened: SystemTime, now: SystemTime, ttl: Duration) -> bool {
    now.duration_since(opened).is_ok_and(|age| age <= ttl)
}

/// Entries by root path, then by path relative to the root: both levels
/// are looked up by the path's bytes, so a hit allocates nothing and
/// hashes each path in one go (a `Path` key is hashed and compared
/// component by component: most of a hit's cost). Equal bytes are the
/// same path; the same path spelt two ways is only a second entry. Roots
/// come from the config (a trusted map); paths from requests, which an
/// attacker chooses, are hashed with a random key (foldhash, seeded per
/// map), at a fraction of SipHash's cost for a short path.
type ByRoot = TrustedMap<OsString, HashMap<OsString, Entry, foldhash::fast::RandomState>>;

/// The cache: one [`ByRoot`] per ([`Kind`], [`Rule`]). A path is thus
/// found only under the root and the rule it was resolved with: two
/// Locations whose roots nest (`/a`, `/a/b`) or whose `FollowSymlinks`
/// differ never share an entry, since one may refuse what the other
/// allows (`/a/b/x -> ../y` is beneath `/a`, not beneath `/a/b`).
struct Cache {
    slots: [ByRoot; 6],
    /// Entries in all slots together, for the bound.
    len: usize,
    /// Those of them that hold an open file.
    files: usize,
    /// The most entries that may hold an open file: the worker's share of
    /// descriptors (see the module's doc).
    max_files: usize,
    /// Whether this worker's sweep runs.
    sweeping: bool,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache {
            slots: Default::default(),
            len: 0,
            files: 0,
            // Until a plugin's constructor says what the worker has.
            max_files: usize::MAX,
            sweeping: false,
        }
    }
}

impl Cache {
    /// Close every entry (start over).
    fn clear(&mut self) {
        self.slots.iter_mut().for_each(TrustedMap::clear);
        self.len = 0;
        self.files = 0;
    }

    /// Close the entries past their TTL at `now`.
    fn sweep(&mut self, now: SystemTime) {
        let (mut len, mut files) = (0, 0);
        for by_rel in self.slots.iter_mut().flat_map(|s| s.values_mut()) {
            by_rel.retain(|_, e| fresh(e.opened, now, e.ttl));
            len += by_rel.len();
            files += by_rel.values().filter(|e| e.open.is_some()).count();
        }
        (self.len, self.files) = (len, files);
    }
}

fn slot(kind: Kind, rule: Rule) -> usize {
    let rule = match rule {
        Rule::Beneath => 0,
        Rule::Follow => 1,
        Rule::NoSymlinks => 2,
    };
    kind as usize * 3 + rule
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

/// Bound the files the cache keeps open by what this worker's descriptors
/// leave (see the module's doc), from the constructor of each plugin that
/// uses it. Returns that bound.
pub(crate) fn fit_descriptors(init: &PluginInit) -> usize {
    let max = init.descriptors().spare() / 2;
    CACHE.with_borrow_mut(|cache| cache.max_files = max);
    max
}

/// [`fit_descriptors`], and a warning when an explicit `MaxConnections`
/// leaves the cache fewer files than a SIZE in the config asks for (from
/// `uri_to_file`, which declares the directive).
pub(crate) fn check_descriptors(init: &PluginInit) {
    let max = fit_descriptors(init);
    let descriptors = init.descriptors();
    let size = init
        .config
        .scopes()
        .filter_map(|c| policy(c))
        .map(|p| p.size)
        .max();
    if let Some(size) = size.filter(|&size| size > max && descriptors.max_connections_set) {
        init.warn(format!(
            "OpenFileCache {size} keeps at most {max} files open per worker: MaxConnections {} \
             leaves {} of the open-file limit ({}), half of which may go to the cache; raise the \
             limit (ulimit -n, systemd's LimitNOFILE) or lower MaxConnections",
            descriptors.max_connections,
            descriptors.spare(),
            descriptors.limit
        ));
    }
}

/// Start this worker's sweep of expired entries (once, however many
/// plugins ask), until the worker drains.
pub(crate) fn start_sweep(worker: &Worker) {
    if CACHE.with_borrow_mut(|cache| std::mem::replace(&mut cache.sweeping, true)) {
        return;
    }
    let worker = worker.clone();
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(SWEEP);
        loop {
            tokio::select! {
                _ = tick.tick() => CACHE.with_borrow_mut(|cache| cache.sweep(SystemTime::now())),
                _ = worker.stopping() => return,
            }
        }
    });
}

/// The fresh entry for `rel` looked up beneath `root` (under its rule),
/// if any, for a request that started at `now`.
pub(crate) fn get(
    kind: Kind,
    root: &DocRoot,
    rel: &Path,
    policy: Policy,
    now: SystemTime,
) -> Option<Entry> {
    CACHE.with_borrow(|cache| {
        cache.slots[slot(kind, root.rule())]
            .get(root.path().as_os_str())?
            .get(rel.as_os_str())
            .filter(|e| fresh(e.opened, now, policy.ttl))
            .cloned()
    })
}

/// Remember what `rel` beneath `root` resolved to: `open` (a regular
/// file, served as `filename`, a directory's index picked among
/// `index_names`) or nothing, for a request that started at `now`
/// (before the lookup, so the entry's age is never understated).
#[allow(clippy::too_many_arguments)]
pub(crate) fn put(
    kind: Kind,
    root: &DocRoot,
    rel: &Path,
    filename: Arc<Path>,
    open: Option<Rc<OpenFile>>,
    index_names: Option<&Arc<[String]>>,
    policy: Policy,
    now: SystemTime,
) {
    CACHE.with_borrow_mut(|cache| {
        let file = open.is_some();
        if file && cache.max_files == 0 {
            return;
        }
        if cache.len >= policy.size || (file && cache.files >= cache.max_files) {
            // A miss never empties the cache: a flood of random 404s must
            // not keep evicting the hot files.
            if !file {
                return;
            }
            // Bounded without bookkeeping per hit: start over when full.
            cache.clear();
        }
        let by_root = &mut cache.slots[slot(kind, root.rule())];
        let by_rel = by_root
            .entry(root.path().as_os_str().to_owned())
            .or_default();
        let is_path = root.relative(&filename).map(Path::as_os_str) == Some(rel.as_os_str());
        let entry = Entry {
            filename,
            open,
            is_path,
            index_names: index_names.filter(|_| !is_path).cloned(),
            opened: now,
            ttl: policy.ttl,
        };
        match by_rel.insert(rel.as_os_str().to_owned(), entry) {
            Some(old) => cache.files -= usize::from(old.open.is_some()),
            None => cache.len += 1,
        }
        cache.files += usize::from(file);
    });
}

/// The first of `candidates` (full paths under `root`) that is a regular
/// file, found without waiting: from the open-file cache, else opened in
/// [`Io::Cached`] mode (and remembered). `None` when that would wait: look
/// with [`first_sibling`] on the blocking pool. `now`: the request's
/// start.
pub(crate) fn sibling_now(
    root: &DocRoot,
    candidates: &[PathBuf],
    policy: Option<Policy>,
    small: u64,
    now: SystemTime,
) -> Option<Option<(usize, Rc<OpenFile>)>> {
    if let Some(policy) = policy {
        let mut known = Some(None);
        for (i, path) in candidates.iter().enumerate() {
            // A candidate outside the root is never found.
            let Some(rel) = root.relative(path) else {
                continue;
            };
            match get(Kind::Sibling, root, rel, policy, now) {
                Some(Entry {
                    open: Some(open), ..
                }) => {
                    known = Some(Some((i, open)));
                    break;
                }
                Some(_) => continue,
                None => {
                    known = None;
                    break;
                }
            }
        }
        if known.is_some() {
            return known;
        }
    }
    let tried = try_siblings(root, candidates, Io::Cached, small).ok()?;
    Some(remember_siblings(root, candidates, tried, policy, now))
}

/// What [`sibling_now`] could not find without waiting, on the blocking
/// pool, remembered found or not.
pub(crate) async fn first_sibling(
    root: DocRoot,
    candidates: Vec<PathBuf>,
    policy: Option<Policy>,
    small: u64,
    now: SystemTime,
) -> Option<(usize, Rc<OpenFile>)> {
    let (root, candidates, tried) = tokio::task::spawn_blocking(move || {
        let tried = try_siblings(&root, &candidates, Io::Blocking, small).unwrap_or_default();
        (root, candidates, tried)
    })
    .await
    .ok()?;
    remember_siblings(&root, &candidates, tried, policy, now)
}

/// Open candidates in order up to the first regular file; one result per
/// candidate tried.
fn try_siblings(
    root: &DocRoot,
    candidates: &[PathBuf],
    io: Io,
    small: u64,
) -> Result<Vec<Option<OpenFile>>, WouldBlock> {
    let mut tried = Vec::new();
    for path in candidates {
        let found = match open_sibling(root, path, io) {
            Ok((file, md)) => Some(load(file, md, small, io)?),
            Err(e) if io.would_block(&e) => return Err(WouldBlock),
            Err(_) => None,
        };
        let hit = found.is_some();
        tried.push(found);
        if hit {
            break;
        }
    }
    Ok(tried)
}

/// Cache what [`try_siblings`] found and pick the first file.
fn remember_siblings(
    root: &DocRoot,
    candidates: &[PathBuf],
    tried: Vec<Option<OpenFile>>,
    policy: Option<Policy>,
    now: SystemTime,
) -> Option<(usize, Rc<OpenFile>)> {
    let mut first = None;
    for (i, (path, found)) in candidates.iter().zip(tried).enumerate() {
        let open = found.map(Rc::new);
        if let Some(open) = &open {
            first = Some((i, open.clone()));
        }
        if let (Some(policy), Some(rel)) = (policy, root.relative(path)) {
            put(
                Kind::Sibling,
                root,
                rel,
                path.as_path().into(),
                open,
                None,
                policy,
                now,
            );
        }
    }
    first
}
#[cfg(test)]
mod tests {
    use super::*;

    /// An entry is handed out only for the kind of lookup, the root and
    /// the rule it was made under: not through a root nested in its own
    /// (the same full path), not under another rule, not as a sibling.
    #[test]
    fn entries_are_keyed_by_kind_root_and_rule() {
        let dir = std::env::temp_dir().join(format!("axkit-ofc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/x.txt"), "x").unwrap();
        let policy = Policy {
            size: 10,
            ttl: Duration::from_secs(3600),
        };
        let now = SystemTime::now();
        let outer = DocRoot::new(&dir.join("a"), Rule::Beneath);
        let inner = DocRoot::new(&dir.join("a/b"), Rule::Beneath);
        let file = File::open(dir.join("a/b/x.txt")).unwrap();
        let md = file.metadata().unwrap();
        let open = Some(Rc::new(OpenFile::new(file, md)));
        let x = Path::new("b/x.txt");
        put(
            Kind::Uri,
            &outer,
            x,
            dir.join("a/b/x.txt").into(),
            open,
            None,
            policy,
            now,
        );
        assert!(get(Kind::Uri, &outer, x, policy, now).is_some_and(|e| e.open.is_some()));
        assert!(get(Kind::Uri, &inner, Path::new("x.txt"), policy, now).is_none());
        assert!(get(Kind::Sibling, &outer, x, policy, now).is_none());
        for rule in [Rule::Follow, Rule::NoSymlinks] {
            let other = DocRoot::new(&dir.join("a"), rule);
            assert!(get(Kind::Uri, &other, x, policy, now).is_none(), "{rule:?}");
        }
        // A miss under the inner root is no miss under the outer one.
        put(
            Kind::Uri,
            &inner,
            Path::new("y"),
            dir.join("a/b/y").into(),
            None,
            None,
            policy,
            now,
        );
        assert!(get(Kind::Uri, &inner, Path::new("y"), policy, now).is_some());
        assert!(get(Kind::Uri, &outer, Path::new("b/y"), policy, now).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The bound counts entries under every root and rule; when full, a
    /// miss is dropped and a file starts the cache over.
    #[test]
    fn the_bound_spans_roots_and_rules() {
        let policy = Policy {
            size: 2,
            ttl: Duration::from_secs(3600),
        };
        let now = SystemTime::now();
        let tmp = std::env::temp_dir();
        let a = DocRoot::new(&tmp, Rule::Beneath);
        let b = DocRoot::new(&tmp, Rule::Follow);
        put(
            Kind::Uri,
            &a,
            Path::new("m1"),
            tmp.join("m1").into(),
            None,
            None,
            policy,
            now,
        );
        put(
            Kind::Sibling,
            &b,
            Path::new("m2"),
            tmp.join("m2").into(),
            None,
            None,
            policy,
            now,
        );
        put(
            Kind::Uri,
            &b,
            Path::new("m3"),
            tmp.join("m3").into(),
            None,
            None,
            policy,
            now,
        );
        assert!(get(Kind::Uri, &b, Path::new("m3"), policy, now).is_none());
        assert!(get(Kind::Uri, &a, Path::new("m1"), policy, now).is_some());
        let file = File::open(&tmp).unwrap();
        let md = file.metadata().unwrap();
        let open = Some(Rc::new(OpenFile::new(file, md)));
        put(
            Kind::Uri,
            &b,
            Path::new("f"),
            tmp.as_path().into(),
            open,
            None,
            policy,
            now,
        );
        assert!(get(Kind::Uri, &b, Path::new("f"), policy, now).is_some());
        assert!(get(Kind::Uri, &a, Path::new("m1"), policy, now).is_none());
    }

    /// An entry answers requests that started at most TTL after the one
    /// that made it, and none that started before it (a clock set back).
    #[test]
    fn entries_age_by_request_start() {
        let policy = Policy {
            size: 10,
            ttl: Duration::from_secs(1),
        };
        let root = DocRoot::new(&std::env::temp_dir(), Rule::NoSymlinks);
        let made = SystemTime::now();
        let rel = Path::new("axkit-ofc-ttl");
        put(
            Kind::Uri,
            &root,
            rel,
            root.path().join(rel).into(),
            None,
            None,
            policy,
            made,
        );
        let at = |secs: f64| {
            get(
                Kind::Uri,
                &root,
                rel,
                policy,
                made + Duration::from_secs_f64(secs),
            )
        };
        assert!(at(0.0).is_some());
        assert!(at(1.0).is_some());
        assert!(at(1.001).is_none());
        let before = made - Duration::from_millis(1);
        assert!(get(Kind::Uri, &root, rel, policy, before).is_none());
    }

    #[test]
    fn directive_arguments() {
        let parse = |text: &str| parse(&text.split_whitespace().collect::<Vec<_>>());
        assert_eq!(
            parse("1000 1s").unwrap(),
            Some(Policy {
                size: 1000,
                ttl: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse("10 500ms").unwrap().unwrap().ttl,
            Duration::from_millis(500)
        );
        assert_eq!(parse("off").unwrap(), None);
        assert_eq!(parse("Off").unwrap(), None);
        for bad in ["1000", "0 1s", "-1 1s", "x 1s", "10 soon", "10 1s 1s", "on"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
