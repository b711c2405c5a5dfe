//! The per-worker open-file cache that the file plugins share
//! (`uri_to_file` for the paths it maps, `serve_file` for precompressed
//! siblings, `typeless_uri` for the names it tries), and their one way of
//! opening files without ever making the event loop wait for a disk.
//!
//! `OpenFileCache SIZE TTL` (declared by `uri_to_file`, default
//! `1000 1s`) keeps up to SIZE open files per worker, each with its
//! metadata, validators and (small files) contents, and also misses,
//! trusted for TTL. A hit costs no syscall at all.
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
//! costs: up to SIZE descriptors per worker (the limit here is 20,000 per
//! process), and the contents of the small files among them (at most
//! SIZE × `SmallFileSize`, 32 MiB with the defaults if every entry is a
//! 32 KiB file).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{Config, LocationConfig, Value, ValueType};
use crate::plugin::OpenFile;

/// What `OpenFileCache SIZE TTL` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Most entries (files and misses) per worker.
    pub size: usize,
    /// How long an entry is trusted before the path is looked up again.
    pub ttl: Duration,
}

/// Parse the arguments of `OpenFileCache`: `SIZE TTL` or `Off`.
pub(crate) fn parse(args: &[Value]) -> Result<Option<Policy>, String> {
    let bad = || {
        let words: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        format!(
            "expected OpenFileCache SIZE TTL (like 1000 1s) or Off, got {:?}",
            words.join(" ")
        )
    };
    // Runs per request (no allocation unless the value is wrong, which the
    // start-up check has ruled out).
    match args {
        [Value::Str(off)] if off.eq_ignore_ascii_case("off") => Ok(None),
        [Value::Str(size), Value::Str(ttl)] => {
            let size = size.parse::<usize>().ok().filter(|&n| n > 0);
            let size = size.ok_or_else(|| format!("{}: SIZE must be a positive number", bad()))?;
            let ttl = match crate::config::parse_value(&ValueType::Duration, ttl) {
                Ok(Value::Duration(d)) => d,
                Ok(_) => return Err(bad()),
                Err(e) => return Err(format!("{}: TTL: {e}", bad())),
            };
            Ok(Some(Policy { size, ttl }))
        }
        _ => Err(bad()),
    }
}

/// Every `OpenFileCache` written in the config, checked when the server
/// starts (and by `--check`), so a typo stops it with file and line.
pub(crate) fn check(config: &Config) -> Result<(), String> {
    let scopes = config
        .servers
        .iter()
        .flat_map(|s| s.locations.iter().map(|l| &l.config));
    for config in scopes {
        for setting in config.settings("OpenFileCache") {
            parse(&setting.args)
                .map_err(|e| format!("{}:{}: OpenFileCache: {e}", setting.file, setting.line))?;
        }
    }
    Ok(())
}

/// The policy in effect for a request (None: Off, or no `uri_to_file`).
pub(crate) fn policy(config: &LocationConfig) -> Option<Policy> {
    parse(config.values("OpenFileCache")).ok().flatten()
}

/// Files up to this size are read when opened and served from memory
/// (`serve_file`'s `SmallFileSize`; 0 when `serve_file` is not loaded).
pub(crate) fn small_file_size(config: &LocationConfig) -> u64 {
    config.size("SmallFileSize").unwrap_or(0)
}

/// Whether a filesystem call may wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Io {
    /// On the event loop: only what the kernel's caches can answer;
    /// anything else is [`WouldBlock`].
    Cached,
    /// On the blocking pool: whatever it takes.
    Blocking,
}

/// An [`Io::Cached`] call would have waited: do it again on the blocking
/// pool.
#[derive(Debug)]
pub(crate) struct WouldBlock;

impl Io {
    /// Whether `e` means "would wait" in this mode: EAGAIN from
    /// `RESOLVE_CACHED`, or EINVAL from a kernel that does not know the
    /// flag.
    pub fn would_block(self, e: &io::Error) -> bool {
        self == Io::Cached && matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINVAL))
    }
}

/// `struct open_how` of openat2(2); libc's is non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub(crate) const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_CACHED: u64 = 0x20;

/// The flags for opening a file to serve: read-only, and O_NONBLOCK so
/// that a FIFO cannot hang the caller.
pub(crate) const READ_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;

/// openat2(2): `path` relative to `dir` (or to the working directory with
/// AT_FDCWD), with `flags` and `resolve` restrictions (magic links are
/// never followed); in [`Io::Cached`] mode from the dentry cache only.
pub(crate) fn openat2(
    dir: RawFd,
    path: &Path,
    flags: libc::c_int,
    resolve: u64,
    io: Io,
) -> io::Result<File> {
    let c =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in path"))?;
    let cached = if io == Io::Cached { RESOLVE_CACHED } else { 0 };
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: resolve | RESOLVE_NO_MAGICLINKS | cached,
    };
    // SAFETY: openat2 with a valid dirfd (or AT_FDCWD), a C string and an
    // open_how of the size we pass; the result is checked.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
}

/// [`OpenFile::load`] in this mode (small files' contents read from the
/// page cache only in [`Io::Cached`] mode).
pub(crate) fn load(file: File, md: Metadata, small: u64, io: Io) -> Result<OpenFile, WouldBlock> {
    match io {
        Io::Cached => OpenFile::load_nowait(file, md, small).ok_or(WouldBlock),
        Io::Blocking => Ok(OpenFile::load(file, md, small)),
    }
}

