//! Each worker's result cache: transformed files, keyed by what a request
//! names ([`request_key`]: the Location, the file and its stamp, the
//! style and medium chosen, the request's parameters). An entry holds
//! everything a hit sends (the body, and its `Content-Type`, `ETag` and
//! `Last-Modified` as shared header values made once) and what it was made
//! from, so that a hit is one lookup, one look at the clock and the
//! response. Bounded by bytes: when full, the least recently used eighth
//! goes at once, so that making room is not a scan per insertion.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axkit::config::LocationConfig;
use bytes::Bytes;

use crate::choose::Choice;
use crate::styles::{Compiled, Files, Stamp};

/// An entry's bookkeeping beyond its bytes (map slot, `Rc`, header values).
const OVERHEAD: usize = 256;

/// A file's validators, formatted once per result.
pub(crate) struct Validators {
    pub etag: Arc<str>,
    /// Whole seconds, as `Last-Modified` says it.
    pub modified: SystemTime,
    pub last_modified: Arc<str>,
}

/// One transformed file.
pub(crate) struct Cached {
    pub body: Bytes,
    pub content_type: Arc<str>,
    pub validators: Validators,
    /// Everything the result depends on: the file and its stamp, each
    /// stylesheet's files and stamps, what the document loaded, the
    /// parameters and the style. A hit uses the entry as it is while
    /// [`Cached::fresh`]; after that only once the request's checks
    /// compute this key again.
    pub full_key: Box<str>,
    /// What it was made from, whose files are checked at most once a
    /// second (by the request that finds them due). A stylesheet only by
    /// a weak reference: once recompiled, the old one is freed, and the
    /// entry is no longer fresh.
    sheets: Vec<Weak<Compiled>>,
    deps: Rc<Files>,
    size: usize,
    used: Cell<u64>,
}

impl Cached {
    pub(crate) fn new(
        body: Bytes,
        content_type: Arc<str>,
        validators: Validators,
        full_key: Box<str>,
        sheets: &[Rc<Compiled>],
        deps: Rc<Files>,
    ) -> Cached {
        let size = body.len()
            + content_type.len()
            + validators.etag.len()
            + validators.last_modified.len()
            + full_key.len()
            + OVERHEAD;
        Cached {
            body,
            content_type,
            validators,
            full_key,
            sheets: sheets.iter().map(Rc::downgrade).collect(),
            deps,
            size,
            used: Cell::new(0),
        }
    }

    /// Whether every file it was made from was found unchanged less than
    /// a second ago: then it is current without a look at the disk, as
    /// a compiled stylesheet is.
    pub(crate) fn fresh(&self, now: Instant) -> bool {
        self.deps.fresh(now)
            && self
                .sheets
                .iter()
                .all(|s| s.upgrade().is_some_and(|s| s.files.fresh(now)))
    }

    /// Whether it was made from these very stylesheets and loads (not
    /// only equal ones): a hit keeps them fresh only then.
    pub(crate) fn made_from(&self, sheets: &[Rc<Compiled>], deps: &Rc<Files>) -> bool {
        Rc::ptr_eq(&self.deps, deps)
            && self.sheets.len() == sheets.len()
            && self
                .sheets
                .iter()
                .zip(sheets)
                .all(|(a, b)| std::ptr::eq(a.as_ptr(), Rc::as_ptr(b)))
    }

    /// The same result, made from `sheets` and `deps` (found equal by
    /// their key).
    pub(crate) fn renewed(&self, sheets: &[Rc<Compiled>], deps: Rc<Files>) -> Cached {
        let validators = Validators {
            etag: self.validators.etag.clone(),
            modified: self.validators.modified,
            last_modified: self.validators.last_modified.clone(),
        };
        Cached::new(
            self.body.clone(),
            self.content_type.clone(),
            validators,
            self.full_key.clone(),
            sheets,
            deps,
        )
    }
}

/// The key a request finds its result by: its Location (the address of
/// its frozen config, which lives as long as the plugin: the chains,
/// `XSLTParam`s, choosers and roots are all in it), the file's path and
/// stamp, the style and medium the choosers picked, and the parameters
/// when they come from the request. Each field is length-prefixed, so
/// two different requests never write the same bytes. Written into `key`
/// (cleared first), which the worker reuses.
pub(crate) fn request_key(
    key: &mut Vec<u8>,
    config: &LocationConfig,
    path: &Path,
    stamp: &Stamp,
    choice: &Choice,
    params: Option<&[(String, String)]>,
) {
    let path = path.as_os_str().as_bytes();
    let style = choice.style.as_deref().unwrap_or("");
    let params_len = params.map_or(0, |p| {
        p.iter().map(|(n, v)| n.len() + v.len() + 8).sum::<usize>()
    });
    key.clear();
    key.reserve(
        8 + Stamp::KEY_BYTES + path.len() + style.len() + choice.media.len() + 13 + params_len,
    );
    key.extend_from_slice(&(std::ptr::from_ref(config) as usize).to_ne_bytes());
    stamp.push_bytes(key);
    field(key, path);
    key.push(u8::from(choice.style.is_some()));
    field(key, style.as_bytes());
    field(key, choice.media.as_bytes());
    for (name, value) in params.unwrap_or_default() {
        field(key, name.as_bytes());
        field(key, value.as_bytes());
    }
}

