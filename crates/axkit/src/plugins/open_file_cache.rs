//! The per-worker open-file cache that the file plugins share
//! (`uri_to_file` for the paths it maps, `serve_file` for precompressed
//! siblings, `typeless_uri` for the names it tries), and their one way of
//! opening files off the event loop.
//!
//! `OpenFileCache SIZE TTL` (declared by `uri_to_file`, default
//! `1000 1s`) keeps up to SIZE open files per worker, each with its
//! metadata, validators and (small files) contents, and also misses,
//! trusted for TTL. A hit costs no syscall at all. Everything else — a
//! cold open, a miss, a revalidation after TTL — runs on the blocking
//! pool, so `open`/`stat`/`read` on a cold disk never stall the worker's
//! other connections. `OpenFileCache Off` keeps nothing, and then *every*
//! open takes the trip through the pool (a thread hop per request; the
//! price of never blocking the loop without a cache).
//!
//! The worker is one thread, so the cache is a thread-local: no locks, and
//! every plugin instance of the worker sees the same entries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{Config, LocationConfig, Value, ValueType};
use crate::plugin::OpenFile;
use crate::plugins::file_http::open_sibling;

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

/// The first of `candidates` that is a regular file, answered from the
/// cache alone: `Some(None)` when the cache knows that none exists,
/// `None` when it does not know (look with [`first_sibling`]).
pub(crate) fn cached_sibling(
    candidates: &[PathBuf],
    policy: Option<Policy>,
) -> Option<Option<(usize, Rc<OpenFile>)>> {
    if candidates.is_empty() {
        return Some(None);
    }
    let policy = policy?;
    for (i, path) in candidates.iter().enumerate() {
        if let Some(open) = get(How::Sibling, path, policy)?.open {
            return Some(Some((i, open)));
        }
    }
    Some(None)
}

/// The first of `candidates` that opens as a regular file (no symlink
/// followed in the last component), looked up on the blocking pool and
/// remembered, found or not, under `policy`.
pub(crate) async fn first_sibling(
    candidates: Vec<PathBuf>,
    policy: Option<Policy>,
    small: u64,
) -> Option<(usize, Rc<OpenFile>)> {
    let (candidates, tried) = tokio::task::spawn_blocking(move || {
        let mut tried = Vec::new();
        for path in &candidates {
            let found = open_sibling(path)
                .ok()
                .map(|(file, md)| OpenFile::load(file, md, small));
            let hit = found.is_some();
            tried.push(found);
            if hit {
                break;
            }
        }
        (candidates, tried)
    })
    .await
    .ok()?;
    let mut first = None;
    for (i, (path, found)) in candidates.into_iter().zip(tried).enumerate() {
        let open = found.map(Rc::new);
        if let Some(open) = &open {
            first = Some((i, open.clone()));
        }
        if let Some(policy) = policy {
            put(How::Sibling, path.clone(), path, open, policy);
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