/// Open `path`, a sibling of a file that was already resolved safely
/// beneath its document root, refusing a symlink as the last component
/// (the directories leading to it are the ones just resolved) and anything
/// that is not a regular file.
fn open_sibling(path: &Path, io: Io) -> io::Result<(File, Metadata)> {
    let file = openat2(libc::AT_FDCWD, path, READ_FLAGS | libc::O_NOFOLLOW, 0, io)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok((file, md))
}

/// How a cached path was resolved: the same path opened another way is
/// another entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// By `uri_to_file`, beneath DocumentRoot (FollowSymlinks off).
    Beneath,
    /// By `uri_to_file`, symlinks followed (FollowSymlinks on).
    Follow,
    /// Next to a resolved file, no symlink in the last component.
    Sibling,
}

/// One cached lookup.
#[derive(Clone)]
pub(crate) struct Entry {
    /// The file served: the path itself, or a directory's index file.
    pub filename: PathBuf,
    /// None: nothing there (a cached miss, as nginx's
    /// `open_file_cache_errors`), so a flood of 404s costs no syscalls.
    pub open: Option<Rc<OpenFile>>,
    opened: Instant,
}

thread_local! {
    /// One map per [`How`], so that a lookup by `&Path` allocates nothing.
    static CACHE: RefCell<[HashMap<PathBuf, Entry>; 3]> = RefCell::default();
}

/// The fresh entry for `path`, if any.
pub(crate) fn get(how: How, path: &Path, policy: Policy) -> Option<Entry> {
    CACHE.with_borrow(|maps| {
        maps[how as usize]
            .get(path)
            .filter(|e| e.opened.elapsed() <= policy.ttl)
            .cloned()
    })
}

/// Remember what `path` resolved to: `open` (a regular file) or nothing.
pub(crate) fn put(
    how: How,
    path: PathBuf,
    filename: PathBuf,
    open: Option<Rc<OpenFile>>,
    policy: Policy,
) {
    CACHE.with_borrow_mut(|maps| {
        if maps.iter().map(HashMap::len).sum::<usize>() >= policy.size {
            // A miss never empties the cache: a flood of random 404s must
            // not keep evicting the hot files.
            if open.is_none() {
                return;
            }
            // Bounded without bookkeeping per hit: start over when full.
            maps.iter_mut().for_each(HashMap::clear);
        }
        maps[how as usize].insert(
            path,
            Entry {
                filename,
                open,
                opened: Instant::now(),
            },
        );
    });
}

/// The first of `candidates` that is a regular file, found without
/// waiting: from the open-file cache, else opened in [`Io::Cached`] mode
/// (and remembered). `None` when that would wait: look with
/// [`first_sibling`] on the blocking pool.
pub(crate) fn sibling_now(
    candidates: &[PathBuf],
    policy: Option<Policy>,
    small: u64,
) -> Option<Option<(usize, Rc<OpenFile>)>> {
    if let Some(policy) = policy {
        let mut known = Some(None);
        for (i, path) in candidates.iter().enumerate() {
            match get(How::Sibling, path, policy) {
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
    let tried = try_siblings(candidates, Io::Cached, small).ok()?;
    Some(remember_siblings(candidates, tried, policy))
}

/// What [`sibling_now`] could not find without waiting, on the blocking
/// pool, remembered found or not.
pub(crate) async fn first_sibling(
    candidates: Vec<PathBuf>,
    policy: Option<Policy>,
    small: u64,
) -> Option<(usize, Rc<OpenFile>)> {
    let (candidates, tried) = tokio::task::spawn_blocking(move || {
        let tried = try_siblings(&candidates, Io::Blocking, small).unwrap_or_default();
        (candidates, tried)
    })
    .await
    .ok()?;
    remember_siblings(&candidates, tried, policy)
}

/// Open candidates in order up to the first regular file (no symlink
/// followed in the last component); one result per candidate tried.
fn try_siblings(
    candidates: &[PathBuf],
    io: Io,
    small: u64,
) -> Result<Vec<Option<OpenFile>>, WouldBlock> {
    let mut tried = Vec::new();
    for path in candidates {
        let found = match open_sibling(path, io) {
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
    candidates: &[PathBuf],
    tried: Vec<Option<OpenFile>>,
    policy: Option<Policy>,
) -> Option<(usize, Rc<OpenFile>)> {
    let mut first = None;
    for (i, (path, found)) in candidates.iter().zip(tried).enumerate() {
        let open = found.map(Rc::new);
        if let Some(open) = &open {
            first = Some((i, open.clone()));
        }
        if let Some(policy) = policy {
            put(How::Sibling, path.clone(), path.clone(), open, policy);
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Value> {
        text.split_whitespace()
            .map(|w| Value::Str(w.to_string()))
            .collect()
    }

    #[test]
    fn directive_arguments() {
        assert_eq!(
            parse(&words("1000 1s")).unwrap(),
            Some(Policy {
                size: 1000,
                ttl: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse(&words("10 500ms")).unwrap().unwrap().ttl,
            Duration::from_millis(500)
        );
        assert_eq!(parse(&words("off")).unwrap(), None);
        assert_eq!(parse(&words("Off")).unwrap(), None);
        for bad in ["1000", "0 1s", "-1 1s", "x 1s", "10 soon", "10 1s 1s", "on"] {
            assert!(parse(&words(bad)).is_err(), "{bad}");
        }
    }
}