fn field(key: &mut Vec<u8>, bytes: &[u8]) {
    key.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    key.extend_from_slice(bytes);
}

/// The results of one worker.
pub(crate) struct Results {
    inner: RefCell<Inner>,
}

struct Inner {
    /// By request key, which is partly request data (a path, a query's
    /// parameters): std's keyed hash.
    map: HashMap<Box<[u8]>, Rc<Cached>>,
    limit: usize,
    used: usize,
    /// Counts uses: each entry's `used` is the tick of its last one.
    tick: u64,
}

impl Results {
    pub(crate) fn new(limit: usize) -> Results {
        Results {
            inner: RefCell::new(Inner {
                map: HashMap::new(),
                limit,
                used: 0,
                tick: 0,
            }),
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Rc<Cached>> {
        let mut inner = self.inner.borrow_mut();
        inner.tick += 1;
        let tick = inner.tick;
        let found = inner.map.get(key)?;
        found.used.set(tick);
        Some(found.clone())
    }

    pub(crate) fn put(&self, key: Vec<u8>, cached: Cached) {
        let mut inner = self.inner.borrow_mut();
        let size = cached.size + key.len();
        if let Some(old) = inner.map.remove(key.as_slice()) {
            inner.used -= old.size + key.len();
        }
        if size > inner.limit {
            return;
        }
        if inner.used + size > inner.limit {
            inner.make_room(size);
        }
        inner.tick += 1;
        cached.used.set(inner.tick);
        inner.used += size;
        inner.map.insert(key.into_boxed_slice(), Rc::new(cached));
    }
}

impl Inner {
    /// Drop the least recently used entries until `needed` bytes fit in
    /// seven eighths of the bound.
    fn make_room(&mut self, needed: usize) {
        let target = (self.limit - self.limit / 8).saturating_sub(needed);
        let mut ages: Vec<(u64, usize)> = self
            .map
            .iter()
            .map(|(k, c)| (c.used.get(), c.size + k.len()))
            .collect();
        ages.sort_unstable();
        // Every use takes a tick of its own: dropping the entries used
        // before `cut` drops exactly those counted here.
        let mut cut = 0;
        for (tick, size) in ages {
            if self.used <= target {
                break;
            }
            self.used -= size;
            cut = tick + 1;
        }
        self.map.retain(|_, c| c.used.get() >= cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize) -> Cached {
        let validators = Validators {
            etag: "\"e\"".into(),
            modified: SystemTime::UNIX_EPOCH,
            last_modified: "x".into(),
        };
        let deps = Rc::new(Files::stat(None, &[]));
        Cached::new(
            Bytes::from(vec![b'x'; len]),
            "text/html".into(),
            validators,
            "k".into(),
            &[],
            deps,
        )
    }

    /// When full, the least recently used go (an eighth of the bound at
    /// least), the bound holds, and what can never fit is not kept.
    #[test]
    fn the_least_recently_used_go_first() {
        let one = entry(1000).size + 1;
        let results = Results::new(10 * one);
        for i in 0..10u8 {
            results.put(vec![i], entry(1000));
        }
        assert!(results.get(&[0]).is_some());
        results.put(vec![10], entry(1000));
        assert!(results.get(&[0]).is_some(), "the most recently used went");
        assert!(
            results.get(&[1]).is_none(),
            "the least recently used stayed"
        );
        assert!(results.get(&[10]).is_some());
        let inner = results.inner.borrow();
        let used: usize = inner.map.iter().map(|(k, c)| c.size + k.len()).sum();
        assert_eq!(inner.used, used);
        assert!(used <= 10 * one - 10 * one / 8);
        drop(inner);
        results.put(vec![11], entry(10 * one));
        assert!(results.get(&[11]).is_none());
        // Putting a key again replaces its entry.
        results.put(vec![10], entry(10));
        assert_eq!(results.get(&[10]).unwrap().body.len(), 10);
    }
}
